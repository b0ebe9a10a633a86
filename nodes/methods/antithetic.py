"""Antithetic initial noise: pairs (z, -z), K-groups and masked (partial) negation.

Jia, Liu, Song, Yuan, Shen, Wang, "Antithetic Noise in Diffusion Models", ICLR 2026 (arXiv 2506.06185).

* Pairs (K = 2): draw z ~ N(0, I); the two members are z and -z. Each is exactly N(0, I); only the joint law
  changes, so every image keeps the ordinary sampling distribution.
* K-groups (K > 2): draw w_1..w_K iid N(0, I) and set

      z_i = sqrt(K / (K - 1)) * (w_i - mean(w)),

  so every z_i is exactly N(0, I) per coordinate, Corr(z_i, z_j) = -1/(K-1) and the group sums to zero.
  (K = 2 in this formula is (z, -z) with z = (w_1 - w_2)/sqrt(2); we draw z directly, which has the same law.)
* Partial antithetic: with a fixed binary mask m, member j is m * z_j + (1 - m) * z_1, i.e. members differ only
  inside the mask and share the leader's noise outside. Each coordinate is still one N(0, 1) draw, so every
  item stays exactly N(0, I). A soft mask would break this (m z + (1-m) z' has variance < 1), so masks are
  binarised at 0.5 after bilinear resizing to the latent grid.

Batch layouts (item i of the design sequence -> (group g, member j)):
* ``interleaved``: g = i // K, j = i % K. Independent of the batch size, so ``batch_index`` slices reproduce
  exactly. A batch that is not a multiple of K ends with an incomplete group whose members are still exactly
  N(0, I) (and independent of the other groups); only estimators need complete groups.
* ``halves``: with design size N and G = ceil(N / K) groups, g = i % G, j = i // G, i.e. (z_1..z_G, -z_1..-z_G)
  for pairs. The pairing depends on N: N is the batch size, or, when the latent carries ``batch_index``, the
  ``design_size`` argument (0 = max(batch_index) + 1). Slices that do not reach the last item must set
  ``design_size`` to the full batch size to reproduce the full batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .keyed_rng import STREAM_ANTITHETIC, keyed_generator

LAYOUTS = ("interleaved", "halves")
MAX_GROUP_SIZE = 64


def validate_design(k: int, layout: str, design_size: int = 0) -> None:
    """Raise a clear ``ValueError`` for an impossible design."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 2 or k > MAX_GROUP_SIZE:
        raise ValueError(f"group_size must be an integer between 2 and {MAX_GROUP_SIZE}, got {k!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not isinstance(design_size, int) or design_size < 0:
        raise ValueError(f"design_size must be an integer >= 0 (0 = automatic), got {design_size!r}")


def resolve_indices(batch_size: int, batch_index: Sequence[int] | None) -> list[int]:
    """Design-sequence positions of the batch items (ComfyUI's ``latent['batch_index']`` or 0..B-1)."""
    if batch_index is None:
        return list(range(batch_size))
    indices = [int(i) for i in batch_index]
    if len(indices) != batch_size:
        raise ValueError(f"batch_index has {len(indices)} entries but the latent batch has {batch_size} items")
    if any(i < 0 for i in indices):
        raise ValueError(f"batch_index entries must be >= 0, got {indices}")
    return indices


def resolve_design_size(indices: Sequence[int], design_size: int, explicit_index: bool) -> int:
    """The N of the ``halves`` layout: explicit, else max(batch_index)+1, else the batch size."""
    if design_size:
        if max(indices) >= design_size:
            raise ValueError(f"design_size {design_size} is smaller than the largest batch_index {max(indices)}")
        return design_size
    return max(indices) + 1 if explicit_index else len(indices)


def group_of(i: int, k: int, layout: str, design_size: int) -> tuple[int, int]:
    """(group, member) of design item ``i``."""
    if layout == "interleaved":
        return i // k, i % k
    groups = math.ceil(design_size / k)
    return i % groups, i // groups


def group_from_base(w: torch.Tensor, k: int) -> torch.Tensor:
    """Turn base Gaussian draws into an antithetic group along dim 0.

    ``w`` has shape [1, ...] for K = 2 (returns [z, -z]) or [K, ...] for K > 2 (returns
    sqrt(K/(K-1)) (w_i - mean w)). Linear in ``w``, so it also maps Brownian increments to Brownian increments.
    """
    if k == 2:
        return torch.cat([w[:1], -w[:1]], dim=0)
    return (w - w.mean(dim=0, keepdim=True)) * math.sqrt(k / (k - 1))


def base_count(k: int) -> int:
    """How many base draws one group needs (1 for pairs, K otherwise)."""
    return 1 if k == 2 else k


def group_noise(seed: int, group: int, k: int, item_shape: Sequence[int], stream: int = 0) -> torch.Tensor:
    """The K members of group ``group`` as a [K, *item_shape] float32 tensor, keyed on (seed, group)."""
    gen = keyed_generator(seed, STREAM_ANTITHETIC, stream, group)
    w = torch.randn((base_count(k), *item_shape), generator=gen, dtype=torch.float32)
    return group_from_base(w, k)


def binarize_mask(mask: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """ComfyUI MASK ([H, W] or [B, H, W], values 0..1) -> {0, 1} float [B_m, *spatial].

    Bilinear resize to the latent's last two dims, then threshold at 0.5 (a soft mask would shrink the noise
    variance where 0 < m < 1). Extra leading spatial dims (video frames) broadcast.
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a tensor, got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3:
        raise ValueError(f"mask must have shape [H, W] or [B, H, W], got {tuple(mask.shape)}")
    if not torch.isfinite(mask).all():
        raise ValueError("mask contains NaN or infinite values")
    h, w = int(spatial[-2]), int(spatial[-1])
    m = mask.detach().to(device="cpu", dtype=torch.float32)
    if m.shape[-2:] != (h, w):
        m = F.interpolate(m.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False).squeeze(1)
    return (m > 0.5).to(torch.float32)


def apply_group_mask(members: torch.Tensor, item_mask: torch.Tensor) -> torch.Tensor:
    """Partial antithetic: member j = m * z_j + (1 - m) * z_leader (binary m broadcast over channels/frames)."""
    return item_mask * members + (1.0 - item_mask) * members[:1]


def _item_mask(bin_mask: torch.Tensor, group: int, item_ndim: int) -> torch.Tensor:
    """Mask for one group, shaped to broadcast over an item ([C, H, W] or [C, T, H, W])."""
    m = bin_mask[group % bin_mask.shape[0]]
    return m.reshape((1,) * (item_ndim - 2) + tuple(m.shape))


def antithetic_noise(
    shape: Sequence[int],
    seed: int,
    k: int = 2,
    layout: str = "interleaved",
    design_size: int = 0,
    batch_index: Sequence[int] | None = None,
    mask: torch.Tensor | None = None,
    stream: int = 0,
) -> torch.Tensor:
    """Antithetic noise for a latent of ``shape`` = [B, C, H, W] or [B, C, T, H, W] (float32, CPU).

    Item b is design item ``batch_index[b]`` (default b). ``stream`` separates the components of a nested latent.
    """
    validate_design(k, layout, design_size)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or shape[0] < 1:
        raise ValueError(f"latent shape must be [B, ...] with B >= 1, got {shape}")
    item_shape = shape[1:]
    indices = resolve_indices(shape[0], batch_index)
    n_design = resolve_design_size(indices, design_size, batch_index is not None)
    bin_mask = None
    if mask is not None:
        if len(item_shape) < 3:
            raise ValueError(f"a mask needs a latent with spatial dims [B, C, H, W]; got shape {shape}")
        bin_mask = binarize_mask(mask, item_shape[-2:])
    out = torch.empty(shape, dtype=torch.float32)
    if k == 2 and bin_mask is None:
        _pairs_into(out, indices, seed, layout, n_design, stream)
        return out
    cache: dict[int, torch.Tensor] = {}
    for b, i in enumerate(indices):
        g, j = group_of(i, k, layout, n_design)
        if g not in cache:
            members = group_noise(seed, g, k, item_shape, stream)
            if bin_mask is not None:
                members = apply_group_mask(members, _item_mask(bin_mask, g, len(item_shape)))
            cache[g] = members
        out[b] = cache[g][j]
    return out


def _pairs_into(out: torch.Tensor, indices: Sequence[int], seed: int, layout: str, n_design: int, stream: int) -> None:
    """Pairs without a mask, written in place: the same numbers as ``group_noise`` (one draw z of the item shape per
    pair, keyed on (seed, pair)), drawn straight into the first member's row and negated or copied into the other,
    so a pair costs half a ``torch.randn`` of the batch plus one sign flip."""
    placed: dict[int, tuple[int, int]] = {}  # pair -> (row holding its draw, member of that row)
    for b, i in enumerate(indices):
        g, j = group_of(i, 2, layout, n_design)
        if g in placed:
            row, member = placed[g]
            if member == j:
                out[b].copy_(out[row])
            else:
                torch.neg(out[row], out=out[b])
            continue
        torch.randn(out.shape[1:], generator=keyed_generator(seed, STREAM_ANTITHETIC, stream, g), out=out[b])
        if j == 1:
            out[b].neg_()
        placed[g] = (b, j)


def incomplete_groups(batch_size: int, k: int, layout: str, design_size: int = 0) -> int:
    """Number of items that belong to a group not complete within a plain batch of ``batch_size``."""
    validate_design(k, layout, design_size)
    n = design_size or batch_size
    seen: dict[int, int] = {}
    for i in range(batch_size):
        g, _ = group_of(i, k, layout, n)
        seen[g] = seen.get(g, 0) + 1
    return sum(c for c in seen.values() if c < k)
