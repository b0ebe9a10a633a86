"""V3 nodes: Noise Awareness Guidance (training-free, after Zhong et al., arXiv 2510.12497) and a noise-shift probe.

Unrelated to *Normalized Attention Guidance* (ComfyUI-NAG, core ``NAGuidance``); ids and widgets never use a
bare "NAG". The math (VE coordinates, equation (1), clamp, band, level estimators) is in
``methods/noise_awareness.py``; this file holds the ComfyUI glue:

* ``NoiseAwarenessCFGGuider`` — a ``comfy.samplers.CFGGuider`` subclass that overrides only ``predict_noise``
  (and ``sample``, to reset its per-run log and key the probe noise per item). How it composes with other patches:

  - D_cfg is ``super().predict_noise``: the whole chain every other patch builds (model patches and wrappers,
    ``sampler_calc_cond_batch_function``, pre-CFG hooks such as APG, FreSca, LatentApplyOperationCFG, a custom
    ``sampler_cfg_function``, post-CFG hooks such as PAG and Epsilon Scaling), exactly as without this guider.
  - Every term of the correction is a raw model output: D_c is read by a pre-CFG function placed *first* in the
    list for that one call, i.e. ``calc_cond_batch``'s conditional output before any other hook rewrites it; the
    level probe / calibration reference and D_hat_c are separate ``comfy.samplers.calc_cond_batch`` calls with the
    sampler's ``model_options`` (model patches apply, CFG hooks do not).
  - The correction w [(D_c - x_v) - (s_v/s_hat)^2 (D_hat_c - x_v)] is added on top of D_cfg, after every post-CFG
    hook. w = 0 returns D_cfg untouched; an item whose clamped level equals its nominal level gets D_cfg exactly.
  - A second guider's hook, or any hook, never sees a value of ours: we add no post-CFG hook.

  With ``sure_residual`` at cfg == 1 (no uncond pass) the SURE probe needs no other output and joins the regular
  ``calc_cond_batch`` call as extra batch items (a chained ``sampler_calc_cond_batch_function``); in every other
  case ComfyUI evaluates all conds of one call on one input, so the probe would drag the uncond branch along, and
  the calibration reference and D_hat depend on outputs of the regular call: those get their own calls. Probe noise
  is keyed per item on (seed, the item's initial noise and latent, call), so a guided item does not depend on its
  batch companions and a LatentFromBatch slice reproduces it.
* ``NoiseAwarenessGuider`` (GUIDER), ``NoiseAwarenessGuidedKSampler`` (KSampler-shaped, built from ComfyUI's own
  noise / ``KSampler`` sigmas / ``sampler_object`` / guider, not a fork of the loop) and ``NoiseShiftProbe``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math

import torch
from comfy_api.latest import io, ui

from . import comfy_compat
from .methods.keyed_rng import STREAM_PROBE, keyed_seed
from .methods.noise_awareness import (
    DEFAULT_ESTIMATOR,
    DEFAULT_MAX_SHIFT,
    DEFAULT_SCALE,
    DEFAULT_SIGMA_END,
    DEFAULT_SIGMA_START,
    LEVEL_ESTIMATORS,
    guidance_step,
    in_band,
    level_coefficients_are_affine,
    model_sigma_for_ve_level,
    sure_probe_state,
)
from .search_aliases import SEARCH_ALIASES

CATEGORY = "antithetic/guidance"
PAPER = (
    "Training-free approximation of Noise Awareness Guidance (Zhong et al., 'Mitigating the Noise Shift for Denoising "
    "Generative Models via Noise Awareness Guidance', arXiv 2510.12497, ICLR 2026); unrelated to Normalized Attention "
    "Guidance"
)
SEED_MAX = 0xFFFFFFFFFFFFFFFF

# The defaults (DEFAULT_*) live in methods/noise_awareness.py, chosen from `antithetic-sampling guidance-bench`.


# --------------------------------------------------------------------------------------------- the guider


def item_keys(noise, latent_image) -> list[int]:
    """One 64-bit key per batch item from its initial noise and latent (every component of a nested latent).

    Core's and this pack's noise make item k depend only on (seed, k), so the key of an item is the same in the full
    batch, in a LatentFromBatch slice and alone: probe noise keyed on it never depends on the batch companions.
    """
    parts = comfy_compat.components(noise)
    if latent_image is not None:
        parts = parts + comfy_compat.components(latent_image)
    batch = parts[0].shape[0]
    keys = []
    for b in range(batch):
        h = hashlib.blake2b(digest_size=8)
        for t in parts:
            row = t[b] if t.shape[0] == batch else t[b % t.shape[0]]
            h.update(row.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
        keys.append(int.from_bytes(h.digest(), "little"))
    return keys


def keyed_probe_noise(shape, seed: int, keys: list[int] | None, call: int) -> torch.Tensor:
    """N(0, I) probe / reference noise, item b from a private generator keyed on (seed, keys[b], call)."""
    out = torch.empty(tuple(shape), dtype=torch.float32)
    for b in range(out.shape[0]):
        key = keys[b] if keys is not None and b < len(keys) else b
        gen = torch.Generator(device="cpu").manual_seed(keyed_seed(int(seed), STREAM_PROBE, key, call))
        torch.randn(out.shape[1:], generator=gen, out=out[b])
    return out


@functools.cache
def guider_class():
    """The CFGGuider subclass (built on first use so importing this module never needs comfy.samplers)."""

    class NoiseAwarenessCFGGuider(comfy_compat.cfg_guider_class()):
        """CFG plus the training-free Noise Awareness correction (methods/noise_awareness.py, equation (1)).

        The correction is computed from raw model outputs only and added on top of whatever the other patches
        produce (see the module docstring for the exact composition).
        """

        awareness_scale = 0.0
        sigma_start = DEFAULT_SIGMA_START
        sigma_end = DEFAULT_SIGMA_END
        max_level_shift = DEFAULT_MAX_SHIFT
        level_estimator = DEFAULT_ESTIMATOR
        measure = False

        def set_awareness(self, scale: float, sigma_start: float, sigma_end: float, max_level_shift: float,
                          level_estimator: str, measure: bool = False) -> None:
            validate_awareness(scale, sigma_start, sigma_end, max_level_shift, level_estimator)
            self.awareness_scale = float(scale)
            self.sigma_start, self.sigma_end = float(sigma_start), float(sigma_end)
            self.max_level_shift = float(max_level_shift)
            self.level_estimator = level_estimator
            self.measure = bool(measure)

        def sample(self, noise, latent_image, *args, **kwargs):
            self.shift_log: list[dict] = []
            self._calls = 0
            self._item_keys = None
            if self.awareness_scale != 0 or self.measure:
                self._item_keys = item_keys(noise, latent_image)
            return super().sample(noise, latent_image, *args, **kwargs)

        # -- helpers ------------------------------------------------------------------------------------
        def _coeffs(self, sigma: torch.Tensor):
            ms = self.inner_model.model_sampling
            return level_coefficients_are_affine(ms.noise_scaling, sigma)

        def _cond_denoise(self, x_v, s_level, s_nominal, timestep, model_options):
            if torch.equal(s_level.float(), s_nominal.float()):
                sig = timestep  # the nominal level: use the sampler's sigma exactly (no round trip)
            else:
                sig_max = float(self.inner_model.model_sampling.sigma_max)
                sig = model_sigma_for_ve_level(self._coeffs, s_level, timestep, sig_max).to(timestep)
            a, _ = self._coeffs(sig)
            x_in = x_v * a.to(x_v).reshape(-1, *([1] * (x_v.ndim - 1)))
            (out,) = comfy_compat.calc_cond_batch(self.inner_model, [self.conds.get("positive")], x_in, sig,
                                                  model_options)
            return out

        def _step_index(self, timestep, model_options) -> tuple[int, bool]:
            sched = (model_options.get("transformer_options") or {}).get("sample_sigmas")
            if sched is None or len(sched) == 0:
                return -1, False
            sched = sched.to(timestep.device, torch.float32)
            t = float(timestep.reshape(-1)[0])
            idx = int(torch.argmin((sched - t).abs()))
            exact = math.isclose(float(sched[idx]), t, rel_tol=1e-5, abs_tol=1e-8)
            return idx, exact

        # -- the override -------------------------------------------------------------------------------
        def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 - ComfyUI's signature
            w = self.awareness_scale
            if w == 0 and not self.measure:
                return super().predict_noise(x, timestep, model_options, seed)
            self._calls = getattr(self, "_calls", 0) + 1  # every call, so a call's key never depends on the batch
            step, on_grid = self._step_index(timestep, model_options)
            first = step == 0 and on_grid  # the first state is built at exactly its nominal level
            a, b = self._coeffs(timestep.reshape(-1))
            with torch.no_grad():
                s_v = torch.where(a > 0, b / a.clamp_min(1e-300), torch.full_like(b, math.inf))
            active = w != 0 and not first and bool(torch.all(in_band(s_v, self.sigma_start, self.sigma_end)))
            if not active and not self.measure:
                return super().predict_noise(x, timestep, model_options, seed)

            captured: dict = {}

            def capture_raw(args):
                # First pre-CFG function of this call: calc_cond_batch's conditional output before any other hook
                # (APG, FreSca, LatentApplyOperationCFG, ...) rewrites it. Cloned in case a later hook works in place.
                out = args["conds_out"]
                if out and out[0] is not None:
                    captured["cond"] = out[0].clone()
                return out

            finite = bool(torch.all(torch.isfinite(s_v)))
            cfg1 = math.isclose(self.cfg, 1.0) and not model_options.get("disable_cfg1_optimization", False)
            regular = 1 if cfg1 else 2  # sampling_function skips the uncond pass at cfg == 1
            noise = keyed_probe_noise(x.shape, seed or 0, getattr(self, "_item_keys", None), self._calls).to(x)
            a_b = a.to(x).reshape(-1, *([1] * (x.ndim - 1)))
            x_v = x / a_b if finite else x
            mo = model_options.copy()
            mo["sampler_pre_cfg_function"] = [capture_raw] + list(mo.get("sampler_pre_cfg_function", []))
            # The SURE probe needs no other output, so it can share the regular model call. ComfyUI evaluates all
            # conds of one calc_cond_batch on one input: the probe joins as extra batch items, which costs nothing
            # extra only when the uncond pass is skipped (cfg == 1); otherwise the uncond branch would be evaluated
            # on the probe too, so it gets its own call.
            batched = cfg1 and finite and self.level_estimator == "sure_residual"
            if batched:
                mo["sampler_calc_cond_batch_function"] = _batched_probe_function(
                    mo.get("sampler_calc_cond_batch_function"), sure_probe_state(x_v, s_v, noise) * a_b, captured
                )
            d_cfg = super().predict_noise(x, timestep, mo, seed)
            entry = {"step": step, "on_grid": on_grid, "sigma": float(timestep.reshape(-1)[0]),
                     "level": float(s_v[0]), "ratio": None, "applied": False, "extra_evaluations": 0,
                     "regular_evaluations": regular, "batched_probe": batched}
            if not finite or "cond" not in captured:
                self._log(entry)
                return d_cfg
            d_c = captured["cond"]
            out, info = guidance_step(
                x_v, s_v, d_cfg, d_c,
                lambda xx, ss: self._cond_denoise(xx, ss, s_v, timestep, model_options),
                w, self.max_level_shift, self.level_estimator, noise, apply=active, probe=captured.get("probe"),
            )
            if info["applied"]:
                # Items left at their nominal level get D_cfg exactly (not D_cfg + w (D_c - D_hat_c) with D_hat_c a
                # re-evaluation at the same level), so an item's output never depends on whether a batch companion
                # was corrected.
                keep = (info["s_used"] == s_v.float()).reshape(-1, *([1] * (x.ndim - 1)))
                out = torch.where(keep.to(out.device), d_cfg, out)
            ratio = (info["s_hat"].double() / s_v).tolist()
            frac = info.get("noise_fraction")
            entry.update(ratio=[None if math.isnan(r) else r for r in ratio], applied=info["applied"],
                         extra_evaluations=info["evaluations"], active=active,
                         noise_fraction=None if frac is None else frac.double().tolist())
            self._log(entry)
            return out

        def _log(self, entry: dict) -> None:
            if not hasattr(self, "shift_log"):
                self.shift_log = []
            self.shift_log.append(entry)

    return NoiseAwarenessCFGGuider


def _batched_probe_function(previous, probe_input: torch.Tensor, captured: dict):
    """A ``sampler_calc_cond_batch_function`` that evaluates the conds on [x, probe] in one call.

    Chains a function another node set (``previous``); stores the probe's first-cond output in
    ``captured["probe"]`` and returns the regular outputs for x only.
    """
    def calc(args):
        x_in, sigma = args["input"], args["sigma"]
        b = x_in.shape[0]
        sigma_b = sigma.reshape(-1)
        if sigma_b.numel() == 1:
            sigma_b = sigma_b.expand(b)
        both = dict(args)
        both["input"] = torch.cat([x_in, probe_input.to(x_in)])
        both["sigma"] = torch.cat([sigma_b, sigma_b])
        if previous is not None:
            out = previous(both)
        else:
            out = comfy_compat.calc_cond_batch(args["model"], args["conds"], both["input"], both["sigma"],
                                               args["model_options"])
        captured["probe"] = out[0][b:]
        return [o[:b] if o is not None else None for o in out]

    return calc


def validate_awareness(scale, sigma_start, sigma_end, max_level_shift, level_estimator) -> None:
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"awareness_scale must be a finite number >= 0, got {scale}")
    if sigma_start < 0 or sigma_end < 0:
        raise ValueError(f"sigma_start and sigma_end must be >= 0, got {sigma_start}, {sigma_end}")
    if sigma_end > sigma_start:
        raise ValueError(f"sigma_end ({sigma_end}) must not exceed sigma_start ({sigma_start})")
    if not 0 <= max_level_shift <= 4:
        raise ValueError(f"max_level_shift must be in [0, 4], got {max_level_shift}")
    if level_estimator not in LEVEL_ESTIMATORS:
        raise ValueError(f"level_estimator must be one of {LEVEL_ESTIMATORS}, got {level_estimator!r}")


def make_guider(model, positive, negative, cfg, scale, sigma_start, sigma_end, max_level_shift, level_estimator,
                measure=False):
    guider = guider_class()(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    guider.set_awareness(scale, sigma_start, sigma_end, max_level_shift, level_estimator, measure)
    return guider


# --------------------------------------------------------------------------------------------- sampling glue


def run_guided(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise, scale,
               sigma_start, sigma_end, max_level_shift, level_estimator, noise=None, measure=False):
    """``nodes.common_ksampler`` with the Noise Awareness guider: returns (latent dict, guider).

    The KSampler path is ``sampler_nodes.sample_like_ksampler`` (core's ``common_ksampler`` / ``comfy.sample.sample``
    step for step through ``comfy_compat``), so awareness_scale 0 gives KSampler's output bit for bit.
    """
    from .sampler_nodes import sample_like_ksampler

    guider = make_guider(model, positive, negative, cfg, scale, sigma_start, sigma_end, max_level_shift,
                         level_estimator, measure)
    out = sample_like_ksampler(model, guider, seed, steps, sampler_name, scheduler, latent, denoise, noise)
    return out, guider


def shift_summary(log: list[dict]) -> dict:
    """Per-step numbers of a probed run (on-grid evaluations only) plus the cost relative to the same sampler without
    guidance (``cost_vs_cfg``: all evaluations / the regular ones; at cfg 1 the regular ones are one per step) and
    how many steps evaluated the SURE probe inside the regular model call (``batched_probe_steps``)."""
    steps = []
    for e in log:
        if not e.get("on_grid", True):
            continue
        vals = [r for r in (e.get("ratio") or []) if r is not None]
        steps.append({
            "step": e["step"], "sigma": e["sigma"], "level": e["level"],
            "ratio_mean": sum(vals) / len(vals) if vals else None,
            "ratio_min": min(vals) if vals else None, "ratio_max": max(vals) if vals else None,
            "ratio": e.get("ratio"), "corrected": e.get("applied", False),
            "noise_fraction": e.get("noise_fraction"),
        })
    regular = sum(e.get("regular_evaluations", 2) for e in log)
    extra = sum(e.get("extra_evaluations", 0) for e in log)
    batched = sum(1 for e in log if e.get("batched_probe"))
    return {"steps": steps, "model_evaluations": regular + extra, "regular_evaluations": regular,
            "extra_evaluations": extra, "cost_vs_cfg": (regular + extra) / regular if regular else None,
            "batched_probe_steps": batched}


def render_shift_plot(summary: dict, title: str, width: int = 640, height: int = 480) -> torch.Tensor:
    """sigma_hat / sigma per step as an IMAGE [1, H, W, 3] (matplotlib, ``methods.plots.noise_shift_plot``): batch
    mean, per-image range, corrected steps, the line at 1 and the steps inside the guidance band shaded."""
    from .methods import plots

    steps = summary["steps"]
    lo_band, hi_band = summary.get("band", (None, None))
    band = [s["step"] for s in steps if s["step"] > 0 and lo_band is not None and s.get("level") is not None
            and lo_band <= s["level"] <= hi_band]
    curve = {"step": [s["step"] for s in steps], "ratio": [s["ratio_mean"] for s in steps],
             "low": [s["ratio_min"] for s in steps], "high": [s["ratio_max"] for s in steps],
             "corrected": [bool(s["corrected"]) for s in steps]}
    band_label = (f"guidance band (σ/α {lo_band:g}–{hi_band:g})" if lo_band is not None else "guidance band")
    fig = plots.noise_shift_plot({"σ̂/σ": curve}, title, band_steps=band, band_label=band_label,
                                 sigmas=[s["sigma"] for s in steps], size=(width, height))
    return plots.to_image_tensor(fig)


# --------------------------------------------------------------------------------------------- node inputs


def _awareness_inputs(default_scale: float = DEFAULT_SCALE) -> list:
    return [
        io.Float.Input(
            "awareness_scale", display_name="awareness_scale", default=default_scale, min=0.0, max=4.0, step=0.05, round=0.001,
            tooltip="w, the Noise Awareness Guidance strength. 0 = plain CFG (bit-identical to KSampler). The "
                    "correction only acts where a state's estimated noise level is above its step's nominal level. "
                    "Default 0 (off): measured on held-out seeds against the paper's own method (docs/guidance.md), "
                    "no setting was better on some sampler without being worse on another; 1 helped DPM++ 2M and "
                    "hurt Euler ancestral. Check your model with Noise Shift Probe first.",
        ),
        io.Float.Input(
            "sigma_start", display_name="sigma_start", default=DEFAULT_SIGMA_START, min=0.0, max=1000.0, step=0.01, round=0.0001,
            tooltip="Upper end of the band where the guidance acts, as a noise-to-signal ratio sigma/alpha (= the "
                    "sampler sigma for eps / v-prediction models, sigma/(1-sigma) for flow models). The first step is "
                    "always skipped (its state is exact). The default keeps about half of the steps of ComfyUI's "
                    "SD1.5 schedules in the band, so the cost stays near 1.5x the model evaluations of CFG.",
        ),
        io.Float.Input(
            "sigma_end", display_name="sigma_end", default=DEFAULT_SIGMA_END, min=0.0, max=1000.0, step=0.01, round=0.0001,
            tooltip="Lower end of the band (same units as sigma_start). Below it the level is hard to identify and "
                    "the correction is skipped (corrections there were measured to change nothing).",
        ),
        io.Float.Input(
            "max_level_shift", display_name="max_level_shift", default=DEFAULT_MAX_SHIFT, min=0.0, max=4.0, step=0.01, round=0.001,
            tooltip="One-sided clamp: the estimated level is limited to [sigma, sigma*(1+max_level_shift)]. States "
                    "that look less noisy than nominal are never corrected (two-sided correction diverges).",
        ),
        io.Combo.Input(
            "level_estimator", display_name="level_estimator", options=list(LEVEL_ESTIMATORS), default=DEFAULT_ESTIMATOR,
            tooltip="How the actual noise level of a state is estimated. sure_residual (default): Stein's unbiased "
                    "risk estimate, one extra conditional evaluation; the least biased on states of known level in "
                    "guidance-bench, and at cfg 1 it shares the regular model call. calibrated_residual: re-noise the "
                    "x0 estimate at the nominal level and compare residuals (one extra evaluation, never batched; "
                    "reads a few percent high at small sigma). naive_residual: no extra evaluation, but biased low "
                    "(it under-reads the level, so it rarely corrects): for measurements only.",
        ),
    ]


def _ksampler_inputs() -> list:
    return [
        io.Model.Input("model", display_name="model", tooltip="The model used for denoising (eps, v-prediction incl. zero-SNR, or flow)."),
        io.Int.Input("seed", display_name="seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                     tooltip="Seed of the initial noise (ignored when a NOISE input is connected) and of the guidance's "
                             "probe noise."),
        io.Int.Input("steps", display_name="steps", default=20, min=1, max=10000, tooltip="Number of sampling steps."),
        io.Float.Input("cfg", display_name="cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance scale, as in KSampler."),
        io.Combo.Input("sampler_name", display_name="sampler_name", options=comfy_compat.ksampler_sampler_names(), default="euler",
                       tooltip="The ComfyUI sampler. With an antithetic NOISE input, ancestral/SDE samplers get mirrored "
                               "step noise."),
        io.Combo.Input("scheduler", display_name="scheduler", options=comfy_compat.scheduler_names(), default="normal",
                       tooltip="The ComfyUI scheduler (noise schedule)."),
        io.Conditioning.Input("positive", display_name="positive", tooltip="Conditioning to include; the guidance acts on this branch."),
        io.Conditioning.Input("negative", display_name="negative", tooltip="Conditioning to exclude (the CFG negative)."),
        io.Latent.Input("latent_image", display_name="latent_image", tooltip="The latent to denoise (empty latent for txt2img)."),
        io.Float.Input("denoise", display_name="denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Amount of denoising, as in KSampler (< 1 for img2img)."),
    ]


def _noise_input() -> io.Noise.Input:
    return io.Noise.Input(
        "noise", display_name="noise", optional=True,
        tooltip="Optional NOISE (e.g. Antithetic Latent Noise, Sobol RQMC Latent Batch) instead of the seed's iid "
                "noise. With an antithetic design and an ancestral/SDE sampler the step noise is mirrored too.",
    )


# --------------------------------------------------------------------------------------------- nodes


class NoiseAwarenessGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NoiseAwarenessGuider",
            display_name="Noise Awareness Guider",
            category=CATEGORY,
            **comfy_compat.schema_options(io.Schema, search_aliases=SEARCH_ALIASES["NoiseAwarenessGuider"]),
            description=(
                "GUIDER for SamplerCustomAdvanced: CFG plus a training-free Noise Awareness Guidance correction. At "
                "each step inside the band it estimates the noise level the state actually carries and, when that "
                "is above the step's nominal level (noise shift), steers the denoiser with the paper's guidance "
                "along the noise-level axis, using the model at the estimated level in place of a noise-unconditional "
                f"branch. {PAPER}. Costs one extra conditional evaluation per in-band step, plus one where a "
                "correction is applied. Works with eps, v-prediction (incl. zero-SNR) and flow models."
            ),
            inputs=[
                io.Model.Input("model", display_name="model", tooltip="The model (eps, v-prediction incl. zero-SNR, or flow)."),
                io.Conditioning.Input("positive", display_name="positive", tooltip="Conditioning to include; the guidance acts on this branch."),
                io.Conditioning.Input("negative", display_name="negative", tooltip="Conditioning to exclude (the CFG negative)."),
                io.Float.Input("cfg", display_name="cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale, as in CFGGuider."),
                *_awareness_inputs(),
            ],
            outputs=[io.Guider.Output("guider", display_name="guider", tooltip="GUIDER for SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, awareness_scale, sigma_start, sigma_end, max_level_shift,
                level_estimator) -> io.NodeOutput:
        return io.NodeOutput(make_guider(model, positive, negative, cfg, awareness_scale, sigma_start, sigma_end,
                                         max_level_shift, level_estimator))


class NoiseAwarenessGuidedKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NoiseAwarenessGuidedKSampler",
            display_name="NAG Guided KSampler (Noise Awareness Guidance)",
            category=CATEGORY,
            **comfy_compat.schema_options(io.Schema, search_aliases=SEARCH_ALIASES["NoiseAwarenessGuidedKSampler"]),
            description=(
                "KSampler with training-free Noise Awareness Guidance: the KSampler's inputs plus the guidance "
                "strength, band, clamp and level estimator, and an optional NOISE input (Antithetic / Sobol noise "
                f"plug straight in). {PAPER}. With awareness_scale 0 the output equals KSampler exactly. Built from "
                "ComfyUI's own noise, scheduler, sampler and guider objects."
            ),
            inputs=[*_ksampler_inputs(), *_awareness_inputs(), _noise_input()],
            outputs=[io.Latent.Output("latent", display_name="latent", tooltip="The denoised latent.")],
        )

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
                awareness_scale, sigma_start, sigma_end, max_level_shift, level_estimator,
                noise=None) -> io.NodeOutput:
        out, _ = run_guided(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                            denoise, awareness_scale, sigma_start, sigma_end, max_level_shift, level_estimator, noise)
        return io.NodeOutput(out)


class NoiseShiftProbe(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NoiseShiftProbe",
            display_name="Noise Shift Probe",
            category=CATEGORY,
            **comfy_compat.schema_options(io.Schema, search_aliases=SEARCH_ALIASES["NoiseShiftProbe"]),
            description=(
                "Runs a KSampler-style sampling and measures, at every step, the ratio sigma_hat/sigma between the "
                "noise level each state actually carries (estimated with the chosen level estimator, one extra "
                "conditional evaluation per step) and the step's nominal level. Noise shift (Zhong et al., arXiv "
                "2510.12497) shows up as ratios above 1, typically late in sampling. Use it to see whether a model "
                "and sampler drift at all before turning Noise Awareness Guidance up (awareness_scale 0 = measure "
                "only). Returns a plot, the numbers as JSON and the latent. Unrelated to Normalized Attention "
                "Guidance; the level estimate is a training-free approximation."
            ),
            inputs=[*_ksampler_inputs(), *_awareness_inputs(default_scale=0.0), _noise_input()],
            outputs=[
                io.Image.Output("plot", display_name="plot", tooltip="sigma_hat/sigma per step (mean line, per-image range)."),
                io.String.Output("numbers", display_name="numbers", tooltip="JSON: per-step ratios, corrected steps, model evaluations."),
                io.Latent.Output("latent", display_name="latent", tooltip="The sampled latent of the probed run."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
                awareness_scale, sigma_start, sigma_end, max_level_shift, level_estimator,
                noise=None) -> io.NodeOutput:
        out, guider = run_guided(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                                 denoise, awareness_scale, sigma_start, sigma_end, max_level_shift, level_estimator,
                                 noise, measure=True)
        summary = shift_summary(getattr(guider, "shift_log", []))
        summary.update({"sampler": sampler_name, "scheduler": scheduler, "num_steps": steps, "cfg": cfg,
                        "awareness_scale": awareness_scale, "level_estimator": level_estimator,
                        "band": [sigma_end, sigma_start], "max_level_shift": max_level_shift})
        title = (f"Does the sampler drift? σ̂/σ per step\n{sampler_name}/{scheduler}, {steps} steps, "
                 f"w={awareness_scale:g}, {level_estimator}")
        plot = render_shift_plot(summary, title)
        text = json.dumps(summary, indent=1)
        return io.NodeOutput(plot, text, out, ui=ui.PreviewText(text))


NODES = [NoiseAwarenessGuider, NoiseAwarenessGuidedKSampler, NoiseShiftProbe]
