"""One sampling harness for the embedded models (no ComfyUI): schedules, samplers, hooks.

Conventions (the same as k-diffusion / ComfyUI's ``KSampler`` internals):

* **Denoiser protocol.** ``denoiser(x, sigma) -> x0_hat`` in variance-exploding (VE) coordinates: the noisy
  state is ``x = x0 + sigma * n``, ``x`` has shape [B, *item_shape] and ``sigma`` is a float tensor of shape
  [B] (one level per item; the harness always passes a [B] tensor). Both ``AnalyticGMM.denoise`` and the
  learned ``DigitsDenoiser`` follow it. The score is ``(x0_hat - x) / sigma**2``.
* **Schedules** return ``n + 1`` levels, decreasing, with a final 0: :func:`karras_sigmas` (Karras et al. 2022,
  rho = 7) and :func:`model_sigmas` (the model's own: ``model.sigmas(n)`` when it has one, e.g. the training
  range of the learned model, else log-uniform).
* **Initial state** is ``x = noise * sigmas[0]`` (``noise`` ~ N(0, I) per item, from whichever noise design).
* **Samplers** (:data:`SAMPLERS`): ``euler``, ``ddim``, ``dpmpp_2m`` (deterministic) and ``euler_ancestral``.
  ``ddim`` is deterministic DDIM (eta = 0) written in VE coordinates: ``x_next = x0_hat + sigma_next *
  (x - x0_hat) / sigma``; that is algebraically the same update as Euler on the probability-flow ODE
  (DDIM == Euler in VE coordinates, Karras et al. 2022 / Song et al. 2021), so both give the same trajectory up
  to rounding. ``euler_ancestral`` (eta = 1) takes ``noise_sampler(sigma, sigma_next) -> [B, *item_shape]``;
  the default draws iid N(0, I) from a private generator seeded by ``seed``. Pass
  ``nodes.methods.step_noise.MirroredStepNoise(x, seed, k=2)`` to mirror the per-step noise inside each
  antithetic group (Jia et al. §6.3: pairs stay anti-correlated under stochastic samplers only then).

Hooks
-----
* ``guide(denoiser, x, sigma, step_index) -> x0_hat``: replaces the plain ``denoiser(x, sigma)`` call at every
  model evaluation (``sigma`` is the [B] tensor, ``step_index`` the index i of ``sigmas[i]``). ``None`` means the
  plain denoiser. This is where a training-free guidance (e.g. Noise Awareness Guidance) plugs in: it may call
  ``denoiser`` as often as it likes, at any sigma, and returns the guided x0 estimate. DPM++ 2M calls it once
  per step, like the others.
* ``callback(step_index, x, sigma, denoised)``: called after every model evaluation with the current state
  ``x`` (before the update), the [B] sigma and the (guided) ``denoised``; for probes (trajectory
  correlations, noise-shift curves). Return value ignored.

Everything is deterministic given its inputs; no global RNG is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Guide = Callable[[Denoiser, torch.Tensor, torch.Tensor, int], torch.Tensor]
Callback = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SAMPLERS = ("euler", "ddim", "dpmpp_2m", "euler_ancestral")
SCHEDULES = ("karras", "model")


# --------------------------------------------------------------------------- schedules
def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) eq. 5: sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, then 0."""
    if n < 1:
        raise ValueError(f"steps must be >= 1, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    s = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([s, s.new_zeros(1)]).to(torch.float32)


def model_sigmas(model, n: int) -> torch.Tensor:
    """The model's own schedule (``model.sigmas(n)``) or, without one, log-uniform over its sigma range."""
    if hasattr(model, "sigmas"):
        return torch.as_tensor(model.sigmas(n), dtype=torch.float32)
    s = torch.exp(torch.linspace(math.log(model.sigma_max), math.log(model.sigma_min), n, dtype=torch.float64))
    return torch.cat([s, s.new_zeros(1)]).to(torch.float32)


def get_sigmas(model, n: int, schedule: str = "karras") -> torch.Tensor:
    """``schedule`` = "karras" (over the model's [sigma_min, sigma_max]) or "model" (its own)."""
    if schedule == "karras":
        return karras_sigmas(n, float(model.sigma_min), float(model.sigma_max))
    if schedule == "model":
        return model_sigmas(model, n)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


# --------------------------------------------------------------------------- helpers
def iid_noise_sampler(like: torch.Tensor, seed: int) -> NoiseSampler:
    """Default ancestral noise: iid N(0, I) of ``like``'s shape from a private generator."""
    gen = torch.Generator().manual_seed(int(seed))

    def sampler(sigma, sigma_next):
        return torch.randn(like.shape, generator=gen, dtype=like.dtype)

    return sampler


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(sigma_down, sigma_up) of k-diffusion's ``get_ancestral_step``."""
    if sigma_next == 0:
        return 0.0, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - up**2), up


def _to_d(x, sigma, denoised):
    return (x - denoised) / sigma


# --------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    sampler: str = "euler",
    guide: Guide | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    seed: int = 0,
    eta: float = 1.0,
) -> torch.Tensor:
    """Run ``sampler`` from ``x = noise * sigmas[0]`` down the schedule ``sigmas`` (n + 1 levels, last 0).

    ``noise`` is the initial N(0, I) noise [B, *item_shape] (the design under test). ``seed`` seeds the default
    ancestral noise sampler only. Returns the final x0 batch (same dtype as ``noise``).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    sig = [float(s) for s in torch.as_tensor(sigmas).reshape(-1)]
    if len(sig) < 2:
        raise ValueError("sigmas needs at least two levels (e.g. [sigma_max, 0])")
    x = noise * sig[0]
    b = x.shape[0]
    if sampler == "euler_ancestral" and noise_sampler is None:
        noise_sampler = iid_noise_sampler(x, seed)

    def evaluate(i: int, xi: torch.Tensor) -> torch.Tensor:
        s = torch.full((b,), sig[i], dtype=xi.dtype)
        den = guide(denoiser, xi, s, i) if guide is not None else denoiser(xi, s)
        if callback is not None:
            callback(i, xi, s, den)
        return den

    old_denoised = None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = evaluate(i, x)
        if sampler == "euler":
            x = x + _to_d(x, s, denoised) * (s_next - s)
        elif sampler == "ddim":
            # DDIM (eta = 0) in VE coordinates: keep the predicted noise direction, rescale to the next level.
            x = denoised + (s_next / s) * (x - denoised)
        elif sampler == "euler_ancestral":
            s_down, s_up = ancestral_step(s, s_next, eta)
            x = x + _to_d(x, s, denoised) * (s_down - s)
            if s_next > 0:
                x = x + noise_sampler(torch.tensor(s), torch.tensor(s_next)).to(x.dtype) * s_up
        else:  # dpmpp_2m (Lu et al. 2022, k-diffusion's sample_dpmpp_2m)
            if s_next == 0:
                x = denoised
            else:
                t, t_next = -math.log(s), -math.log(s_next)
                h = t_next - t
                if old_denoised is None or i == 0:
                    d_eff = denoised
                else:
                    h_last = t - (-math.log(sig[i - 1]))
                    r = h_last / h
                    d_eff = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
                x = (s_next / s) * x - math.expm1(-h) * d_eff
            old_denoised = denoised
    return x


def generate(
    model,
    noise: torch.Tensor,
    steps: int = 10,
    sampler: str = "euler",
    schedule: str = "karras",
    chunk: int = 0,
    **kwargs,
) -> torch.Tensor:
    """Convenience: ``sample(model.denoise, noise, get_sigmas(model, steps, schedule), sampler, **kwargs)``.

    ``chunk`` > 0 splits the batch into chunks of that many items (deterministic samplers only; memory/speed),
    which gives the same result as one batch for per-item denoisers.
    """
    sigmas = get_sigmas(model, steps, schedule)
    den = model.denoise
    if chunk and noise.shape[0] > chunk and sampler != "euler_ancestral" and "callback" not in kwargs:
        parts = [sample(den, noise[i : i + chunk], sigmas, sampler, **kwargs) for i in range(0, noise.shape[0], chunk)]
        return torch.cat(parts)
    return sample(den, noise, sigmas, sampler, **kwargs)
