"""Shared pieces of ``demo`` and ``bench``: models, per-image statistics, batched generation, correlations.

Statistics are computed on what a user would look at:

* learned digits model: the image in [0, 1], ``(clamp(x0, -1, 1) + 1) / 2`` (brightness = mean intensity);
* analytic model: the raw x0 (its data are not bounded), channel 0 for pictures.

Statistics (one number per image): ``brightness`` (mean), ``energy`` (mean square), ``threshold`` (fraction of
pixels above the midpoint: 0.5 for images, 0 for the analytic model) and ``pixel`` (the centre pixel of
channel 0).
"""

from __future__ import annotations

import numpy as np
import torch

from . import harness

STAT_NAMES = ("brightness", "energy", "threshold", "pixel")
STAT_LABELS = {
    "brightness": "brightness (mean)",
    "energy": "energy (mean square)",
    "threshold": "fraction above midpoint",
    "pixel": "centre pixel",
}


def load_model(name: str, weights_dir=None):
    """``digits`` (the learned denoiser: the shipped weights, or those in ``weights_dir``, hash-checked),
    ``analytic`` (4x16x16 GMM) or ``analytic-small`` (1x8x8 GMM)."""
    if name == "digits":
        from .digits import load_digits_denoiser

        return load_digits_denoiser(weights_dir)
    if name == "analytic":
        from .analytic import AnalyticGMM

        return AnalyticGMM()
    if name == "analytic-small":
        from .analytic import AnalyticGMM

        return AnalyticGMM(shape=(1, 8, 8), components=4, rank=4, seed=1)
    raise ValueError(f"model must be 'digits', 'analytic' or 'analytic-small', got {name!r}")


def is_image_model(model) -> bool:
    return hasattr(model, "net")


def to_view(model, x0: torch.Tensor) -> torch.Tensor:
    """The per-image quantity the statistics are computed on (see module docstring), float32 [N, C, H, W]."""
    if is_image_model(model):
        return ((x0.clamp(-1, 1) + 1) / 2).to(torch.float32)
    return x0.to(torch.float32)


def to_display(model, x0: torch.Tensor) -> torch.Tensor:
    """ComfyUI-style IMAGE [N, H, W, 3] float 0..1 for grids and pair metrics (analytic: channel 0, min-max)."""
    v = to_view(model, x0)[:, :1]
    if not is_image_model(model):
        lo, hi = float(v.min()), float(v.max())
        v = (v - lo) / max(hi - lo, 1e-8)
    return v.permute(0, 2, 3, 1).expand(-1, -1, -1, 3).contiguous()


def statistics(model, x0: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image statistics {name: float64 [N]} (see module docstring)."""
    v = to_view(model, x0).to(torch.float64)
    mid = 0.5 if is_image_model(model) else 0.0
    _, _, h, w = v.shape
    return {
        "brightness": v.mean(dim=(1, 2, 3)).numpy(),
        "energy": v.pow(2).mean(dim=(1, 2, 3)).numpy(),
        "threshold": (v > mid).to(torch.float64).mean(dim=(1, 2, 3)).numpy(),
        "pixel": v[:, 0, h // 2, w // 2].numpy(),
    }


def generate(model, design, n_items: int, seed: int, steps: int, sampler: str = "dpmpp_2m",
             schedule: str = "karras", chunk: int = 2048) -> torch.Tensor:
    """x0 for ``n_items`` items of ``design`` (one seed), sampled in chunks of whole units."""
    shape = (int(n_items), *model.shape)
    noise = design.noise(shape, seed)
    if sampler == "euler_ancestral":
        ns = design.step_noise(noise, seed + 7919)
        return harness.generate(model, noise, steps=steps, sampler=sampler, schedule=schedule, noise_sampler=ns,
                                seed=seed + 7919)
    unit = max(1, design.unit_size)
    chunk = max(unit, chunk - chunk % unit)
    return harness.generate(model, noise, steps=steps, sampler=sampler, schedule=schedule, chunk=chunk)


def unit_pairs(n: int, unit: int) -> np.ndarray:
    """Index pairs (i < j) inside each unit of ``unit`` consecutive items; iid (unit 1): consecutive pairs."""
    k = 2 if unit <= 1 else unit
    n = n - n % k
    iu, ju = np.triu_indices(k, 1)
    base = np.arange(0, n, k)[:, None]
    return np.stack([(base + iu).reshape(-1), (base + ju).reshape(-1)], 1)


def pair_correlations(view: torch.Tensor, pairs: np.ndarray, center: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Standard and centered Pearson correlation of the flattened images of every pair (Jia et al., Table 1).

    standard: r(x, y) over all pixels; centered: r(x - c, y - c) with c the population-mean image (estimated from
    an independent, larger set of samples; the paper's definition).
    """
    f = view.reshape(view.shape[0], -1).to(torch.float64)
    c = center.reshape(1, -1).to(torch.float64)

    def corr(a, b):
        a = a - a.mean(1, keepdim=True)
        b = b - b.mean(1, keepdim=True)
        den = (a.pow(2).sum(1) * b.pow(2).sum(1)).sqrt()
        return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.full_like(den, float("nan")))

    i, j = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    return corr(f[i], f[j]).numpy(), corr(f[i] - c, f[j] - c).numpy()


def stat_correlation(values: np.ndarray, pairs: np.ndarray) -> float:
    """Pearson correlation of a per-image statistic between the members of the pairs (both orders pooled)."""
    a = np.concatenate([values[pairs[:, 0]], values[pairs[:, 1]]])
    b = np.concatenate([values[pairs[:, 1]], values[pairs[:, 0]]])
    if a.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def json_default(o):
    """``json.dumps(default=...)`` for bench results: numpy scalars as Python numbers, tuples as lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def progress_bar(total: int, desc: str, unit: str = "design", enabled: bool = True):
    """A tqdm bar (None when disabled or tqdm is missing: tqdm is a dev/bench dependency, not a pack one)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=False)
    except ImportError:  # pragma: no cover
        return None
