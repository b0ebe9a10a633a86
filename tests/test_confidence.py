"""Design-aware confidence intervals (nodes/methods/confidence.py): exact values, layouts, coverage, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes.methods import confidence as ci
from scipy import stats

# ---------------------------------------------------------------- unit structure


def test_unit_index_layouts():
    assert ci.unit_index(6, "pairs", layout="interleaved").tolist() == [0, 0, 1, 1, 2, 2]
    assert ci.unit_index(6, "antithetic pairs", layout="halves").tolist() == [0, 1, 2, 0, 1, 2]
    assert ci.unit_index(8, "groups of K", 4, "interleaved").tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert ci.unit_index(8, "groups", 4, "halves").tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    # replicates are always contiguous: replicate r = items r*n .. r*n+n-1 (layout ignored)
    assert ci.unit_index(6, "RQMC replicates", 3, "halves").tolist() == [0, 0, 0, 1, 1, 1]
    assert ci.unit_index(3, "iid").tolist() == [0, 1, 2]


def test_pairs_interval_exact_values():
    # pairs (1, 3), (2, 6), (4, 4) -> pair means 2, 4, 4
    x = np.array([1.0, 3.0, 2.0, 6.0, 4.0, 4.0])
    r = ci.design_interval(x, "pairs", confidence=0.9)
    means = np.array([2.0, 4.0, 4.0])
    se = means.std(ddof=1) / np.sqrt(3)
    t = stats.t.ppf(0.95, 2)
    assert r.estimate == pytest.approx(10 / 3)
    assert r.std_error == pytest.approx(se)
    assert r.half_width == pytest.approx(t * se)
    assert (r.low, r.high) == (pytest.approx(10 / 3 - t * se), pytest.approx(10 / 3 + t * se))
    assert (r.units, r.dof, r.n_items, r.unit_size, r.design) == (3, 2, 6, 2, "pairs")
    # halves layout pairs item i with item i + N/2: (1, 6), (3, 4), (2, 4)
    h = ci.design_interval(x, "pairs", layout="halves", confidence=0.9)
    hm = np.array([3.5, 3.5, 3.0])
    assert h.std_error == pytest.approx(hm.std(ddof=1) / np.sqrt(3))


def test_never_uses_individual_variance():
    # perfectly antithetic pairs: individuals vary wildly, pair means are constant -> zero-width interval
    x = np.array([0.0, 2.0, 5.0, -3.0, 1.5, 0.5])
    r = ci.design_interval(x, "pairs")
    assert r.estimate == pytest.approx(1.0)
    assert r.half_width == pytest.approx(0.0, abs=1e-12)
    assert ci.design_interval(x, "iid").half_width > 1.0


def test_iid_matches_textbook_t_interval():
    rng = np.random.default_rng(3)
    x = rng.normal(size=12)
    r = ci.design_interval(x, "iid", confidence=0.95)
    lo, hi = stats.t.interval(0.95, 11, loc=x.mean(), scale=stats.sem(x))
    assert (r.low, r.high) == (pytest.approx(lo), pytest.approx(hi))


def test_vectorised_per_pixel_map_matches_scalar_calls():
    rng = np.random.default_rng(4)
    imgs = rng.random((8, 3, 2, 3)).astype(np.float32)
    r = ci.design_interval(imgs, "groups", 4, "halves", 0.8)
    assert r.half_width.shape == (3, 2, 3)
    one = ci.design_interval(imgs[:, 1, 0, 2].astype(np.float64), "groups", 4, "halves", 0.8)
    assert r.estimate[1, 0, 2] == pytest.approx(one.estimate, rel=1e-5)
    assert r.half_width[1, 0, 2] == pytest.approx(one.half_width, rel=1e-4)


def test_accepts_torch_tensors():
    x = torch.tensor([1.0, 3.0, 2.0, 6.0, 4.0, 4.0])
    assert ci.design_interval(x, "pairs").estimate == pytest.approx(10 / 3)


def test_efficiency_for_pairs_is_one_over_one_plus_rho():
    rng = np.random.default_rng(5)
    g = 4000
    z = rng.normal(size=g)
    e = rng.normal(size=(g, 2)) * 0.5
    x = np.stack([z + e[:, 0], -z + e[:, 1]], 1).reshape(-1)  # rho = (-1 + 0) / (1 + 0.25) = -0.8
    eff = ci.efficiency_vs_iid(x, "pairs")
    assert eff.rho == pytest.approx(-0.8, abs=0.02)
    assert eff.efficiency == pytest.approx(1 / (1 + eff.rho), rel=1e-9)
    assert eff.efficiency == pytest.approx(5.0, rel=0.1)
    assert eff.item_variance == pytest.approx(1.25, rel=0.05)
    # independent pairs: no gain
    y = rng.normal(size=2 * g)
    assert ci.efficiency_vs_iid(y, "pairs").efficiency == pytest.approx(1.0, abs=0.08)
    assert ci.efficiency_vs_iid(y, "iid").efficiency == 1.0


def test_efficiency_k_groups_matches_theory():
    # K-antithetic groups of a linear statistic plus independent noise: rho = -1/(K-1) * 1/(1+s2)
    rng = np.random.default_rng(6)
    k, g, s2 = 4, 3000, 0.25
    w = rng.normal(size=(g, k))
    z = np.sqrt(k / (k - 1)) * (w - w.mean(1, keepdims=True))
    x = (z + rng.normal(size=(g, k)) * np.sqrt(s2)).reshape(-1)
    eff = ci.efficiency_vs_iid(x, "groups", k)
    rho = -1 / (k - 1) / (1 + s2)
    assert eff.rho == pytest.approx(rho, abs=0.02)
    assert eff.efficiency == pytest.approx(1 / (1 + (k - 1) * rho), rel=0.1)


def test_image_statistics():
    imgs = np.zeros((2, 4, 4, 3), np.float32)
    imgs[0] = 1.0
    imgs[1, :2, :, 1] = 1.0  # half the pixels pure green
    b = ci.image_statistic(imgs, "mean brightness")
    assert b.tolist() == pytest.approx([1.0, 0.587 / 2])
    assert ci.image_statistic(imgs, "per-channel mean", channel=1).tolist() == pytest.approx([1.0, 0.5])
    assert ci.image_statistic(imgs, "fraction above threshold", threshold=0.5).tolist() == [1.0, 0.5]
    assert ci.image_statistic(imgs, "per-pixel mean map").shape == (2, 4, 4, 3)


# ---------------------------------------------------------------- coverage (seeded simulation)

REPS = 2000


def _pairs_data(rng, g, layout):
    z = rng.normal(size=(g, REPS))
    # a nonlinear statistic of antithetic pair members: strongly negatively correlated, not perfectly
    plus = 1.0 + z + 0.15 * z**2 + 0.3 * rng.normal(size=(g, REPS))
    minus = 1.0 - z + 0.15 * z**2 + 0.3 * rng.normal(size=(g, REPS))
    if layout == "interleaved":
        return np.stack([plus, minus], 1).reshape(2 * g, REPS)
    return np.concatenate([plus, minus], 0)


def _groups_data(rng, g, k, layout):
    w = rng.normal(size=(g, k, REPS))
    z = np.sqrt(k / (k - 1)) * (w - w.mean(1, keepdims=True))
    x = 2.0 + z + 0.15 * z**2 + 0.3 * rng.normal(size=(g, k, REPS))
    if layout == "interleaved":
        return x.reshape(g * k, REPS)
    return x.transpose(1, 0, 2).reshape(g * k, REPS)  # halves: item i = member i // g of group i % g


def _rqmc_data(rng, r, n):
    # randomly shifted lattice (a simple RQMC design) on [0,1]^2 mapped through a smooth integrand
    j = np.arange(n)[None, :, None]
    shift = rng.random(size=(r, 1, REPS, 2))
    gen = np.array([1, 5])
    u = (j[..., None] * gen / n + shift) % 1.0
    f = np.exp(u[..., 0]) * (1 + 0.5 * np.sin(2 * np.pi * u[..., 1]))
    return f.reshape(r * n, REPS)


CASES = {
    "iid": (lambda rng: 1.0 + rng.normal(size=(16, REPS)), "iid", 1, "interleaved", 1.0),
    "pairs-interleaved": (lambda rng: _pairs_data(rng, 10, "interleaved"), "antithetic pairs", 2, "interleaved", 1.15),
    "pairs-halves": (lambda rng: _pairs_data(rng, 10, "halves"), "pairs", 2, "halves", 1.15),
    "groups4-halves": (lambda rng: _groups_data(rng, 8, 4, "halves"), "groups of K", 4, "halves", 2.0 + 0.15),
    "groups4-interleaved": (lambda rng: _groups_data(rng, 8, 4, "interleaved"), "groups", 4, "interleaved", 2.15),
    "rqmc": (lambda rng: _rqmc_data(rng, 10, 8), "RQMC replicates", 8, "interleaved", (np.e - 1.0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_coverage_of_design_interval(case):
    make, design, k, layout, truth = CASES[case]
    rng = np.random.default_rng(sorted(CASES).index(case) + 100)
    x = make(rng)
    r = ci.design_interval(x, design, k, layout, confidence=0.95)  # vectorised over the REPS replications
    covered = np.mean((r.low <= truth) & (truth <= r.high))
    assert 0.92 <= covered <= 0.98, f"{case}: coverage {covered:.3f}"


def test_individual_variance_interval_would_be_wrong():
    """Sanity check on the simulation: ignoring the pairing over-covers massively (too wide)."""
    rng = np.random.default_rng(9)
    x = _pairs_data(rng, 10, "interleaved")
    naive = ci.design_interval(x, "iid")
    design = ci.design_interval(x, "pairs")
    assert np.median(naive.half_width / design.half_width) > 2.0


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": [1.0, 2.0, 3.0], "design": "pairs"}, "even batch"),
        ({"values": [1.0, 2.0], "design": "pairs"}, "at least 2 independent units"),
        ({"values": [1.0], "design": "iid"}, "at least 2 independent units"),
        ({"values": np.arange(6.0), "design": "groups", "group_size": 4}, "divisible by 4"),
        ({"values": np.arange(6.0), "design": "groups", "group_size": 1}, "group_size"),
        ({"values": np.arange(6.0), "design": "RQMC replicates", "group_size": 4}, "divisible by 4"),
        ({"values": np.arange(6.0), "design": "sobolish"}, "design"),
        ({"values": np.arange(6.0), "design": "pairs", "layout": "diagonal"}, "layout"),
        ({"values": [1.0, np.nan, 2.0, 3.0], "design": "pairs"}, "NaN/inf"),
        ({"values": [1.0, np.inf, 2.0, 3.0], "design": "iid"}, "NaN/inf"),
        ({"values": np.arange(6.0), "confidence": 1.0}, "confidence"),
        ({"values": np.arange(6.0), "confidence": 0.0}, "confidence"),
        ({"values": 3.0}, "scalar"),
        ({"values": ["a", "b"]}, "expected numbers"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ci.design_interval(**kwargs)


def test_bad_image_statistic_inputs():
    with pytest.raises(ValueError, match="images"):
        ci.image_statistic(np.zeros((2, 4, 4)), "mean brightness")
    with pytest.raises(ValueError, match="channel"):
        ci.image_statistic(np.zeros((2, 4, 4, 3)), "per-channel mean", channel=3)
    with pytest.raises(ValueError, match="statistic"):
        ci.image_statistic(np.zeros((2, 4, 4, 3)), "median")
    with pytest.raises(ValueError, match="NaN/inf"):
        ci.image_statistic(np.full((2, 4, 4, 3), np.nan), "mean brightness")
