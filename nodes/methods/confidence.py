"""Design-aware confidence intervals for a per-image statistic (antithetic pairs, K-groups, RQMC replicates).

Jia et al., "Antithetic Noise in Diffusion Models" (arXiv 2506.06185, ICLR 2026), §5.1 (AMC) and the RQMC extension.

A noise design makes the images of one batch dependent *on purpose*: the two members of an antithetic pair
(z, -z) are negatively correlated, the K members of a K-antithetic group sum to zero in noise space, and the
n points of one scrambled Sobol' replicate are balanced against each other. The independent units are therefore
the pairs / groups / replicates, not the images. With G independent units and unit means

    S̄_g = (1/K) Σ_{j in unit g} S_j,       μ̂ = (1/G) Σ_g S̄_g,       SE = sqrt( s²(S̄) / G ),

the interval is μ̂ ± t_{1-α/2, G-1} · SE (Student-t with G-1 degrees of freedom). This is the paper's AMC interval
μ̂ ± z sqrt(2 σ̂²_AMC / N) with the normal quantile replaced by the t quantile, which matters for small G.
The variance of the individual images is never used for the interval: it ignores the pairing and is wrong.

Efficiency versus iid at the same number of images N (paper: efficiency = (CI_MC / CI_method)²): with exchangeable
units of size K and intraclass correlation ρ, Var(μ̂_design) / Var(μ̂_iid) = 1 + (K-1)ρ, i.e. 1 + ρ for pairs, so the
efficiency is 1 / (1 + (K-1)ρ). It is estimated from the one-way ANOVA mean squares (see :func:`efficiency_vs_iid`).

Designs and layouts (matching ``antithetic.antithetic_noise`` and ``sobol_rqmc.sobol_rqmc_noise``):

* ``iid``: every image is its own unit (G = N).
* ``pairs`` (K = 2) / ``groups`` (K >= 2), layout ``interleaved``: item i is in group i // K;
  layout ``halves``: item i is in group i % (N / K) (batch = [z1..zG, -z1..-zG] for pairs).
* ``replicates`` (RQMC): n points per replicate, replicate r = items r*n .. r*n + n - 1 (contiguous).

Everything is pure numpy/scipy; torch tensors are accepted and converted. No ComfyUI import.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from .validation import check_unit_range

__all__ = [
    "DESIGNS",
    "LAYOUTS",
    "STATISTICS",
    "Efficiency",
    "Interval",
    "design_interval",
    "efficiency_vs_iid",
    "image_statistic",
    "normalize_design",
    "unit_index",
    "unit_means",
]

# canonical design name -> accepted spellings (the node uses the long ones)
_DESIGN_ALIASES = {
    "iid": ("iid", "independent", "mc"),
    "pairs": ("pairs", "antithetic pairs", "antithetic", "amc", "pn"),
    "groups": ("groups", "groups of k", "k-groups", "k-antithetic"),
    "replicates": ("replicates", "rqmc replicates", "rqmc", "sobol"),
}
DESIGNS = tuple(_DESIGN_ALIASES)
LAYOUTS = ("interleaved", "halves")
STATISTICS = ("mean brightness", "per-channel mean", "fraction above threshold", "per-pixel mean map")

# ITU-R BT.601 luma weights (the same as PIL's "L" conversion): the brightness statistic of the paper's Table 2.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Interval:
    """A confidence interval from a noise design.

    For a 1-D statistic (one number per image) the numeric fields are Python floats; for a statistic with
    trailing dims (e.g. the per-pixel map, values shaped [N, H, W, C]) ``estimate``/``low``/``high``/
    ``half_width``/``std_error`` are numpy arrays of the trailing shape.
    """

    estimate: Any
    low: Any
    high: Any
    half_width: Any
    std_error: Any
    dof: int  # units - 1
    units: int  # number of independent units G (pairs, groups, replicates or images)
    n_items: int  # number of images N
    unit_size: int  # images per unit (1 for iid, K, or n per replicate)
    confidence: float
    t_quantile: float
    design: str  # canonical: iid | pairs | groups | replicates
    layout: str

    def as_dict(self) -> dict:
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, np.ndarray):
                d[key] = value.tolist()
        return d


@dataclass(frozen=True)
class Efficiency:
    """Estimated variance-reduction factor of the design versus iid sampling at the same N.

    ``efficiency`` = Var(μ̂_iid) / Var(μ̂_design) = (CI_iid / CI_design)² (> 1 means the design is better).
    ``rho`` is the within-unit (intraclass) correlation; for pairs efficiency = 1 / (1 + rho).
    """

    efficiency: Any
    rho: Any
    item_variance: Any  # σ̂² of one image's statistic (unbiased under identical marginals)
    unit_mean_variance: Any  # s² of the unit means
    unit_size: int
    units: int
    assumption: str


def _as_array(values: Any, name: str = "values") -> np.ndarray:
    """Convert numpy / torch / sequences to a float numpy array without copying more than needed."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # torch.Tensor, without importing torch
        values = values.detach().cpu()
        if not values.is_floating_point():
            values = values.double()
        values = values.numpy()
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected one value per image (shape [N] or [N, ...]), got a scalar")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: contains {bad} NaN/inf value(s); the statistic must be finite for every image")
    return arr


def normalize_design(design: str, group_size: int = 2) -> tuple[str, int]:
    """Map a design name (``iid``, ``pairs``/``antithetic pairs``, ``groups``/``groups of K``,
    ``replicates``/``RQMC replicates``) to ``(canonical_name, unit_size)``.

    ``group_size`` is K for groups and n (points per replicate) for replicates; it is ignored for iid (unit 1)
    and for pairs (unit 2).
    """
    key = str(design).strip().lower()
    canon = next((name for name, names in _DESIGN_ALIASES.items() if key in names), None)
    if canon is None:
        raise ValueError(f"design: unknown design {design!r}; expected one of {', '.join(DESIGNS)}")
    if canon == "iid":
        return canon, 1
    if canon == "pairs":
        return canon, 2
    try:
        k = int(group_size)
    except (TypeError, ValueError):
        raise ValueError(f"group_size: expected an integer, got {group_size!r}") from None
    if k != group_size or k < 2:
        what = "K (images per group)" if canon == "groups" else "points per replicate"
        raise ValueError(f"group_size: {what} must be an integer >= 2, got {group_size!r}")
    return canon, k


def unit_index(n_items: int, design: str = "iid", group_size: int = 2, layout: str = "interleaved") -> np.ndarray:
    """Independent-unit id of every image: int array [n_items] with values 0..G-1.

    interleaved: item i -> i // K; halves: item i -> i % (N / K); replicates: item i -> i // n (layout ignored).
    Raises ValueError when K does not divide N or fewer than 2 units result.
    """
    canon, k = normalize_design(design, group_size)
    n = int(n_items)
    if n < 1:
        raise ValueError(f"values: need at least one image, got {n_items}")
    lay = str(layout).strip().lower()
    if lay not in LAYOUTS:
        raise ValueError(f"layout: unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if n % k:
        what = {"pairs": "pairs need an even batch", "groups": f"groups of K={k} need a batch divisible by {k}",
                "replicates": f"RQMC replicates of n={k} points need a batch divisible by {k}"}[canon]
        raise ValueError(f"batch size {n}: {what} (got {n} images; {n % k} left over)")
    g = n // k
    if g < 2:
        raise ValueError(
            f"batch size {n}: a confidence interval needs at least 2 independent units, got {g} "
            f"({'image' if k == 1 else 'unit'} of {k}); use a larger batch"
        )
    i = np.arange(n)
    if canon == "replicates" or lay == "interleaved" or k == 1:
        return i // k
    return i % g


def unit_means(values: Any, design: str = "iid", group_size: int = 2, layout: str = "interleaved") -> np.ndarray:
    """Means of the statistic over each independent unit: array [G, *trailing] (float64 for 1-D input)."""
    arr = _as_array(values)
    canon, k = normalize_design(design, group_size)
    unit_index(arr.shape[0], canon, k, layout)  # validates sizes and layout
    if arr.ndim == 1:
        arr = arr.astype(np.float64)
    g = arr.shape[0] // k
    trailing = arr.shape[1:]
    if canon == "replicates" or str(layout).strip().lower() == "interleaved" or k == 1:
        return arr.reshape(g, k, *trailing).mean(axis=1)
    # halves: item i is member i // G of group i % G
    return arr.reshape(k, g, *trailing).mean(axis=0)


def design_interval(
    values: Any,
    design: str = "iid",
    group_size: int = 2,
    layout: str = "interleaved",
    confidence: float = 0.95,
) -> Interval:
    """Student-t confidence interval for E[S] from the design's own unit means.

    values: per-image statistic, shape [N] (one number per image) or [N, ...] (vectorised over trailing dims,
    e.g. [N, H, W, C] for a per-pixel mean map). Item order must be the batch order the noise was made in.
    Returns :class:`Interval`; ``half_width`` = t_{(1+confidence)/2, G-1} · sqrt(s²(unit means) / G).
    """
    conf = float(confidence)
    if not (0.0 < conf < 1.0) or math.isnan(conf):
        raise ValueError(f"confidence: must be strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")
    canon, k = normalize_design(design, group_size)
    means = unit_means(values, canon, k, layout)
    g = means.shape[0]
    est = means.mean(axis=0)
    # two-pass variance (ddof=1): stable in float32 for big per-pixel maps
    var = ((means - est) ** 2).sum(axis=0) / (g - 1)
    se = np.sqrt(var / g)
    tq = float(stats.t.ppf(0.5 + conf / 2.0, g - 1))
    hw = tq * se
    lay = "contiguous" if canon == "replicates" else ("n/a" if canon == "iid" else str(layout).strip().lower())

    def out(x):
        return float(x) if np.ndim(x) == 0 else np.asarray(x)

    return Interval(
        estimate=out(est), low=out(est - hw), high=out(est + hw), half_width=out(hw), std_error=out(se),
        dof=g - 1, units=g, n_items=g * k, unit_size=k, confidence=conf, t_quantile=tq, design=canon, layout=lay,
    )


def efficiency_vs_iid(
    values: Any, design: str = "pairs", group_size: int = 2, layout: str = "interleaved"
) -> Efficiency:
    """Estimate how many times more iid images would be needed for the same CI width.

    One-way ANOVA with G units of size K: MSB = K · s²(unit means), MSW = pooled within-unit variance.
    If every image has the same marginal law as an iid draw (exact for antithetic and RQMC noise, which only
    change the joint law) and units are independent, then σ̂² = (MSB + (K-1)·MSW) / K is unbiased for the
    per-image variance whatever the within-unit dependence, and

        efficiency = (σ̂² / N) / (s²(unit means) / G) = σ̂² / MSB = 1 / (1 + (K-1)·ρ̂),
        ρ̂ = (MSB - MSW) / (MSB + (K-1)·MSW)   (intraclass correlation; for pairs efficiency = 1/(1+ρ̂)).

    The ρ form additionally reads the unit as exchangeable (true for pairs and K-groups; for RQMC it is an
    average pairwise correlation). It is a ratio of noisy estimates: with few units treat it as rough.
    For ``iid`` the efficiency is 1 by definition. Vectorised over trailing dims like :func:`design_interval`.
    """
    arr = _as_array(values)
    canon, k = normalize_design(design, group_size)
    unit_index(arr.shape[0], canon, k, layout)
    assumption = (
        "efficiency = Var(iid mean) / Var(design mean) at the same number of images, estimated by one-way ANOVA; "
        "assumes every image has the iid marginal law (true for antithetic/RQMC noise) and independent units"
    )
    if canon == "iid":
        one = 1.0 if arr.ndim == 1 else np.ones(arr.shape[1:])
        zero = 0.0 if arr.ndim == 1 else np.zeros(arr.shape[1:])
        var = arr.astype(np.float64).var(axis=0, ddof=1)
        return Efficiency(one, zero, _f(var), _f(var), 1, arr.shape[0], "iid: efficiency 1 by definition")
    a = arr.astype(np.float64) if arr.ndim == 1 else arr
    means = unit_means(a, canon, k, layout)
    g = means.shape[0]
    var_means = ((means - means.mean(axis=0)) ** 2).sum(axis=0) / (g - 1)
    msb = k * var_means
    # within-unit deviations: broadcast each item's unit mean back to the item
    idx = unit_index(a.shape[0], canon, k, layout)
    ssw = ((a - means[idx]) ** 2).sum(axis=0)
    msw = ssw / (g * (k - 1))
    sigma2 = (msb + (k - 1) * msw) / k
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(msb > 0, sigma2 / np.where(msb > 0, msb, 1.0), np.inf)
        rho = np.where(sigma2 > 0, (msb - msw) / np.where(sigma2 > 0, k * sigma2, 1.0), 0.0)
    return Efficiency(_f(eff), _f(rho), _f(sigma2), _f(var_means), k, g, assumption)


def _f(x):
    return float(x) if np.ndim(x) == 0 else np.asarray(x)


def image_statistic(images: Any, statistic: str = "mean brightness", channel: int = 0, threshold: float = 0.5):
    """Per-image statistic of an IMAGE batch [N, H, W, C] (float 0..1, ComfyUI layout).

    * ``mean brightness``: mean BT.601 luma 0.299R + 0.587G + 0.114B (mean of the single channel for C = 1) -> [N]
    * ``per-channel mean``: mean of channel ``channel`` -> [N]
    * ``fraction above threshold``: fraction of pixels whose luma is > ``threshold`` -> [N]
    * ``per-pixel mean map``: the images themselves -> [N, H, W, C] (for a per-pixel interval)

    Returns a float64 numpy array for scalar statistics and the float32 images for the map.
    """
    arr = _as_array(images, "images")
    if arr.ndim != 4:
        raise ValueError(f"images: expected an IMAGE batch [N, H, W, C], got shape {tuple(arr.shape)}")
    check_unit_range(arr, "images")
    c = arr.shape[-1]
    key = str(statistic).strip().lower()
    if key == "per-pixel mean map":
        return arr.astype(np.float32, copy=False)
    if key == "per-channel mean":
        ch = int(channel)
        if not 0 <= ch < c:
            raise ValueError(f"channel: must be in 0..{c - 1} for images with {c} channel(s), got {channel}")
        return arr[..., ch].astype(np.float64).mean(axis=(1, 2))
    if key in ("mean brightness", "fraction above threshold"):
        if c >= 3:
            luma = arr[..., 0] * LUMA_WEIGHTS[0] + arr[..., 1] * LUMA_WEIGHTS[1] + arr[..., 2] * LUMA_WEIGHTS[2]
        else:
            luma = arr[..., 0]
        if key == "mean brightness":
            return luma.astype(np.float64).mean(axis=(1, 2))
        thr = float(threshold)
        if math.isnan(thr):
            raise ValueError("threshold: must be a number, got NaN")
        return (luma > thr).mean(axis=(1, 2)).astype(np.float64)
    raise ValueError(f"statistic: unknown statistic {statistic!r}; expected one of {', '.join(STATISTICS)}")
