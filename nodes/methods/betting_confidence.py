"""Guaranteed intervals for the mean of bounded values: betting confidence sequences, a fixed-N betting interval,
and the exact (Clopper–Pearson) binomial interval.

Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting", JRSS-B 86(1):1–27, 2024
(arXiv 2010.09686). Values X_i in [lo, hi] are rescaled to Z_i = (X_i − lo)/(hi − lo) in [0, 1]; for a candidate
mean m the two *capital processes*

    K⁺_t(m) = Π_{i≤t} (1 + λ⁺_i(m) (Z_i − m)),        K⁻_t(m) = Π_{i≤t} (1 − λ⁻_i(m) (Z_i − m))

are nonnegative martingales when m is the true mean, for any *predictable* bets (λ_i chosen from Z_1..Z_{i-1}).
Ville's inequality gives P(∃t: K_t(μ) ≥ 1/α) ≤ α, so {m : K_t(m) < 1/α} is a (1 − α) confidence *sequence*: it
covers μ at every t simultaneously, hence also at a stopping time chosen from the data (stop when narrow enough,
Ctrl-C, budget spent), and the running intersection ∩_{s≤t} C_s covers as well.

Bets: the paper's predictable plug-in (its eq. (26), "PrPl"),

    λ_t = sqrt( 2 log(1/(θα)) / (σ̂²_{t−1} · t · log(1 + t)) ),
    μ̂_t = (1/2 + Σ_{i≤t} Z_i)/(t + 1),   σ̂²_t = (1/4 + Σ_{i≤t} (Z_i − μ̂_i)²)/(t + 1),

truncated as in the paper's hedged-capital sequence (§4.2): λ⁺_t(m) = min(λ_t, c/m), λ⁻_t(m) = min(λ_t, c/(1 − m))
with c = 1/2 (the paper's and the reference implementation's default), which keeps every factor ≥ 1 − c > 0.
Hedging with θ = 1/2 tests both directions. The two processes are combined by the maximum,
max(θK⁺, (1 − θ)K⁻) ≥ 1/α (the default of the authors' reference implementation ``confseq``); since the maximum is
below the paper's sum θK⁺ + (1 − θ)K⁻, the sequence is valid and at most as narrow as the sum's (near the lower
bound K⁻ ≪ 1, so the two agree to many digits). With the maximum the set is exactly an interval: K⁺_t(m) is
nonincreasing and K⁻_t(m) nondecreasing in m (every factor is), so the lower bound is the single root of
log K⁺_t(m) = log(1/(θα)) and the upper bound that of K⁻. Both are found by a bracketing root search (Illinois
regula falsi, every evaluation vectorised over the data) and rounded *outward*, so the reported interval contains the exact
one and is wider by less than 10⁻³ of its half-width.

Bets aimed at a target (``goal``): Ville's inequality holds for *any* predictable bets, so a run that wants a
half-width g may bet λ_t = g/σ̂²_{t−1} (rescaled units; g fixed before Z_t is seen). With the usual second-order
expansion of log(1 + λ(Z − m)) the lower bound at N is ≈ L/(λN) + λσ²/2 with L = log(1/(θα)); this λ makes it
≤ g as soon as N >= 2Lσ²/g², the sample size at which the best fixed-N bet reaches g. The sequence stays valid at
every t (it is the same martingale argument), it is only tuned for the width the run stops at. The paper's plug-in
(no goal) spends a log t factor more for not knowing where it will stop.

Fixed N (:func:`betting_interval`): the paper's betting confidence *interval* for a sample size N known in advance
uses λ_t = sqrt(2 log(1/(θα)) / (N σ̂²_{t−1})) (no log t factor, tuned for time N) with the same truncation and
reports the intersection over 16 times from N/8 to N (the capital is still a martingale, so any set of times is
valid); it is meant to be read at N.

Clopper–Pearson (:func:`clopper_pearson`): when every value is 0 or 1 and the images are independent (iid noise),
the number of ones is binomial and the exact interval is [B(α/2; k, n−k+1), B(1−α/2; k+1, n−k)] (beta quantiles;
0 for k = 0, 1 for k = n). Never of zero width: with k = 0 of n the upper end is 1 − (α/2)^{1/n}.

Pure numpy/scipy; no ComfyUI import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["NODE_INTERVALS", "BettingConfidenceSequence", "BoundedInterval", "batch_interval_choice", "betting_bounds",
           "betting_interval", "check_range", "clopper_pearson", "is_binary"]

TRUNCATION = 0.5  # c: λ⁺ <= c/m, λ⁻ <= c/(1-m) (paper §4.2; also the reference implementation's default)
THETA = 0.5  # hedging weight between the upward and downward bets


@dataclass(frozen=True)
class BoundedInterval:
    """An interval for a mean of values in [lo, hi]. ``estimate`` is the plain sample mean."""

    estimate: float
    low: float
    high: float
    n: int
    confidence: float
    method: str  # "betting confidence sequence" | "betting interval (fixed N)" | "Clopper-Pearson (exact binomial)"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def check_range(values, lo: float, hi: float, name: str = "values") -> np.ndarray:
    """Values as float64 [n]; a ValueError naming ``name`` and the first offending value when one is outside
    [lo, hi] (never clipped: a value outside the declared range voids the guarantee)."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"range: needs finite LO < HI, got [{lo!r}, {hi!r}]")
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains NaN/inf; every value must be a finite number in [{lo:g}, {hi:g}]")
    bad = np.flatnonzero((x < lo) | (x > hi))
    if bad.size:
        raise ValueError(f"{name}: value {float(x[bad[0]])!r} (item {int(bad[0])}) is outside the range [{lo:g}, {hi:g}]; "
                         f"{bad.size} of {x.size} value(s) are outside. Declare the statistic's true bounds (the "
                         "interval is only guaranteed for values inside them)")
    return x


def is_binary(values) -> bool:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    return bool(x.size) and bool(np.all((x == 0.0) | (x == 1.0)))


def _alpha(confidence: float) -> float:
    conf = float(confidence)
    if not (0.0 < conf < 1.0):
        raise ValueError(f"confidence: must be strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return 1.0 - conf


def _plug_in_bets(z: np.ndarray, alpha: float, theta: float, fixed_n: int | None,
                  goal: np.ndarray | None = None, horizon: float | None = None) -> np.ndarray:
    """λ_t, t = 1..n, from Z_1..Z_{t-1} only (predictable): the paper's eq. (26); ``fixed_n``: its fixed-N variant;
    ``goal`` (rescaled half-width wanted, per observation, NaN where none): λ_t = goal_t / σ̂²_{t−1}, but never below
    the fixed-N bet for ``horizon`` observations (a goal the budget cannot reach would otherwise bet next to
    nothing and leave the interval wide open when the budget runs out)."""
    n = z.shape[0]
    t = np.arange(1, n + 1, dtype=np.float64)
    mu = (0.5 + np.cumsum(z)) / (t + 1.0)
    s2 = (0.25 + np.cumsum((z - mu) ** 2)) / (t + 1.0)
    s2_prev = np.concatenate(([0.25], s2[:-1]))
    log_term = 2.0 * math.log(1.0 / (theta * alpha))
    if fixed_n is None:
        lam = np.sqrt(log_term / (s2_prev * t * np.log1p(t)))
    else:
        lam = np.sqrt(log_term / (s2_prev * float(fixed_n)))
    if goal is not None:
        aimed = goal / s2_prev
        if horizon is not None:
            aimed = np.maximum(aimed, np.sqrt(log_term / (s2_prev * float(horizon))))
        lam = np.where(np.isfinite(goal) & (goal > 0), aimed, lam)
    return lam


def _log_capital(z: np.ndarray, lam: np.ndarray, m: np.ndarray, c: float, upward: bool) -> np.ndarray:
    """log K⁺_t(m) (upward) or log K⁻_t(m) for every m in ``m`` [G] at t = len(z): array [G]."""
    m = m[:, None]
    with np.errstate(divide="ignore"):
        cap = c / (m if upward else 1.0 - m)
    bet = np.minimum(lam[None, :], cap)
    step = bet * (z[None, :] - m)
    return np.log1p(step if upward else -step).sum(axis=1)


def _bound(z: np.ndarray, lam: np.ndarray, threshold: float, c: float, upward: bool) -> float:
    """Lower (upward=True) or upper bound in [0, 1]: the edge of {m : log K(m) >= threshold}, rounded outward.

    K⁺ is nonincreasing in m, so its rejected set is a prefix [0, L]; K⁻'s is a suffix [U, 1]. A bracket
    (rejected end, accepted end) is found by stepping out from the running mean, then narrowed by the Illinois
    method until it is below 10⁻³ of its first width (and 10⁻⁹ of the range); the rejected end is returned, so the
    reported bound lies outside the exact one by less than that."""
    n = z.shape[0]
    if n == 0:
        return 0.0 if upward else 1.0

    def rejected(m: np.ndarray) -> np.ndarray:
        return _log_capital(z, lam, np.asarray(m, dtype=np.float64), c, upward) >= threshold

    mean = float(z.mean())
    # a first guess of the distance to the bound: an empirical-Bernstein-like width, then doubled until it brackets
    w = 2.0 * math.sqrt(max(float(z.var()), 1e-12) * threshold / n) + threshold / n
    inner = mean
    if rejected([inner])[0]:  # the mean itself is rejected (rare, tiny samples): bracket from the edge inwards
        inner = 1.0 if upward else 0.0
    outer = inner
    while True:
        outer = max(0.0, inner - w) if upward else min(1.0, inner + w)
        if outer in (0.0, 1.0) or rejected([outer])[0]:
            break
        inner, w = outer, 2.0 * w  # outer was accepted: the bound is further out
    if not rejected([outer])[0]:
        return outer  # the whole way to the edge is accepted: the bound is the edge (0 or 1)
    # Illinois (modified regula falsi) on f(m) = log K(m) − threshold, monotone in m: the bracket (rejected end,
    # accepted end) is kept at every step, so returning the rejected end is always conservative
    r, q = outer, inner
    fr = float(_log_capital(z, lam, np.array([r]), c, upward)[0]) - threshold
    fq = float(_log_capital(z, lam, np.array([q]), c, upward)[0]) - threshold
    tol = max(1e-3 * abs(q - r), 1e-9)
    side = 0
    for _ in range(200):
        if abs(q - r) <= tol:
            break
        m = (r * fq - q * fr) / (fq - fr) if math.isfinite(fr) and fq != fr else 0.5 * (r + q)
        if not (min(r, q) < m < max(r, q)):
            m = 0.5 * (r + q)
        fm = float(_log_capital(z, lam, np.array([m]), c, upward)[0]) - threshold
        if fm >= 0:  # rejected
            r, fr = m, fm
            if side == -1:
                fq *= 0.5
            side = -1
        else:
            q, fq = m, fm
            if side == 1:
                fr *= 0.5
            side = 1
    return float(r)


def betting_bounds(values, lo: float = 0.0, hi: float = 1.0, confidence: float = 0.95, times=None,
                   truncation: float = TRUNCATION, theta: float = THETA, fixed_n: int | None = None, goal=None,
                   horizon: float | None = None):
    """Bounds of the hedged-capital betting confidence sequence at ``times`` (1-based sample sizes; default every
    t), *without* the running intersection: arrays (low[times], high[times]) in the original units. ``goal``: per
    observation, the half-width (original units) that was wanted when it was requested (NaN: the paper's bets);
    it must have been fixed before that observation was seen; ``horizon``: the most observations the run can
    take (the budget), which bounds the goal-aimed bets from below."""
    x = check_range(values, lo, hi)
    alpha = _alpha(confidence)
    if not (0.0 < truncation < 1.0) or not (0.0 < theta < 1.0):
        raise ValueError("truncation and theta must be in (0, 1)")
    span = float(hi) - float(lo)
    z = (x - float(lo)) / span
    g = None if goal is None else np.asarray(goal, dtype=np.float64).reshape(-1) / span
    if g is not None and g.shape != z.shape:
        raise ValueError(f"goal: one entry per value expected, got {g.shape[0]} for {z.shape[0]}")
    lam = _plug_in_bets(z, alpha, theta, fixed_n, g, horizon)
    ts = np.arange(1, z.shape[0] + 1) if times is None else np.asarray(times, dtype=int).reshape(-1)
    if ts.size and (ts.min() < 0 or ts.max() > z.shape[0]):
        raise ValueError(f"times: must be in 0..{z.shape[0]}")
    up = math.log(1.0 / (theta * alpha))
    down = math.log(1.0 / ((1.0 - theta) * alpha))
    low = np.array([_bound(z[:t], lam[:t], up, truncation, True) for t in ts])
    high = np.array([_bound(z[:t], lam[:t], down, truncation, False) for t in ts])
    return float(lo) + span * low, float(lo) + span * high


class BettingConfidenceSequence:
    """Incremental hedged-capital betting confidence sequence with its running intersection.

    ``extend(values)`` appends observations (in the order they were drawn); ``interval()`` evaluates the sequence at
    the current sample size and intersects it with every earlier evaluation (valid simultaneously over all
    evaluation times, so the caller may stop on it). Evaluate as often as convenient: each evaluation costs
    O(t) vectorised work (about 20 evaluations of the capital)."""

    method = "betting confidence sequence"

    def __init__(self, lo: float = 0.0, hi: float = 1.0, confidence: float = 0.95,
                 truncation: float = TRUNCATION, theta: float = THETA, horizon: float | None = None):
        check_range([], lo, hi)
        _alpha(confidence)
        self.lo, self.hi, self.confidence = float(lo), float(hi), float(confidence)
        self.truncation, self.theta = float(truncation), float(theta)
        self.horizon = None if horizon is None else float(horizon)  # the budget in observations, if known
        self._x = np.zeros(0)
        self._goal = np.zeros(0)
        self._low, self._high = self.lo, self.hi
        self.evaluations = 0

    @property
    def n(self) -> int:
        return int(self._x.shape[0])

    def extend(self, values, goal: float | None = None, name: str = "values") -> None:
        """Append observations. ``goal``: the half-width the run was aiming for when these observations were
        requested (decided before they were seen): their bets are then tuned to reach it (λ = goal/σ̂²)."""
        x = check_range(values, self.lo, self.hi, name)
        self._x = np.concatenate([self._x, x])
        g = math.nan if goal is None or not (goal > 0 and math.isfinite(goal)) else float(goal)
        self._goal = np.concatenate([self._goal, np.full(x.shape[0], g)])

    def interval(self) -> BoundedInterval:
        n = self.n
        if n:
            low, high = betting_bounds(self._x, self.lo, self.hi, self.confidence, [n], self.truncation, self.theta,
                                       goal=self._goal, horizon=self.horizon)
            a, b = max(self._low, float(low[0])), min(self._high, float(high[0]))
            if a >= b:  # an empty intersection happens only when the sequence already missed (prob <= alpha):
                a, b = float(low[0]), float(high[0])  # report the current interval rather than a point
            self._low, self._high = a, b
            self.evaluations += 1
        est = float(self._x.mean()) if n else 0.5 * (self.lo + self.hi)
        return BoundedInterval(est, self._low, self._high, n, self.confidence, self.method)


def betting_interval(values, lo: float = 0.0, hi: float = 1.0, confidence: float = 0.95,
                     truncation: float = TRUNCATION, theta: float = THETA) -> BoundedInterval:
    """The betting confidence interval at a sample size fixed in advance (N = len(values)): bets tuned for N,
    running intersection over t <= N. Valid at N only (not for stopping on it)."""
    x = check_range(values, lo, hi)
    n = x.shape[0]
    if n == 0:
        raise ValueError("values: need at least one value")
    # the intersection over a geometric set of times from N/8 to N (any set of times is valid; the early ones
    # are wide and evaluating every t would cost O(N²))
    times = np.unique(np.concatenate([np.geomspace(max(1, n // 8), n, 16).astype(int), [n]]))
    low, high = betting_bounds(x, lo, hi, confidence, times, truncation, theta, fixed_n=n)
    a, b = float(np.max(low)), float(np.min(high))
    if a >= b:  # empty intersection (already missed): the interval at N
        a, b = float(low[-1]), float(high[-1])
    return BoundedInterval(float(x.mean()), a, b, n, float(confidence), "betting interval (fixed N)")


def clopper_pearson(values, confidence: float = 0.95) -> BoundedInterval:
    """Exact binomial interval for the mean of independent 0/1 values (ValueError if a value is not 0 or 1)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0 or not is_binary(x):
        raise ValueError("values: the exact binomial interval needs every value to be 0 or 1")
    alpha = _alpha(confidence)
    n, k = int(x.size), int(x.sum())
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return BoundedInterval(k / n, low, high, n, float(confidence), "Clopper-Pearson (exact binomial)")


NODE_INTERVALS = ("auto", "t (unit means)", "betting (bounded, fixed N)", "exact binomial (0/1 values, iid)")


def batch_interval_choice(choice: str, values, unit_means, design: str, value_range: tuple[float, float]) -> str:
    """Which interval the Confidence Interval node reports for one batch: ``t``, ``betting`` or ``binomial``.

    ``auto``: the exact binomial interval when every value is 0 or 1 and the images are independent (iid); the
    betting interval when the estimate's auto switch would fire (at most ``max_distinct`` distinct values and fewer
    than half the images, unit means
    without spread, or skewed beyond ``max_skew`` with too few units for the CLT at that skew:
    ``sequential_estimation.skewed`` with ``AUTO_SWITCH``); else the t interval. Explicit choices are checked (binomial: 0/1 values and iid; betting: values inside the range)."""
    from .sequential_estimation import AUTO_SWITCH, skewed

    key = str(choice).strip().lower()
    if key not in [c.lower() for c in NODE_INTERVALS]:
        raise ValueError(f"interval: one of {', '.join(NODE_INTERVALS)}, got {choice!r}")
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    y = np.asarray(unit_means, dtype=np.float64).reshape(-1)
    if key.startswith("t"):
        return "t"
    if key.startswith("exact"):
        if design != "iid":
            raise ValueError("interval: the exact binomial interval needs independent images (design iid); for a "
                             f"{design} design use the betting interval on its unit means")
        if not is_binary(x):
            raise ValueError("interval: the exact binomial interval needs every per-image value to be 0 or 1")
        return "binomial"
    lo, hi = value_range
    if key.startswith("betting"):
        check_range(x, lo, hi, "values (range_low..range_high)")
        return "betting"
    # auto
    if design == "iid" and is_binary(x):
        return "binomial"
    sw = AUTO_SWITCH
    odd = (np.unique(x).size <= min(sw.max_distinct, x.size // 2) or float(np.ptp(y)) == 0.0
           or skewed(y, sw))
    if odd:
        check_range(x, lo, hi, "values (range_low..range_high)")
        return "betting"
    return "t"
