"""``antithetic-sampling guidance-bench`` (nodes/evidence/guidance_bench.py) on reduced settings; no ComfyUI.

Structure of what it writes, plus behaviours that must hold whatever the numbers: w = 0 leaves the samples
bit-identical to the unguided sampler (also while measuring), the evaluation counts follow the estimator, the
distances are right on cases with a known answer, and the noise floor logic only flags changes beyond it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes.evidence import demo, harness
from antithetic_sampling.nodes.evidence import guidance_bench as gb
from antithetic_sampling.nodes.evidence.digits import load_digits_denoiser
from antithetic_sampling.nodes.methods import noise_awareness as na


@pytest.fixture(scope="module")
def model():
    return load_digits_denoiser()


def _noise(model, n=12, seed=3):
    return gb.initial_noise(model, n, seed)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_w0_leaves_samples_identical_to_unguided(model, sampler):
    sigmas = harness.get_sigmas(model, 5, "karras")
    noise = _noise(model)
    plain = harness.sample(model.denoise, noise, sigmas, sampler, seed=11)
    for measure in (False, True):
        guide = na.NoiseAwarenessGuide(w=0.0, sigma_start=1e9, sigma_end=0.0, measure=measure)
        got = harness.sample(model.denoise, noise, sigmas, sampler, guide=guide, seed=11)
        assert torch.equal(got, plain), (sampler, measure)
    # the bench's own w = 0 variant (no guide) and a guided one on the same noise
    x0, g0 = gb.sample_variant(model, noise, sigmas, sampler, 4, gb._variant("w=0", 0.0))
    x1, g1 = gb.sample_variant(model, noise, sigmas, sampler, 4, gb._variant("w=1", 1.0, band=(1e9, 0.0)))
    assert g0 is None and torch.equal(x0, harness.sample(model.denoise, noise, sigmas, sampler, seed=4 + 7919))
    assert any(e["applied"] for e in g1.log) and not torch.equal(x0, x1)


@pytest.mark.parametrize("estimator,per_measured", [("sure_residual", 1), ("calibrated_residual", 1),
                                                    ("naive_residual", 0)])
def test_evaluation_counts_follow_the_estimator(model, estimator, per_measured):
    calls = []

    def counting(x, s):
        calls.append(x.shape[0])
        return model.denoise(x, s)

    steps = 6
    sigmas = harness.get_sigmas(model, steps, "karras")
    noise = _noise(model, 8)
    guide = na.NoiseAwarenessGuide(w=1.0, sigma_start=3.0, sigma_end=0.05, estimator=estimator, measure=False)
    harness.sample(counting, noise, sigmas, "euler", guide=guide)
    for e in guide.log:
        if not e["active"]:
            assert e["evaluations"] == 0 and e["ratio"] is None
        else:
            assert e["evaluations"] == per_measured + int(e["applied"])
    active = [e for e in guide.log if e["active"]]
    assert active and len(active) < steps  # the band leaves some steps out
    assert len(calls) == steps + sum(e["evaluations"] for e in guide.log)  # regular + extra, nothing hidden
    cost = gb.guide_cost(guide, steps)
    assert cost["extra_per_step"] == pytest.approx(sum(e["evaluations"] for e in guide.log) / steps)
    assert cost["active_steps"] == len(active)


def test_distances_on_known_cases():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(6, 64, generator=g, dtype=torch.float64)
    train = (torch.randn(800, 6, generator=g, dtype=torch.float64) @ basis * 0.05).reshape(800, 1, 8, 8)
    ref = gb.DigitReference(train.float())
    same = (torch.randn(800, 6, generator=g, dtype=torch.float64) @ basis * 0.05).reshape(800, 1, 8, 8).float()
    shifted = same + 0.2
    noisy = same + 0.05 * torch.randn(same.shape, generator=g)
    # FD against the closed form with scipy's sqrtm (full-rank data, where sqrtm of C1 C2 is accurate)
    from scipy import linalg

    full = train.float() + 0.02 * torch.randn(train.shape, generator=g)
    other = noisy + 0.1
    f = other.reshape(800, -1).double().numpy()
    t = full.reshape(800, -1).double().numpy()
    c1, c2 = np.cov(f, rowvar=False), np.cov(t, rowvar=False)
    expect = ((f.mean(0) - t.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert gb.DigitReference(full).fd(other) == pytest.approx(expect, rel=1e-4)
    assert ref.fd(same) < 0.05 * ref.fd(shifted)
    assert float(other.abs().max()) < 1 and float(full.abs().max()) < 1  # no clamping in play
    # unbiased MMD^2: about 0 for the same law, clearly positive for a shifted one
    assert abs(ref.mmd2(same)) < 0.1 * ref.mmd2(shifted)
    # off-subspace residue: the data live in a 6-dim subspace; isotropic noise shows up there
    assert ref.subspace_rank <= 6
    assert ref.off_rms(same) < 1e-3 and ref.off_rms(noisy) == pytest.approx(0.05 * math.sqrt(58 / 64), rel=0.1)


def test_paired_change_and_verdict_respect_the_noise_floor():
    base = [10.0, 10.2, 9.9, 10.1]
    assert gb.paired_change(base, [b - 0.5 for b in base])["sign"] == -1  # consistent, 5 % better
    assert gb.paired_change(base, [b + 0.05 for b in base])["sign"] == 0  # consistent but < 1 % of the value
    noisy = [b + d for b, d in zip(base, [0.6, -0.5, 0.7, -0.6], strict=True)]
    assert gb.paired_change(base, noisy)["sign"] == 0  # large but within 2 standard errors
    ch = gb.paired_change(base, [b - 0.5 for b in base])
    up = gb.paired_change(base, [b + 0.5 for b in base])
    flat = gb.paired_change(base, base)
    assert gb.verdict({"fd": ch, "mmd2": flat}) == "better"
    assert gb.verdict({"fd": up, "mmd2": flat}) == "worse"
    assert gb.verdict({"fd": ch, "mmd2": up}) == "mixed"
    assert gb.verdict({"fd": flat, "mmd2": flat}) == "no measurable change"
    # 2 standard errors on 4 seeds is not enough any more (one-sided t at 3 df and 2.5 %: 3.18 SE)
    d = np.array([-1.0, -2.0, -0.2, -1.4])
    base4 = [100.0] * 4
    ratio = -d.mean() / (d.std(ddof=1) / 2)
    assert 2.0 < ratio < gb.critical_t(4)
    assert gb.paired_change(base4, list(np.add(base4, d)))["sign"] == 0


def test_better_verdict_false_positive_rate_is_at_most_5_percent():
    """No effect on either metric (independent normal seed-to-seed noise, 4 seeds): "better" in <= 5 % of cases."""
    rng = np.random.default_rng(0)
    trials, better = 4000, 0
    for _ in range(trials):
        base = [100.0] * 4
        ch = {k: gb.paired_change(base, list(100.0 + 3.0 * rng.standard_normal(4))) for k in ("fd", "mmd2")}
        better += gb.verdict(ch) == "better"
    assert better / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)
    assert better / trials > 0.03  # and the test is not vacuous: it does call some "better" at ~2 x 2.5 %


def test_noise_shift_curve_is_what_demo_plots(model):
    sigmas = harness.get_sigmas(model, 4, "karras")
    noise = _noise(model, 8)
    out = gb.noise_shift_curve(model, noise, sigmas, sampler="euler", seed=0)
    assert out["estimator"] == na.DEFAULT_ESTIMATOR and out["w"] == gb.MEASURE_W != 0
    labels = list(out["curves"])
    assert labels[0] == "without guidance" and labels[1].startswith("with guidance")
    for c in out["curves"].values():
        assert c["step"] == list(range(4)) and len(c["ratio"]) == 4
        assert all(0.3 < r < 5 for r in c["ratio"])
        assert c["abs_dev"] == pytest.approx([abs(r - 1) for r in c["ratio"]])
    # the first step is identical in both runs (guidance never acts on step 0)
    assert out["curves"][labels[0]]["ratio"][0] == out["curves"][labels[1]]["ratio"][0]
    shown = demo.noise_shift(model, noise, sigmas, "euler", 0)
    assert shown["source"].endswith("noise_shift.noise_shift_curve")
    assert shown["curves"][labels[0]]["ratio"] == out["curves"][labels[0]]["ratio"]


def test_quick_bench_writes_json_markdown_and_the_readme_block(tmp_path):
    pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn (a dev dependency)")
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- BEGIN:guidance-results -->\nSTALE\n<!-- END:guidance-results -->\nbottom\n")
    out = tmp_path / "g"
    assert gb.main(["--quick", "--no-comfy", "--no-progress", "--out", str(out), "--readme", str(readme)]) == 0
    data = json.loads((out / "guidance.json").read_text())
    assert data["shipped"] == {"w": na.DEFAULT_SCALE, "sigma_start": na.DEFAULT_SIGMA_START,
                               "sigma_end": na.DEFAULT_SIGMA_END, "max_shift": na.DEFAULT_MAX_SHIFT,
                               "estimator": na.DEFAULT_ESTIMATOR}
    assert data["comfyui"] == {"skipped": "--no-comfy"}
    dg = data["digits"]
    assert set(dg["estimators"]) == set(na.LEVEL_ESTIMATORS)
    assert len(dg["settings"]) == len(gb.QUICK["settings"]) and len(dg["controls"]) == 1
    for st in dg["settings"]:
        vs = st["variants"]
        assert "changes" not in vs["w=0"] and vs["w=0"]["extra_per_step"] == 0
        for name, v in vs.items():
            if name == "w=0":
                continue
            assert v["verdict"] in ("better", "worse", "mixed", "no measurable change")
            assert set(v["changes"]) == {"fd", "mmd2", "off_rms"}
            assert v["evals_vs_cfg"] == pytest.approx((2 + v["extra_per_step"]) / 2)
            per_eval = 0 if v["estimator"] == "naive_residual" else 1
            # per in-band step: the estimator's evaluations, plus D_hat where a correction is made
            steps = st["steps"]
            in_band = sum(1 for i, s in enumerate(harness.get_sigmas(load_digits_denoiser(), steps, "karras")[:-1])
                          if i > 0 and v["sigma_end"] <= float(s) <= v["sigma_start"])
            assert per_eval * in_band / steps <= v["extra_per_step"] <= (per_eval + 1) * in_band / steps
        curves = st["shift"]["curve"]["curves"]
        assert all(len(c["ratio"]) == st["steps"] for c in curves.values())
        assert len(st["shift"]["curve"]["floor"]["ratio"]) == st["steps"]
    rec = dg["recommendation"]
    assert rec["estimator"] in na.LEVEL_ESTIMATORS and "naive_residual" not in rec["good_enough"]
    text = readme.read_text()
    md = (out / "guidance.md").read_text()
    assert "STALE" not in text and text.startswith("top\n") and text.endswith("bottom\n")
    assert md.strip() in text and "Summary (generated" in md and "ComfyUI comparison skipped" in md
