"""Math of the training-free Noise Awareness Guidance (nodes/methods/noise_awareness.py) on the analytic model.

The analytic Gaussian mixture (nodes/evidence/analytic.py) has an exact denoiser at every level and an exact
log-density, so the paper's *noise-unconditional* score s(x) = E_{tau ~ p(tau|x)} s(x|tau) can be computed
exactly and compared with the training-free surrogate s(x) ~= s(x | s_hat).
"""

from __future__ import annotations

import math

import pytest
import torch
from antithetic_sampling.nodes.evidence import harness
from antithetic_sampling.nodes.evidence.analytic import AnalyticGMM
from antithetic_sampling.nodes.methods import noise_awareness as na


@pytest.fixture(scope="module")
def gmm() -> AnalyticGMM:
    return AnalyticGMM()  # 4x16x16, d = 1024


def _log_density(m: AnalyticGMM, x: torch.Tensor, tau: float) -> torch.Tensor:
    """log p_tau(x) of the mixture under VE noise tau (up to the constant -d/2 log 2 pi), per item."""
    xf = x.reshape(x.shape[0], -1).double()
    d, r = m.dim, m.bases.shape[2]
    diff = xf[:, None, :] - m.means[None]
    proj = torch.einsum("bkd,kdr->bkr", diff, m.bases)
    tot_iso = m.iso_var[None, :] + tau**2
    tot_lam = m.eigvals[None] + tot_iso[:, :, None]
    sq, psq = diff.pow(2).sum(-1), proj.pow(2)
    maha = (psq / tot_lam).sum(-1) + (sq - psq.sum(-1)) / tot_iso
    logdet = tot_lam.log().sum(-1) + (d - r) * tot_iso.log()
    return torch.logsumexp(m.weights.log()[None] - 0.5 * (maha + logdet), dim=1)


def _unconditional_score(m: AnalyticGMM, x: torch.Tensor, grid: torch.Tensor):
    """Exact noise-unconditional score under a log-uniform level prior on ``grid``; also the posterior RMS level."""
    logp = torch.stack([_log_density(m, x, float(t)) for t in grid], dim=1)  # [B, G]
    post = torch.softmax(logp, dim=1)
    scores = torch.stack([m.score(x.double(), float(t)) for t in grid], dim=1)  # [B, G, ...]
    s_unc = (post.reshape(*post.shape, *([1] * (x.ndim - 1))) * scores).sum(1)
    level = (post * grid.double().pow(2)[None]).sum(1).sqrt()
    return s_unc, level


def test_reduces_to_cfg():
    g = torch.Generator().manual_seed(0)
    x, d_cfg, d_c, d_hat = (torch.randn(3, 2, 4, 4, generator=g) for _ in range(4))
    s = torch.full((3,), 0.7)
    assert torch.equal(na.awareness_correction(d_cfg, d_c, d_hat, x, s, s * 1.2, 0.0), d_cfg)
    # s_hat = s_v and D_hat = D_c (the same evaluation): the bracket vanishes exactly.
    assert torch.allclose(na.awareness_correction(d_cfg, d_c, d_c, x, s, s, 1.5), d_cfg, atol=1e-6)


def test_clamp_is_one_sided():
    s = torch.tensor([1.0, 1.0, 1.0])
    got = na.clamp_level(torch.tensor([0.5, 1.1, 3.0]), s, 0.3)
    assert torch.allclose(got, torch.tensor([1.0, 1.1, 1.3]))
    two = na.clamp_level(torch.tensor([0.5, 1.1, 3.0]), s, 0.3, one_sided=False)
    assert torch.allclose(two, torch.tensor([1 / 1.3, 1.1, 1.3]))
    with pytest.raises(ValueError, match="max_level_shift"):
        na.clamp_level(s, s, -0.1)


@pytest.mark.parametrize("s_true", [0.3, 1.0, 3.0, 10.0])
def test_surrogate_reproduces_exact_noise_unconditional_guidance(gmm, s_true):
    """(1) with the state's actual level equals the paper's guidance with the exact unconditional score."""
    g = torch.Generator().manual_seed(1)
    x = gmm.sample(8, g).double()
    x = x + s_true * torch.randn(x.shape, generator=g, dtype=torch.float64)  # carries more noise than nominal
    s_nom, w = s_true / 1.2, 1.0
    grid = torch.exp(torch.linspace(math.log(0.01), math.log(200.0), 240, dtype=torch.float64))
    s_unc, level = _unconditional_score(gmm, x, grid)
    sv = torch.full((8,), s_nom, dtype=torch.float64)
    d_c = gmm.denoise(x, sv)
    # Paper: s_nag = (1 + w) s(x|t) - w s(x); as an x0-estimate D = x + s^2 s_nag.
    exact = x + s_nom**2 * ((1 + w) * gmm.score(x, sv) - w * s_unc)
    sur = na.awareness_correction(d_c, d_c, gmm.denoise(x, level), x, sv, level, w)
    err = (sur - exact).flatten(1).norm(dim=1) / (exact - d_c).flatten(1).norm(dim=1)
    assert err.max() < 0.05, err  # relative error of the guidance term (0.5-2% measured)
    # the posterior concentrates at the level the state was made with (relative width ~ 1/sqrt(d))
    assert torch.allclose(level, torch.full_like(level, s_true), rtol=0.08)


def test_surrogate_error_shrinks_with_dimension():
    """s(x) ~= s(x | s_hat) rests on the level posterior concentrating: the error drops as d grows."""
    errs = []
    for shape in [(1, 8, 8), (4, 16, 16)]:
        m = AnalyticGMM(shape=shape)
        g = torch.Generator().manual_seed(2)
        x = m.sample(8, g).double()
        x = x + 1.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        grid = torch.exp(torch.linspace(math.log(0.01), math.log(200.0), 240, dtype=torch.float64))
        s_unc, _ = _unconditional_score(m, x, grid)
        sv = torch.full((8,), 1.0, dtype=torch.float64)
        exact = m.score(x, sv) - s_unc
        sur = m.score(x, sv) - m.score(x, 1.2)  # surrogate at the generating level
        errs.append(float(((sur - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)).mean()))
    assert errs[1] < errs[0]


def _run(m, w, one_sided, max_shift, estimator="sure_residual", steps=10, n=32):
    guide = na.NoiseAwarenessGuide(w=w, sigma_start=1e9, sigma_end=0.0, max_shift=max_shift,
                                   estimator=estimator, one_sided=one_sided)
    noise = torch.randn(n, *m.shape, generator=torch.Generator().manual_seed(3))
    out = harness.sample(m.denoise, noise, harness.karras_sigmas(steps, m.sigma_min, m.sigma_max), "euler",
                         guide=guide)
    return out.flatten(1).norm(dim=1).mean().item(), guide


def test_one_sided_stable_where_two_sided_diverges(gmm):
    base, _ = _run(gmm, 0.0, True, 0.3)  # unguided 10-step Euler (its own discretisation error included)
    for w in (0.5, 1.0, 2.0):
        norm, guide = _run(gmm, w, True, 0.3)
        assert math.isfinite(norm) and abs(norm / base - 1) < 0.1, (w, norm, base)
        assert any(e["applied"] for e in guide.log)
    # Two-sided (unclamped below): (s/s_hat)^2 explodes once a step over-corrects; it blows up at w = 2.
    norm2, _ = _run(gmm, 2.0, False, 1e6)
    assert not math.isfinite(norm2) or norm2 > 3 * base, norm2


@pytest.mark.parametrize("estimator,tol", [("sure_residual", 0.02), ("calibrated_residual", 0.06)])
def test_estimators_unbiased_across_schedule(gmm, estimator, tol):
    """States made at exactly the nominal level: mean s_hat/s within a few percent over the identifiable range."""
    g = torch.Generator().manual_seed(5)
    x0 = gmm.sample(32, g)
    for s in [0.3, 1.0, 3.0, 10.0, 30.0, 80.0]:
        x = x0 + s * torch.randn(x0.shape, generator=g)
        sv = torch.full((32,), s)
        d = gmm.denoise(x, sv)
        _, info = na.guidance_step(x, sv, d, d, gmm.denoise, 0.0, 0.3, estimator, torch.randn(x0.shape, generator=g))
        ratio = float((info["s_hat"] / s).mean())
        assert abs(ratio - 1) < tol, (estimator, s, ratio)
        assert info["evaluations"] == 1 and not info["applied"]


def test_sure_detects_a_real_shift_and_naive_is_biased_low(gmm):
    g = torch.Generator().manual_seed(6)
    x0 = gmm.sample(32, g)
    s = 1.0
    x = x0 + 1.2 * s * torch.randn(x0.shape, generator=g)
    sv = torch.full((32,), s)
    d = gmm.denoise(x, sv)
    _, info = na.guidance_step(x, sv, d, d, gmm.denoise, 0.0, 0.3, "sure_residual", torch.randn(x0.shape, generator=g))
    assert abs(float(info["s_hat"].mean()) / 1.2 - 1) < 0.03
    x = x0 + 0.1 * torch.randn(x0.shape, generator=g)  # near the data's fine-scale std: shrinkage dominates
    naive = na.naive_level(x, gmm.denoise(x, torch.full((32,), 0.1)))
    assert float(naive.mean()) < 0.08


def test_unidentifiable_level_falls_back_to_nominal(gmm):
    g = torch.Generator().manual_seed(7)
    x0 = gmm.sample(8, g)
    x = x0 + 0.005 * torch.randn(x0.shape, generator=g)  # far below the data's own noise floor (0.1)
    sv = torch.full((8,), 0.005)
    d = gmm.denoise(x, sv)
    _, info = na.guidance_step(x, sv, d, d, gmm.denoise, 1.0, 0.3, "sure_residual", torch.randn(x0.shape, generator=g))
    assert torch.allclose(info["s_used"], sv) and not info["applied"] and info["evaluations"] == 1


def test_no_second_evaluation_when_nothing_to_correct():
    """The D_hat_c evaluation is skipped exactly when no item's clamped level exceeds s_v. With a zero denoiser the
    naive estimate is ||x|| / sqrt(d): states at half the nominal level read far below it (clamped to s_v: nothing
    to correct, so no evaluation at all and D_cfg returned as is); states at twice the level read above it (one
    evaluation, the correction applied). A broken skip fails the first half."""
    calls = []

    def den(x, s):
        calls.append(s.clone())
        return torch.zeros_like(x)

    base = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sv = torch.full((4,), 1.0)
    d = torch.zeros_like(base)
    below = 0.5 * base / base.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1) * 8.0  # ||x|| / sqrt(d) = 0.5 exactly
    out, info = na.guidance_step(below, sv, d, d, den, 1.0, 0.3, "naive_residual")
    assert torch.all(info["s_hat"] < sv) and torch.equal(info["s_used"], sv)
    assert calls == [] and info["evaluations"] == 0 and not info["applied"]
    assert out is d
    above = 4.0 * below  # ||x|| / sqrt(d) = 2: clamped to s_v (1 + 0.3)
    out, info = na.guidance_step(above, sv, d, d, den, 1.0, 0.3, "naive_residual")
    assert len(calls) == 1 and info["evaluations"] == 1 and info["applied"]
    torch.testing.assert_close(calls[0], torch.full((4,), 1.3))
    assert not torch.equal(out, d)
    with pytest.raises(ValueError, match="level_estimator"):
        na.guidance_step(base, sv, d, d, den, 1.0, 0.3, "bogus")


def test_affine_coefficients_and_level_inversion():
    def eps_ns(sigma, noise, x0):  # EPS / V_PREDICTION
        return x0 + sigma.reshape(-1, 1, 1, 1) * noise

    def flow_ns(sigma, noise, x0):  # CONST
        s = sigma.reshape(-1, 1, 1, 1)
        return s * noise + (1 - s) * x0

    def odd_ns(sigma, noise, x0):  # some other affine family: a = 1/(1+s^2)^0.5, b = s a
        s = sigma.reshape(-1, 1, 1, 1)
        a = (1 + s * s).rsqrt()
        return a * x0 + s * a * noise

    sig = torch.tensor([0.2, 0.5, 0.9])
    for fn in (eps_ns, flow_ns, odd_ns):
        a, b = na.level_coefficients_are_affine(fn, sig)
        level = b / a
        target = level * 1.2

        def coeffs(s, fn=fn):
            return na.level_coefficients_are_affine(fn, s)

        got = na.model_sigma_for_ve_level(coeffs, target, sig, 0.999 if fn is flow_ns else 100.0)
        a2, b2 = coeffs(got.double())
        assert torch.allclose(b2 / a2, target, rtol=1e-4), fn.__name__

    def bad_ns(sigma, noise, x0):
        return x0 * x0 + sigma.reshape(-1, 1, 1, 1) * noise

    with pytest.raises(ValueError, match="unsupported"):
        na.level_coefficients_are_affine(bad_ns, sig)


def test_reference_noise_is_private_and_deterministic():
    state = torch.random.get_rng_state()
    a = na.reference_noise((2, 3), 5, 1)
    assert torch.equal(a, na.reference_noise((2, 3), 5, 1))
    assert not torch.equal(a, na.reference_noise((2, 3), 5, 2))
    assert torch.equal(state, torch.random.get_rng_state())


def test_precomputed_probe_equals_the_internal_one(gmm):
    """A caller that batches the SURE probe with its regular evaluation gets exactly the same estimate."""
    g = torch.Generator().manual_seed(8)
    x0 = gmm.sample(6, g)
    sv = torch.full((6,), 0.8)
    x = x0 + 0.9 * torch.randn(x0.shape, generator=g)
    d = gmm.denoise(x, sv)
    xi = torch.randn(x0.shape, generator=g)
    _, own = na.guidance_step(x, sv, d, d, gmm.denoise, 1.0, 0.3, "sure_residual", xi)
    probe = gmm.denoise(na.sure_probe_state(x, sv, xi), sv)
    calls = []

    def den(xx, ss):
        calls.append(1)
        return gmm.denoise(xx, ss)

    _, pre = na.guidance_step(x, sv, d, d, den, 1.0, 0.3, "sure_residual", xi, probe=probe)
    assert torch.equal(pre["s_hat"], own["s_hat"]) and pre["evaluations"] == own["evaluations"]
    assert len(calls) == int(pre["applied"])  # only D_hat is evaluated inside
    assert pre["noise_fraction"].shape == (6,) and torch.all(pre["noise_fraction"] > na.MIN_NOISE_FRACTION)
    with pytest.raises(ValueError, match="probe"):
        na.guidance_step(x, sv, d, d, den, 1.0, 0.3, "calibrated_residual", xi, probe=probe)


def test_min_excess_leaves_small_estimates_uncorrected(gmm):
    g = torch.Generator().manual_seed(9)
    x0 = gmm.sample(16, g)
    sv = torch.full((16,), 1.0)
    x = x0 + 1.05 * torch.randn(x0.shape, generator=g)  # 5 % more noise than nominal
    d = gmm.denoise(x, sv)
    xi = torch.randn(x0.shape, generator=g)
    _, base = na.guidance_step(x, sv, d, d, gmm.denoise, 1.0, 0.3, "sure_residual", xi)
    assert base["applied"] and int((base["s_used"] > 1.0).sum()) >= 12
    _, dead = na.guidance_step(x, sv, d, d, gmm.denoise, 1.0, 0.3, "sure_residual", xi, min_excess=0.2)
    assert torch.equal(dead["s_hat"], base["s_hat"]) and torch.all(dead["s_used"] == 1.0) and not dead["applied"]
    with pytest.raises(ValueError, match="min_excess"):
        na.guidance_step(x, sv, d, d, gmm.denoise, 1.0, 0.3, "sure_residual", xi, min_excess=-1.0)
