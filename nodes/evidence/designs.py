"""The noise designs compared by ``demo`` and ``bench``, built from the pack's own noise code (imported, not copied).

Each :class:`Design` makes a batch of initial noise [B, *item_shape] for one seed and says how its confidence
interval must be formed (``nodes.methods.confidence``: iid images, pair/group means, or RQMC replicate means).
Items are in design order, so any contiguous block of whole units (pairs, groups, replicates) is itself a valid
batch of that design: a run of ``reps * N`` items is ``reps`` independent batches of N.

Designs (``DESIGNS`` / :func:`default_designs`):

* ``iid``: ``torch.randn`` from a seeded private generator (what core ComfyUI noise does).
* ``antithetic``: pairs (z, -z), interleaved (``antithetic.antithetic_noise``, K = 2).
* ``k4`` / ``k8``: K-antithetic groups sqrt(K/(K-1)) (w_i - mean w), correlation -1/(K-1).
* ``masked``: pairs negated only inside the top half of the image (partial antithetic; members share the
  leader's noise in the bottom half).
* ``rqmc``: scrambled Sobol' in full dimension, n points per replicate (``sobol_rqmc.sobol_rqmc_noise``).
* ``rqmc_spec{m}``: Sobol' on the m lowest DCT frequencies per channel, iid elsewhere (spectral mode).
* ``rqmc_anti``: antithetic RQMC (each scrambled point followed by its reflection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..methods.antithetic import antithetic_noise
from ..methods.sobol_rqmc import sobol_rqmc_noise


@dataclass(frozen=True)
class Design:
    """A noise design: ``noise(shape, seed)``, and the CI estimator that matches it."""

    name: str
    label: str
    make: Callable[[tuple, int], torch.Tensor] = field(repr=False)
    ci_design: str  # confidence.design_interval design: iid | pairs | groups | replicates
    unit_size: int  # images per independent unit
    group_k: int = 0  # K for mirrored ancestral step noise (0: iid step noise)
    mask: torch.Tensor | None = field(default=None, repr=False)

    def noise(self, shape, seed: int) -> torch.Tensor:
        return self.make(tuple(int(s) for s in shape), int(seed))

    def step_noise(self, x: torch.Tensor, seed: int):
        """Ancestral ``noise_sampler`` that keeps the design's group structure (None: the harness default, iid)."""
        if not self.group_k:
            return None
        from ..methods.step_noise import MirroredStepNoise

        return MirroredStepNoise(x, seed, k=self.group_k, mask=self.mask)


def _iid(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def top_half_mask(h: int, w: int) -> torch.Tensor:
    m = torch.zeros((h, w))
    m[: h // 2] = 1.0
    return m


def make_designs(item_shape, points: int = 8, spectral: tuple[int, ...] = (4, 16), include=None) -> list[Design]:
    """All designs for items of ``item_shape`` (C, H, W); ``points`` = RQMC points per replicate (power of two)."""
    _, h, w = item_shape
    mask = top_half_mask(h, w)
    out = [
        Design("iid", "iid", _iid, "iid", 1),
        Design("antithetic", "antithetic pairs", lambda s, seed: antithetic_noise(s, seed, k=2), "pairs", 2, 2),
        Design("k4", "K-groups K=4", lambda s, seed: antithetic_noise(s, seed, k=4), "groups", 4, 4),
        Design("k8", "K-groups K=8", lambda s, seed: antithetic_noise(s, seed, k=8), "groups", 8, 8),
        Design(
            "masked", "masked antithetic (top half)", lambda s, seed: antithetic_noise(s, seed, k=2, mask=mask),
            "pairs", 2, 2, mask,
        ),
        Design(
            "rqmc", f"Sobol RQMC full (n={points})",
            lambda s, seed: sobol_rqmc_noise(s, seed, points_per_replicate=points, mode="full"), "replicates", points,
        ),
    ]
    for m in spectral:
        out.append(
            Design(
                f"rqmc_spec{m}", f"Sobol RQMC spectral m={m} (n={points})",
                lambda s, seed, m=m: sobol_rqmc_noise(s, seed, points_per_replicate=points, mode="spectral",
                                                      spectral_coefficients=m),
                "replicates", points,
            )
        )
    out.append(
        Design(
            "rqmc_anti", f"antithetic Sobol RQMC (n={points})",
            lambda s, seed: sobol_rqmc_noise(s, seed, points_per_replicate=points, mode="full", antithetic=True),
            "replicates", points,
        )
    )
    if include is not None:
        keep = set(include)
        unknown = keep - {d.name for d in out}
        if unknown:
            raise ValueError(f"unknown design(s) {sorted(unknown)}; known: {[d.name for d in out]}")
        out = [d for d in out if d.name in keep]
    return out


def interval(values, design: Design, confidence: float = 0.95):
    """The design's own Student-t interval (``nodes.methods.confidence.design_interval``)."""
    from ..methods.confidence import design_interval

    k = design.unit_size if design.ci_design in ("groups", "replicates") else 2
    return design_interval(values, design.ci_design, group_size=k, layout="interleaved", confidence=confidence)
