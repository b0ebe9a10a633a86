"""Betting confidence sequences / intervals and the exact binomial interval (nodes.methods.betting_confidence),
and the asymptotic confidence sequence (nodes.methods.asymptotic_confidence_sequence).

The authors' reference implementation (PyPI ``confseq``) needs a C++ build with Boost and does not install here, so
its capital process (``confseq.betting.betting_mart`` with its default hedging by the maximum, m-truncation 1/2,
and ``cs_from_martingale``'s grid) is transcribed below, loop by loop, as an independent reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from nodes.methods import asymptotic_confidence_sequence as acs
from nodes.methods import betting_confidence as bc

ALPHA = 0.05


def confseq_reference(x, alpha=ALPHA, breaks=2000, theta=0.5, trunc=0.5):
    """confseq 0.0.11 ``betting_cs(x, breaks=breaks)`` at the last time (no running intersection): for every m of
    the grid, the capital max(θK⁺, (1-θ)K⁻) with lambda_predmix_eb(x, alpha·θ) bets truncated at trunc/m,
    trunc/(1-m); the CS is [first grid m not rejected - 1/breaks, last + 1/breaks]."""
    x = np.asarray(x, float)
    t = np.arange(1, len(x) + 1)

    def bets(a):
        mu = np.minimum((0.5 + np.cumsum(x)) / (t + 1), 1)
        s2 = (0.25 + np.cumsum((x - mu) ** 2)) / (t + 1)
        s2p = np.append(0.25, s2[:-1])
        return np.sqrt(2 * np.log(1 / a) / (t * np.log(1 + t) * s2p))

    lam_p, lam_n = bets(alpha * theta), bets(alpha * (1 - theta))
    accepted = []
    for m in np.arange(0, 1 + 1 / breaks, 1 / breaks):
        with np.errstate(divide="ignore"):
            lp = np.maximum(np.minimum(lam_p, trunc / m), -trunc / (1 - m))
            ln = np.maximum(np.minimum(lam_n, trunc / (1 - m)), -trunc / m)
        kp = np.prod(1 + lp * (x - m))
        kn = np.prod(1 - ln * (x - m))
        if max(theta * kp, (1 - theta) * kn) <= 1 / alpha:
            accepted.append(m)
    return max(0.0, accepted[0] - 1 / breaks), min(1.0, accepted[-1] + 1 / breaks)


@pytest.mark.parametrize("law", ["bernoulli", "beta", "uniform"])
def test_matches_reference_capital_on_its_grid(law):
    rng = np.random.default_rng(1)
    x = {"bernoulli": rng.binomial(1, 0.1, 300).astype(float), "beta": rng.beta(2, 5, 300),
         "uniform": rng.uniform(size=300)}[law]
    lo, hi = bc.betting_bounds(x, times=[300])
    ref_lo, ref_hi = confseq_reference(x)
    # the reference rounds outward by one grid step (1/2000): ours must lie within that step, inside the reference
    assert ref_lo - 1e-9 <= lo[0] <= ref_lo + 1 / 2000 + 1e-9
    assert ref_hi - 1 / 2000 - 1e-9 <= hi[0] <= ref_hi + 1e-9


def test_bounds_are_the_exact_roots_rounded_outward():
    rng = np.random.default_rng(2)
    x = rng.beta(2, 5, 2000)
    lo, hi = bc.betting_bounds(x, times=[2000])
    lam = bc._plug_in_bets(x, ALPHA, 0.5, None)
    thr = math.log(1 / (0.5 * ALPHA))
    up = bc._log_capital(x, lam, np.array([lo[0], lo[0] + 1e-5 * (hi[0] - lo[0]) + 1e-4 * (hi[0] - lo[0])]), 0.5, True)
    assert up[0] >= thr > up[1]  # lo is rejected, a point just inside is accepted
    dn = bc._log_capital(x, lam, np.array([hi[0], hi[0] - 1e-4 * (hi[0] - lo[0])]), 0.5, False)
    assert dn[0] >= thr > dn[1]


def test_rescaling_is_exact():
    rng = np.random.default_rng(3)
    z = rng.beta(3, 2, 200)
    lo, hi = bc.betting_bounds(z, times=[50, 200])
    lo2, hi2 = bc.betting_bounds(-2 + 5 * z, -2, 3, times=[50, 200])
    np.testing.assert_allclose(lo2, -2 + 5 * lo, atol=1e-9)
    np.testing.assert_allclose(hi2, -2 + 5 * hi, atol=1e-9)


def test_out_of_range_is_a_named_error_never_clipped():
    with pytest.raises(ValueError, match=r"value 1\.5 .*outside the range \[0, 1\]"):
        bc.betting_bounds([0.2, 1.5, 0.3])
    with pytest.raises(ValueError, match="range"):
        bc.BettingConfidenceSequence(1, 1)
    cs = bc.BettingConfidenceSequence(0, 10)
    with pytest.raises(ValueError, match=r"unit means: value -0\.5"):
        cs.extend([1, -0.5], name="unit means")
    assert cs.n == 0  # nothing appended on error


@pytest.mark.parametrize("p", [0.01, 0.05, 0.5])
def test_sequence_covers_bernoulli_simultaneously(p):
    """Time-uniform coverage: over 300 runs the sequence must cover p at *every* checked time in >= 95 % of runs
    (up to binomial noise: 3 SE), including p = 0.01 where every early sample is all zeros."""
    rng = np.random.default_rng(int(p * 1000))
    times = [8, 16, 32, 64, 128, 256, 512]
    misses = 0
    for _ in range(300):
        x = rng.binomial(1, p, 512).astype(float)
        lo, hi = bc.betting_bounds(x, times=times)
        assert np.all(hi - lo > 0)
        misses += bool(np.any((lo > p) | (hi < p)))
    assert misses / 300 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


def test_sequence_covers_beta_and_goal_bets_cover():
    rng = np.random.default_rng(5)
    a, b = 0.3, 3.0  # skewed, mean 0.0909
    mu = a / (a + b)
    miss_cs = miss_goal = 0
    for _ in range(300):
        x = rng.beta(a, b, 400)
        lo, hi = bc.betting_bounds(x, times=[25, 100, 400])
        miss_cs += bool(np.any((lo > mu) | (hi < mu)))
        lo, hi = bc.betting_bounds(x, times=[25, 100, 400], goal=np.full(400, 0.02))
        miss_goal += bool(np.any((lo > mu) | (hi < mu)))
    assert miss_cs / 300 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    assert miss_goal / 300 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


def test_width_shrinks_like_one_over_root_t():
    rng = np.random.default_rng(6)
    x = rng.uniform(size=4096)
    lo, hi = bc.betting_bounds(x, times=[256, 1024, 4096])
    w = hi - lo
    # 4x the data: half the width, times the slowly growing log factor of a sequence (ratios 0.5-0.6)
    assert 0.45 < w[1] / w[0] < 0.62 and 0.45 < w[2] / w[1] < 0.62


def test_goal_bets_reach_the_goal_near_the_fixed_n_size():
    """Bets aimed at g reach g at about the sample size 2 log(1/(θα)) σ²/g² (Chernoff), far before the plain
    sequence does."""
    rng = np.random.default_rng(7)
    x = rng.beta(2, 5, 6000)
    g = 0.01
    n_star = 2 * math.log(2 / ALPHA) * x.var() / g**2
    times = np.arange(200, 6001, 100)
    lo, hi = bc.betting_bounds(x, times=times, goal=np.full(6000, g))
    first = times[np.argmax((hi - lo) / 2 <= g)]
    assert 0.8 * n_star <= first <= 1.3 * n_star
    lo, hi = bc.betting_bounds(x, times=times)
    plain = times[np.argmax((hi - lo) / 2 <= g)] if np.any((hi - lo) / 2 <= g) else 10**9
    assert plain > 1.2 * first


def test_running_intersection_is_nested_and_never_a_point():
    rng = np.random.default_rng(8)
    cs = bc.BettingConfidenceSequence(0, 1, 0.95)
    prev = (0.0, 1.0)
    for _ in range(40):
        cs.extend(rng.binomial(1, 0.02, 8), goal=0.01)
        r = cs.interval()
        assert prev[0] <= r.low < r.high <= prev[1]
        prev = (r.low, r.high)
    assert r.n == 320 and r.method == "betting confidence sequence"


def test_all_zeros_give_a_positive_upper_bound():
    cs = bc.BettingConfidenceSequence()
    cs.extend(np.zeros(16))
    r = cs.interval()
    assert r.estimate == 0.0 and r.low == 0.0 and 0.05 < r.high < 0.6
    ci = bc.betting_interval(np.zeros(16))
    assert ci.low == 0.0 and ci.high > 0.05


def test_fixed_n_interval_covers_and_is_narrower_than_the_sequence_at_n():
    rng = np.random.default_rng(9)
    misses, ratio = 0, []
    for _ in range(300):
        x = rng.beta(2, 5, 200)
        ci = bc.betting_interval(x)
        misses += not (ci.low <= 2 / 7 <= ci.high)
        lo, hi = bc.betting_bounds(x, times=[200])
        ratio.append((ci.high - ci.low) / (hi[0] - lo[0]))
    assert misses / 300 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    assert np.median(ratio) < 0.95


def test_clopper_pearson_matches_the_beta_quantiles_and_covers():
    x = np.r_[np.ones(3), np.zeros(97)]
    r = bc.clopper_pearson(x)
    assert r.low == pytest.approx(stats.beta.ppf(0.025, 3, 98))
    assert r.high == pytest.approx(stats.beta.ppf(0.975, 4, 97))
    z = bc.clopper_pearson(np.zeros(20))
    assert z.low == 0 and z.high == pytest.approx(1 - 0.025 ** (1 / 20))
    with pytest.raises(ValueError, match="0 or 1"):
        bc.clopper_pearson([0, 0.5, 1])
    # exact: coverage >= 0.95 at every p (up to the binomial noise of 2000 draws) on a small n
    rng = np.random.default_rng(10)
    for p in (0.01, 0.05, 0.3):
        k = rng.binomial(30, p, 2000)
        lo = np.where(k == 0, 0, stats.beta.ppf(0.025, np.maximum(k, 1), 30 - k + 1))
        hi = np.where(k == 30, 1, stats.beta.ppf(0.975, k + 1, np.maximum(30 - k, 1)))
        assert np.mean((lo <= p) & (p <= hi)) >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / 2000)


def test_asymptotic_boundary_and_rho():
    a = 0.05
    rho = acs.rho_for(100, 0.95)
    assert rho == pytest.approx(math.sqrt((-2 * math.log(a) + math.log(-2 * math.log(a) + 1)) / 100))
    t = np.array([10.0, 100.0, 1000.0])
    expect = np.sqrt(2 * (t * rho**2 + 1) / (t**2 * rho**2) * np.log(np.sqrt(t * rho**2 + 1) / a))
    np.testing.assert_allclose(acs.boundary(t, rho), expect)
    # tightest (relative to 1/sqrt t) near t*: the tuned boundary at t* beats one tuned for 10 t* or t*/10
    at = [float(acs.boundary(100, acs.rho_for(s))) for s in (10, 100, 1000)]
    assert at[1] < at[0] and at[1] < at[2]


def test_asymptotic_cs_covers_heavy_tails_and_matches_direct_formula():
    rng = np.random.default_rng(11)
    x = rng.standard_t(5, 1000)
    est, lo, hi = acs.asymptotic_cs(x, t_star=500, times=[1000], running_intersection=False)
    sd = x.std()
    h = sd * acs.boundary(1000, acs.rho_for(500))
    assert est[0] == pytest.approx(x.mean()) and hi[0] - est[0] == pytest.approx(h)
    misses = 0
    for _ in range(300):
        x = rng.standard_t(5, 1000)
        _, lo, hi = acs.asymptotic_cs(x, t_star=300, times=[100, 300, 1000])
        misses += bool(np.any((lo > 0) | (hi < 0)))
    assert misses / 300 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    with pytest.raises(ValueError, match="at least 2"):
        acs.asymptotic_cs([1.0])
