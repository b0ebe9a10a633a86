"""Noise Awareness Guidance (Zhong et al., arXiv 2510.12497, ICLR 2026): the paper's classifier-free and classifier
forms and a training-free approximation, one formula in VE coordinates (equation 2 below).

Unrelated to *Normalized Attention Guidance* (also abbreviated "NAG"); this is the noise-level guidance of
"Mitigating the Noise Shift for Denoising Generative Models via Noise Awareness Guidance".

The paper guides along the noise-level condition with a noise-*unconditional* branch s(x) that a checkpoint only
has after training with noise-condition dropout:

    s_nag(x | t) = s(x | t) + w * [ s(x | t) - s(x) ].

Both paper forms are here for models that support them (``classifier_free_guidance`` needs that branch,
``classifier_guidance`` a trained noise-level regressor g; the embedded digits model has both). For ordinary
checkpoints this module offers a **training-free approximation**. A noise-unconditional score is exactly
the posterior-weighted mixture of noise-conditional scores, s(x) = E_{tau ~ p(tau|x)} s(x | tau); in high
dimension p(tau|x) concentrates at the level the state actually carries, s_hat, so s(x) ~= s(x | s_hat). With
scores written through x0-estimates in variance-exploding (VE) coordinates, s(x_v | s) = (D - x_v) / s^2:

    D~ = D_cfg + w * [ (D_c - x_v) - (s_v / s_hat)^2 * (D_hat_c - x_v) ]                                (1)

D_c: conditional x0-estimate at the nominal level s_v, D_hat_c: conditional x0-estimate at s_hat, D_cfg: the
ordinary CFG result. w = 0 or s_hat = s_v give plain CFG. Guards (required; docs/guidance.md, "Guards", says
why): one-sided clamp s_hat in [s_v, s_v (1 + max_shift)] (the two-sided form oscillates and
diverges for w >~ 1 because (s_v/s_hat)^2 explodes when s_hat << s_v), a sigma band, moderate w.

VE coordinates: every ComfyUI parameterisation builds a state as x = a(sigma) x0 + b(sigma) n
(``model_sampling.noise_scaling``): a = 1, b = sigma for eps / v-prediction; a = 1 - sigma, b = sigma for flow
(CONST). Then x_v = x / a and s_v = b / a (the noise-to-signal ratio, 1 / sqrt(SNR)), so one band and one
formula serve all model families.

Noise-level estimators (per sample):

* calibrated residual (1 extra evaluation): r = ||x_v - D_c||; a reference state with a known level,
  x_ref = D_c + s_v xi (fresh xi), gives r_ref = ||x_ref - D(x_ref, s_v)||; s_hat = s_v r / r_ref. The ratio
  cancels the denoiser's shrinkage of the residual (r^2 ~= d s^2 - mmse(s)), which makes the naive estimator
  below useless at low sigma.
* SURE residual (1 extra evaluation, default: the least biased of the three on states of known level in
  ``antithetic-sampling guidance-bench``; its probe needs no other output, so it can share the regular model call):
  Stein's identity for the ideal denoiser gives
  E||x_v - D(x_v, s)||^2 = d s^2 - s^2 tr J (J = dD/dx_v, mmse = s^2 tr J), so the residual a state at level s
  should have is predicted per state by a Hutchinson estimate of tr J: xi . (D(x_v + eps xi, s) - D_c) / eps
  with eps = 0.3 s; s_hat = s_v sqrt(r^2 / (d s_v^2 - s_v^2 tr J)). Unlike the calibrated residual it keeps
  the state's own fine-scale content (the re-noised D_c is smoother than data, which biases that reference
  low, and s_hat high by up to ~16% where the data's fine-scale std is close to sigma). Where 1 - tr J / d
  < MIN_NOISE_FRACTION the level is not identifiable and s_hat = s_v.
* naive residual (0 extra evaluations): s_hat = r / sqrt(d). Biased low wherever the denoiser removes a
  visible share of the variance (measured: not good enough inside the default band); kept for measurement only.

Per item, every residual-norm estimate scatters by about 1 / sqrt(2 d) (d = values per item) around its mean; with
the one-sided clamp, items whose estimate lands above the nominal level by that scatter alone get a (small)
correction too. ``min_excess`` (a measurement control, not a node input) ignores estimates within a dead band.

Pure math: torch only, never imports ComfyUI.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .validation import check_band, check_finite, check_seed

__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_MAX_SHIFT",
    "DEFAULT_SCALE",
    "DEFAULT_SIGMA_END",
    "DEFAULT_SIGMA_START",
    "NoiseAwarenessGuide",
    "guidance_step",
    "LEVEL_ESTIMATORS",
    "awareness_correction",
    "classifier_free_guidance",
    "classifier_free_score_gap",
    "classifier_guidance",
    "epsilon_scaling",
    "level_guidance",
    "training_free_score_gap",
    "calibrated_level",
    "sure_level",
    "clamp_level",
    "in_band",
    "level_coefficients_are_affine",
    "model_sigma_for_ve_level",
    "naive_level",
    "per_sample_sq_norm",
    "reference_noise",
    "sure_probe_state",
    "ve_coordinates",
]

# User-facing estimator names (the node's `level_estimator` widget).
LEVEL_ESTIMATORS = ("sure_residual", "calibrated_residual", "naive_residual")

# Defaults of the nodes and of NoiseAwarenessGuide, one source of truth. The scale follows the held-out rule of
# `antithetic-sampling guidance-h2h` (docs/evidence.md): the default is the training-free variant that is better on
# some sampler/step setting of the held-out seeds and worse on none. None was (every candidate, this approximation at
# any w included, lost somewhere), so the default is off: w = 0 is plain CFG, bit-identical to core KSampler and at
# no extra cost. The band, clamp and estimator are the defaults for when a user turns it on (guidance-bench).
DEFAULT_SCALE = 0.0
DEFAULT_SIGMA_START = 2.0
DEFAULT_SIGMA_END = 0.1
DEFAULT_MAX_SHIFT = 0.3
DEFAULT_ESTIMATOR = "sure_residual"

# Below this noise fraction (1 - tr J / d: the share of the state the model still calls noise) the level is not
# identifiable (the state is almost all signal) and the estimate falls back to the nominal level.
MIN_NOISE_FRACTION = 0.2
# Finite-difference step of the Hutchinson divergence probe, relative to the level.
SURE_PROBE_STEP = 0.3


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] -> [B,1,1,...] so per-sample scalars broadcast over a latent."""
    return v.reshape(v.shape[:1] + (1,) * (like.ndim - 1))


def per_sample_sq_norm(t: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of each batch item, computed in float64 for stability: [B, ...] -> [B]."""
    return t.reshape(t.shape[0], -1).double().pow(2).sum(dim=1)


def ve_coordinates(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """State x = a x0 + b n in VE coordinates: x_v = x / a, s_v = b / a (a, b: [B])."""
    if torch.any(a <= 0):
        raise ValueError("signal coefficient a(sigma) must be positive to convert to VE coordinates")
    return x / _bcast(a.to(x.dtype), x), b / a


def naive_level(x_v: torch.Tensor, d_c: torch.Tensor) -> torch.Tensor:
    """Zero-evaluation estimate s_hat = ||x_v - D_c|| / sqrt(d) (biased low: E r^2 = d s^2 - mmse(s))."""
    d = x_v[0].numel()
    return (per_sample_sq_norm(x_v - d_c) / d).sqrt().to(torch.float32)


def sure_level(s_v: torch.Tensor, r2: torch.Tensor, trace_j: torch.Tensor, dim: int) -> torch.Tensor:
    """SURE estimate s_hat = s_v sqrt(r^2 / (d s_v^2 - s_v^2 tr J)); NaN where the level is not identifiable."""
    s_v = s_v.double()
    frac = 1.0 - trace_j.double() / dim  # share of the state that is noise according to the model
    pred = dim * s_v.pow(2) * frac.clamp_min(1e-12)
    est = s_v * (r2.double() / pred).sqrt()
    return torch.where(frac >= MIN_NOISE_FRACTION, est, torch.full_like(est, math.nan)).to(torch.float32)


def calibrated_level(s_v: torch.Tensor, r2: torch.Tensor, r2_ref: torch.Tensor) -> torch.Tensor:
    """Calibrated residual estimate s_hat = s_v * r / r_ref.

    r2: squared residual ||x_v - D_c||^2 of the state; r2_ref: the same for a reference state built at exactly
    s_v. Both residuals carry the same shrinkage, so their ratio measures the level (exact when the extra noise
    lies off the data's directions; see the module docstring).
    """
    ratio = (r2 / r2_ref.clamp_min(1e-30)).sqrt()
    return (s_v.double() * ratio).to(torch.float32)


def clamp_level(s_hat: torch.Tensor, s_v: torch.Tensor, max_shift: float, one_sided: bool = True) -> torch.Tensor:
    """Clamp s_hat to [s_v, s_v (1 + max_shift)] (one-sided) or [s_v / (1 + max_shift), s_v (1 + max_shift)].

    One-sided is the default and the only stable choice: a state is only ever corrected for carrying *more*
    noise than its nominal level (the direction the paper reports); (s_v/s_hat)^2 > 1 would amplify the
    correction and makes the two-sided form diverge for w >~ 1.
    """
    max_shift = check_finite(max_shift, "max_level_shift", minimum=0.0)
    hi = s_v * (1.0 + max_shift)
    lo = s_v if one_sided else s_v / (1.0 + max_shift)
    return torch.minimum(torch.maximum(s_hat, lo), hi)


def awareness_correction(
    d_cfg: torch.Tensor,
    d_c: torch.Tensor,
    d_hat_c: torch.Tensor,
    x_v: torch.Tensor,
    s_v: torch.Tensor,
    s_hat: torch.Tensor,
    w: float,
) -> torch.Tensor:
    """Equation (1): D~ = D_cfg + w [ (D_c - x_v) - (s_v / s_hat)^2 (D_hat_c - x_v) ].

    All x0-estimates (D_*) are in data coordinates, which are the same in every parameterisation; x_v is the
    VE state. s_v, s_hat: [B].
    """
    w = check_finite(w, "w")
    if w == 0:
        return d_cfg
    k = _bcast((s_v / s_hat).pow(2).to(x_v.dtype), x_v)
    return d_cfg + w * ((d_c - x_v) - k * (d_hat_c - x_v))


def in_band(s_v: torch.Tensor, sigma_start: float, sigma_end: float) -> torch.Tensor:
    """True where sigma_end <= s_v <= sigma_start (VE level = noise-to-signal ratio); swapped ends are refused."""
    hi, lo = check_band(sigma_start, sigma_end)
    return (s_v <= hi) & (s_v >= lo) & torch.isfinite(s_v)


def reference_noise(shape: tuple[int, ...] | torch.Size, seed: int, step: int, salt: int = 0) -> torch.Tensor:
    """Fresh N(0,1) noise for the calibration reference from a private generator (never the global RNG).

    Seeded by (seed, step, salt) so a run is reproducible and each step/call gets independent noise.
    """
    seed = check_seed(seed)
    mixed = (int(seed) * 1_000_003 + int(step) * 9_176 + int(salt) * 7_919 + 0x5EED) % (2**63 - 1)
    g = torch.Generator(device="cpu").manual_seed(mixed)
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32)


# ---- the paper's two forms and the training-free one: one formula in VE coordinates ---------------------------
#
# By Bayes, grad_x log p(s | x) = s(x | s) - s(x): the paper's guidance term *is* the gradient of the log posterior
# of the nominal level. Every variant below estimates that one vector field, Delta(x) ~= grad_x log p(s_v | x), and
# applies it through the same formula. In x0-estimates (VE: D = x_v + s_v^2 s(x_v | s_v)):
#
#     s~ = s(x | s_v) + w Delta(x)         <=>        D~ = D_cfg + w s_v^2 Delta(x)                        (2)
#
#   classifier-free (needs a t-dropped branch D_u):   Delta = s(x|s_v) - s(x) = (D_c - D_u) / s_v^2
#                                                      -> D~ = D_cfg + w (D_c - D_u)
#   classifier (needs a noise-level regressor g):      Delta = grad_x log g(s_v | x)
#                                                      -> D~ = D_cfg + w s_v^2 grad_x log g(s_v | x)
#   training-free (this module's approximation):       Delta = s(x|s_v) - s(x|s_hat)
#                                                      -> D~ = D_cfg + w [(D_c - x_v) - (s_v/s_hat)^2 (D_hat_c - x_v)]
#
# With an exact t-dropped branch and an exact posterior g, the first two are the same field; the third replaces the
# posterior mixture s(x) = E_{tau ~ p(tau|x)} s(x | tau) by its value at the posterior's mode.


def _finite_scale(w: float, name: str = "w") -> float:
    w = float(w)
    if not math.isfinite(w):
        raise ValueError(f"{name} must be a finite number, got {w}")
    return w


def level_guidance(d_cfg: torch.Tensor, s_v: torch.Tensor, score_gap: torch.Tensor, w: float) -> torch.Tensor:
    """Equation (2): D~ = D_cfg + w s_v^2 Delta, with Delta an estimate of grad_x log p(s_v | x) (score units).

    d_cfg: the unguided x0-estimate; s_v: VE levels [B]; score_gap: Delta, shaped like d_cfg."""
    w = _finite_scale(w)
    if w == 0:
        return d_cfg
    return d_cfg + w * _bcast(s_v.reshape(-1).to(d_cfg.dtype).pow(2), d_cfg) * score_gap.to(d_cfg.dtype)


def classifier_free_score_gap(d_c: torch.Tensor, d_u: torch.Tensor, s_v: torch.Tensor) -> torch.Tensor:
    """Delta = s(x | s_v) - s(x) = (D_c - D_u) / s_v^2 (both x0-estimates of the same state at the same nominal
    preconditioning; the state cancels). d_u: the noise-unconditional branch (level hidden)."""
    return (d_c - d_u) / _bcast(s_v.reshape(-1).to(d_c.dtype).pow(2), d_c)


def training_free_score_gap(d_c: torch.Tensor, d_hat_c: torch.Tensor, x_v: torch.Tensor, s_v: torch.Tensor,
                            s_hat: torch.Tensor) -> torch.Tensor:
    """Delta = s(x | s_v) - s(x | s_hat) = (D_c - x_v) / s_v^2 - (D_hat_c - x_v) / s_hat^2."""
    sv2 = _bcast(s_v.reshape(-1).to(x_v.dtype).pow(2), x_v)
    sh2 = _bcast(s_hat.reshape(-1).to(x_v.dtype).pow(2), x_v)
    return (d_c - x_v) / sv2 - (d_hat_c - x_v) / sh2


def classifier_free_guidance(d_cfg: torch.Tensor, d_c: torch.Tensor, d_u: torch.Tensor, w: float) -> torch.Tensor:
    """Paper NAG, classifier-free form (Zhong et al., arXiv 2510.12497): s~ = s(x|t) + w [s(x|t) - s(x)], i.e.
    D~ = D_cfg + w (D_c - D_u). Needs a model trained with noise-condition dropout (D_u: level hidden)."""
    w = _finite_scale(w)
    return d_cfg if w == 0 else d_cfg + w * (d_c - d_u)


def classifier_guidance(d_cfg: torch.Tensor, grad_log_g: torch.Tensor, s_v: torch.Tensor, w: float) -> torch.Tensor:
    """Paper NAG, classifier form: s~ = s(x|t) + w grad_x log g(t | x), i.e. D~ = D_cfg + w s_v^2 grad_x log g,
    with g a trained noise-level regressor (its gradient in VE coordinates)."""
    return level_guidance(d_cfg, s_v, grad_log_g, w)


def epsilon_scaling(x: torch.Tensor, denoised: torch.Tensor, factor: float = 1.005) -> torch.Tensor:
    """ComfyUI core's Epsilon Scaling (Ning et al., ICLR 2024, comfy_extras/nodes_eps.py): the predicted noise
    x - D is divided by ``factor``: D' = x - (x - D) / factor (default 1.005, core's default)."""
    factor = _finite_scale(factor, "factor")
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    return x - (x - denoised) / factor


# ---- generic conversion between a model's sigma and the VE level -------------------------------------------


def level_coefficients_are_affine(
    noise_scaling: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    sigma: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a(sigma), b(sigma) of x = a x0 + b n off ``noise_scaling(sigma, noise, x0)`` and verify affinity.

    Returns (a, b) as [B] float64 tensors. Raises ValueError if the map is not affine with a > 0, b >= 0:
    such a parameterisation has no VE coordinates and the guidance cannot be applied to it.
    """
    sigma = sigma.reshape(-1)
    shape = (sigma.shape[0], 1, 1, 1)
    zeros = torch.zeros(shape, dtype=torch.float64, device=sigma.device)
    ones = torch.ones(shape, dtype=torch.float64, device=sigma.device)
    s = sigma.double()
    a = noise_scaling(s, zeros.clone(), ones.clone()).reshape(-1)
    b = noise_scaling(s, ones.clone(), zeros.clone()).reshape(-1)
    c = noise_scaling(s, 2.0 * ones, -3.0 * ones).reshape(-1)
    if not torch.allclose(c, 2.0 * b - 3.0 * a, rtol=1e-6, atol=1e-9):
        raise ValueError(
            "Noise Awareness Guidance: this model's noise_scaling is not of the form a(sigma)*x0 + b(sigma)*noise, "
            "so its states have no variance-exploding coordinates; this model type is unsupported."
        )
    if torch.any(b < 0) or torch.any(~torch.isfinite(a)) or torch.any(~torch.isfinite(b)):
        raise ValueError("Noise Awareness Guidance: noise_scaling gave a negative or non-finite noise coefficient")
    return a, b


def model_sigma_for_ve_level(
    coeffs: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    s_target: torch.Tensor,
    sigma_lo: torch.Tensor,
    sigma_hi: float,
    iters: int = 60,
) -> torch.Tensor:
    """Model sigma whose VE level b(sigma)/a(sigma) equals s_target (per sample).

    Closed forms where the coefficients say so (a == 1: sigma = s; a + b == 1, flow: sigma = s / (1 + s)),
    otherwise bisection in log sigma on [sigma_lo, sigma_hi] (the VE level is increasing in sigma). Targets
    above the level at sigma_hi are clamped to sigma_hi.
    """
    s_target = s_target.double().reshape(-1)
    lo = sigma_lo.double().reshape(-1).clone()
    probe = torch.cat([lo, lo * 1.3 + 1e-3])
    a, b = coeffs(probe)
    if torch.allclose(a, torch.ones_like(a)) and torch.allclose(b, probe.double(), rtol=1e-6):
        return s_target.float()
    if torch.allclose(a + b, torch.ones_like(a)) and torch.allclose(b, probe.double(), rtol=1e-6):
        return (s_target / (1.0 + s_target)).float()
    hi = torch.full_like(lo, float(sigma_hi))
    a_hi, b_hi = coeffs(hi)
    level_hi = torch.where(a_hi > 0, b_hi / a_hi.clamp_min(1e-300), torch.full_like(b_hi, math.inf))
    out_of_range = s_target >= level_hi
    llo, lhi = lo.clamp_min(1e-12).log(), hi.log()
    for _ in range(iters):
        mid = 0.5 * (llo + lhi)
        am, bm = coeffs(mid.exp())
        level = bm / am.clamp_min(1e-300)
        below = level < s_target
        llo = torch.where(below, mid, llo)
        lhi = torch.where(below, lhi, mid)
    sol = (0.5 * (llo + lhi)).exp()
    return torch.where(out_of_range, hi, sol).float()


# ---- one guided evaluation (shared by the ComfyUI guider and the evidence harness) --------------------------

CondDenoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sure_probe_state(x_v: torch.Tensor, s_v: torch.Tensor, ref_noise: torch.Tensor) -> torch.Tensor:
    """The SURE divergence probe x_v + eps xi with eps = SURE_PROBE_STEP * s_v (per item).

    It needs neither D_c nor any other evaluation, so a caller may evaluate it in the same model call as the
    regular branches and pass the result to :func:`guidance_step` as ``probe``.
    """
    eps = _bcast((SURE_PROBE_STEP * s_v.reshape(-1).to(torch.float64)).to(x_v.dtype), x_v)
    return x_v + eps * ref_noise.to(x_v)


def guidance_step(
    x_v: torch.Tensor,
    s_v: torch.Tensor,
    d_cfg: torch.Tensor,
    d_c: torch.Tensor,
    cond_denoise: CondDenoiser,
    w: float,
    max_shift: float,
    estimator: str = DEFAULT_ESTIMATOR,
    ref_noise: torch.Tensor | None = None,
    one_sided: bool = True,
    apply: bool = True,
    probe: torch.Tensor | None = None,
    min_excess: float = 0.0,
) -> tuple[torch.Tensor, dict]:
    """Estimate the level of the state and, if ``apply`` and w != 0, return equation (1); else D_cfg.

    Equation (1) (training-free Noise Awareness Guidance after Zhong et al., arXiv 2510.12497):
    D~ = D_cfg + w [ (D_c - x_v) - (s_v / s_hat)^2 (D_hat_c - x_v) ], s_hat clamped to [s_v, s_v (1 + max_shift)].

    ``cond_denoise(x_v, s)`` evaluates the conditional x0-estimate for VE states ``x_v`` at VE levels ``s`` ([B]).
    ``ref_noise``: N(0, I) like ``x_v`` for the probe (SURE) or calibration reference (required by both).
    ``probe``: sure_residual only, the conditional x0-estimate of :func:`sure_probe_state` (x_v, s_v, ref_noise)
    at s_v when the caller already evaluated it (batched with its regular evaluation); it still counts as one
    extra evaluation. ``min_excess`` (default 0, a measurement control, not a node input): estimates with
    |s_hat / s_v - 1| <= min_excess count as "no shift" (no correction for that item).
    The D_hat_c evaluation is skipped when no item's clamped level exceeds s_v (the correction is then exactly 0),
    so a model that does not drift costs only the estimator's evaluation.

    Returns (denoised, info) with info = {"s_hat": raw estimate [B] (NaN: not identifiable), "s_used": clamped level [B],
    "evaluations": extra conditional evaluations made (in units of the batch), "applied": bool, "noise_fraction":
    1 - tr J / d per item for sure_residual (the share of the state the model treats as noise; below
    MIN_NOISE_FRACTION the level is not identifiable), else None}.
    """
    if estimator not in LEVEL_ESTIMATORS:
        raise ValueError(f"level_estimator must be one of {LEVEL_ESTIMATORS}, got {estimator!r}")
    w = check_finite(w, "w")
    max_shift = check_finite(max_shift, "max_level_shift", minimum=0.0)
    if not min_excess >= 0:
        raise ValueError(f"min_excess must be >= 0, got {min_excess}")
    if probe is not None and estimator != "sure_residual":
        raise ValueError(f"a precomputed probe is only used by sure_residual, not {estimator!r}")
    s_v = s_v.reshape(-1).to(torch.float64)
    evals = 0
    noise_fraction = None
    r2 = per_sample_sq_norm(x_v - d_c)
    if estimator == "sure_residual":
        if ref_noise is None:
            raise ValueError("sure_residual needs ref_noise")
        eps = _bcast((SURE_PROBE_STEP * s_v).to(x_v.dtype), x_v)
        d_probe = probe if probe is not None else cond_denoise(sure_probe_state(x_v, s_v, ref_noise),
                                                              s_v.to(torch.float32))
        evals += 1
        trace_j = (ref_noise.to(x_v) * (d_probe.to(x_v) - d_c) / eps).reshape(x_v.shape[0], -1).double().sum(1)
        s_hat = sure_level(s_v, r2, trace_j, x_v[0].numel())
        noise_fraction = (1.0 - trace_j / x_v[0].numel()).float()
    elif estimator == "calibrated_residual":
        if ref_noise is None:
            raise ValueError("calibrated_residual needs ref_noise")
        x_ref = d_c + _bcast(s_v.to(d_c.dtype), d_c) * ref_noise.to(d_c)
        d_ref = cond_denoise(x_ref, s_v.to(torch.float32))
        evals += 1
        s_hat = calibrated_level(s_v, r2, per_sample_sq_norm(x_ref - d_ref))
    else:
        s_hat = naive_level(x_v, d_c)
    s_hat = s_hat.double()
    # NaN = not identifiable (SURE): treat as "at the nominal level", i.e. no correction for that item.
    nominal = torch.isnan(s_hat)
    if min_excess > 0:
        nominal = nominal | ((s_hat - s_v).abs() <= s_v * min_excess)
    s_used = clamp_level(torch.where(nominal, s_v, s_hat), s_v, max_shift, one_sided)
    info = {"s_hat": s_hat.float(), "s_used": s_used.float(), "evaluations": evals, "applied": False,
            "noise_fraction": noise_fraction}
    if not apply or w == 0 or bool(torch.all(s_used == s_v)):
        return d_cfg, info
    d_hat = cond_denoise(x_v, s_used.to(torch.float32))
    info["evaluations"] = evals + 1
    info["applied"] = True
    return awareness_correction(d_cfg, d_c, d_hat, x_v, s_v, s_used, w), info


class NoiseAwarenessGuide:
    """Noise Awareness Guidance for VE-coordinate denoisers ``denoiser(x, sigma[B]) -> x0`` (the evidence harness).

    Training-free approximation of Zhong et al., arXiv 2510.12497: equation (1) of this module at every step inside
    the band except the first. Callable as the harness ``guide(denoiser, x, sigma, step_index) -> x0``. There is no
    text condition in the embedded models, so D_cfg = D_c = the denoiser's output. Records one dict per call in
    ``self.log``: step, sigma, ratio (s_hat/s per item, None when not measured), active (inside the band),
    applied, corrected (fraction of items whose clamped level exceeds s), evaluations (extra evaluations of the
    batch, on top of the regular one).

    ``w`` = 0 still measures the level (``measure=True``) without changing the trajectory: that is the probe.
    ``min_excess``: see :func:`guidance_step` (a control for measurements; 0 in the nodes).
    """

    def __init__(
        self,
        w: float = DEFAULT_SCALE,
        sigma_start: float = DEFAULT_SIGMA_START,
        sigma_end: float = DEFAULT_SIGMA_END,
        max_shift: float = DEFAULT_MAX_SHIFT,
        estimator: str = DEFAULT_ESTIMATOR,
        seed: int = 0,
        one_sided: bool = True,
        measure: bool = True,
        min_excess: float = 0.0,
    ) -> None:
        if estimator not in LEVEL_ESTIMATORS:
            raise ValueError(f"level_estimator must be one of {LEVEL_ESTIMATORS}, got {estimator!r}")
        w, max_shift, seed = check_finite(w, "w"), check_finite(max_shift, "max_shift", minimum=0.0), check_seed(seed)
        sigma_start, sigma_end = check_band(sigma_start, sigma_end)
        min_excess = check_finite(min_excess, "min_excess", minimum=0.0)
        self.w, self.sigma_start, self.sigma_end = float(w), float(sigma_start), float(sigma_end)
        self.max_shift, self.estimator, self.seed = float(max_shift), estimator, int(seed)
        self.one_sided, self.measure, self.min_excess = one_sided, measure, float(min_excess)
        self.log: list[dict] = []

    def __call__(self, denoiser, x: torch.Tensor, sigma: torch.Tensor, step_index: int) -> torch.Tensor:
        d_c = denoiser(x, sigma)
        s_v = sigma.reshape(-1).to(torch.float64)
        active = step_index > 0 and bool(torch.all(in_band(s_v, self.sigma_start, self.sigma_end)))
        if not (self.measure or (active and self.w != 0)):
            self.log.append({"step": step_index, "sigma": float(s_v[0]), "ratio": None, "active": active,
                             "applied": False, "corrected": 0.0, "evaluations": 0})
            return d_c
        noise = reference_noise(x.shape, self.seed, step_index).to(x)
        out, info = guidance_step(
            x, s_v, d_c, d_c, lambda xx, ss: denoiser(xx, ss.to(x.dtype)), self.w, self.max_shift,
            self.estimator, noise, self.one_sided, apply=active, min_excess=self.min_excess,
        )
        corrected = float((info["s_used"].double() > s_v).double().mean()) if active and self.w != 0 else 0.0
        self.log.append({"step": step_index, "sigma": float(s_v[0]), "ratio": (info["s_hat"] / s_v.float()).tolist(),
                         "active": active, "applied": info["applied"], "corrected": corrected,
                         "evaluations": info["evaluations"]})
        return out
