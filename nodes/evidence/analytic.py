"""Analytic reference model: a Gaussian mixture in latent-image shape with its exact posterior-mean denoiser.

The data distribution is a mixture of K Gaussians over x0 in R^d, d = C*H*W (default 4x16x16 = 1024),

    p(x0) = sum_k pi_k N(x0; mu_k, Sigma_k),    Sigma_k = Q_k diag(lam_k) Q_k^T + s_k^2 I,

with Q_k a d x r matrix of orthonormal columns (smooth, image-like directions) and r << d
("low rank plus isotropic"). Under variance-exploding (VE) noise x = x0 + sigma * n, n ~ N(0, I), every
component stays Gaussian, x | k ~ N(mu_k, Sigma_k + sigma^2 I), so the ideal denoiser (Tweedie / posterior mean)
is exact and cheap:

    D(x, sigma) = E[x0 | x] = sum_k w_k(x) [mu_k + Sigma_k (Sigma_k + sigma^2 I)^{-1} (x - mu_k)],
    w_k(x) = pi_k N(x; mu_k, Sigma_k + sigma^2 I) / sum_j (...)

With the low-rank-plus-isotropic form, Sigma_k (Sigma_k + sigma^2 I)^{-1} acts as the factor
(lam + s^2)/(lam + s^2 + sigma^2) on span(Q_k) and s^2/(s^2 + sigma^2) on its complement, and the Gaussian
log-density needs only r projections; nothing d x d is ever formed. The score is
grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2.

Everything is float64 internally (the responsibilities are soft-maxes of large log-densities) and returned in
the input dtype. No randomness at import: the model's parameters come from a private ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _smooth_basis(n: int, shape: Sequence[int], freqs: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random smooth (low-frequency cosine) images of ``shape`` as an [n, d] float64 matrix."""
    c, h, w = shape
    yy = torch.arange(h, dtype=torch.float64)
    xx = torch.arange(w, dtype=torch.float64)
    out = torch.zeros((n, c, h, w), dtype=torch.float64)
    for fy in range(freqs):
        for fx in range(freqs):
            # 2-D DCT-II basis image for frequency (fy, fx), amplitude decaying with frequency (image-like).
            basis = torch.outer(torch.cos(math.pi * (yy + 0.5) * fy / h), torch.cos(math.pi * (xx + 0.5) * fx / w))
            amp = 1.0 / (1.0 + fy * fy + fx * fx)
            coef = torch.randn((n, c), generator=gen, dtype=torch.float64) * amp
            out += coef[:, :, None, None] * basis
    return out.reshape(n, -1)


class AnalyticGMM:
    """Gaussian mixture with exact VE posterior-mean denoiser (see module docstring).

    Parameters
    ----------
    shape: item shape (C, H, W); d = C*H*W.
    components: number of mixture components K.
    rank: r, the number of smooth principal directions per component.
    seed: seeds the private generator that draws the parameters (means, directions, variances).
    iso_std: s_k, the isotropic standard deviation of every component (pixel noise around the smooth part).
    mean_scale: RMS of the component means (data roughly in [-1, 1] like image latents).

    Attributes: ``shape``, ``dim``, ``weights`` [K], ``means`` [K, d], ``bases`` [K, d, r], ``eigvals`` [K, r],
    ``iso_var`` [K], ``sigma_min``/``sigma_max`` (a sensible sampling range).
    """

    def __init__(
        self,
        shape: Sequence[int] = (4, 16, 16),
        components: int = 6,
        rank: int = 6,
        seed: int = 0,
        iso_std: float = 0.1,
        mean_scale: float = 0.5,
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape must be (C, H, W) with positive entries, got {shape}")
        if components < 1 or rank < 0:
            raise ValueError(f"components must be >= 1 and rank >= 0, got {components}, {rank}")
        self.shape = shape
        self.dim = shape[0] * shape[1] * shape[2]
        if rank >= self.dim:
            raise ValueError(f"rank {rank} must be smaller than the dimension {self.dim}")
        gen = torch.Generator().manual_seed(int(seed))
        k, d = components, self.dim
        w = torch.rand(k, generator=gen, dtype=torch.float64) + 0.5
        self.weights = w / w.sum()
        means = _smooth_basis(k, shape, 4, gen)
        means = means / means.pow(2).mean(dim=1, keepdim=True).sqrt() * mean_scale
        self.means = means
        bases = []
        for _ in range(k):
            raw = _smooth_basis(max(rank, 1), shape, 5, gen).T  # [d, r]
            q, _ = torch.linalg.qr(raw)
            bases.append(q[:, :rank])
        self.bases = torch.stack(bases) if rank > 0 else torch.zeros((k, d, 0), dtype=torch.float64)
        # Principal variances: a few strong directions (in d-dim units, so a direction of RMS 1/sqrt(d) per
        # pixel with variance lam moves each pixel by about sqrt(lam/d)).
        decay = torch.tensor([0.6**j for j in range(rank)], dtype=torch.float64)
        self.eigvals = d * 0.25 * decay * (0.5 + torch.rand((k, rank), generator=gen, dtype=torch.float64))
        self.iso_var = torch.full((k,), float(iso_std) ** 2, dtype=torch.float64)
        self._mu_proj = torch.einsum("kd,kdr->kr", self.means, self.bases)
        self._mu_sq = self.means.pow(2).sum(1)
        self.sigma_min = 0.002
        self.sigma_max = 80.0

    # ------------------------------------------------------------------ helpers
    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape [B, {', '.join(map(str, self.shape))}], got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1).to(torch.float64)

    @staticmethod
    def _sigma(sigma: float | torch.Tensor, b: int) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        if s.numel() == 1:
            s = s.expand(b)
        if s.numel() != b:
            raise ValueError(f"sigma must be a scalar or have one entry per batch item ({b}), got {s.numel()}")
        return s

    def _posterior(self, xf: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Responsibilities [B, K] and per-component posterior means [B, K, d] for flattened x, sigma^2 [B]."""
        b, d = xf.shape
        r = self.bases.shape[2]
        diff = xf[:, None, :] - self.means[None]  # [B, K, d]
        proj = torch.einsum("bkd,kdr->bkr", diff, self.bases)  # coordinates in span(Q_k)
        tot_iso = self.iso_var[None, :] + s2[:, None]  # [B, K]   s^2 + sigma^2
        tot_lam = self.eigvals[None] + tot_iso[:, :, None]  # [B, K, r]
        sq = diff.pow(2).sum(-1)  # [B, K]
        proj_sq = proj.pow(2)
        # Mahalanobis distance under Sigma_k + sigma^2 I, split into span(Q_k) and its complement.
        maha = (proj_sq / tot_lam).sum(-1) + (sq - proj_sq.sum(-1)) / tot_iso
        logdet = torch.log(tot_lam).sum(-1) + (d - r) * torch.log(tot_iso)
        logp = torch.log(self.weights)[None] - 0.5 * (maha + logdet)
        resp = torch.softmax(logp, dim=1)
        # Shrinkage Sigma (Sigma + sigma^2 I)^{-1} applied to diff.
        shrink_iso = (self.iso_var[None, :] / tot_iso)[:, :, None]  # [B, K, 1]
        shrink_lam = (self.eigvals[None] + self.iso_var[None, :, None]) / tot_lam  # [B, K, r]
        inside = torch.einsum("bkr,kdr->bkd", proj * (shrink_lam - shrink_iso), self.bases)
        post = self.means[None] + shrink_iso * diff + inside
        return resp, post

    # ------------------------------------------------------------------ public API
    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Exact E[x0 | x0 + sigma n = x] for x [B, C, H, W]; sigma a float or a [B] tensor. Returns x0-hat.

        Written with matrix products only (no [B, K, d] intermediate), so a batch of thousands costs
        about as much as a few d x (K r) matmuls.
        """
        xf = self._flat(x)
        b, d = xf.shape
        s2 = self._sigma(sigma, b).pow(2)
        k, _, r = self.bases.shape
        qcat = self.bases.permute(1, 0, 2).reshape(d, k * r)  # [d, K r]
        proj = (xf @ qcat).reshape(b, k, r) - self._mu_proj[None]  # Q_k^T (x - mu_k)
        sq = xf.pow(2).sum(1, keepdim=True) - 2 * xf @ self.means.T + self._mu_sq[None]  # |x - mu_k|^2
        tot_iso = self.iso_var[None, :] + s2[:, None]
        tot_lam = self.eigvals[None] + tot_iso[:, :, None]
        proj_sq = proj.pow(2)
        maha = (proj_sq / tot_lam).sum(-1) + (sq - proj_sq.sum(-1)) / tot_iso
        logdet = torch.log(tot_lam).sum(-1) + (d - r) * torch.log(tot_iso)
        resp = torch.softmax(torch.log(self.weights)[None] - 0.5 * (maha + logdet), dim=1)  # [B, K]
        shrink_iso = self.iso_var[None, :] / tot_iso  # [B, K]
        shrink_lam = (self.eigvals[None] + self.iso_var[None, :, None]) / tot_lam  # [B, K, r]
        # sum_k w_k [mu_k + si_k (x - mu_k) + Q_k (sl_k - si_k) proj_k]
        a = (resp * shrink_iso).sum(1, keepdim=True) * xf
        a = a + (resp * (1 - shrink_iso)) @ self.means
        coef = (resp[:, :, None] * (shrink_lam - shrink_iso[:, :, None]) * proj).reshape(b, k * r)
        out = a + coef @ qcat.T
        return out.reshape(x.shape).to(x.dtype)

    __call__ = denoise

    def score(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """grad_x log p_sigma(x) = (D(x, sigma) - x) / sigma^2 (Tweedie)."""
        s = self._sigma(sigma, x.shape[0]).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return (self.denoise(x, sigma) - x) / s.pow(2)

    def responsibilities(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities p(k | x) [B, K] under noise level sigma."""
        xf = self._flat(x)
        resp, _ = self._posterior(xf, self._sigma(sigma, xf.shape[0]).pow(2))
        return resp

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        """Draw ``n`` clean samples x0 [n, C, H, W] (float32) from the mixture with a private generator."""
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        labels = torch.multinomial(self.weights, int(n), replacement=True, generator=gen)
        r = self.bases.shape[2]
        a = torch.randn((n, r), generator=gen, dtype=torch.float64) * self.eigvals[labels].sqrt()
        e = torch.randn((n, self.dim), generator=gen, dtype=torch.float64) * self.iso_var[labels].sqrt()[:, None]
        x0 = self.means[labels] + torch.einsum("nr,ndr->nd", a, self.bases[labels]) + e
        x0 = x0.reshape(n, *self.shape).to(torch.float32)
        return (x0, labels) if return_labels else x0

    def posterior_noise_level(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """RMS per-coordinate posterior std of x0 given x, sqrt(tr Cov[x0 | x] / d), per item [B].

        Cov[x0|x] = sum_k w_k (C_k + m_k m_k^T) - m m^T with C_k = Sigma_k - Sigma_k (Sigma_k + sigma^2)^{-1} Sigma_k.
        """
        xf = self._flat(x)
        s2 = self._sigma(sigma, xf.shape[0]).pow(2)
        resp, post = self._posterior(xf, s2)
        lam = self.eigvals[None]
        iso = self.iso_var[None, :]
        tot_iso = iso + s2[:, None]
        # trace of the per-component posterior covariance: span(Q) part and complement part
        c_lam = (lam + iso[:, :, None]) * s2[:, None, None] / (lam + tot_iso[:, :, None])
        c_iso = iso * s2[:, None] / tot_iso
        r = self.bases.shape[2]
        tr_c = c_lam.sum(-1) + (self.dim - r) * c_iso  # [B, K]
        mean = torch.einsum("bk,bkd->bd", resp, post)
        spread = (resp * (post - mean[:, None]).pow(2).sum(-1)).sum(-1)
        return ((resp * tr_c).sum(-1) + spread).div(self.dim).sqrt().to(torch.float32)

    def sigmas(self, n: int) -> torch.Tensor:
        """The model's own schedule: ``n`` log-uniform (geometric) levels sigma_max..sigma_min, then 0."""
        s = torch.exp(torch.linspace(math.log(self.sigma_max), math.log(self.sigma_min), int(n), dtype=torch.float64))
        return torch.cat([s, s.new_zeros(1)]).to(torch.float32)
