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

The default surrogate (``method="principal"``, :func:`fit_principal_quadratic`) is fitted on the *images*, not
the unit means, and spends its parameters where a few hundred images can pin them down. Stein's identity for
c ~ N(0, I) says that the degree-2 chaos part of any statistic S is cᵀAc - tr A with

    2A = E[S(c) (c cᵀ - I)]                                    (second-order Stein identity),

so A is estimated by a moment, from the residual r of S after its linear (odd) part bᵀc (ridge, so the large odd
part of a single image does not swamp the even signal). Only the eigen-direction of Â with the largest |λ| is kept,
then refined by least squares (Gauss-Newton from the moment estimate, as in phase retrieval: the moment is a
good start but a noisy estimate): minimise Σ_i (r_i - a - s((wᵀq_i)² - |w|²))², s = sign λ, q = c_{1..m}. So

    h(c) = bᵀ c_{1..L} + λ ((vᵀ c_{1..m})² - 1),    λ = s|w|², v = w/|w|,    E[h] = 0 exactly for any b, λ, v,

because vᵀc ~ N(0, 1). On the digits model the brightness left inside antithetic units is mostly one such
quadratic direction over the ~24 lowest frequencies, which ~150 ridge weights on 16 coefficients learned too
slowly (``antithetic-sampling estimate-bench`` prints both surrogates' held-out R² against the images fitted on). Fitting on images also uses the
K different noises inside a K-group or RQMC replicate, which a unit mean averages away.

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
    "cross_fitted_principal_control",
    "fit_principal_quadratic",
    "PrincipalQuadratic",
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
    for k, train in _leave_fold_out(f, lambda m: _linear_moments(y[m], x[m])):
        if train[0] < 3:
            continue
        w = _ridge_from_moments(*train)
        out[f == k] = x[f == k] @ w
    return out


def _leave_fold_out(folds: np.ndarray, moments):
    """(fold, training moments) for every fold: ``moments(mask)`` gives additive sums over the masked rows, and a
    fold's training moments are the totals minus its own (one pass over the data for all folds)."""
    keys = np.unique(folds)
    parts = {k: moments(folds == k) for k in keys}
    tot = [sum(p[i] for p in parts.values()) for i in range(len(parts[keys[0]]))]
    for k in keys:
        yield k, [t - own for t, own in zip(tot, parts[k], strict=True)]


def _linear_moments(y: np.ndarray, x: np.ndarray) -> list:
    """n, Σx, Σy, XᵀX, Xᵀy, Σy²: what :func:`_ridge_from_moments` needs."""
    return [len(y), x.sum(0), float(y.sum()), x.T @ x, x.T @ y, float(y @ y)]


# the principal-quadratic surrogate's shape: a linear part on the 16 lowest coefficients, the quadratic moment on the
# 24 lowest, one principal direction (chosen in exploratory runs on the digits pools: held-out R² against 64
# linear coefficients, 16 or 32 quadratic ones and rank 2)
LINEAR_COEFFICIENTS = 16
QUADRATIC_COEFFICIENTS = 24
QUADRATIC_RANK = 1


@dataclass(frozen=True)
class PrincipalQuadratic:
    """h(c) = bᵀ c_{1..L} + Σ_k λ_k ((v_kᵀ c_{1..m})² - 1): mean exactly 0 for iid N(0, 1) coefficients."""

    linear: np.ndarray  # b [L]
    directions: np.ndarray  # V [m, r], orthonormal columns
    eigenvalues: np.ndarray  # λ [r]

    def __call__(self, coefficients) -> np.ndarray:
        c = np.asarray(coefficients, dtype=np.float64)
        lead = c.shape[:-1]
        c = c.reshape(-1, c.shape[-1])
        n_lin, n_quad = self.linear.shape[0], self.directions.shape[0]
        h = c[:, :n_lin] @ self.linear
        if self.eigenvalues.size:
            h = h + (((c[:, :n_quad] @ self.directions) ** 2 - 1.0) @ self.eigenvalues)
        return h.reshape(lead)


def _quad_moments(y: np.ndarray, c: np.ndarray, n_lin: int, n_quad: int) -> list:
    """Sums over images that the principal-quadratic fit needs, additive over images: those of
    :func:`_linear_moments` for the linear block x = c_{1..L}; Σ y qqᵀ and Σ qqᵀ of the quadratic block
    q = c_{1..m}; Σ x_j qqᵀ (third moments, for the residual)."""
    x, q = c[:, :n_lin], c[:, :n_quad]
    qq = q[:, :, None] * q[:, None, :]
    return _linear_moments(y, x) + [np.einsum("n,nij->ij", y, qq), qq.sum(0), np.einsum("nl,nij->lij", x, qq)]


def _principal_from_moments(parts, rank: int) -> PrincipalQuadratic | None:
    """The moment estimate: ridge linear part b, then Â from the residual's second-order Stein moment, its
    ``rank`` eigen-directions of largest |λ|. None with fewer than 4 images."""
    n, sx, sy, xx, xy, yy, syqq, sqq, sxqq = parts
    if n < 4:
        return None
    b = _ridge_from_moments(int(n), sx, sy, xx, xy, yy)
    # residual r = y - a - bᵀx with the intercept a = ȳ - bᵀx̄ (Σ r = 0, so the -I of (qqᵀ - I) drops out)
    a = sy / n - float(b @ sx) / n
    srqq = syqq - a * sqq - np.tensordot(b, sxqq, axes=1)
    amat = srqq / (2.0 * n)
    e, v = np.linalg.eigh((amat + amat.T) / 2)
    keep = np.argsort(-np.abs(e))[:rank]
    return PrincipalQuadratic(b, v[:, keep], e[keep])


REFINE_MIN_IMAGES = 64  # below this many training images the moment estimate is kept as it is
REFINE_ITERATIONS = 20


def refine_principal_quadratic(fit: PrincipalQuadratic, item_values: np.ndarray,
                               item_coefficients: np.ndarray) -> PrincipalQuadratic:
    """Least-squares refinement of a rank-1 fit's quadratic part (the linear part b is kept): Levenberg-Marquardt
    on w = √|λ| v and an intercept a, minimising Σ (r_i - a - s((wᵀq_i)² - |w|²))², r = y - ȳ - bᵀ(x - x̄),
    starting from the moment estimate. Returns the start unchanged when there are too few images or no step
    lowers the residual."""
    y = np.asarray(item_values, dtype=np.float64).reshape(-1)
    c = np.asarray(item_coefficients, dtype=np.float64).reshape(y.shape[0], -1)
    lam0 = float(fit.eigenvalues[0]) if fit.eigenvalues.size else 0.0
    if y.shape[0] < REFINE_MIN_IMAGES or lam0 == 0.0:
        return fit
    n_lin, n_quad = fit.linear.shape[0], fit.directions.shape[0]
    x, q = c[:, :n_lin], c[:, :n_quad]
    r = y - y.mean() - (x - x.mean(0)) @ fit.linear
    sgn = 1.0 if lam0 > 0 else -1.0
    p = np.concatenate([fit.directions[:, 0] * math.sqrt(abs(lam0)), [0.0]])

    def resid(p):
        w, a = p[:-1], p[-1]
        return sgn * ((q @ w) ** 2 - w @ w) + a - r

    cur = resid(p)
    cost = float(cur @ cur)
    mu = 1e-3
    for _ in range(REFINE_ITERATIONS):
        w = p[:-1]
        jac = np.empty((q.shape[0], p.shape[0]))
        jac[:, :-1] = 2.0 * sgn * ((q @ w)[:, None] * q - w[None, :])
        jac[:, -1] = 1.0
        jtj, jtr = jac.T @ jac, jac.T @ cur
        before = cost
        improved = False
        for _ in range(8):
            step = np.linalg.solve(jtj + mu * np.diag(np.diag(jtj) + 1e-12), -jtr)
            new = resid(p + step)
            new_cost = float(new @ new)
            if new_cost < cost:
                p, cur, cost, mu, improved = p + step, new, new_cost, mu / 3.0, True
                break
            mu *= 10.0
        if not improved or cost > before * (1 - 1e-9):
            break
    w = p[:-1]
    norm2 = float(w @ w)
    if not (norm2 > 0 and math.isfinite(norm2)):
        return fit
    return PrincipalQuadratic(fit.linear, (w / math.sqrt(norm2))[:, None], np.array([sgn * norm2]))


def fit_principal_quadratic(item_values, item_coefficients, linear: int = LINEAR_COEFFICIENTS,
                            quadratic: int = QUADRATIC_COEFFICIENTS, rank: int = QUADRATIC_RANK,
                            refine: bool = True) -> PrincipalQuadratic:
    """The principal-quadratic surrogate fitted on images: values [N], coefficients [N, M] (iid N(0, 1) each).
    ``refine=False``: the moment estimate alone (rank > 1 is never refined)."""
    y = np.asarray(item_values, dtype=np.float64).reshape(-1)
    c = np.asarray(item_coefficients, dtype=np.float64)
    c = c.reshape(-1, c.shape[-1])
    if c.shape[0] != y.shape[0]:
        raise ValueError(f"item_coefficients: {c.shape[0]} rows for {y.shape[0]} values")
    n_lin, n_quad = min(linear, c.shape[1]), min(quadratic, c.shape[1])
    fit = _principal_from_moments(_quad_moments(y, c, n_lin, n_quad), rank)
    if fit is None:
        raise ValueError(f"item_values: the surrogate needs at least 4 images, got {y.shape[0]}")
    return refine_principal_quadratic(fit, y, c) if rank == 1 and refine else fit


def cross_fitted_principal_control(item_values, item_coefficients, folds, linear: int = LINEAR_COEFFICIENTS,
                                   quadratic: int = QUADRATIC_COEFFICIENTS,
                                   rank: int = QUADRATIC_RANK) -> tuple[np.ndarray, dict]:
    """Control C_g = mean over unit g's images of h_{-f(g)}(c), the principal-quadratic surrogate fitted (moment,
    then least squares) on the images of all *other* folds. item_values [G, K], item_coefficients [G, K, M], folds [G]. Mean exactly 0."""
    yv = np.asarray(item_values, dtype=np.float64)
    c = np.asarray(item_coefficients, dtype=np.float64)
    g, k = yv.shape
    if c.shape[:2] != (g, k):
        raise ValueError(f"item_coefficients: shape {c.shape} does not match item_values {yv.shape}")
    n_lin, n_quad = min(linear, c.shape[2]), min(quadratic, c.shape[2])
    f = np.asarray(folds)
    out = np.zeros(g)
    flat = c.shape[2]
    for kk, train in _leave_fold_out(f, lambda m: _quad_moments(yv[m].reshape(-1), c[m].reshape(-1, flat),
                                                                 n_lin, n_quad)):
        fit = _principal_from_moments(train, rank)
        if fit is None:
            continue
        m = f == kk
        if rank == 1:
            fit = refine_principal_quadratic(fit, yv[~m].reshape(-1), c[~m].reshape(-1, flat))
        out[m] = fit(c[m]).mean(axis=1)
    info = {"method": "principal", "linear_coefficients": n_lin, "quadratic_coefficients": n_quad, "rank": rank,
            "features": n_lin + rank}
    return out, info


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
                          unit_features: np.ndarray | None = None, item_values=None,
                          method: str | None = None) -> tuple[ControlVariateInterval, dict]:
    """The full control-variate estimate of one run: folds = prompt index mod ``n_folds`` (prompts never split),
    one control, β re-estimated in the batch, Student-t on G - 2 dof.

    ``method="principal"`` (the default when ``item_values`` [G, K] are given): the principal-quadratic surrogate
    fitted on the images (:func:`cross_fitted_principal_control`). ``method="chaos"``: a ridge on the unit means
    of the degree-2 chaos of the m lowest DCT coefficients (m from :func:`coefficients_for`; the earlier default,
    kept for the bench's comparison). ``item_coefficients``: [G, K, M] per image of every unit (for ``chaos`` also
    None with ``unit_features`` = :func:`unit_chaos` of all M coefficients, precomputed)."""
    y = np.asarray(unit_values, dtype=np.float64)
    p = np.asarray(prompts)
    folds = p % n_folds if np.unique(p).size > n_folds else p
    n_f = np.unique(folds).size
    method = method or ("principal" if item_values is not None else "chaos")
    if method == "principal":
        if item_values is None or item_coefficients is None:
            raise ValueError("item_values: the principal surrogate is fitted on images: give item_values [G, K] "
                             "and item_coefficients [G, K, M]")
        control, info = cross_fitted_principal_control(item_values, item_coefficients, folds)
        res = control_variate_interval(y, control, confidence)
        return res, {**info, "coefficients": info["quadratic_coefficients"], "folds": int(n_f)}
    if method != "chaos":
        raise ValueError(f"method: 'principal' or 'chaos', got {method!r}")
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
    return res, {"method": "chaos", "coefficients": m, "features": feats.shape[1], "folds": int(n_f)}
