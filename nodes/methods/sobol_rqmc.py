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

      z = Phi^{-1}(u) = sqrt(2) erfinv(2u - 1).

* Cost: a value is one 32-bit word, its top m bits the scrambled cell and the rest random bits, u = (word + 1/2)
  / 2^32. The scramble is linear over GF(2), so any point is formed from its index bits without the others:
  time and memory grow with the batch, never with 2^m (``ScrambledSobol``).

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
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from .antithetic import resolve_indices
from .keyed_rng import STREAM_SOBOL_FILL, STREAM_SOBOL_LOW_DIGITS, STREAM_SOBOL_SCRAMBLE, keyed_generator, keyed_seed
from .validation import check_int

MAX_SOBOL_DIM = 21201
# Widget maximum of spectral_coefficients: the most a 4-channel latent (SD1.5/SDXL) can take (16 channels: 1325).
MAX_SPECTRAL_COEFFICIENTS = MAX_SOBOL_DIM // 4
MAX_POINTS_PER_REPLICATE = 4096
MODES = ("auto", "full", "spectral")
U_CLIP = 1e-10


# Direction numbers of every dimension, top MAX_DIGITS digits: at most 4 bytes x 12 x 21201 = 1 MB per entry.
MAX_DIGITS = 12  # 2^12 = 4096 = MAX_POINTS_PER_REPLICATE
DIRECTION_CACHE_BYTES = 16 << 20
_direction_cache: OrderedDict[int, torch.Tensor] = OrderedDict()
# Points generated at once per replicate: bounds the int32/float temporaries to a few x 2^21 values.
CHUNK_VALUES = 1 << 21
INT32_MIN = -(1 << 31)
# Outside 0.02 < u < 0.98, 2u - 1 in float32 would cost erfinv more than ~2 ulps of z: redone in float64.
TAIL_Z = 2.0537  # |Phi^{-1}(0.02)|


def direction_numbers(dim: int) -> torch.Tensor:
    """Sobol' direction numbers V_j (j < 12) as 12-digit integers, int32 [12, dim] (cached, at most 16 MB in all).

    Point k of the unscrambled sequence (scipy's order, Joe-Kuo numbers) is the XOR of V_j over the set bits j of k,
    so any point can be formed without generating the ones before it. For the first 2^m points only the top m
    digits are non-zero: V_j >> (12 - m) are their m-digit cells.
    """
    if dim > MAX_SOBOL_DIM:
        raise ValueError(f"Sobol' points exist for at most {MAX_SOBOL_DIM} dimensions, got {dim}")
    hit = _direction_cache.get(dim)
    if hit is not None:
        _direction_cache.move_to_end(dim)
        return hit
    from scipy.stats import qmc

    engine = qmc.Sobol(dim, scramble=False)
    table = _table_from_scipy_internals(engine, dim)
    if table is None:  # public API only (slower: fast_forward walks every point)
        rows = []
        for j in range(MAX_DIGITS):
            engine.reset().fast_forward(1 << j)
            rows.append(np.rint(engine.random(1)[0] * (1 << MAX_DIGITS)).astype(np.int32))
        table = np.stack(rows)
    table = torch.from_numpy(np.ascontiguousarray(table))
    _direction_cache[dim] = table
    while sum(t.numel() * t.element_size() for t in _direction_cache.values()) > DIRECTION_CACHE_BYTES:
        _direction_cache.popitem(last=False)
    return table


def _table_from_scipy_internals(engine, dim: int) -> np.ndarray | None:
    """Points 2^j from scipy's direction-number table where it has one (feature-detected), else None.

    scipy generates in Gray-code order from its direction numbers sv: point 2^j = sv_j XOR sv_{j-1}; the tests
    check the result against ``random_base2``."""
    sv = getattr(engine, "_sv", None)
    bits = getattr(engine, "bits", None)
    if not (isinstance(sv, np.ndarray) and isinstance(bits, int) and sv.shape == (dim, bits) and bits >= MAX_DIGITS):
        return None
    sv = sv[:, :MAX_DIGITS].astype(np.int64) >> (bits - MAX_DIGITS)
    return np.concatenate([sv[:, :1], sv[:, 1:] ^ sv[:, :-1]], axis=1).T.astype(np.int32)


def clear_direction_cache() -> None:
    _direction_cache.clear()


def sobol_digits(dim: int, m: int, points: Sequence[int] | None = None) -> torch.Tensor:
    """Top-m binary digits of unscrambled Sobol' points ``points`` (default: the first 2^m) as int32 [P, dim]."""
    if not 0 <= m <= MAX_DIGITS:
        raise ValueError(f"m must be between 0 and {MAX_DIGITS}, got {m}")
    v = direction_numbers(dim)[:m] >> (MAX_DIGITS - m)
    idx = torch.arange(1 << m) if points is None else torch.as_tensor(list(points), dtype=torch.int64)
    out = torch.zeros((len(idx), dim), dtype=torch.int32)
    for j in range(m):
        out ^= (-((idx >> j) & 1)).to(torch.int32)[:, None] & v[j]
    return out


def _random_words(bits: np.random.PCG64, count: int) -> torch.Tensor:
    """``count`` uniform 32-bit words (int32) from a numpy PCG64 stream: two words per 64-bit output."""
    raw = bits.random_raw((count + 1) // 2)
    return torch.from_numpy(raw.view(np.int32)[:count].copy() if count % 2 else raw.view(np.int32))


class ScrambledSobol:
    """One replicate: the first 2^m Sobol' points under a random linear scramble + digital shift, normals on demand.

    Matousek's LMS: cell e = L d + s over GF(2), with L lower triangular with unit diagonal and s a random shift,
    drawn independently per coordinate. L is invertible, so every coordinate keeps exactly one point per cell
    [j/2^m, (j+1)/2^m); the shift makes each point's cell uniform. The scramble is linear, so e_k = s XOR (XOR of
    W_j = L V_j over the set bits j of k): the setup costs O(J^2 dim) for the J <= m directions the requested
    points use (V_j has digits only in its top j + 1 places, so W_j needs only the first j + 1 columns of L),
    each point O(m dim), and any subset of points is formed without the rest (time and memory linear in the
    batch, whatever m is).

    Below the m-th digit each point sits alone in its cell, so its lower digits are iid uniform (what any nested
    randomisation gives there). They are taken straight from random bits, 32 - m per value from a PCG64 stream
    keyed on (seed, replicate) and advanced to the point, so point k is the same whichever points are requested.
    """

    def __init__(self, dim: int, m: int, seed: int, replicate: int, stream: int = 0):
        self.dim, self.m = dim, m
        # Scramble bits: m + 1 rows of dim 32-bit words from one PCG64 stream, row `level` < m for column `level`
        # of L, row m for the shift. Rows are read where they lie in the stream (advance), so the columns a batch
        # never uses are never drawn.
        self._scramble_seed = keyed_seed(seed, STREAM_SOBOL_SCRAMBLE, stream, replicate)
        shift = self._scramble_rows(m, m + 1)[0] & np.uint32((1 << m) - 1)
        self._up = np.uint32(32 - m) if m else np.uint32(0)
        self._pos = np.arange(m - 1, -1, -1, dtype=np.uint32)
        # Columns of L formed so far (level 0 = most significant digit): the diagonal bit plus random bits below
        # it, kept already moved to the top m bits of the 32-bit word (below them go the random lower digits).
        self._cols_top = np.empty((0, dim), dtype=np.uint32)
        # W_j << (32 - m) for j < len: int32 [len, dim], grown on demand (a batch of B consecutive points needs
        # only the j < log2(B) + 1 of them, so the setup does not grow with 2^m).
        self._top_w = torch.empty((0, dim), dtype=torch.int32)
        self.shift = torch.from_numpy(shift.view(np.int32))
        self.top_shift = torch.from_numpy((shift << self._up).view(np.int32)) if m else torch.zeros(dim, dtype=torch.int32)
        # XOR-ing the sign bit as well gives x - 2^31 as a signed int32 (the "centred" word) in the same pass.
        self.top_shift_centred = self.top_shift ^ INT32_MIN
        self.low_mask = (1 << (32 - m)) - 1 if m else -1
        self.fill_seed = keyed_seed(seed, STREAM_SOBOL_LOW_DIGITS, stream, replicate)

    def _scramble_rows(self, first: int, stop: int) -> np.ndarray:
        """Rows first..stop-1 of the scramble bits, uint32 [stop - first, dim]."""
        bits = np.random.PCG64(self._scramble_seed)
        a, b = first * self.dim, stop * self.dim  # the rows' 32-bit words; two per 64-bit output
        bits.advance(a // 2)
        return bits.random_raw((b + 1) // 2 - a // 2).view(np.uint32)[a % 2 : a % 2 + b - a].reshape(-1, self.dim)

    def _columns_top(self, levels: int) -> np.ndarray:
        """Columns 0..levels-1 of L in the top bits, uint32 [levels, dim] (drawn on first use)."""
        have = self._cols_top.shape[0]
        if levels > have:
            pos = self._pos[have:levels, None]
            raw = self._scramble_rows(have, levels)
            new = ((raw & ((np.uint32(1) << pos) - np.uint32(1))) | (np.uint32(1) << pos)) << self._up
            self._cols_top = np.concatenate([self._cols_top, new])
        return self._cols_top

    def _top_directions(self, count: int) -> torch.Tensor:
        """W_j = L V_j moved to the top m bits of the word, int32 [count, dim] (j < count), formed together on
        first use: W_j is the XOR of the columns of L at the set digits of V_j, one masked XOR per level for all
        the j at once. Sobol' direction numbers have V_j < 2^-j (digits only at levels <= j), so the first
        ``count`` columns of L suffice (checked; otherwise all m are used)."""
        have = self._top_w.shape[0]
        if count > have:
            # V_j as m-digit integers, [new, dim]
            v = direction_numbers(self.dim)[have:count].numpy().astype(np.uint32) >> np.uint32(MAX_DIGITS - self.m)
            below = np.uint32((1 << (self.m - count)) - 1)  # the digits at levels >= count
            levels = count if not np.any(v & below) else self.m
            cols = self._columns_top(levels)
            w = np.zeros_like(v)
            for level, pos in enumerate(self._pos[:levels]):  # digit `pos` of V_j selects column `level`
                w ^= ((v >> pos) & np.uint32(1)) * cols[level]
            self._top_w = torch.cat([self._top_w, torch.from_numpy(w.view(np.int32))])
        return self._top_w

    def scrambled_direction(self, j: int) -> np.ndarray:
        """W_j = L V_j (uint32 [dim]): the scrambled cell of point 2^j before the shift."""
        return self._top_directions(j + 1)[j].numpy().view(np.uint32) >> self._up

    def top_direction(self, j: int) -> torch.Tensor:
        """W_j moved to the top m bits of the word, int32 [dim] (cached)."""
        return self._top_directions(j + 1)[j]

    def cells(self, points: Sequence[int]) -> torch.Tensor:
        """Scrambled cell index (top m digits) of each point, int32 [len(points), dim]."""
        idx = torch.as_tensor(list(points), dtype=torch.int64)
        out = self.shift.expand(len(idx), self.dim).clone()
        for j in range(self.m):
            out ^= (-((idx >> j) & 1)).to(torch.int32)[:, None] & torch.from_numpy(self.scrambled_direction(j).view(np.int32))
        return out

    def words(self, points: Sequence[int], centred: bool = False) -> torch.Tensor:
        """Each value as a 32-bit word, int32 [len(points), dim]: the point u = (word as unsigned + 1/2) / 2^32.

        Top m bits: the scrambled cell (shift XOR the W_j of the point's set bits); the other 32 - m bits: the
        lower digits, uniform random bits from the point's stretch of the PCG64 stream. ``centred``: the word
        minus 2^31 instead (its sign bit flipped), as ``normals`` reads it."""
        per_point = (self.dim + 1) // 2
        points = [int(p) for p in points]
        if self.dim % 2 == 0 and points and points == list(range(points[0], points[0] + len(points))):
            return self._consecutive_words(points[0], len(points), centred)
        out = torch.empty((len(points), self.dim), dtype=torch.int32)
        top_w = self._top_directions(min(self.m, max(points, default=0).bit_length()))
        bits = np.random.PCG64(self.fill_seed)
        at = 0
        for row, point in enumerate(points):
            point = int(point)
            bits.advance(point * per_point - at)
            at = (point + 1) * per_point
            r = out[row]
            torch.bitwise_and(_random_words(bits, self.dim), self.low_mask, out=r)
            r ^= self.top_shift_centred if centred else self.top_shift
            j = 0
            while point:
                if point & 1:
                    r ^= top_w[j]
                point >>= 1
                j += 1
        return out

    def _consecutive_words(self, first: int, count: int, centred: bool = False) -> torch.Tensor:
        """``words`` of points first .. first+count-1 (the usual case), vectorised: one draw, one mask, and per
        digit j one XOR of W_j into the rows whose point has bit j set (a strided view when they are regular)."""
        bits = np.random.PCG64(self.fill_seed)
        bits.advance(first * (self.dim // 2))
        out = torch.from_numpy(bits.random_raw(count * self.dim // 2).view(np.int32)).view(count, self.dim)
        out.bitwise_and_(self.low_mask).bitwise_xor_(self.top_shift_centred if centred else self.top_shift)
        digits = min(self.m, (first + count - 1).bit_length())  # higher bits are 0 in every index
        top_w = self._top_directions(digits)
        for j in range(digits):
            period = 2 << j
            if first % period == 0 and count % period == 0:  # rows with bit j set: the second half of each period
                out.view(count // period, 2, period // 2, self.dim)[:, 1].bitwise_xor_(top_w[j])
            else:
                sel = -((torch.arange(first, first + count, dtype=torch.int32) >> j) & 1)
                out.bitwise_xor_(sel[:, None] & top_w[j])
        return out

    def uniforms(self, points: Sequence[int]) -> torch.Tensor:
        """The points in (0, 1)^dim, float64 [len(points), dim] (for tests and inspection)."""
        x = self.words(points).to(torch.int64) & 0xFFFFFFFF
        return (x.to(torch.float64) + 0.5) / 2.0**32

    def normals(self, points: Sequence[int], out: torch.Tensor | None = None) -> torch.Tensor:
        """Phi^{-1} of the points, float32 [len(points), dim] (written into ``out`` when given).

        z = sqrt(2) erfinv(2u - 1) with 2u - 1 = (x - 2^31 + 1/2) / 2^31 read off the word x: erfinv in float32 in
        the bulk; where |2u - 1| > 0.96 (u < 0.02 or u > 0.98, ~4 % of values) float32 cannot hold 2u - 1 closely
        enough, and those values are redone from the exact word in float64 (|z| up to 6.3, beyond the 24-bit
        uniforms of torch.randn).
        """
        out = torch.empty((len(points), self.dim), dtype=torch.float32) if out is None else out
        step = max(1, CHUNK_VALUES // max(self.dim, 1))
        for a in range(0, len(points), step):
            centred = self.words(points[a : a + step], centred=True)
            normal_from_centred_words(centred, out=out[a : a + step])
        return out


def scrambled_cells(dim: int, m: int, seed: int, replicate: int = 0) -> torch.Tensor:
    """Cells of the first 2^m scrambled Sobol' points of one replicate, int32 [2^m, dim] (tests, inspection)."""
    return ScrambledSobol(dim, m, seed, replicate).cells(range(1 << m))


def scrambled_sobol_uniforms(dim: int, m: int, seed: int, replicate: int = 0) -> torch.Tensor:
    """The first 2^m scrambled Sobol' points of one replicate in (0, 1)^dim, float64 [2^m, dim]."""
    return ScrambledSobol(dim, m, seed, replicate).uniforms(range(1 << m))


def scrambled_sobol_normals(dim: int, m: int, seed: int, replicate: int = 0) -> torch.Tensor:
    """Phi^{-1} of ``scrambled_sobol_uniforms`` (the same points), float32 [2^m, dim]."""
    return ScrambledSobol(dim, m, seed, replicate).normals(range(1 << m))


def normal_from_centred_words(c: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Phi^{-1}(u) for u = (c + 2^31 + 1/2) / 2^32, int32 c: z = sqrt(2) erfinv((c + 1/2) / 2^31), float32."""
    z = c.to(torch.float32) if out is None else out.copy_(c)
    torch.erfinv(z.mul_(2.0**-31), out=z).mul_(math.sqrt(2.0))  # the 1/2 is below float32 resolution here
    # The ~4 % of tail values, found and patched through numpy views of the same memory (numpy's flatnonzero is
    # several times faster than torch's nonzero on the CPU).
    if not z.is_contiguous():
        return z.copy_(normal_from_centred_words(c.contiguous()))
    flat = z.numpy().reshape(-1)  # a view: z is contiguous
    tail = np.flatnonzero(np.abs(flat) > TAIL_Z)
    exact = torch.from_numpy((c.numpy().reshape(-1)[tail].astype(np.float64) + 0.5) * 2.0**-31)
    flat[tail] = torch.erfinv(exact).mul_(math.sqrt(2.0)).numpy()
    return z


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
                f"spectral_coefficients = {spectral_coefficients} is too many for a {channels}-channel latent: spectral "
                f"mode uses channels x spectral_coefficients = {channels * spectral_coefficients} QMC dimensions and "
                f"the Sobol' limit is {MAX_SOBOL_DIM}. Use at most {MAX_SOBOL_DIM // channels}."
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
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Items ``points`` (positions within the replicate, 0..n-1) of one replicate, float32 [len(points), *item_shape]
    (written straight into ``out`` when given, except in full mode with reflections or repeated points)."""
    dim = int(np.prod(item_shape))
    n_pts = n // 2 if antithetic else n
    m = max(0, math.ceil(math.log2(n_pts))) if n_pts > 1 else 0
    qmc_dim = dim if mode == "full" else item_shape[0] * spectral_coefficients
    point_of = [p // 2 if antithetic else p for p in points]
    # Only the requested points are formed (a reflected pair shares its point): linear in the batch.
    unique = list(dict.fromkeys(point_of))
    direct = out is not None and mode == "full" and not antithetic and unique == point_of
    normals = ScrambledSobol(qmc_dim, m, seed, replicate, stream).normals(
        unique, out=out.view(len(points), -1) if direct else None)
    if direct:
        return out
    if unique != point_of:
        normals = normals[[unique.index(p) for p in point_of]]
    signs = torch.tensor([-1.0 if antithetic and p % 2 else 1.0 for p in points], dtype=torch.float32)
    signs = signs.reshape(-1, *([1] * len(item_shape)))
    if mode == "full":
        z = normals.reshape(len(points), *item_shape)
        return z.mul_(signs) if antithetic else z
    # Spectral: iid N(0, 1) everywhere, keyed on (seed, replicate, point) so slices reproduce, then the lowest
    # DCT coefficients replaced by the QMC values. Frequency-major: the first Sobol' dimensions (best quality)
    # carry every channel's DC term.
    fill = torch.empty((len(points), *item_shape), dtype=torch.float32) if out is None else out
    for row, point in enumerate(point_of):
        torch.randn(item_shape, generator=keyed_generator(seed, STREAM_SOBOL_FILL, stream, replicate, point),
                    out=fill[row])
    q = normals.reshape(len(points), spectral_coefficients, item_shape[0]).transpose(1, 2)
    z = replace_low_frequencies_(fill, q)
    return z.mul_(signs) if antithetic else z


def replace_low_frequencies(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Set the ``m`` lowest-frequency orthonormal-DCT coefficients of z [B, C, *spatial] to q [B, C, m].

    z' = z + sum_j (q_j - <z, phi_j>) phi_j over the basis images phi_j of ``low_frequency_order``: the same as
    transforming z, overwriting those coefficients and transforming back, but the basis is separable and the
    coefficients sit in a small corner block K_1 x K_2 (x K_3), so only that block is ever computed
    (O(d K) instead of O(d H) per channel). z iid N(0, I) has iid N(0, 1) coefficients (orthonormal
    transform), so with q ~ N(0, 1) per coordinate every item stays exactly N(0, I).
    """
    return replace_low_frequencies_(z.clone(), q)


def replace_low_frequencies_(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``replace_low_frequencies`` in place on a contiguous z (returned).

    The two products with the full grid are matrix products on the last axis of z as it lies in memory: the
    coefficient block contracts the last axis first (z read once, no transposed copy), and the update's last
    expansion is accumulated straight into z (addmm_); every other contraction is on the small corner block.
    """
    spatial = tuple(z.shape[2:])
    if not z.is_contiguous():
        return z.copy_(replace_low_frequencies_(z.contiguous(), q))
    m = q.shape[-1]
    corner = torch.stack(torch.unravel_index(low_frequency_order(spatial)[:m], spatial))  # [axes, m]
    sizes = [int(c.max()) + 1 for c in corner]
    mats = [dct_matrix(n)[:k].to(z.dtype) for n, k in zip(spatial, sizes, strict=True)]  # [K_a, n_a]
    lead = z.shape[:2]
    # Coefficients: contract the last spatial axis, move its K to the front of the spatial axes, repeat.
    # (D_n z^T)^T rather than z D_n^T: the same product, but BLAS is markedly faster with the narrow factor first.
    coef = torch.mm(mats[-1], z.view(-1, spatial[-1]).T).T.reshape(*z.shape[:-1], sizes[-1])
    coef = torch.movedim(coef, -1, 2)
    for d in reversed(mats[:-1]):
        coef = torch.movedim(torch.tensordot(coef, d, dims=([-1], [1])), -1, 2)  # ends as [B, C, K_1, .., K_n]
    flat_idx = torch.as_tensor(np.ravel_multi_index(corner.numpy(), sizes))
    block = coef.reshape(*lead, -1)
    delta = torch.zeros_like(block)
    delta[..., flat_idx] = q.to(z.dtype) - block[..., flat_idx]
    delta = delta.reshape(*lead, *sizes)
    # Update: expand every axis but the last on the small block, then z += (..) D_n as one matrix product.
    for ax, d in enumerate(mats[:-1]):
        delta = torch.movedim(torch.tensordot(delta, d, dims=([2 + ax], [0])), -1, 2 + ax)
    z.view(-1, spatial[-1]).addmm_(delta.reshape(-1, sizes[-1]), mats[-1])
    return z


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
    if len(shape) < 3 or shape[0] < 1:
        raise ValueError(f"latent shape must be [B, C, *spatial] with B >= 1, got {shape}")
    check_int(spectral_coefficients, "spectral_coefficients", minimum=1)
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
        rows = [b for b, _ in items]
        if rows == list(range(rows[0], rows[0] + len(rows))):  # contiguous (the usual case): filled in place
            block = out[rows[0] : rows[0] + len(rows)]
            z = replicate_noise(item_shape, seed, r, [p for _, p in items], n, mode, spectral_coefficients,
                                antithetic, stream, out=block)
            if z is not block:
                block.copy_(z)
        else:
            out[rows] = replicate_noise(item_shape, seed, r, [p for _, p in items], n, mode, spectral_coefficients,
                                        antithetic, stream)
    return out


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0
