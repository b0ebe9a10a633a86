"""Asymptotic confidence sequence for a mean of unbounded values (Robbins' normal-mixture boundary).

Waudby-Smith, Arnold, Wu, Howard & Ramdas, "Time-uniform central limit theory and asymptotic confidence
sequences", Ann. Statist. 52(6), 2024 (arXiv 2103.06476), Theorem 2.2: for iid values with finite variance (a
little more than two moments), with μ̂_t the running mean and σ̂²_t the running (1/t) variance,

    C_t = μ̂_t ± σ̂_t · sqrt( 2(tρ² + 1) / (t²ρ²) · log( sqrt(tρ² + 1) / α ) )

is a (1 − α) *asymptotic* confidence sequence: it covers the mean simultaneously over t from some time on, with a
coverage error that vanishes as that time grows (the time-uniform analogue of the CLT interval). It is the
two-sided normal-mixture boundary of Robbins (1970) applied to the standardised partial sums; ρ > 0 sets the time
where it is narrowest. Tuned for a time t* (Howard et al. 2021, eq. (3.6)):

    ρ(t*) = sqrt( (−2 log α + log(−2 log α + 1)) / t* ).

For unbounded statistics (a control-variate-adjusted unit mean, a heavy-tailed score) it is the time-uniform
counterpart of the t interval: valid for stopping on it in the limit, with no bound on the values needed, but
not a finite-sample guarantee (that needs bounds: ``betting_confidence``).

Pure numpy/scipy; no ComfyUI import.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["asymptotic_cs", "boundary", "rho_for"]


def rho_for(t_star: float, confidence: float = 0.95) -> float:
    """ρ that makes the normal-mixture boundary tightest at sample size ``t_star``."""
    if not t_star > 0:
        raise ValueError(f"t_star: must be positive, got {t_star!r}")
    a = 1.0 - float(confidence)
    if not 0 < a < 1:
        raise ValueError(f"confidence: must be strictly between 0 and 1, got {confidence!r}")
    return math.sqrt((-2.0 * math.log(a) + math.log(-2.0 * math.log(a) + 1.0)) / float(t_star))


def boundary(t, rho: float, confidence: float = 0.95):
    """Half-width multiplier of σ̂_t at sample size(s) ``t``: sqrt(2(tρ²+1)/(t²ρ²) · log(sqrt(tρ²+1)/α))."""
    t = np.asarray(t, dtype=np.float64)
    a = 1.0 - float(confidence)
    r2 = float(rho) ** 2
    return np.sqrt(2.0 * (t * r2 + 1.0) / (t * t * r2) * np.log(np.sqrt(t * r2 + 1.0) / a))


def asymptotic_cs(values, confidence: float = 0.95, t_star: float | None = None, times=None,
                  running_intersection: bool = True):
    """(estimate[times], low[times], high[times]) of the asymptotic CS over the values in order (default every
    t >= 2). ``t_star``: the sample size to be tightest at (default the number of values, i.e. tuned for the
    end). With ``running_intersection`` the bounds are intersected over all t <= each time (every t >= 2)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = x.shape[0]
    if n < 2:
        raise ValueError("values: the asymptotic confidence sequence needs at least 2 values")
    if not np.all(np.isfinite(x)):
        raise ValueError("values: contains NaN/inf")
    rho = rho_for(t_star if t_star is not None else n, confidence)
    t = np.arange(1, n + 1, dtype=np.float64)
    mean = np.cumsum(x) / t
    # running (1/t) variance, by Welford's differences for stability
    dev = np.cumsum((x - np.concatenate(([x[0]], mean[:-1]))) * (x - mean))
    sd = np.sqrt(np.maximum(dev / t, 0.0))
    hw = sd * boundary(t, rho, confidence)
    low, high = mean - hw, mean + hw
    low[0], high[0] = -np.inf, np.inf  # one value: no spread yet
    if running_intersection:
        rl, rh = np.maximum.accumulate(low), np.minimum.accumulate(high)
        empty = rl >= rh  # only after the sequence has already missed: keep the current interval, never a point
        low, high = np.where(empty, low, rl), np.where(empty, high, rh)
    ts = np.arange(2, n + 1) if times is None else np.asarray(times, dtype=int).reshape(-1)
    if ts.size and (ts.min() < 1 or ts.max() > n):
        raise ValueError(f"times: must be in 1..{n}")
    return mean[ts - 1], low[ts - 1], high[ts - 1]
