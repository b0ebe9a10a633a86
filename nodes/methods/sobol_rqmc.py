"""Randomised quasi-Monte Carlo (scrambled Sobol') initial noise.

Jia et al., "Antithetic Noise in Diffusion Models", ICLR 2026 (arXiv 2506.06185), extend antithetic pairs to
RQMC noise designs for uncertainty quantification. The paper's exact construction was not available to us;
this module implements the design documented in the pack's docs/nodes.md:

* Points: the first n = 2^m points of the Sobol' sequence (Joe-Kuo direction numbers via scipy), randomised
  with a random linear matrix scramble plus digital shift (Matousek's LMS + shift, as in scipy) applied to the
  top m digits. For the first 2^m points every one-dimensional projection has exactly one point in each
  interval [j/2^m, (j+1)/2^m), and the scramble is a bijection on those cells, so the stratification survives;
  below the m-th digit each point is alone in its cell, so its lower digits are drawn iid uniform (what any
  nested scramble gives there). Each scrambled point is uniform on the unit cube, so each item is exactly
  N(0, I) after

      z = Phi^{-1}(clip(u, 1e-10, 1 - 1e-10)).

* Batch = R replicates x n points; item i is point i % n of replicate i // n. Replicates are independent
  scramblings (keyed on (seed, replicate)), so replicate means are iid and give a Student-t confidence
  interval with R - 1 degrees of freedom. n should be a power of two: otherwise the first n points of a
  2^ceil(log2 n) net are used, each item is still exactly N(0, I) but the stratification (and most of the
  variance reduction) is lost.
* Dimension: Sobol' direction numbers stop at 21201 dimensions (SD1.5 latent 4x64x64 = 16384 fits; SDXL 65536
  and Flux 262144 do not). ``spectral`` mode applies QMC to the lowest-frequency coefficients of an orthonormal
  DCT per channel (ordered by total frequency) and fills the other coefficients with iid N(0, 1); the inverse
  orthonormal transform maps this back to a latent that is still exactly N(0, I) per item. ``auto`` uses full
  dimension when it fits and spectral otherwise.
* Antithetic RQMC: each Sobol' point u is followed by its reflection 1 - u (z, -z; Phi^{-1}(1-u) = -Phi^{-1}(u)),
  so a replicate of n items holds n/2 scrambled points and their reflections, interleaved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from .antithetic import resolve_indices
from .keyed_rng import STREAM_SOBOL_FILL, STREAM_SOBOL_SCRAMBLE, keyed_generator

MAX_SOBOL_DIM = 21201
MAX_POINTS_PER_REPLICATE = 4096
MODES = ("auto", "full", "spectral")
U_CLIP = 1e-10


@lru_cache(maxsize=8)
def sobol_digits(dim: int, m: int) -> torch.Tensor:
    """Top-m binary digits of the first 2^m unscrambled Sobol' points, as int32 [2^m, dim] (cached)."""
    from scipy.stats import qmc

    if dim > MAX_SOBOL_DIM:
        raise ValueError(f"Sobol' points exist for at most {MAX_SOBOL_DIM} dimensions, got {dim}")
    pts = qmc.Sobol(dim, scramble=False).random_base2(m) if m > 0 else np.zeros((1, dim))
    # The first 2^m points are dyadic with m digits: exact integers after scaling.
    return torch.from_numpy(np.rint(pts * (1 << m)).astype(np.int32))


@lru_cache(maxsize=8)
def _digit_masks(dim: int, m: int) -> torch.Tensor:
    """``sobol_digits`` as bit masks, int32 [m, 2^m, dim]: -1 (all bits set) where the digit is 1, else 0; most
    significant digit first (cached). ``mask & col`` then selects a scramble column where the digit is set."""
    a = sobol_digits(dim, m)
    return torch.stack([-((a >> (m - 1 - level)) & 1) for level in range(m)]) if m else a[None, :0]


def scrambled_cells(dim: int, m: int, gen: torch.Generator) -> torch.Tensor:
    """Cell index (top m digits) of the first 2^m Sobol' points under a random linear scramble + digital shift.

    Matousek's LMS: e = L d + s over GF(2), with L lower triangular with unit diagonal and s a random shift, drawn
    independently per coordinate. L is invertible, so every coordinate keeps exactly one point per cell
    [j/2^m, (j+1)/2^m); the shift makes each point's cell uniform. Returns int32 [2^m, dim].
    """
    masks = _digit_masks(dim, m)
    out = torch.randint(0, 1 << m, (1, dim), generator=gen, dtype=torch.int32).expand(1 << m, dim).clone()
    for level in range(m):  # level 0 = most significant digit
        pos = m - 1 - level
        # Column `level` of L: the diagonal bit plus random bits below it; added (XOR) where the digit is 1.
        col = torch.randint(0, 1 << pos, (dim,), generator=gen, dtype=torch.int32) | (1 << pos)
        out ^= masks[level] & col
    return out


def scrambled_sobol_uniforms(dim: int, m: int, gen: torch.Generator) -> torch.Tensor:
    """The first 2^m scrambled Sobol' points in [0, 1)^dim, float64 [2^m, dim] (for tests and inspection)."""
    cells = scrambled_cells(dim, m, gen)
    fill = torch.rand(cells.shape, generator=gen, dtype=torch.float64)
    return (cells.to(torch.float64) + fill) / (1 << m)


def scrambled_sobol_normals(dim: int, m: int, gen: torch.Generator) -> torch.Tensor:
    """Phi^{-1} of the scrambled points, float32 [2^m, dim]; the same cells as ``scrambled_sobol_uniforms``.

    Digits below the m-th are iid uniform: each point sits alone in its 2^-m cell, so any nested randomisation
    of the lower digits is uniform. For precision in both tails the map works on the lower half: a point in the
    upper half (top digit 1, cell c) becomes -Phi^{-1}(v) with v = (c' + f) / n in (0, 1/2], c' = n - 1 - c its
    mirror cell and f its uniform lower digits. (u = 1 - v has cell c, and f and 1 - f have the same law, so this
    is exactly the point's normal score; it never forms 1 - u in float32.)
    """
    n = 1 << m
    cells = scrambled_cells(dim, m, gen)
    fill = torch.rand(cells.shape, generator=gen, dtype=torch.float32)
    if n == 1:  # one point: no digits to scramble, the whole coordinate is the uniform
        top = fill >= 0.5
        v = torch.where(top, 1.0 - fill, fill)
    else:
        top = cells >> (m - 1)  # 1 in the upper half
        # mirror cell n-1-c = c XOR (n-1); in the upper half its value lies in the lower half
        v = (cells ^ (top * (n - 1))).to(torch.float32).add_(fill).div_(n)
    z = lower_tail_ndtri(v)
    return z.mul_(1 - 2 * top.to(torch.float32))


def lower_tail_ndtri(v: torch.Tensor) -> torch.Tensor:
    """Phi^{-1}(v) for float32 v in (0, 1/2]: erfinv in the bulk (fast), ndtri in the far tail (precise)."""
    v = v.clamp_min(U_CLIP)
    z = torch.erfinv(v.mul(2.0).sub_(1.0)).mul_(math.sqrt(2.0))
    # Below 0.02, 2v - 1 loses float32 precision (z would be off by more than ~2 ulps); ~4 % of draws.
    tail = v < 0.02
    return z.masked_scatter_(tail, torch.special.ndtri(v.masked_select(tail)))


@lru_cache(maxsize=16)
def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (rows are basis vectors): X = D^T Y inverts Y = D X."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


@lru_cache(maxsize=16)
def low_frequency_order(spatial: tuple[int, ...]) -> torch.Tensor:
    """Flat indices of the DCT coefficients of a grid ``spatial``, lowest total frequency first (stable)."""
    grids = torch.meshgrid(*[torch.arange(s) for s in spatial], indexing="ij")
    total = sum(g.reshape(-1) for g in grids)
    # Ties broken by flat index: deterministic and close to zig-zag order.
    key = total * int(np.prod(spatial)) + torch.arange(total.numel())
    return torch.argsort(key)


def inverse_dct(coeffs: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Inverse orthonormal DCT over the last ``spatial_dims`` dims of a float64 tensor."""
    x = coeffs
    for axis in range(x.ndim - spatial_dims, x.ndim):
        d = dct_matrix(x.shape[axis])
        x = torch.movedim(torch.tensordot(x, d, dims=([axis], [0])), -1, axis)
    return x


def resolve_mode(mode: str, dim: int, channels: int, spectral_coefficients: int, spatial_size: int) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        mode = "full" if dim <= MAX_SOBOL_DIM else "spectral"
    if mode == "full" and dim > MAX_SOBOL_DIM:
        raise ValueError(
            f"mode 'full' needs at most {MAX_SOBOL_DIM} dimensions per item but this latent has {dim}; "
            "use 'spectral' (or 'auto')"
        )
    if mode == "spectral":
        if spectral_coefficients < 1 or spectral_coefficients > spatial_size:
            raise ValueError(
                f"spectral_coefficients must be between 1 and {spatial_size} (the spatial size), got {spectral_coefficients}"
            )
        if channels * spectral_coefficients > MAX_SOBOL_DIM:
            raise ValueError(
                f"spectral mode uses channels x spectral_coefficients = {channels * spectral_coefficients} QMC dimensions; "
                f"the Sobol' limit is {MAX_SOBOL_DIM}. Lower spectral_coefficients."
            )
    return mode


def replicate_noise(
    item_shape: tuple[int, ...],
    seed: int,
    replicate: int,
    points: Sequence[int],
    n: int,
    mode: str,
    spectral_coefficients: int,
    antithetic: bool,
    stream: int = 0,
) -> torch.Tensor:
    """Items ``points`` (positions within the replicate, 0..n-1) of one replicate, float32 [len(points), *item_shape]."""
    dim = int(np.prod(item_shape))
    n_pts = n // 2 if antithetic else n
    m = max(0, math.ceil(math.log2(n_pts))) if n_pts > 1 else 0
    gen = keyed_generator(seed, STREAM_SOBOL_SCRAMBLE, stream, replicate)
    qmc_dim = dim if mode == "full" else item_shape[0] * spectral_coefficients
    normals = scrambled_sobol_normals(qmc_dim, m, gen)
    point_of = [p // 2 if antithetic else p for p in points]
    signs = torch.tensor([-1.0 if antithetic and p % 2 else 1.0 for p in points], dtype=torch.float32)
    signs = signs.reshape(-1, *([1] * len(item_shape)))
    if mode == "full":
        z = normals if point_of == list(range(normals.shape[0])) else normals[point_of]
        z = z.reshape(len(points), *item_shape)
        return z.mul_(signs) if antithetic else z
    # Spectral: iid N(0, 1) everywhere, keyed on (seed, replicate, point) so slices reproduce, then the lowest
    # DCT coefficients replaced by the QMC values. Frequency-major: the first Sobol' dimensions (best quality)
    # carry every channel's DC term.
    fill = torch.empty((len(points), *item_shape), dtype=torch.float32)
    for row, point in enumerate(point_of):
        torch.randn(item_shape, generator=keyed_generator(seed, STREAM_SOBOL_FILL, stream, replicate, point),
                    out=fill[row])
    q = normals[point_of].reshape(len(points), spectral_coefficients, item_shape[0]).transpose(1, 2)
    return replace_low_frequencies(fill, q) * signs


def replace_low_frequencies(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Set the ``m`` lowest-frequency orthonormal-DCT coefficients of z [B, C, *spatial] to q [B, C, m].

    z' = z + sum_j (q_j - <z, phi_j>) phi_j over the basis images phi_j of ``low_frequency_order``: the same as
    transforming z, overwriting those coefficients and transforming back, but the basis is separable and the
    coefficients sit in a small corner block K_1 x K_2 (x K_3), so only that block is ever computed
    (O(d K) instead of O(d H) per channel). z iid N(0, I) has iid N(0, 1) coefficients (orthonormal
    transform), so with q ~ N(0, 1) per coordinate every item stays exactly N(0, I).
    """
    spatial = tuple(z.shape[2:])
    m = q.shape[-1]
    corner = torch.stack(torch.unravel_index(low_frequency_order(spatial)[:m], spatial))  # [axes, m]
    sizes = [int(c.max()) + 1 for c in corner]
    mats = [dct_matrix(n)[:k].to(z.dtype) for n, k in zip(spatial, sizes, strict=True)]  # [K_a, n_a]
    coef = z
    for ax, d in enumerate(mats):
        coef = torch.movedim(torch.tensordot(coef, d, dims=([2 + ax], [1])), -1, 2 + ax)
    flat_idx = torch.as_tensor(np.ravel_multi_index(corner.numpy(), sizes))
    block = coef.reshape(*coef.shape[:2], -1)
    delta = torch.zeros_like(block)
    delta[..., flat_idx] = q.to(z.dtype) - block[..., flat_idx]
    delta = delta.reshape(coef.shape)
    for ax, d in enumerate(mats):
        delta = torch.movedim(torch.tensordot(delta, d, dims=([2 + ax], [0])), -1, 2 + ax)
    return z + delta


def sobol_rqmc_noise(
    shape: Sequence[int],
    seed: int,
    points_per_replicate: int = 8,
    mode: str = "auto",
    spectral_coefficients: int = 64,
    antithetic: bool = False,
    batch_index: Sequence[int] | None = None,
    stream: int = 0,
) -> torch.Tensor:
    """Scrambled-Sobol' RQMC noise for a latent of ``shape`` = [B, C, ...] (float32, CPU); see the module doc."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 3:
        raise ValueError(f"latent shape must be [B, C, *spatial], got {shape}")
    n = points_per_replicate
    if not isinstance(n, int) or n < 1 or n > MAX_POINTS_PER_REPLICATE:
        raise ValueError(f"points_per_replicate must be between 1 and {MAX_POINTS_PER_REPLICATE}, got {n!r}")
    if antithetic and n % 2:
        raise ValueError(f"antithetic RQMC needs an even points_per_replicate (points + reflections), got {n}")
    item_shape = shape[1:]
    dim = int(np.prod(item_shape))
    spatial_size = int(np.prod(item_shape[1:]))
    mode = resolve_mode(mode, dim, item_shape[0], spectral_coefficients, spatial_size)
    indices = resolve_indices(shape[0], batch_index)
    out = torch.empty(shape, dtype=torch.float32)
    by_replicate: dict[int, list[tuple[int, int]]] = {}
    for b, i in enumerate(indices):
        by_replicate.setdefault(i // n, []).append((b, i % n))
    for r, items in by_replicate.items():
        z = replicate_noise(item_shape, seed, r, [p for _, p in items], n, mode, spectral_coefficients, antithetic, stream)
        rows = [b for b, _ in items]
        if rows == list(range(rows[0], rows[0] + len(rows))):  # contiguous (the usual case): one block copy
            out[rows[0] : rows[0] + len(rows)] = z
        else:
            out[rows] = z
    return out


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0
