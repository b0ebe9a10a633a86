"""Control variates from the initial noise: a cross-fitted polynomial-chaos surrogate with an exactly known mean.

Beyond Jia et al., "Antithetic Noise in Diffusion Models" (arXiv 2506.06185, ICLR 2026): every image's starting
noise z is known and has an exactly known law, N(0, I) per image for iid, antithetic and RQMC noise alike (those
designs change only the joint law). Any function h(z) with E[h(z)] = 0 is therefore a free control variate for a
statistic S of the image made from z (Lavenberg & Welch 1981; Glasserman, *Monte Carlo Methods in Financial
Engineering*, 2003, §4.1):

    μ̂_cv = Ȳ - β̂ C̄,      Y_g = unit mean of S,  C_g = unit mean of h(z),  g = 1..G independent units,

with β̂ the least-squares slope of Y on C in the same batch. The interval is the regression intercept's: residual
variance s_e² = Σ (Y_g - Ȳ - β̂ (C_g - C̄))² / (G - 2),  SE² = s_e² (1/G + C̄² / Σ (C_g - C̄)²),  Student-t on
G - 2 degrees of freedom (one more than the design alone pays, for β̂).

The control. Orthonormal 2-D DCT-II coefficients c = D z Dᵀ of iid N(0, 1) noise are again iid N(0, 1), so the
lowest-frequency coefficients (which carry brightness and layout) give a degree-2 Hermite polynomial chaos

    φ(c) = ( c_i ,  (c_i² - 1)/√2 ,  c_i c_j  (i < j) ),      E[φ(c)] = 0 exactly, Cov φ = I,

and any linear combination h(z) = wᵀ φ(c(z)) has mean exactly 0 *whatever w is*. w is a ridge fit of the unit
means Y on the unit means of φ, fitted on the *other* prompts of the same run (K-fold cross-fitting over prompts),
so the surrogate used for a unit never saw that unit. Only one control (the surrogate) enters the batch
regression: with few units per batch several raw controls overfit. Inside antithetic pairs and K-groups the odd
(linear) features cancel exactly in every unit mean; the even ones carry what is left.

Pure numpy; no torch, no ComfyUI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "ControlVariateInterval",
    "chaos_features",
    "control_variate_interval",
    "cross_fitted_control",
    "dct_matrix",
    "low_frequency_dct",
    "ridge_fit",
]


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix D [n, n]: D[u, x] = a_u cos(π (2x + 1) u / (2n)), a_0 = √(1/n), a_u = √(2/n)."""
    x = np.arange(n)
    u = np.arange(n)[:, None]
    d = np.cos(np.pi * (2 * x[None, :] + 1) * u / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


def frequency_order(channels: int, height: int, width: int) -> list[tuple[int, int, int]]:
    """(channel, u, v) ordered from the lowest frequency up: by u + v, then max(u, v), u, then channel, so the DC
    coefficient of every channel comes first."""
    idx = [(c, u, v) for c in range(channels) for u in range(height) for v in range(width)]
    return sorted(idx, key=lambda t: (t[1] + t[2], max(t[1], t[2]), t[1], t[0]))


def low_frequency_dct(noise, count: int = 16) -> np.ndarray:
    """The ``count`` lowest-frequency orthonormal DCT coefficients of every item of ``noise`` [N, C, H, W]
    (or [N, H, W]) -> float64 [N, count], in :func:`frequency_order`. For N(0, I) noise they are iid N(0, 1)."""
    z = np.asarray(noise.detach().cpu().double().numpy() if hasattr(noise, "detach") else noise, dtype=np.float64)
    if z.ndim == 3:
        z = z[:, None]
    if z.ndim != 4:
        raise ValueError(f"noise: expected [N, C, H, W], got shape {z.shape}")
    n, c, h, w = z.shape
    order = frequency_order(c, h, w)[: int(count)]
    dh, dw = dct_matrix(h), dct_matrix(w)
    us = sorted({u for _, u, _ in order})
    vs = sorted({v for _, _, v in order})
    # only the rows/columns needed: [N, C, |us|, |vs|]
    coef = np.einsum("ux,ncxy,vy->ncuv", dh[us], z, dw[vs], optimize=True)
    ui = {u: i for i, u in enumerate(us)}
    vi = {v: i for i, v in enumerate(vs)}
    return np.stack([coef[:, ch, ui[u], vi[v]] for ch, u, v in order], axis=1)


def chaos_features(coefficients: np.ndarray, degree: int = 2) -> np.ndarray:
    """Hermite polynomial chaos of iid N(0, 1) coefficients [N, m] -> [N, p], every column mean 0, variance 1.

    degree 1: c_i (p = m); degree 2 adds (c_i² - 1)/√2 and c_i c_j for i < j (p = m + m (m + 1) / 2).
    """
    c = np.asarray(coefficients, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"coefficients: expected [N, m], got shape {c.shape}")
    if degree not in (1, 2):
        raise ValueError(f"degree: 1 or 2, got {degree}")
    cols = [c]
    if degree == 2:
        m = c.shape[1]
        cols.append((c**2 - 1.0) / math.sqrt(2.0))
        iu, ju = np.triu_indices(m, 1)
        cols.append(c[:, iu] * c[:, ju])
    return np.concatenate(cols, axis=1)


LAMBDAS = (0.01, 0.1, 1.0, 10.0, 100.0)


def _ridge_from_moments(n: int, sx: np.ndarray, sy: float, xx: np.ndarray, xy: np.ndarray, yy: float,
                        lambdas=LAMBDAS) -> np.ndarray:
    """Ridge on centred data from its sums (n, Σx, Σy, XᵀX, Xᵀy, Σy²): one p×p eigendecomposition, the penalty
    picked by generalised cross-validation GCV(λ) = n RSS / (n - dof)², dof = Σ e / (e + λ)."""
    mx, my = sx / n, sy / n
    a = xx - n * np.outer(mx, mx)
    b = xy - n * mx * my
    c = yy - n * my * my
    e, v = np.linalg.eigh(a)
    e = np.clip(e, 0.0, None)
    vb = v.T @ b
    scale = float(e.mean()) if e.size else 1.0  # penalty relative to the mean eigenvalue: one grid for any size
    best, best_w = math.inf, np.zeros(a.shape[0])
    for lam in lambdas:
        lam_abs = lam * scale
        coef = vb / (e + lam_abs)
        dof = float((e / (e + lam_abs)).sum())
        if n - dof <= 1:
            continue
        # RSS = c - 2 wᵀb + wᵀ A w in the eigenbasis
        rss = c - 2 * float(coef @ vb) + float((coef**2 * e).sum())
        gcv = n * max(rss, 0.0) / (n - dof) ** 2
        if gcv < best:
            best, best_w = gcv, v @ coef
    return best_w


def ridge_fit(x: np.ndarray, y: np.ndarray, lambdas=LAMBDAS) -> np.ndarray:
    """Ridge weights w [p] (intercept unpenalised: x and y centred by their training means), the penalty chosen by
    generalised cross-validation. The surrogate is h(φ) = wᵀ φ: its mean under the noise law is 0 whatever w is,
    so centring or shrinkage never biases the estimate."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return _ridge_from_moments(x.shape[0], x.sum(0), float(y.sum()), x.T @ x, x.T @ y, float(y @ y), lambdas)


def cross_fitted_control(unit_features: np.ndarray, unit_values: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Control C_g = ŵ_{-f(g)}ᵀ φ̄_g for every unit g, the ridge surrogate fitted on the units of all *other*
    folds (folds = the prompt each unit came from, or any grouping of prompts). Mean exactly 0 under the noise law.
    A fold with too few other units to learn from gets C = 0 (no control). The fits share one pass over the data:
    each fold's training moments are the totals minus the fold's own."""
    x = np.asarray(unit_features, dtype=np.float64)
    y = np.asarray(unit_values, dtype=np.float64)
    f = np.asarray(folds)
    out = np.zeros(len(y))
    keys = np.unique(f)
    parts = {}
    for k in keys:
        m = f == k
        xm, ym = x[m], y[m]
        parts[k] = (int(m.sum()), xm.sum(0), float(ym.sum()), xm.T @ xm, xm.T @ ym, float(ym @ ym))
    tot = [sum(p[i] for p in parts.values()) for i in range(6)]
    for k in keys:
        n_k = parts[k][0]
        if tot[0] - n_k < 3:
            continue
        w = _ridge_from_moments(*(tot[i] - parts[k][i] for i in range(6)))
        out[f == k] = x[f == k] @ w
    return out


@dataclass(frozen=True)
class ControlVariateInterval:
    estimate: float
    low: float
    high: float
    half_width: float
    std_error: float
    dof: int  # G - 2: one for the mean, one for β
    units: int
    beta: float
    t_quantile: float
    confidence: float
    r2: float  # share of the unit-mean variance the control explains in the batch

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def control_variate_interval(unit_values, control, confidence: float = 0.95,
                             control_mean: float = 0.0) -> ControlVariateInterval:
    """μ̂_cv = Ȳ - β̂ (C̄ - E C) with β̂ re-estimated in the batch, and its Student-t interval on G - 2 dof
    (the regression intercept at C = E C; see the module docstring). Needs G >= 3 units."""
    y = np.asarray(unit_values, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64) - float(control_mean)
    g = y.shape[0]
    if g < 3:
        raise ValueError(f"control variates need at least 3 independent units, got {g}")
    cbar, ybar = c.mean(), y.mean()
    sxx = float(((c - cbar) ** 2).sum())
    beta = float(((c - cbar) * (y - ybar)).sum() / sxx) if sxx > 0 else 0.0
    resid = y - ybar - beta * (c - cbar)
    s2 = float(resid @ resid) / (g - 2)
    se = math.sqrt(s2 * (1.0 / g + (cbar**2 / sxx if sxx > 0 else 0.0)))
    tq = float(stats.t.ppf(0.5 + confidence / 2.0, g - 2))
    est = ybar - beta * cbar
    syy = float(((y - ybar) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / syy if syy > 0 else 0.0
    return ControlVariateInterval(est, est - tq * se, est + tq * se, tq * se, se, g - 2, g, beta, tq, confidence, r2)


def chaos_size(m: int, degree: int = 2) -> int:
    """Number of degree-``degree`` chaos features of m coefficients: m (degree 1) or m (m + 3) / 2 (degree 2)."""
    return m if degree == 1 else m * (m + 3) // 2


def coefficients_for(train_units: int, max_coefficients: int = 16, rows_per_feature: int = 2) -> int:
    """How many noise coefficients the surrogate may use: the largest m <= ``max_coefficients`` whose degree-2
    chaos has at most train_units / ``rows_per_feature`` features (a size rule, never a look at the values)."""
    m = 1
    while m < max_coefficients and chaos_size(m + 1) * rows_per_feature <= train_units:
        m += 1
    return m


def unit_chaos(item_coefficients: np.ndarray, m: int) -> np.ndarray:
    """Unit means of the degree-2 chaos of the first m coefficients: [G, K, M] -> [G, chaos_size(m)]."""
    c = np.asarray(item_coefficients, dtype=np.float64)
    g, k, _ = c.shape
    feats = chaos_features(c[:, :, :m].reshape(g * k, m))
    return feats.reshape(g, k, -1).mean(axis=1)


def chaos_columns(m_full: int, m: int) -> np.ndarray:
    """Columns of :func:`chaos_features` of m_full coefficients that form the chaos of the first m (same order)."""
    lin = list(range(m))
    sq = [m_full + i for i in range(m)]
    iu, ju = np.triu_indices(m_full, 1)
    cross = [2 * m_full + j for j, (a, b) in enumerate(zip(iu, ju, strict=True)) if b < m]
    return np.asarray(lin + sq + cross)


def cross_fitted_interval(unit_values, item_coefficients, prompts, confidence: float = 0.95,
                          max_coefficients: int = 16, n_folds: int = 8,
                          unit_features: np.ndarray | None = None) -> tuple[ControlVariateInterval, dict]:
    """The full control-variate estimate of one run: folds = prompt index mod ``n_folds`` (prompts never split),
    surrogate on the chaos of the m lowest DCT coefficients (m from :func:`coefficients_for`), one control,
    β re-estimated in the batch, Student-t on G - 2 dof. ``item_coefficients``: [G, K, M] per image of every unit
    (or None with ``unit_features`` = :func:`unit_chaos` of all M coefficients, precomputed)."""
    y = np.asarray(unit_values, dtype=np.float64)
    p = np.asarray(prompts)
    folds = p % n_folds if np.unique(p).size > n_folds else p
    n_f = np.unique(folds).size
    train = int(len(y) * (n_f - 1) / max(1, n_f))
    if unit_features is None:
        m_full = min(max_coefficients, np.asarray(item_coefficients).shape[2])
        m = coefficients_for(train, m_full)
        feats = unit_chaos(item_coefficients, m)
    else:
        m_full = int((math.isqrt(9 + 8 * unit_features.shape[1]) - 3) // 2)
        m = coefficients_for(train, min(max_coefficients, m_full))
        feats = unit_features[:, chaos_columns(m_full, m)]
    control = cross_fitted_control(feats, y, folds)
    res = control_variate_interval(y, control, confidence)
    return res, {"coefficients": m, "features": feats.shape[1], "folds": int(n_f)}
