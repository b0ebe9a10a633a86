"""Core ``NOISE`` objects of the pack (no ComfyUI import, so they are testable without a checkout).

ComfyUI's NOISE protocol: an object with ``.seed`` and ``generate_noise(input_latent)`` returning CPU float32
noise shaped like ``input_latent["samples"]``. These honour ``batch_index``, 5-D video latents and nested latents.
``.design`` describes the noise design for samplers that mirror step noise.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .methods.antithetic import antithetic_noise, incomplete_groups, validate_design
from .methods.sobol_rqmc import sobol_rqmc_noise

log = logging.getLogger("antithetic_sampling")

# Core hands a SAMPLER only the noise tensor and NOISE.seed (SamplerCustomAdvanced: guider.sample(noise.generate_noise(
# latent), ..., seed=noise.seed)), never the latent's batch_index. The NOISE objects below note the batch_index of
# the latent they last generated noise for, per (seed, batch size), so the mirrored step noise of Antithetic Sampler
# (run right after, in the same node) can key its draws on the same design positions as the initial noise.
_RECENT_INDEX: OrderedDict[tuple[int, int], tuple[int, ...] | None] = OrderedDict()
_RECENT_MAX = 64


def remember_batch_index(seed: int, batch: int, batch_index: Sequence[int] | None) -> None:
    key = (int(seed), int(batch))
    _RECENT_INDEX.pop(key, None)
    _RECENT_INDEX[key] = None if batch_index is None else tuple(int(i) for i in batch_index)
    while len(_RECENT_INDEX) > _RECENT_MAX:
        _RECENT_INDEX.popitem(last=False)


def recall_batch_index(seed: int | None, batch: int) -> tuple[int, ...] | None:
    """The batch_index of the latent the last NOISE with this seed and batch size generated noise for (None: 0..B-1)."""
    if seed is None:
        return None
    return _RECENT_INDEX.get((int(seed), int(batch)))


def map_latent_samples(samples: Any, make: Callable[[tuple[int, ...], int], torch.Tensor]) -> Any:
    """Apply ``make(shape, stream)`` to a latent tensor, or to each component of a nested latent.

    Nested latents (newer ComfyUI: ``samples.is_nested``, e.g. audio + video) get one independent design per
    component (``stream`` = component index), returned in the same nested type.
    """
    if getattr(samples, "is_nested", False):
        parts = [make(tuple(t.shape), idx) for idx, t in enumerate(samples.unbind())]
        return type(samples)(parts)
    if not isinstance(samples, torch.Tensor):
        raise ValueError(f"latent['samples'] must be a tensor, got {type(samples).__name__}")
    return make(tuple(samples.shape), 0)


class AntitheticNoiseGenerator:
    """Core NOISE object for antithetic pairs / K-groups (see ``methods/antithetic.py``)."""

    def __init__(self, seed: int, group_size: int = 2, layout: str = "interleaved", design_size: int = 0, mask=None):
        validate_design(group_size, layout, design_size)
        self.seed = int(seed)
        self.group_size = group_size
        self.layout = layout
        self.design_size = design_size
        self.mask = mask
        # Read by samplers that mirror step noise (Antithetic Sampler, NAG Guided KSampler).
        self.design = {"kind": "antithetic", "group_size": group_size, "layout": layout,
                       "design_size": design_size, "mask": mask}

    def generate_noise(self, input_latent: dict) -> Any:
        samples = input_latent["samples"]
        batch_index = input_latent.get("batch_index")
        batch = samples.unbind()[0].shape[0] if getattr(samples, "is_nested", False) else samples.shape[0]
        remember_batch_index(self.seed, batch, batch_index)
        if batch_index is None:
            partial = incomplete_groups(batch, self.group_size, self.layout, self.design_size)
            if partial:
                log.warning(
                    "Antithetic Latent Noise: batch %d is not a multiple of group_size %d; %d trailing item(s) form an "
                    "incomplete group (each still exactly N(0, I), independent of the other groups).",
                    batch, self.group_size, partial,
                )

        def make(shape, stream):
            return antithetic_noise(shape, self.seed, self.group_size, self.layout, self.design_size,
                                    batch_index, self.mask, stream=stream)

        return map_latent_samples(samples, make)


class SobolRQMCNoiseGenerator:
    """Core NOISE object for scrambled-Sobol' RQMC replicates (see ``methods/sobol_rqmc.py``)."""

    def __init__(self, seed: int, points_per_replicate: int = 8, mode: str = "auto", spectral_coefficients: int = 64,
                 antithetic: bool = False):
        self.seed = int(seed)
        self.points_per_replicate = points_per_replicate
        self.mode = mode
        self.spectral_coefficients = spectral_coefficients
        self.antithetic = antithetic
        self.design = {"kind": "sobol_rqmc", "points_per_replicate": points_per_replicate, "mode": mode,
                       "spectral_coefficients": spectral_coefficients, "antithetic": antithetic,
                       # Antithetic RQMC is interleaved (z, -z) pairs: step noise can be mirrored the same way.
                       "group_size": 2 if antithetic else None, "layout": "interleaved", "design_size": 0,
                       "mask": None}

    def generate_noise(self, input_latent: dict) -> Any:
        samples = input_latent["samples"]
        batch_index = input_latent.get("batch_index")
        batch = samples.unbind()[0].shape[0] if getattr(samples, "is_nested", False) else samples.shape[0]
        remember_batch_index(self.seed, batch, batch_index)
        n = self.points_per_replicate
        if batch_index is None and batch % n:
            log.warning(
                "Sobol RQMC Latent Batch: batch %d is not a multiple of points_per_replicate %d; the last replicate "
                "is incomplete (items still exactly N(0, I), but leave it out of confidence intervals).", batch, n,
            )

        def make(shape, stream):
            return sobol_rqmc_noise(shape, self.seed, n, self.mode, self.spectral_coefficients, self.antithetic,
                                    batch_index, stream=stream)

        return map_latent_samples(samples, make)
