"""Mirrored step noise for ancestral and SDE samplers, keyed per group like the initial noise.

Jia et al., "Antithetic Noise in Diffusion Models", ICLR 2026 (arXiv 2506.06185), §6.3/Table 5: with a
stochastic sampler (DDPM) the members of an antithetic pair stay negatively correlated only when the noise
injected at every step is negated as well, not just the initial noise.

``MirroredStepNoise`` is a k-diffusion ``noise_sampler(sigma, sigma_next)``: every call draws base noise for the
group leaders only and expands it with the same group structure as the initial noise (``antithetic.py``):
members (eps, -eps) for pairs, sqrt(K/(K-1)) (eps_i - mean eps) for K-groups, and, with a mask, the members
differ only inside the mask. The expansion is linear, so it also works on Brownian increments: with a
Brownian-tree base (SDE samplers) each member follows a genuine Brownian path (a linear combination with unit
variance), and each member's step noise is still exactly N(0, I).

Keying: batch item b is design item ``batch_index[b]`` (default b), which belongs to group g and member j exactly
as in ``antithetic.antithetic_noise``. Base row m of group g draws from its own source seeded by
``keyed_seed(seed, STREAM_STEP, g, m)``, and the n-th call takes that source's n-th draw, so group g's step noise
depends only on (seed, g, call): a ``LatentFromBatch`` slice or a single item gets exactly the step noise it gets
inside the full batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .antithetic import (
    _item_mask,
    apply_group_mask,
    base_count,
    binarize_mask,
    group_from_base,
    group_of,
    resolve_design_size,
    resolve_indices,
    validate_design,
)
from .keyed_rng import STREAM_STEP, keyed_seed
from .validation import check_seed

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# base(leaders, row_seeds) -> noise_sampler: ``leaders`` is a zero tensor [rows, *item_shape] (float32, CPU) and
# ``row_seeds`` one 63-bit seed per row; the sampler returns [rows, *item_shape] per call.
BaseFactory = Callable[[torch.Tensor, list[int]], NoiseSampler]


def step_row_seed(seed: int, group: int, member: int) -> int:
    """Seed of base row ``member`` of design group ``group`` (63 bits: torchsde entropy and torch seeds accept it)."""
    return keyed_seed(seed, STREAM_STEP, group, member) % (2**63)


class IIDLeaderNoise:
    """Default base: fresh N(0, I) per call, one private generator per base row (never the global RNG)."""

    def __init__(self, leaders: torch.Tensor, row_seeds: Sequence[int]):
        self.item_shape = tuple(leaders.shape[1:])
        self.gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in row_seeds]

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        out = torch.empty((len(self.gens), *self.item_shape), dtype=torch.float32)
        for r, gen in enumerate(self.gens):
            torch.randn(self.item_shape, generator=gen, dtype=torch.float32, out=out[r])
        return out


class MirroredStepNoise:
    """k-diffusion noise sampler with antithetic group structure across the batch of ``x``.

    ``batch_index``: design positions of the batch items (``latent['batch_index']``), ``design_size``: the N of the
    halves layout, both exactly as for the initial noise. ``base``: optional factory (see ``BaseFactory``) for the
    leader draws, e.g. a Brownian tree per row for SDE samplers; default fresh Gaussian noise per call.
    """

    def __init__(
        self,
        x: torch.Tensor,
        seed: int | None,
        k: int = 2,
        layout: str = "interleaved",
        design_size: int = 0,
        mask: torch.Tensor | None = None,
        base: BaseFactory | None = None,
        batch_index: Sequence[int] | None = None,
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
        indices = resolve_indices(x.shape[0], batch_index)
        n_design = resolve_design_size(indices, design_size, batch_index is not None)
        design = [group_of(i, k, layout, n_design) for i in indices]
        # Only the groups present in this batch are drawn; row r of the leaders belongs to self.groups[r // per_group].
        self.groups = sorted({g for g, _ in design})
        slot = {g: n for n, g in enumerate(self.groups)}
        self.positions = [(slot[g], j) for g, j in design]
        self.per_group = base_count(k)
        seed = 0 if seed is None else int(seed)
        row_seeds = [step_row_seed(seed, g, m) for g in self.groups for m in range(self.per_group)]
        leaders = torch.zeros((len(row_seeds), *self.item_shape), dtype=torch.float32)
        self.base = (base or IIDLeaderNoise)(leaders, row_seeds)
        self.mask = None
        if mask is not None:
            self.mask = binarize_mask(mask, self.item_shape[-2:])
        self.calls = 0

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        self.calls += 1
        w = self.base(sigma, sigma_next).detach().to(device="cpu", dtype=torch.float32)
        w = w.reshape(len(self.groups), self.per_group, *self.item_shape)
        members = []
        for n, g in enumerate(self.groups):
            grp = group_from_base(w[n], self.k)
            if self.mask is not None:
                grp = apply_group_mask(grp, _item_mask(self.mask, g, len(self.item_shape)))
            members.append(grp)
        out = torch.stack([members[n][j] for n, j in self.positions])
        return out.to(device=self.device, dtype=self.dtype)

