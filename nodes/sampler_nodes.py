"""V3 node: Antithetic Sampler — a core SAMPLER whose per-step noise is mirrored within antithetic groups.

Ancestral and SDE samplers inject fresh noise every step (seeded from NOISE.seed), which makes the two members of
an antithetic pair independent again after the first step. Jia et al. (ICLR 2026, §6.3) keep pairs negatively
correlated with a stochastic sampler only by negating the step noise too. This wraps ComfyUI's own k-diffusion
sampler function and passes a ``noise_sampler`` (``methods/step_noise.MirroredStepNoise``) built from the same
group structure; deterministic samplers (no ``noise_sampler`` argument) are returned unchanged.

The step noise of design group g depends only on (seed, g, call), like the initial noise, so a ``LatentFromBatch``
slice reproduces the full batch. The batch's design positions come from the ``batch_index`` the NOISE object saw
(``noise_objects.recall_batch_index``; core passes a sampler no latent) or, in the guided KSampler, directly.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

from comfy_api.latest import io

from . import comfy_compat
from .methods.antithetic import LAYOUTS, MAX_GROUP_SIZE, validate_design
from .methods.step_noise import MirroredStepNoise
from .noise_objects import recall_batch_index
from .search_aliases import SEARCH_ALIASES

CATEGORY = "antithetic/sampling"


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


NODES = [AntitheticSampler]
