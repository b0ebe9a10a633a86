"""The noise-level shift of a sampler's state, measured the way Zhong et al. (ICLR 2026, "Noise Awareness
Guidance") define it: the level a noise-level estimator reads off the state, divided by the schedule's nominal σ,
per step (σ̂/σ = 1: no shift), with and without the guidance, next to the same estimator on exact states
``clean + σ·ε`` (what "no shift" reads as). Used by ``demo`` (its picture) and ``guidance-bench`` (its curves).
"""

from __future__ import annotations

import numpy as np
import torch

from ..methods import noise_awareness as na
from . import harness

# The scale of the descriptive runs (the guided noise-shift curve, the controls): the node default when it is on,
# else 1 (an "off" default would make those rows identical to no guidance).
MEASURE_W = na.DEFAULT_SCALE if na.DEFAULT_SCALE != 0 else 1.0
SHIPPED = {"w": na.DEFAULT_SCALE, "sigma_start": na.DEFAULT_SIGMA_START, "sigma_end": na.DEFAULT_SIGMA_END,
           "max_shift": na.DEFAULT_MAX_SHIFT, "estimator": na.DEFAULT_ESTIMATOR}


def _variant(name: str, w: float, estimator: str = SHIPPED["estimator"], band=None, max_shift=None,
             min_excess: float = 0.0) -> dict:
    start, end = band if band is not None else (SHIPPED["sigma_start"], SHIPPED["sigma_end"])
    return {"name": name, "w": float(w), "estimator": estimator, "sigma_start": float(start), "sigma_end": float(end),
            "max_shift": float(SHIPPED["max_shift"] if max_shift is None else max_shift),
            "min_excess": float(min_excess)}


def sample_variant(model, noise: torch.Tensor, sigmas: torch.Tensor, sampler: str, seed: int, variant: dict,
                   measure: bool = False) -> tuple[torch.Tensor, na.NoiseAwarenessGuide | None]:
    """Final samples of one run; w = 0 without ``measure`` runs the plain sampler (no guide at all)."""
    guide = None
    if variant["w"] != 0 or measure:
        guide = na.NoiseAwarenessGuide(
            w=variant["w"], sigma_start=variant["sigma_start"], sigma_end=variant["sigma_end"],
            max_shift=variant["max_shift"], estimator=variant["estimator"], seed=seed, measure=measure,
            min_excess=variant.get("min_excess", 0.0),
        )
    x = harness.sample(model.denoise, noise, sigmas, sampler, guide=guide, seed=seed + 7919)
    return x, guide


def estimator_floor(model, clean: torch.Tensor, sigmas, estimator: str = SHIPPED["estimator"], seed: int = 0) -> dict:
    """s_hat / s of ``estimator`` on exact states ``clean + s * noise`` (no shift by construction), per level."""
    g = torch.Generator().manual_seed(int(seed) + 4242)
    out = {"sigma": [], "ratio": [], "item_sd": [], "unidentifiable": []}
    for i, s in enumerate(float(v) for v in sigmas):
        if s <= 0:
            continue
        x = clean + s * torch.randn(clean.shape, generator=g)
        sv = torch.full((clean.shape[0],), s)
        d = model.denoise(x, sv)
        ref = na.reference_noise(x.shape, seed, i, salt=17)
        _, info = na.guidance_step(x, sv, d, d, model.denoise, 0.0, SHIPPED["max_shift"], estimator, ref, apply=False)
        r = (info["s_hat"].double() / s).numpy()
        ok = np.isfinite(r)
        out["sigma"].append(s)
        out["ratio"].append(float(r[ok].mean()) if ok.any() else float("nan"))
        out["item_sd"].append(float(r[ok].std(ddof=1)) if ok.sum() > 1 else float("nan"))
        out["unidentifiable"].append(float(1 - ok.mean()))
    return out


def _curve(guide: na.NoiseAwarenessGuide) -> dict:
    rows = {"step": [], "sigma": [], "ratio": [], "abs_dev": [], "item_abs_dev": [], "active": []}
    for e in guide.log:
        if e.get("ratio") is None:
            continue
        r = np.asarray(e["ratio"], dtype=np.float64)
        r = r[np.isfinite(r)]
        if r.size == 0:
            continue
        rows["step"].append(int(e["step"]))
        rows["sigma"].append(float(e["sigma"]))
        rows["ratio"].append(float(r.mean()))
        rows["abs_dev"].append(abs(float(r.mean()) - 1.0))
        rows["item_abs_dev"].append(float(np.abs(r - 1.0).mean()))
        rows["active"].append(bool(e.get("active")))
    return rows


def noise_shift_curve(model, noise: torch.Tensor, sigmas: torch.Tensor, sampler: str = "euler", seed: int = 0,
                      w: float | None = None, estimator: str | None = None, sigma_start: float | None = None,
                      sigma_end: float | None = None, max_shift: float | None = None,
                      clean: torch.Tensor | None = None) -> dict:
    """s_hat / s per step (batch mean) without guidance (w = 0, measured only) and with it (default w).

    Returns ``{"estimator", "w", "band", "curves": {label: {"step", "sigma", "ratio", "abs_dev" (|mean - 1|),
    "item_abs_dev" (mean per-image |ratio - 1|), "active"}}}``; with ``clean`` (real images) also ``"floor"``:
    the estimator on exact states at the same levels (:func:`estimator_floor`). This is what ``demo`` plots.
    """
    est = estimator or SHIPPED["estimator"]
    w = MEASURE_W if w is None else float(w)
    band = (SHIPPED["sigma_start"] if sigma_start is None else sigma_start,
            SHIPPED["sigma_end"] if sigma_end is None else sigma_end)
    out = {"estimator": est, "w": w, "band": [band[1], band[0]], "sampler": sampler, "curves": {}}
    labels = (("without guidance", 0.0), (f"with guidance (w={w:g})", w))
    for label, wi in labels:
        var = _variant(label, wi, est, band, max_shift)
        _, guide = sample_variant(model, noise, sigmas, sampler, seed, var, measure=True)
        out["curves"][label] = _curve(guide)
    if clean is not None:
        out["floor"] = estimator_floor(model, clean, sigmas[:-1], est, seed)
    return out
