"""Scrambled-Sobol' RQMC noise: stratification, exact marginals, variance reduction, spectral mode, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes.methods import sobol_rqmc
from antithetic_sampling.nodes.methods.sobol_rqmc import (
    MAX_SOBOL_DIM,
    ScrambledSobol,
    dct_matrix,
    inverse_dct,
    low_frequency_order,
    replace_low_frequencies,
    replace_low_frequencies_,
    resolve_mode,
    scrambled_sobol_normals,
    scrambled_sobol_uniforms,
    sobol_digits,
    sobol_rqmc_noise,
)
from scipy import stats


@pytest.mark.parametrize("m", [1, 3, 5])
def test_each_coordinate_has_one_point_per_interval(m):
    n = 1 << m
    u = scrambled_sobol_uniforms(300, m, seed=5, replicate=m)
    cells = torch.floor(u * n).long()
    expected = torch.arange(n)
    for j in range(u.shape[1]):
        assert torch.equal(torch.sort(cells[:, j]).values, expected)


def test_stratification_survives_the_normal_map():
    n = 16
    z = sobol_rqmc_noise((n, 4, 8, 8), seed=3, points_per_replicate=n).reshape(n, -1).double()
    u = torch.special.ndtr(z)
    cells = torch.floor(u * n).long()
    ok = sum(torch.equal(torch.sort(cells[:, j]).values, torch.arange(n)) for j in range(z.shape[1]))
    # float32 rounding can move a value across a cell edge only with probability ~1e-6 per value
    assert ok >= z.shape[1] - 1


def test_normals_match_uniforms():
    u = scrambled_sobol_uniforms(50, 4, seed=1, replicate=2)
    z = scrambled_sobol_normals(50, 4, seed=1, replicate=2)
    # The same points: z = Phi^{-1}(u) to float32 precision, in both tails and the bulk.
    want = torch.special.ndtri(u)
    assert torch.allclose(z.double(), want, rtol=1e-6, atol=1e-6)
    assert torch.equal(torch.floor(torch.special.ndtr(z.double()) * 16), torch.floor(u * 16))


def test_marginals_are_standard_normal():
    # 64 replicates x 8 points; pool one point index across replicates (replicates are independent).
    z = sobol_rqmc_noise((512, 4, 4, 4), seed=17, points_per_replicate=8).reshape(64, 8, -1)
    for point in (0, 5):
        p = stats.kstest(z[:, point].reshape(-1).double().numpy(), "norm").pvalue
        assert p > 0.001
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02


def _replicate_means(f, noise, n):
    vals = f(noise).reshape(-1, n)
    return vals.mean(1)


def test_rqmc_beats_iid_on_smooth_integrands():
    n, reps = 16, 200
    shape = (n * reps, 4, 8, 8)
    rq = sobol_rqmc_noise(shape, seed=1, points_per_replicate=n)
    iid = torch.randn(shape, generator=torch.Generator().manual_seed(1))

    def additive(z):  # smooth additive statistic (like brightness after a nonlinearity)
        return torch.exp(0.5 * z).reshape(z.shape[0], -1).mean(1).double()

    def low_order(z):  # smooth, with interactions between a few coordinates
        flat = z.reshape(z.shape[0], -1).double()
        return torch.tanh(flat[:, 0] + 0.5 * flat[:, 1]) + torch.sin(flat[:, 2] * flat[:, 3])

    for f, bound in ((additive, 8.0), (low_order, 1.5)):
        ratio = _replicate_means(f, iid, n).var() / _replicate_means(f, rq, n).var()
        assert ratio > bound, (f.__name__, float(ratio))


def test_antithetic_rqmc_pairs():
    z = sobol_rqmc_noise((16, 4, 8, 8), seed=2, points_per_replicate=8, antithetic=True)
    for i in range(0, 16, 2):
        assert torch.equal(z[i + 1], -z[i])


def test_replicates_are_independent_scramblings():
    z = sobol_rqmc_noise((32, 4, 8, 8), seed=2, points_per_replicate=16)
    assert not torch.allclose(z[:16], z[16:])


def test_batch_index_slices_reproduce():
    for mode in ("full", "spectral"):
        full = sobol_rqmc_noise((16, 4, 8, 8), seed=4, points_per_replicate=8, mode=mode, spectral_coefficients=8)
        part = sobol_rqmc_noise((3, 4, 8, 8), seed=4, points_per_replicate=8, mode=mode, spectral_coefficients=8,
                                batch_index=[13, 2, 8])
        assert torch.equal(part[0], full[13]) and torch.equal(part[1], full[2]) and torch.equal(part[2], full[8])


def test_dct_is_orthonormal():
    for n in (4, 7, 16):
        d = dct_matrix(n)
        assert torch.allclose(d @ d.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    # inverse_dct of the forward transform is the identity
    y = torch.einsum("ah,chw,bw->cab", dct_matrix(5), x, dct_matrix(6))
    assert torch.allclose(inverse_dct(y, 2), x, atol=1e-10)


def test_spectral_mode_has_identity_covariance():
    n, reps = 8, 500
    z = sobol_rqmc_noise((n * reps, 4, 4, 4), seed=5, points_per_replicate=n, mode="spectral",
                         spectral_coefficients=4).reshape(n * reps, -1).double()
    cov = torch.cov(z.T)
    # 4000 items: entries have sampling sd ~ 1/sqrt(4000) = 0.016
    assert (cov - torch.eye(64, dtype=torch.float64)).abs().max() < 0.08
    assert abs(z.mean().item()) < 0.02


def test_spectral_mode_reduces_variance_of_brightness():
    n, reps = 8, 200
    shape = (n * reps, 4, 16, 16)
    rq = sobol_rqmc_noise(shape, seed=6, points_per_replicate=n, mode="spectral", spectral_coefficients=16)
    iid = torch.randn(shape, generator=torch.Generator().manual_seed(6))

    def brightness(z):
        return torch.tanh(z.mean(dim=(1, 2, 3)) * 8).double()

    ratio = _replicate_means(brightness, iid, n).var() / _replicate_means(brightness, rq, n).var()
    assert ratio > 5, float(ratio)


@pytest.mark.parametrize(
    "shape, expected",
    [((1, 4, 64, 64), "full"), ((1, 4, 128, 128), "spectral"), ((1, 16, 128, 128), "spectral"), ((1, 16, 3, 8, 8), "full")],
)
def test_auto_mode_and_shapes(shape, expected):
    dim = int(np.prod(shape[1:]))
    assert resolve_mode("auto", dim, shape[1], 64, int(np.prod(shape[2:]))) == expected
    z = sobol_rqmc_noise((2, *shape[1:]), seed=0, points_per_replicate=2)
    assert tuple(z.shape) == (2, *shape[1:]) and z.dtype == torch.float32


def test_incomplete_replicate_and_non_power_of_two():
    z = sobol_rqmc_noise((10, 4, 4, 4), seed=1, points_per_replicate=6)
    assert torch.isfinite(z).all() and tuple(z.shape) == (10, 4, 4, 4)


def test_global_rng_untouched():
    torch.manual_seed(7)
    a = torch.rand(2)
    torch.manual_seed(7)
    sobol_rqmc_noise((8, 4, 8, 8), seed=3)
    assert torch.equal(torch.rand(2), a)


@pytest.mark.parametrize(
    "shape, kwargs, match",
    [
        ((8, 4, 8, 8), dict(points_per_replicate=0), "points_per_replicate"),
        ((8, 4, 8, 8), dict(points_per_replicate=3, antithetic=True), "even"),
        ((8, 4, 8, 8), dict(mode="qmc"), "mode must be"),
        ((2, 4, 128, 128), dict(mode="full"), str(MAX_SOBOL_DIM)),
        ((2, 4, 8, 8), dict(mode="spectral", spectral_coefficients=65), "spectral_coefficients"),
        ((2, 16, 128, 128), dict(mode="spectral", spectral_coefficients=2000), "Sobol' limit"),
        ((8, 4), dict(), "latent shape"),
        ((4, 4, 8, 8), dict(batch_index=[0]), "batch_index"),
    ],
)
def test_bad_inputs(shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sobol_rqmc_noise(shape, seed=0, **kwargs)


@pytest.mark.parametrize("spatial", [(11,), (9, 12), (3, 5, 6)])
def test_low_frequency_replacement_equals_the_full_transform(spatial):
    """The corner-block update equals: full DCT, overwrite the m lowest coefficients, full inverse DCT."""
    gen = torch.Generator().manual_seed(4)
    z = torch.randn((2, 3, *spatial), generator=gen, dtype=torch.float64)
    m = 7
    q = torch.randn((2, 3, m), generator=gen, dtype=torch.float64)
    coeffs = z
    for ax, n in enumerate(spatial):
        coeffs = torch.movedim(torch.tensordot(coeffs, dct_matrix(n), dims=([2 + ax], [1])), -1, 2 + ax)
    flat = coeffs.reshape(2, 3, -1).clone()
    flat[..., low_frequency_order(spatial)[:m]] = q
    want = inverse_dct(flat.reshape(coeffs.shape), len(spatial))
    before = z.clone()
    assert torch.allclose(replace_low_frequencies(z, q), want, atol=1e-12)
    assert torch.equal(z, before)  # the out-of-place form leaves its input alone
    inplace = z.clone()
    assert replace_low_frequencies_(inplace, q) is inplace and torch.allclose(inplace, want, atol=1e-12)
    strided = torch.movedim(z.movedim(2, -1).contiguous(), -1, 2)  # same values, not contiguous
    assert replace_low_frequencies_(strided, q) is strided and torch.allclose(strided, want, atol=1e-12)


def test_spectral_antithetic_pairs_and_slices_written_in_place():
    """Spectral mode now fills the output in place: reflections, slices and reordered indices still agree."""
    kw = dict(seed=6, points_per_replicate=8, mode="spectral", spectral_coefficients=8, antithetic=True)
    full = sobol_rqmc_noise((16, 4, 8, 8), **kw)
    for i in range(0, 16, 2):
        assert torch.equal(full[i + 1], -full[i])
    part = sobol_rqmc_noise((4, 4, 8, 8), batch_index=[9, 3, 4, 5], **kw)
    for row, i in enumerate([9, 3, 4, 5]):
        assert torch.equal(part[row], full[i])


@pytest.mark.parametrize("m", [0, 1, 4, 7, 12])
@pytest.mark.parametrize("public_api_only", [False, True])
def test_direction_numbers_give_scipys_points(m, public_api_only, monkeypatch):
    from scipy.stats import qmc

    sobol_rqmc.clear_direction_cache()
    if public_api_only:  # the fallback used where scipy's private direction-number table is gone
        monkeypatch.setattr(sobol_rqmc, "_table_from_scipy_internals", lambda engine, dim: None)
    pts = qmc.Sobol(37, scramble=False).random_base2(m)
    assert torch.equal(sobol_digits(37, m), torch.from_numpy(np.rint(pts * (1 << m)).astype(np.int32)))
    sobol_rqmc.clear_direction_cache()


def test_any_subset_of_points_matches_the_whole_replicate():
    sob = ScrambledSobol(200, 6, seed=9, replicate=3)
    whole = sob.normals(range(64))
    pick = [63, 0, 17, 17, 40]
    assert torch.equal(ScrambledSobol(200, 6, seed=9, replicate=3).normals(pick), whole[pick])
    assert torch.equal(sob.cells(pick), sob.cells(range(64))[pick])
    # a consecutive run not aligned to the digit periods takes the vectorised path with per-row masks
    assert torch.equal(sob.normals(range(5, 21)), whole[5:21])
    assert torch.equal(sob.words(range(5, 21)), torch.stack([sob.words([k])[0] for k in range(5, 21)]))


def test_lower_digits_from_random_bits_are_uniform_within_each_cell():
    # Pool 400 replicates of 8 points: the position inside the point's 1/8 cell must be U(0, 1) whatever the
    # cell, and the far tails must carry their N(0, 1) mass (the lower-half map keeps 31 exact bits there).
    u = torch.cat([scrambled_sobol_uniforms(64, 3, seed=11, replicate=r) for r in range(400)]).reshape(-1)
    cells = torch.floor(u * 8)
    frac = (u * 8 - cells).numpy()
    assert stats.kstest(frac, "uniform").pvalue > 0.001
    for c in (0, 3, 7):
        assert stats.kstest(frac[(cells == c).numpy()], "uniform").pvalue > 0.001
    z = torch.cat([scrambled_sobol_normals(4096, 3, seed=12, replicate=r) for r in range(30)]).reshape(-1).double()
    beyond = (z.abs() > 3.5).double().mean().item()  # expected 2 * Phi(-3.5) = 4.65e-4 of 983040 values
    assert abs(beyond - 4.65e-4) < 5 * (4.65e-4 / z.numel()) ** 0.5
    assert stats.kstest(z.numpy(), "norm").pvalue > 0.001


def test_only_the_requested_points_are_formed(monkeypatch):
    """Work (and memory) grows with the batch, not with points_per_replicate: at the widget maximum 4096 a batch
    of 2 SD1.5 latents forms 2 points, never the whole 4096 x 16384 net."""
    formed = []
    real = ScrambledSobol.words
    monkeypatch.setattr(ScrambledSobol, "words", lambda self, pts, **kw: formed.append(len(pts)) or real(self, pts, **kw))
    z = sobol_rqmc_noise((2, 4, 64, 64), seed=1, points_per_replicate=4096, mode="full", batch_index=[4095, 7])
    assert formed == [2] and torch.isfinite(z).all()
    full = sobol_rqmc_noise((8, 4, 8, 8), seed=1, points_per_replicate=4096)
    assert torch.equal(sobol_rqmc_noise((1, 4, 8, 8), seed=1, points_per_replicate=4096, batch_index=[5])[0], full[5])


def test_direction_number_cache_is_capped_in_bytes(monkeypatch):
    monkeypatch.setattr(sobol_rqmc, "DIRECTION_CACHE_BYTES", 3 * 12 * 4 * 300)  # room for three 300-dim tables
    sobol_rqmc.clear_direction_cache()
    for dim in range(290, 300):
        sobol_rqmc.direction_numbers(dim)
    held = sum(t.numel() * t.element_size() for t in sobol_rqmc._direction_cache.values())
    assert 0 < held <= 3 * 12 * 4 * 300 and list(sobol_rqmc._direction_cache) == [297, 298, 299]
    sobol_rqmc.clear_direction_cache()


def test_spectral_widget_maximum_succeeds_on_4_channels_and_16_channels_are_refused_by_name():
    z = sobol_rqmc_noise((2, 4, 128, 128), seed=0, points_per_replicate=2, mode="spectral",
                         spectral_coefficients=sobol_rqmc.MAX_SPECTRAL_COEFFICIENTS)
    assert torch.isfinite(z).all()
    with pytest.raises(ValueError, match=r"spectral_coefficients = 5300 .* 16-channel .* at most 1325"):
        sobol_rqmc_noise((2, 16, 128, 128), seed=0, points_per_replicate=2, mode="spectral", spectral_coefficients=5300)


@pytest.mark.slow
def test_sobol_scaling_bench_reports_time_and_memory_per_cell():
    """One fresh process (torch import: a few seconds) at the widget maximum."""
    from antithetic_sampling.nodes.evidence import noise_timing

    res = noise_timing.sobol_scaling(points=(4096,), batches=(2,), repeats=1)
    assert [(r["points_per_replicate"], r["batch"]) for r in res["rows"]] == [(4096, 2)]
    for r in res["rows"]:
        assert r["best_s"] > 0 and r["randn_s"] > 0 and r["peak_rss_increase_mb"] >= 0
    table = noise_timing.scaling_markdown(res)
    assert table.startswith("| points per replicate | batch |") and "| 4096 | 2 |" in table


def test_lazily_drawn_scramble_columns_do_not_depend_on_the_order_of_requests():
    """Columns of L are drawn only when a point needs them; any request order gives the same points (odd dim:
    rows of the scramble stream straddle its 64-bit outputs)."""
    eager = ScrambledSobol(75, 12, seed=5, replicate=2)
    want = eager.words(range(4096))
    lazy = ScrambledSobol(75, 12, seed=5, replicate=2)
    assert torch.equal(lazy.words(range(8)), want[:8])
    assert torch.equal(lazy.words([4095, 9, 100]), want[[4095, 9, 100]])
    assert torch.equal(lazy.cells(range(4096)), eager.cells(range(4096)))
    for j in range(12):  # the stratification holds for every coordinate of the lazily formed replicate
        assert torch.equal(torch.sort(lazy.cells(range(4096))[:, j]).values, torch.arange(4096, dtype=torch.int32))
