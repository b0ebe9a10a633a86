"""Mirrored step noise for ancestral and SDE samplers.

Jia et al., "Antithetic Noise in Diffusion Models", ICLR 2026 (arXiv 2506.06185), §6.3/Table 5: with a
stochastic sampler (DDPM) the members of an antithetic pair stay negatively correlated only when the noise
injected at every step is negated as well, not just the initial noise.

``MirroredStepNoise`` is a k-diffusion ``noise_sampler(sigma, sigma_next)``: every call draws base noise for the
group leaders only and expands it with the same group structure as the initial noise (``antithetic.py``):
members (eps, -eps) for pairs, sqrt(K/(K-1)) (eps_i - mean eps) for K-groups, and, with a mask, the members
differ only inside the mask. The expansion is linear, so it also works on Brownian increments: with a
Brownian-tree base (SDE samplers) each member follows a genuine Brownian path (a linear combination with unit
variance), and each member's step noise is still exactly N(0, I).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .antithetic import (
    _item_mask,
    apply_group_mask,
    base_count,
    binarize_mask,
    group_from_base,
    group_of,
    validate_design,
)
from .keyed_rng import STREAM_STEP, keyed_generator
from .validation import check_seed

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class IIDLeaderNoise:
    """Default base: fresh N(0, I) per call from a private generator keyed on the seed."""

    def __init__(self, leaders: torch.Tensor, seed: int):
        self.shape = leaders.shape
        self.gen = keyed_generator(seed, STREAM_STEP)

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        return torch.randn(self.shape, generator=self.gen, dtype=torch.float32)


class MirroredStepNoise:
    """k-diffusion noise sampler with antithetic group structure across the batch of ``x``.

    ``base``: optional factory ``base(leaders_like_tensor, seed) -> noise_sampler`` for the leader draws (e.g. a
    Brownian tree for SDE samplers); default fresh Gaussian noise per call.
    """

    def __init__(
        self,
        x: torch.Tensor,
        seed: int | None,
        k: int = 2,
        layout: str = "interleaved",
        design_size: int = 0,
        mask: torch.Tensor | None = None,
        base: Callable[[torch.Tensor, int], NoiseSampler] | None = None,
    ):
        validate_design(k, layout, design_size)
        if x.ndim < 2 or x.shape[0] < 1:
            raise ValueError(f"x must be a batch [B, ...] with B >= 1, got shape {tuple(x.shape)}")
        if layout == "halves" and design_size and design_size < x.shape[0]:
            raise ValueError(f"design_size {design_size} is smaller than the batch ({x.shape[0]} items): the halves "
                             "layout pairs item i with item i + design_size/2, so it needs design_size >= the batch "
                             "(0 = the batch size)")
        seed = None if seed is None else check_seed(seed)
        self.k = k
        self.device, self.dtype = x.device, x.dtype
        self.item_shape = tuple(x.shape[1:])
        batch = x.shape[0]
        n_design = design_size or batch
        self.positions = [group_of(i, k, layout, n_design) for i in range(batch)]
        self.groups = max(g for g, _ in self.positions) + 1
        self.per_group = base_count(k)
        leaders = torch.zeros((self.groups * self.per_group, *self.item_shape), dtype=torch.float32)
        seed = 0 if seed is None else int(seed)
        self.base = (base or IIDLeaderNoise)(leaders, seed)
        self.mask = None
        if mask is not None:
            self.mask = binarize_mask(mask, self.item_shape[-2:])
        self.calls = 0

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        self.calls += 1
        w = self.base(sigma, sigma_next).detach().to(device="cpu", dtype=torch.float32)
        w = w.reshape(self.groups, self.per_group, *self.item_shape)
        members = []
        for g in range(self.groups):
            grp = group_from_base(w[g], self.k)
            if self.mask is not None:
                grp = apply_group_mask(grp, _item_mask(self.mask, g, len(self.item_shape)))
            members.append(grp)
        out = torch.stack([members[g][j] for g, j in self.positions])
        return out.to(device=self.device, dtype=self.dtype)
