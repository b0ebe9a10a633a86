"""Pair diversity of an image batch: Pearson correlation (standard and centered), 1 - SSIM, RMSE, CLIP cosine distance
and the Vendi score.

Jia et al., "Antithetic Noise in Diffusion Models" (arXiv 2506.06185, ICLR 2026), Table 1 (standard and centered
Pearson correlation of PN vs RR pairs) and Table 4 (pairwise SSIM, lower = more diverse).

Definitions (x, y: one pair of images flattened over H, W, C):

* correlation            r(x, y) = cov(x, y) / (sd(x) sd(y))                           (Pearson, all pixels)
* centered correlation   r(x - c, y - c), c = the batch mean image (or the reference batch's mean when given).
  The paper centres on a population mean estimated from many samples. Centering on the *same* small batch biases
  it downwards: for N independent images the expectation is about -1/(N-1), and for a batch of one pair it is
  exactly -1 whatever the images, so give a reference batch (independent noise) for a fair centre.
* SSIM (Wang et al. 2004): Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, population
  (co)variances, mean over the valid region (no padding) -- on BT.601 luminance by default or per channel averaged.
* RMSE                   sqrt(mean((x - y)^2))
* CLIP distance          1 - cos(e_x, e_y) of CLIP-vision image embeddings
* Vendi score (Friedman & Dieng 2023)  exp(-Σ λ_i log λ_i), λ = eigenvalues of K / n, K_ij = cos(f_i, f_j):
  the "effective number of distinct images" (1 for identical images, n for n orthogonal features).

All pairwise correlations and RMSEs come from one float64 Gram matrix of the batch, accumulated over chunks of pixels;
SSIM runs over blocks of images; both bound the memory to ``memory_budget_mb`` on the chosen device and give the same
numbers on CPU and GPU (the Gaussian filter is plain multiply-adds, no TF32 convolution). Pure torch/numpy: no ComfyUI.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .validation import check_finite, check_int, check_unit_range

__all__ = [
    "PAIRINGS",
    "PairDiversity",
    "batch_mean_image",
    "clip_image_embeddings",
    "cosine_similarity_matrix",
    "gaussian_window",
    "luminance",
    "pair_diversity",
    "pair_indices",
    "relative_change",
    "ssim",
    "validate_images",
    "validate_reference",
    "vendi_score",
]

PAIRINGS = ("interleaved", "halves", "groups of K", "all pairs")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


# ---------------------------------------------------------------- input checks and pairing


def validate_images(images, name: str = "images") -> torch.Tensor:
    """Check an IMAGE batch [N, H, W, C] (torch, float, finite) and return it as a float tensor (no copy if float32)."""
    if not isinstance(images, torch.Tensor):
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        else:
            raise ValueError(f"{name}: expected an IMAGE tensor [N, H, W, C], got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name}: expected an IMAGE batch [N, H, W, C], got shape {tuple(images.shape)}")
    if images.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 images to measure diversity, got a batch of {images.shape[0]}")
    if images.shape[1] < 1 or images.shape[2] < 1 or images.shape[3] < 1:
        raise ValueError(f"{name}: empty image of shape {tuple(images.shape)}")
    if not images.is_floating_point():
        images = images.float()
    bad = _count_nonfinite(images)
    if bad:
        raise ValueError(f"{name}: contains {bad} NaN/inf pixel value(s); fix the upstream node (e.g. a VAE in fp16)")
    check_unit_range(images, name)
    return images


def _count_nonfinite(x: torch.Tensor, chunk: int = 4) -> int:
    bad = 0
    for i in range(0, x.shape[0], chunk):
        bad += int((~torch.isfinite(x[i : i + chunk])).sum())
    return bad


def pair_indices(n: int, pairing: str = "interleaved", group_size: int = 2, name: str = "images") -> np.ndarray:
    """Index pairs [P, 2] (i < j) for a batch of n images.

    * ``interleaved`` (matches Antithetic Latent Noise, interleaved layout): (0,1), (2,3), ...
    * ``halves``: (i, i + n/2) for the batch [z1..zK, -z1..-zK]
    * ``groups of K``: every pair inside each group of K consecutive images (group = i // K), K(K-1)/2 per group
    * ``all pairs``: every i < j (n(n-1)/2 pairs)
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"{name}: need at least 2 images to measure diversity, got a batch of {n}")
    key = str(pairing).strip().lower()
    if key == "interleaved" or key == "halves":
        if n % 2:
            raise ValueError(f"{name}: pairing '{key}' needs an even batch, got {n} images (use 'all pairs')")
        if key == "interleaved":
            i = np.arange(0, n, 2)
            return np.stack([i, i + 1], 1)
        i = np.arange(n // 2)
        return np.stack([i, i + n // 2], 1)
    if key in ("groups of k", "groups"):
        k = int(group_size)
        if k != group_size or k < 2:
            raise ValueError(f"group_size: K must be an integer >= 2, got {group_size!r}")
        if n % k:
            raise ValueError(f"{name}: a batch of {n} images is not divisible into groups of K={k} (group_size)")
        iu, ju = np.triu_indices(k, 1)
        base = np.arange(0, n, k)[:, None]
        return np.stack([(base + iu).reshape(-1), (base + ju).reshape(-1)], 1)
    if key == "all pairs":
        iu, ju = np.triu_indices(n, 1)
        return np.stack([iu, ju], 1)
    raise ValueError(f"pairing: unknown pairing {pairing!r}; expected one of {', '.join(PAIRINGS)}")


def validate_reference(images: torch.Tensor, reference, pairing: str, group_size: int) -> torch.Tensor:
    """Check the optional reference batch: a valid IMAGE batch, same H, W, C as ``images``, pairable the same way."""
    reference = validate_images(reference, "reference")
    if tuple(reference.shape[1:]) != tuple(images.shape[1:]):
        raise ValueError(
            f"reference: images are {tuple(images.shape[1:])} (H, W, C) but reference is {tuple(reference.shape[1:])}; "
            "resize one of them (e.g. ImageScale) to the same size"
        )
    pair_indices(reference.shape[0], pairing, group_size, "reference")
    return reference


def clip_image_embeddings(
    clip_vision, images: torch.Tensor, name: str = "images", batch: int = 16,
    check_interrupt: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Image embeddings [N, E] (float32, CPU) from a core CLIP_VISION object (duck-typed: ``encode_image(image)``
    returning an object with an ``image_embeds`` tensor, as ComfyUI's ``comfy.clip_vision.ClipVisionModel``)."""
    encode = getattr(clip_vision, "encode_image", None)
    if not callable(encode):
        raise ValueError(
            "clip_vision: expected a CLIP_VISION model from 'Load CLIP Vision' (an object with encode_image), got "
            f"{type(clip_vision).__name__}"
        )
    out = []
    for s in range(0, images.shape[0], batch):
        if check_interrupt is not None:
            check_interrupt()
        enc = encode(images[s : s + batch])
        emb = getattr(enc, "image_embeds", None)
        if emb is None and isinstance(enc, dict):
            emb = enc.get("image_embeds")
        if not isinstance(emb, torch.Tensor) or emb.ndim < 2:
            raise ValueError(
                f"clip_vision: encode_image gave no image_embeds tensor [B, E] for {name} (got {type(emb).__name__}); "
                "is this a CLIP vision model?"
            )
        out.append(emb.detach().float().cpu().reshape(emb.shape[0], -1))
    emb = torch.cat(out, 0)
    if emb.shape[0] != images.shape[0]:
        raise ValueError(f"clip_vision: got {emb.shape[0]} embeddings for {images.shape[0]} {name}")
    return emb


# ---------------------------------------------------------------- SSIM


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (float64), centre at size // 2."""
    check_int(size, "size", minimum=1)
    check_finite(sigma, "sigma", minimum=1e-6)
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable Gaussian filter over the last two dims, 'valid' region only (no padding).

    Plain shifted multiply-adds: on CPU this is several times faster than a depthwise conv2d with one thread, and on
    CUDA it avoids TF32 convolutions, so CPU and GPU give the same numbers to float32 rounding.
    """
    w = len(taps)
    ow = x.shape[-1] - w + 1
    y = x[..., 0:ow] * taps[0]
    for t in range(1, w):
        y.add_(x[..., t : t + ow], alpha=taps[t])
    oh = x.shape[-2] - w + 1
    z = y[..., 0:oh, :] * taps[0]
    for t in range(1, w):
        z.add_(y[..., t : t + oh, :], alpha=taps[t])
    return z


def _ssim_window(h: int, w: int, window: int) -> int:
    win = min(window, h, w)
    if win % 2 == 0:
        win -= 1
    if win < 3:
        raise ValueError(f"images: SSIM needs images of at least 3x3 pixels, got {h}x{w}")
    return win


def _ssim_from_stats(mu_a, mu_b, sq_a, sq_b, ab, c1, c2) -> torch.Tensor:
    """Mean SSIM over spatial dims and channels of [B, L, h, w] filtered moments -> [B]."""
    mu_ab = mu_a * mu_b
    mu_a2 = mu_a * mu_a
    mu_b2 = mu_b * mu_b
    num = (2 * mu_ab + c1) * (2 * (ab - mu_ab) + c2)
    den = (mu_a2 + mu_b2 + c1) * ((sq_a - mu_a2) + (sq_b - mu_b2) + c2)
    return (num / den).mean(dim=(1, 2, 3))


def luminance(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of [N, H, W, C] -> [N, 1, H, W] (the single channel itself when C < 3)."""
    if images.shape[-1] >= 3:
        y = images[..., 0] * LUMA[0] + images[..., 1] * LUMA[1] + images[..., 2] * LUMA[2]
    else:
        y = images[..., 0]
    return y.unsqueeze(1)


def _planes(images: torch.Tensor, channels: str) -> torch.Tensor:
    """[N, H, W, C] -> [N, L, H, W] float32 planes SSIM is computed on."""
    if channels == "luminance":
        return luminance(images.float())
    if channels == "per-channel":
        return images.float().permute(0, 3, 1, 2)
    raise ValueError(f"ssim_channels: expected 'luminance' or 'per-channel', got {channels!r}")


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    channels: str = "luminance",
    window: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> torch.Tensor:
    """SSIM of image pairs x[b], y[b] ([B, H, W, C] each, float 0..data_range) -> float64 tensor [B].

    Wang et al. 2004 with a Gaussian window (size 11, sigma 1.5), K1 = 0.01, K2 = 0.03, population (co)variances,
    averaged over the valid region and (for ``channels='per-channel'``) over channels.
    """
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    win = _ssim_window(x.shape[1], x.shape[2], window)
    taps = gaussian_window(win, sigma).tolist()
    a, b = _planes(x, channels), _planes(y, channels)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = _ssim_from_stats(
        _filter_valid(a, taps), _filter_valid(b, taps), _filter_valid(a * a, taps), _filter_valid(b * b, taps),
        _filter_valid(a * b, taps), c1, c2,
    )
    return out.double()


def _ssim_for_pairs(
    planes_of: Callable[[np.ndarray], torch.Tensor],
    pairs: np.ndarray,
    per_image_bytes: int,
    budget: int,
    taps: list[float],
    tick: Callable[[int], None],
) -> np.ndarray:
    """SSIM for many pairs in blocks of images: moments of each image block are filtered once per block pair."""
    n_pairs = len(pairs)
    out = np.empty(n_pairs, dtype=np.float64)
    # a block-pair holds up to 2b images x 3 tensors (planes, mu, E[x^2]); cross terms use 4 tensors per pair
    b = max(1, int(budget // (per_image_bytes * 6 * 2)))
    chunk = max(1, int(budget // (per_image_bytes * 4 * 2)))
    blk = pairs // b
    order = np.lexsort((pairs[:, 1], pairs[:, 0], blk[:, 1], blk[:, 0]))
    keys = blk[order]
    start = 0
    c1, c2 = 0.01**2, 0.03**2
    while start < n_pairs:
        stop = start
        while stop < n_pairs and keys[stop, 0] == keys[start, 0] and keys[stop, 1] == keys[start, 1]:
            stop += 1
        sel = order[start:stop]
        imgs = np.unique(pairs[sel].reshape(-1))
        planes = planes_of(imgs)
        mu = _filter_valid(planes, taps)
        sq = _filter_valid(planes * planes, taps)
        pos = {int(v): k for k, v in enumerate(imgs)}
        for s in range(0, len(sel), chunk):
            part = sel[s : s + chunk]
            ia = torch.tensor([pos[int(v)] for v in pairs[part, 0]], device=planes.device)
            ib = torch.tensor([pos[int(v)] for v in pairs[part, 1]], device=planes.device)
            ab = _filter_valid(planes[ia] * planes[ib], taps)
            val = _ssim_from_stats(mu[ia], mu[ib], sq[ia], sq[ib], ab, c1, c2)
            out[part] = val.double().cpu().numpy()
            tick(len(part))
        del planes, mu, sq
        start = stop
    return out


# ---------------------------------------------------------------- Gram-matrix metrics


def _gram(
    images: torch.Tensor, center: torch.Tensor | None, device: torch.device, budget: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """float64 Gram matrix and row sums of [x_1..x_N, c] (c = centre image, batch mean when None), chunked over pixels."""
    n = images.shape[0]
    flat = images.reshape(n, -1)
    cflat = center.reshape(1, -1) if center is not None else None
    d = flat.shape[1]
    step = max(1024, int(budget // ((n + 1) * 8 * 3)))
    gram = torch.zeros(n + 1, n + 1, dtype=torch.float64, device=device)
    sums = torch.zeros(n + 1, dtype=torch.float64, device=device)
    for s in range(0, d, step):
        block = flat[:, s : s + step].to(device=device, dtype=torch.float64)
        c = cflat[:, s : s + step].to(device=device, dtype=torch.float64) if cflat is not None else block.mean(0, keepdim=True)
        m = torch.cat([block, c], 0)
        gram += m @ m.T
        sums += m.sum(1)
    return gram.cpu().numpy(), sums.cpu().numpy(), d


def _corr_from_gram(g: np.ndarray, s: np.ndarray, d: int) -> np.ndarray:
    cov = g - np.outer(s, s) / d
    var = np.diag(cov).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(np.outer(var, var))
    r[~np.isfinite(r)] = np.nan  # constant image: correlation undefined
    return np.clip(r, -1.0, 1.0)


def cosine_similarity_matrix(features: torch.Tensor | np.ndarray) -> np.ndarray:
    """K_ij = cos(f_i, f_j) in float64 for features [N, D]; a zero vector is similar only to itself."""
    shape = tuple(features.shape) if hasattr(features, "shape") else np.shape(features)
    if len(shape) < 2 or shape[0] < 1 or int(np.prod(shape[1:])) < 1:
        raise ValueError(f"features must be [N, D] with N >= 1 items and D >= 1 values, got shape {shape}")
    f = torch.as_tensor(features).reshape(len(features), -1).double()
    norms = f.norm(dim=1)
    fn = f / norms.clamp_min(1e-300)[:, None]
    k = (fn @ fn.T).cpu().numpy()
    np.fill_diagonal(k, 1.0)
    return np.clip(k, -1.0, 1.0)


def vendi_score(features: torch.Tensor | np.ndarray | None = None, kernel: np.ndarray | None = None) -> float:
    """Vendi score exp(-Σ λ log λ), λ = eigenvalues of K/n, K = cosine-similarity kernel of ``features`` [N, D]
    (or a given PSD kernel with unit diagonal). 1 = all identical, n = all orthogonal."""
    if kernel is None:
        if features is None:
            raise ValueError("vendi_score: give features or kernel")
        shape = tuple(features.shape) if hasattr(features, "shape") else np.shape(features)
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"vendi_score: features must be [N, D] with N >= 1 items and D >= 1 values, got shape "
                             f"{shape}")
        kernel = cosine_similarity_matrix(features)
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] < 1 or k.shape[0] != k.shape[1]:
        raise ValueError(f"vendi_score: kernel must be a square [N, N] matrix with N >= 1, got shape {k.shape}")
    lam = np.linalg.eigvalsh(k / k.shape[0])
    lam = lam[lam > 1e-15]
    return float(np.exp(-np.sum(lam * np.log(lam))))


def _downsampled(images: torch.Tensor, device: torch.device, size: int, budget: int) -> torch.Tensor:
    """Area-downsample [N, H, W, C] to at most size x size -> features [N, size*size*C] (float64, CPU)."""
    n, h, w, c = images.shape
    oh, ow = min(h, size), min(w, size)
    per = h * w * c * 4 * 2
    step = max(1, int(budget // per))
    out = []
    for s in range(0, n, step):
        x = images[s : s + step].to(device=device, dtype=torch.float32).permute(0, 3, 1, 2)
        out.append(torch.nn.functional.adaptive_avg_pool2d(x, (oh, ow)).reshape(x.shape[0], -1).double().cpu())
    return torch.cat(out, 0)


# ---------------------------------------------------------------- the whole report


@dataclass
class PairDiversity:
    """Per-pair metrics of one batch and the batch-level Vendi score. Arrays are numpy, one entry per pair."""

    pairing: str
    group_size: int
    n_images: int
    pairs: np.ndarray  # [P, 2]
    correlation: np.ndarray
    centered_correlation: np.ndarray
    ssim: np.ndarray
    rmse: np.ndarray
    clip_distance: np.ndarray | None
    similarity_matrix: np.ndarray  # [N, N] Pearson correlation of every pair of images
    centered_matrix: np.ndarray  # [N, N] centered correlation
    vendi: float
    vendi_features: str  # "CLIP embeddings" or "pixels HxW"
    center: str  # "batch mean" or "reference mean"
    ssim_window: int
    ssim_channels: str
    notes: list[str] = field(default_factory=list)

    @property
    def one_minus_ssim(self) -> np.ndarray:
        return 1.0 - self.ssim

    def headline(self) -> dict[str, float]:
        """Mean over pairs of each metric (NaN-pairs skipped) plus the Vendi score."""

        def m(a):
            a = np.asarray(a, dtype=np.float64)
            return float(np.nanmean(a)) if a.size and np.isfinite(a).any() else float("nan")

        out = {
            "correlation": m(self.correlation),
            "centered_correlation": m(self.centered_correlation),
            "one_minus_ssim": m(self.one_minus_ssim),
            "rmse": m(self.rmse),
            "vendi": float(self.vendi),
        }
        if self.clip_distance is not None:
            out["clip_distance"] = m(self.clip_distance)
        return out


def relative_change(value: float, reference: float) -> float:
    """(value - reference) / |reference|; NaN when the reference is 0 or not finite."""
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return float("nan")
    return (value - reference) / abs(reference)


def pair_diversity(
    images: torch.Tensor,
    pairing: str = "interleaved",
    group_size: int = 2,
    *,
    center: torch.Tensor | None = None,
    embeddings: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    ssim_channels: str = "luminance",
    memory_budget_mb: float = 256.0,
    vendi_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    name: str = "images",
) -> PairDiversity:
    """All diversity metrics of an IMAGE batch [N, H, W, C] (float 0..1) for the chosen pairing.

    center: optional image [H, W, C] for the centered correlation (the reference batch's mean); default the batch mean.
    embeddings: optional CLIP-vision image embeddings [N, E]: adds the per-pair cosine distance and moves the Vendi
    score onto them (else Vendi uses pixels area-downsampled to ``vendi_size``).
    device: where the heavy work runs (chunks are moved there; results come back to CPU).
    progress: called as progress(done_pairs, total_pairs) after each SSIM chunk; may raise to interrupt.
    """
    images = validate_images(images, name)
    n, h, w, c = images.shape
    pairs = pair_indices(n, pairing, group_size, name)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    budget = int(max(0.01, float(memory_budget_mb)) * 2**20)
    notes: list[str] = []
    if center is not None:
        center = torch.as_tensor(center)
        if tuple(center.shape) != (h, w, c):
            raise ValueError(f"reference: mean image is {tuple(center.shape)} but {name} are {(h, w, c)}")

    emb = None
    if embeddings is not None:
        emb = torch.as_tensor(embeddings).detach().reshape(len(embeddings), -1).double().cpu()
        if emb.shape[0] != n:
            raise ValueError(f"clip_vision: got {emb.shape[0]} embeddings for {n} images")
        if not torch.isfinite(emb).all():
            raise ValueError("clip_vision: the image embeddings contain NaN/inf")

    # 1) Pearson (standard, centered) and RMSE from one Gram matrix of [x_1..x_N, c]
    g, s, d = _gram(images, center, dev, budget)
    corr_all = _corr_from_gram(g[:n, :n], s[:n], d)
    gc = g[:n, :n] - g[:n, n][:, None] - g[n, :n][None, :] + g[n, n]
    sc = s[:n] - s[n]
    cent_all = _corr_from_gram(gc, sc, d)
    diag = np.diag(g)[:n]
    sqdist = np.maximum(diag[:, None] + diag[None, :] - 2 * g[:n, :n], 0.0)
    i, j = pairs[:, 0], pairs[:, 1]
    corr = corr_all[i, j]
    cent = cent_all[i, j]
    rmse = np.sqrt(sqdist[i, j] / d)
    if np.isnan(corr).any():
        notes.append(f"{int(np.isnan(corr).sum())} pair(s) contain a constant image: correlation undefined (skipped)")

    # 2) SSIM in blocks
    win = _ssim_window(h, w, 11)
    if win != 11:
        notes.append(f"images are {h}x{w}: SSIM window shrunk from 11 to {win}")
    taps = gaussian_window(win, 1.5).tolist()
    lanes = 1 if ssim_channels == "luminance" else c
    _planes(images[:1], ssim_channels)  # validates ssim_channels

    def planes_of(idx: np.ndarray) -> torch.Tensor:
        sel = images[torch.as_tensor(idx, dtype=torch.long)]
        return _planes(sel.to(dev), ssim_channels)

    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress is not None:
            progress(done[0], len(pairs))

    ssim_vals = _ssim_for_pairs(planes_of, pairs, lanes * h * w * 4, budget, taps, tick)

    # 3) CLIP distance and Vendi
    clip_dist = None
    if emb is not None:
        kern = cosine_similarity_matrix(emb)
        clip_dist = 1.0 - kern[i, j]
        vendi, vf = vendi_score(kernel=kern), "CLIP embeddings"
    else:
        feats = _downsampled(images, dev, vendi_size, budget)
        vendi = vendi_score(feats)
        vf = f"pixels {min(h, vendi_size)}x{min(w, vendi_size)}"

    return PairDiversity(
        pairing=str(pairing).strip().lower(), group_size=int(group_size), n_images=n, pairs=pairs,
        correlation=corr, centered_correlation=cent, ssim=ssim_vals, rmse=rmse, clip_distance=clip_dist,
        similarity_matrix=corr_all, centered_matrix=cent_all, vendi=vendi, vendi_features=vf,
        center="reference mean" if center is not None else "batch mean", ssim_window=win,
        ssim_channels=ssim_channels, notes=notes,
    )


def batch_mean_image(images: torch.Tensor) -> torch.Tensor:
    """Mean image [H, W, C] in float64 accumulation (no float64 copy of the batch)."""
    return images.sum(0, dtype=torch.float64) / images.shape[0]
