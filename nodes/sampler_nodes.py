"""V3 nodes: Antithetic Sampler (a core SAMPLER whose per-step noise is mirrored within antithetic groups) and
Antithetic KSampler (core KSampler's widgets, antithetic initial noise and mirrored step noise in one node).

Ancestral and SDE samplers inject fresh noise every step (seeded from NOISE.seed), which makes the two members of
an antithetic pair independent again after the first step. Jia et al. (ICLR 2026, §6.3) keep pairs negatively
correlated with a stochastic sampler only by negating the step noise too. This wraps ComfyUI's own k-diffusion
sampler function and passes a ``noise_sampler`` (``methods/step_noise.MirroredStepNoise``) built from the same
group structure; deterministic samplers (no ``noise_sampler`` argument) are returned unchanged.

The step noise of design group g depends only on (seed, g, call), like the initial noise, so a ``LatentFromBatch``
slice reproduces the full batch. The batch's design positions come from the ``batch_index`` the NOISE object saw
(``noise_objects.recall_batch_index``; core passes a sampler no latent) or, in the KSampler-shaped nodes, directly.

``sample_like_ksampler`` is core's ``nodes.common_ksampler`` + ``comfy.sample.sample`` step for step (through
``comfy_compat``) with a guider and NOISE object of the caller's choosing; Antithetic KSampler and the NAG Guided
KSampler both run on it. Antithetic KSampler is that path with ``AntitheticNoiseGenerator`` (the NOISE object of
Antithetic Latent Noise), ``mirrored_sampler`` (Antithetic Sampler's SAMPLER) and core's own ``CFGGuider``, so it
gives exactly the images of Antithetic Latent Noise + Antithetic Sampler + CFGGuider + SamplerCustomAdvanced with
the sigmas core KSampler uses.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence

from comfy_api.latest import io

from . import comfy_compat
from .methods.antithetic import LAYOUTS, MAX_GROUP_SIZE, validate_design
from .methods.step_noise import MirroredStepNoise
from .noise_objects import AntitheticNoiseGenerator, recall_batch_index
from .search_aliases import SEARCH_ALIASES

CATEGORY = "antithetic/sampling"
PAPER = "Jia et al., 'Antithetic Noise in Diffusion Models', ICLR 2026 (arXiv 2506.06185)"
SEED_MAX = 0xFFFFFFFFFFFFFFFF


def accepts_noise_sampler(fn) -> bool:
    try:
        return "noise_sampler" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _brownian_base(sigmas):
    """Leader draws from Brownian trees as core's SDE samplers use them: one tree per base row, seeded per row."""
    positive = sigmas[sigmas > 0]
    sigma_min, sigma_max = positive.min(), sigmas.max()

    def factory(leaders, row_seeds):
        return comfy_compat.brownian_tree_noise_sampler(leaders, sigma_min, sigma_max, row_seeds)

    return factory


def mirrored_sampler(sampler_name: str, group_size: int = 2, layout: str = "interleaved", design_size: int = 0,
                     mask=None, batch_index: Sequence[int] | None = None):
    """ComfyUI ``KSAMPLER`` for ``sampler_name`` whose step noise has the antithetic group structure.

    Returns the plain ``sampler_object(sampler_name)`` when that sampler takes no step noise (euler, dpmpp_2m,
    ddim, uni_pc, ...): deterministic samplers are unaffected. ``batch_index``: the latent's design positions when
    the caller knows them (the guided KSampler); otherwise they are recalled from the NOISE object that generated
    the initial noise with the same seed and batch size.
    """
    validate_design(group_size, layout, design_size)
    if sampler_name not in comfy_compat.sampler_names():
        raise ValueError(f"sampler_name {sampler_name!r} is not a ComfyUI sampler")
    base = comfy_compat.sampler_object(sampler_name)
    fn = getattr(base, "sampler_function", None)
    if fn is None or not accepts_noise_sampler(fn):
        return base
    # Core's Brownian-tree samplers keep that structure (mirrored); every other one gets per-call Gaussian noise.
    brownian = sampler_name in comfy_compat.BROWNIAN_TREE_SAMPLERS

    @functools.wraps(fn)
    def sample_mirrored(model, x, sigmas, *args, extra_args=None, noise_sampler=None, **kwargs):
        if noise_sampler is None:
            seed = (extra_args or {}).get("seed", 0)
            index = batch_index if batch_index is not None else recall_batch_index(seed, x.shape[0])
            noise_sampler = MirroredStepNoise(
                x, seed, group_size, layout, design_size, mask,
                base=_brownian_base(sigmas) if brownian else None, batch_index=index,
            )
        return fn(model, x, sigmas, *args, extra_args=extra_args, noise_sampler=noise_sampler, **kwargs)

    sampler = comfy_compat.ksampler_object(sample_mirrored, base.extra_options, base.inpaint_options)
    sampler.antithetic_design = {"group_size": group_size, "layout": layout, "design_size": design_size}
    return sampler


def sampler_for_noise(sampler_name: str, noise, batch_index: Sequence[int] | None = None):
    """ComfyUI's sampler; mirrored step noise when the NOISE object carries an antithetic group design."""
    design = getattr(noise, "design", None) or {}
    group = design.get("group_size")
    if group:
        return mirrored_sampler(sampler_name, int(group), design.get("layout", "interleaved"),
                                int(design.get("design_size") or 0), design.get("mask"), batch_index=batch_index)
    return comfy_compat.sampler_object(sampler_name)


def sample_like_ksampler(model, guider, seed: int, steps: int, sampler_name: str, scheduler: str, latent: dict,
                         denoise: float, noise=None) -> dict:
    """Core's ``nodes.common_ksampler`` / ``comfy.sample.sample`` with ``guider`` (a CFGGuider, conds and cfg set)
    and an optional NOISE object in place of the seed's iid noise; returns the output latent dict.

    Step for step as core, every moved internal through ``comfy_compat``: ``fix_empty_latent_channels`` with the
    latent's downscale ratios, noise from ``seed`` (core ``prepare_noise``, private generator) or from
    ``noise.generate_noise`` on the fixed latent (as SamplerCustomAdvanced calls it, with the latent's batch_index),
    the sigmas of ``comfy.samplers.KSampler`` (denoise, and the penultimate sigma dropped for the samplers core
    drops it for), the latent's ``noise_mask``, the preview callback and ComfyUI progress bar over ``steps`` as
    ``common_ksampler`` sets them up, and the output moved / cast to the intermediate device and dtype.
    """
    latent_image, consumed = comfy_compat.fix_empty_latent_channels(model, latent)
    batch_index = latent.get("batch_index")
    if noise is None:
        noise_t, noise_seed = comfy_compat.prepare_noise(latent_image, seed, batch_index), seed
    else:
        noise_in = dict(latent)
        noise_in["samples"] = latent_image
        noise_t, noise_seed = noise.generate_noise(noise_in), noise.seed
    sigmas = comfy_compat.ksampler_sigmas(model, steps, sampler_name, scheduler, denoise)
    sampler = sampler_for_noise(sampler_name, noise, batch_index)
    callback = comfy_compat.prepare_callback(model, steps)
    disable_pbar = not comfy_compat.progress_bar_enabled()
    samples = guider.sample(noise_t, latent_image, sampler, sigmas, denoise_mask=latent.get("noise_mask"),
                            callback=callback, disable_pbar=disable_pbar, seed=noise_seed)
    return comfy_compat.finish_latent(latent, samples, consumed)


def validate_ksampler_inputs(seed, steps, cfg, denoise) -> None:
    """The KSampler widgets' ranges as ValueErrors naming the input (core checks them too, for widget values; a
    linked value or a direct call reaches execute unchecked)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer between 0 and {SEED_MAX}, got {seed!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 10000:
        raise ValueError(f"steps must be an integer between 1 and 10000, got {steps!r}")
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg) or not 0 <= cfg <= 100:
        raise ValueError(f"cfg must be a number between 0 and 100, got {cfg!r}")
    if isinstance(denoise, bool) or not isinstance(denoise, (int, float)) or not 0 <= denoise <= 1:
        raise ValueError(f"denoise must be a number between 0 and 1, got {denoise!r}")


def antithetic_ksample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
                       group_size=2, layout="interleaved", design_size=0, mask=None) -> dict:
    """Antithetic KSampler: the SamplerCustomAdvanced composition (Antithetic Latent Noise, Antithetic Sampler,
    CFGGuider, KSampler's sigmas) on core KSampler's path; returns the output latent dict."""
    validate_ksampler_inputs(seed, steps, cfg, denoise)
    validate_design(group_size, layout, design_size)
    if sampler_name not in comfy_compat.ksampler_sampler_names():
        raise ValueError(f"sampler_name {sampler_name!r} is not a ComfyUI sampler")
    if scheduler not in comfy_compat.scheduler_names():
        raise ValueError(f"scheduler {scheduler!r} is not a ComfyUI scheduler; one of {comfy_compat.scheduler_names()}")
    if not isinstance(latent_image, dict) or "samples" not in latent_image:
        raise ValueError("latent_image must be a LATENT (a dict with 'samples')")
    noise = AntitheticNoiseGenerator(seed, group_size, layout, design_size, mask)
    guider = comfy_compat.cfg_guider_class()(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return sample_like_ksampler(model, guider, seed, steps, sampler_name, scheduler, latent_image, denoise, noise)


class AntitheticSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AntitheticSampler",
            display_name="Antithetic Sampler (mirrored step noise)",
            category=CATEGORY,
            **comfy_compat.schema_options(io.Schema, search_aliases=SEARCH_ALIASES["AntitheticSampler"]),
            description=(
                "A SAMPLER for SamplerCustomAdvanced whose per-step noise is mirrored inside antithetic groups, so "
                "pairs started from Antithetic Latent Noise (wired to the same SamplerCustomAdvanced's noise input) "
                "stay negatively correlated with ancestral and SDE samplers (euler_ancestral, dpmpp_sde, dpmpp_2m_sde, "
                "...). Jia et al., 'Antithetic Noise in Diffusion Models', ICLR 2026 (arXiv 2506.06185), §6.3: with "
                "stochastic samplers the step noise must be negated too. Use the same group size, layout, design size "
                "and mask as the noise node; the step noise of group g depends only on (seed, g, step), so "
                "LatentFromBatch slices reproduce the full batch. In SamplerCustom (no NOISE input) the initial noise "
                "is always core's iid noise from its noise_seed: the step noise is still mirrored between batch items "
                "0-1, 2-3, ..., but the starts are independent, so the pairs are not antithetic; use "
                "SamplerCustomAdvanced (or the NAG Guided KSampler with a NOISE input, which mirrors the step noise "
                "itself). Deterministic samplers (euler, dpmpp_2m, ddim, uni_pc, ...) are passed through unchanged."
            ),
            inputs=[
                io.Combo.Input(
                    "sampler_name", display_name="sampler_name", options=comfy_compat.sampler_names(),
                    default="euler_ancestral",
                    tooltip="The ComfyUI sampler to run. Its step noise (if any) is mirrored; the samplers that draw "
                            "from a Brownian tree in core (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde and their variants) "
                            "keep one tree per group leader, so each image still follows a genuine Brownian path.",
                ),
                io.Int.Input("group_size", display_name="group_size", default=2, min=2, max=MAX_GROUP_SIZE,
                             tooltip="K, as in Antithetic Latent Noise: 2 mirrors (eps, -eps); K > 2 uses "
                                     "sqrt(K/(K-1))(eps_i - mean eps)."),
                io.Combo.Input("layout", display_name="layout", options=list(LAYOUTS), default="interleaved",
                               tooltip="Batch layout of the groups; must match the noise node."),
                io.Int.Input("design_size", display_name="design_size", default=0, min=0, max=4096, optional=True,
                             tooltip="halves layout only: full batch size of the design, as on the noise node (0 = the "
                                     "batch size, or max(batch_index)+1 for a LatentFromBatch slice)."),
                io.Mask.Input("mask", display_name="mask", optional=True,
                              tooltip="Partial antithetic: mirror the step noise only inside the mask (same mask as "
                                      "the noise node; binarised at 0.5 after resizing)."),
            ],
            outputs=[io.Sampler.Output("sampler", display_name="sampler", tooltip="SAMPLER with mirrored step noise.")],
        )

    @classmethod
    def execute(cls, sampler_name: str, group_size: int = 2, layout: str = "interleaved", design_size: int = 0,
                mask=None) -> io.NodeOutput:
        return io.NodeOutput(mirrored_sampler(sampler_name, group_size, layout, design_size or 0, mask))


class AntitheticKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AntitheticKSampler",
            display_name="Antithetic KSampler",
            category=CATEGORY,
            description=(
                "Drop-in for core KSampler that makes a more diverse batch: the same inputs, widgets and LATENT "
                "output, plus the group size and layout of the antithetic design. Images 1-2, 3-4, ... start from "
                "noise z and -z (or groups of K that sum to zero), and with ancestral / SDE samplers the noise added "
                "at every step is mirrored the same way, so the members of a group stay far apart while every image "
                f"on its own is an ordinary sample (exactly N(0, I) starting noise). {PAPER}. Gives the same images, "
                "bit for bit, as Antithetic Latent Noise (seed -> noise_seed) + Antithetic Sampler (mirrored step "
                "noise) + CFGGuider + KSamplerSelect + SamplerCustomAdvanced with the sigmas KSampler uses "
                "(BasicScheduler with the same steps, scheduler and denoise). Item k depends only on (seed, k), so "
                "LatentFromBatch slices and seed sweeps reproduce single images. Use a batch that is a multiple of "
                "the group size (an incomplete last group is logged)."
            ),
            **comfy_compat.schema_options(io.Schema, search_aliases=SEARCH_ALIASES["AntitheticKSampler"]),
            inputs=[
                io.Model.Input("model", display_name="model", tooltip="The model used for denoising the input latent."),
                io.Int.Input(
                    "seed", display_name="seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                    tooltip="Seed of the antithetic design (initial noise and mirrored step noise). Item k of the "
                            "batch depends only on (seed, k). Not the same noise as core KSampler's seed: that is "
                            "iid noise; this is pairs / groups.",
                ),
                io.Int.Input("steps", display_name="steps", default=20, min=1, max=10000,
                             tooltip="The number of steps used in the denoising process, as in KSampler."),
                io.Float.Input("cfg", display_name="cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale, as in KSampler."),
                io.Combo.Input(
                    "sampler_name", display_name="sampler_name", options=comfy_compat.ksampler_sampler_names(),
                    default="euler",
                    tooltip="The ComfyUI sampler. Ancestral and SDE samplers (euler_ancestral, dpmpp_2m_sde, ...) get "
                            "mirrored step noise inside each group; deterministic ones (euler, dpmpp_2m, ...) run "
                            "unchanged.",
                ),
                io.Combo.Input("scheduler", display_name="scheduler", options=comfy_compat.scheduler_names(),
                               default="normal", tooltip="The ComfyUI scheduler (noise schedule), as in KSampler."),
                io.Conditioning.Input("positive", display_name="positive",
                                      tooltip="The conditioning describing what to include in the image."),
                io.Conditioning.Input("negative", display_name="negative",
                                      tooltip="The conditioning describing what to exclude from the image."),
                io.Latent.Input("latent_image", display_name="latent_image",
                                tooltip="The latent to denoise (an empty latent for txt2img). Its batch size is the "
                                        "number of images: a multiple of group_size."),
                io.Float.Input("denoise", display_name="denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="The amount of denoising, as in KSampler (< 1 for img2img)."),
                io.Int.Input("group_size", display_name="group_size", default=2, min=2, max=MAX_GROUP_SIZE,
                             tooltip="K: images per antithetic group. 2 = pairs (z, -z). K > 2: sqrt(K/(K-1))(w_i - "
                                     "mean w), correlation -1/(K-1) between any two members."),
                io.Combo.Input(
                    "layout", display_name="layout", options=list(LAYOUTS), default="interleaved",
                    tooltip="interleaved: items gK..gK+K-1 form group g (pairs 1-2, 3-4, ...; safe with "
                            "LatentFromBatch). halves: z1..zn then -z1..-zn (group g = items g, g+n, ...).",
                ),
                io.Int.Input("design_size", display_name="design_size", default=0, min=0, max=4096, optional=True,
                             tooltip="halves layout only: the full batch size the pairing refers to (0 = the batch "
                                     "size, or max(batch_index)+1 for a LatentFromBatch slice)."),
                io.Mask.Input("mask", display_name="mask", optional=True,
                              tooltip="Partial antithetic: the members of a group differ only inside the mask "
                                      "(initial and step noise; binarised at 0.5 after resizing to the latent)."),
            ],
            outputs=[io.Latent.Output("latent", display_name="latent", tooltip="The denoised latent.")],
        )

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
                group_size=2, layout="interleaved", design_size=0, mask=None) -> io.NodeOutput:
        return io.NodeOutput(antithetic_ksample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                                latent_image, denoise, group_size, layout, design_size or 0, mask))


NODES = [AntitheticSampler, AntitheticKSampler]
