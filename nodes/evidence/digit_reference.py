"""Distances of a batch of generated digits to real ones (the guidance benches' quality measure).

Fréchet distance between Gaussian fits (Heusel et al., NeurIPS 2017, on flattened pixels instead of Inception
features), unbiased MMD² (Gretton et al., JMLR 2012) and the residue outside the real digits' principal subspace.
Pure torch: no ComfyUI, no sampler.
"""

from __future__ import annotations

import torch


class DigitReference:
    """Distances of sample batches to the training digits (images clamped to [-1, 1], flattened pixels).

    * ``fd``: Frechet distance between Gaussian fits, |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2)
      (symmetric PSD square roots via eigh, float64).
    * ``mmd2``: unbiased MMD^2 (Gretton et al. 2012) with k(a, b) = exp(-|a - b|^2 / (2 h^2)), h = the median
      pairwise distance of the training digits (fixed, so every batch is measured with the same kernel).
    * ``off_rms``: RMS per pixel of the part of each image outside the span of the training digits' top
      principal components that carry 99.9 % of their variance (digit-free residue such as leftover noise).
    """

    def __init__(self, train: torch.Tensor, held_out: torch.Tensor | None = None) -> None:
        self.train = self._flat(train)
        self.held_out = self._flat(held_out) if held_out is not None else None
        self.mu = self.train.mean(0)
        self.cov = torch.cov(self.train.T)
        evals, evecs = torch.linalg.eigh(self.cov)
        self._cov_sqrt = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
        order = torch.argsort(evals, descending=True)
        cum = torch.cumsum(evals[order].clamp_min(0), 0) / evals.clamp_min(0).sum()
        k = int(torch.searchsorted(cum, torch.tensor(0.999, dtype=cum.dtype))) + 1
        self.subspace_rank = k
        self._basis = evecs[:, order[:k]]
        d = torch.cdist(self.train, self.train)
        iu = torch.triu_indices(d.shape[0], d.shape[0], 1)
        self.bandwidth = float(d[iu[0], iu[1]].median())
        self._k_train = self._kernel_mean_offdiag(self.train)

    @staticmethod
    def _flat(x: torch.Tensor) -> torch.Tensor:
        return x.clamp(-1, 1).reshape(x.shape[0], -1).to(torch.float64)

    def _k(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * self.bandwidth**2))

    def _kernel_mean_offdiag(self, a: torch.Tensor) -> float:
        k = self._k(a, a)
        n = a.shape[0]
        return float((k.sum() - k.diagonal().sum()) / (n * (n - 1)))

    def fd(self, x: torch.Tensor, flat: bool = False) -> float:
        f = x if flat else self._flat(x)
        mu, cov = f.mean(0), torch.cov(f.T)
        m = self._cov_sqrt @ cov @ self._cov_sqrt
        tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
        return float((mu - self.mu).pow(2).sum() + torch.trace(cov) + torch.trace(self.cov) - 2 * tr_sqrt)

    def mmd2(self, x: torch.Tensor, flat: bool = False) -> float:
        f = x if flat else self._flat(x)
        return self._kernel_mean_offdiag(f) + self._k_train - 2 * float(self._k(f, self.train).mean())

    def off_rms(self, x: torch.Tensor, flat: bool = False) -> float:
        f = (x if flat else self._flat(x)) - self.mu
        resid = f - (f @ self._basis) @ self._basis.T
        return float(resid.pow(2).mean().sqrt())

    def measure(self, x: torch.Tensor) -> dict:
        f = self._flat(x)
        return {"fd": self.fd(f, True), "mmd2": self.mmd2(f, True), "off_rms": self.off_rms(f, True)}


def load_reference() -> tuple[DigitReference, torch.Tensor]:
    """(reference built on the training split, held-out real digits); needs scikit-learn."""
    from .train import load_digit_images, split

    train, held_out = split(load_digit_images())
    return DigitReference(train, held_out), held_out
