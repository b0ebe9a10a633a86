"""V3 nodes: Antithetic Latent Noise and Sobol RQMC Latent Batch (core ``NOISE`` objects).

The math lives in ``methods/antithetic.py`` and ``methods/sobol_rqmc.py``; the NOISE objects (``.seed`` +
``generate_noise``, exactly like core RandomNoise) in ``noise_objects.py``; this file only declares the nodes.
"""

from __future__ import annotations

import logging

from comfy_api.latest import io

from . import comfy_compat
from .methods.antithetic import LAYOUTS, MAX_GROUP_SIZE
from .methods.sobol_rqmc import MAX_POINTS_PER_REPLICATE, MAX_SPECTRAL_COEFFICIENTS, MODES, is_power_of_two
from .noise_objects import AntitheticNoiseGenerator, SobolRQMCNoiseGenerator
from .search_aliases import SEARCH_ALIASES

log = logging.getLogger("antithetic_sampling")

CATEGORY = "antithetic/noise"
PAPER = "Jia et al., 'Antithetic Noise in Diffusion Models', ICLR 2026 (arXiv 2506.06185)"
SEED_MAX = 0xFFFFFFFFFFFFFFFF
NOISE_OUTPUT_TOOLTIP = ("NOISE for SamplerCustomAdvanced, AddNoise or the NAG Guided KSampler's noise input (not "
                        "SamplerCustom, which has no NOISE input and always draws its own iid noise).")


def _seed_input() -> io.Int.Input:
    return io.Int.Input(
        "noise_seed", display_name="noise_seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
        tooltip="Seed of the design. Item k of the batch depends only on (seed, k), so LatentFromBatch / "
                "batch_index slices and API seed sweeps reproduce any single image.",
    )


class AntitheticLatentNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AntitheticLatentNoise",
            display_name="Antithetic Latent Noise",
            category=CATEGORY,
            **comfy_compat.schema_options(io.Schema, search_aliases=SEARCH_ALIASES["AntitheticLatentNoise"]),
            description=(
                "Initial noise in antithetic groups: pairs (z, -z) or K-groups sqrt(K/(K-1))(w_i - mean w) with "
                "pairwise correlation -1/(K-1). Every image keeps exactly the ordinary N(0, I) starting noise, but the "
                "members of a group come out strongly negatively correlated: more diverse batches at zero cost, and "
                "far narrower confidence intervals for batch estimates (use Confidence Interval (noise design) with "
                f"the same group size and layout). {PAPER}. Plug into SamplerCustomAdvanced's noise input, AddNoise or the "
                "NAG Guided KSampler's noise input, like RandomNoise (SamplerCustom has no NOISE input: it always "
                "draws its own iid noise). With ancestral or SDE samplers in SamplerCustomAdvanced use Antithetic "
                "Sampler so the step noise is mirrored too (the guided KSampler does that itself). A batch that is not "
                "a multiple of the group size ends with an incomplete group (logged)."
            ),
            inputs=[
                _seed_input(),
                io.Int.Input(
                    "group_size", display_name="group_size", default=2, min=2, max=MAX_GROUP_SIZE,
                    tooltip="K: images per antithetic group. 2 = pairs (z, -z). K > 2: correlation -1/(K-1) between any "
                            "two members. A batch that is not a multiple of K ends with an incomplete group whose "
                            "items are still exactly N(0, I).",
                ),
                io.Combo.Input(
                    "layout", display_name="layout", options=list(LAYOUTS), default="interleaved",
                    tooltip="interleaved: items gK..gK+K-1 form group g (pairs are 0-1, 2-3, ...; independent of batch "
                            "size, safe with LatentFromBatch). halves: z1..zn then -z1..-zn (group g = items g, g+n, ...); "
                            "the pairing depends on the design size.",
                ),
                io.Int.Input(
                    "design_size", display_name="design_size", default=0, min=0, max=4096, optional=True,
                    tooltip="halves layout only: the full batch size the pairing refers to. 0 = automatic (the batch "
                            "size, or max(batch_index)+1 for a latent sliced with LatentFromBatch). Set it when a slice "
                            "does not reach the last item of the full batch.",
                ),
                io.Mask.Input(
                    "mask", display_name="mask", optional=True,
                    tooltip="Partial antithetic: members differ only inside the mask and share the leader's noise "
                            "outside, so diversity is confined to a region. Resized to the latent (bilinear) and "
                            "binarised at 0.5, which keeps every item exactly N(0, I). Batched masks apply per group.",
                ),
            ],
            outputs=[io.Noise.Output("noise", display_name="noise", tooltip=NOISE_OUTPUT_TOOLTIP)],
        )

    @classmethod
    def execute(cls, noise_seed: int, group_size: int = 2, layout: str = "interleaved", design_size: int = 0,
                mask=None) -> io.NodeOutput:
        return io.NodeOutput(AntitheticNoiseGenerator(noise_seed, group_size, layout, design_size or 0, mask))


class SobolRQMCLatentBatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SobolRQMCLatentBatch",
            display_name="Sobol RQMC Latent Batch",
            category=CATEGORY,
            **comfy_compat.schema_options(io.Schema, search_aliases=SEARCH_ALIASES["SobolRQMCLatentBatch"]),
            description=(
                "Randomised quasi-Monte Carlo initial noise: scrambled Sobol' points mapped through the inverse normal "
                "CDF. The batch is R replicates x n points; replicates are independent scramblings, so replicate means "
                "give an honest confidence interval (Confidence Interval (noise design), 'RQMC replicates') that is "
                "narrower than iid sampling at the same number of images. Every item is exactly N(0, I). Latents "
                "above 21201 values per item (SDXL, SD3, Flux) use QMC on the lowest DCT frequencies. Optional "
                f"antithetic reflection (u, 1-u) combines RQMC with pairs. After {PAPER}; the RQMC construction is "
                "documented in the README."
            ),
            inputs=[
                _seed_input(),
                io.Int.Input(
                    "points_per_replicate", display_name="points_per_replicate", default=8, min=1, max=MAX_POINTS_PER_REPLICATE,
                    tooltip="n: images per replicate (a power of two keeps the Sobol' stratification; other values "
                            "still give exact N(0, I) items but lose most of the variance reduction). Batch = replicates "
                            "x n; a CI needs at least 2 replicates.",
                ),
                io.Combo.Input(
                    "mode", display_name="mode", options=list(MODES), default="auto",
                    tooltip="full: QMC over every latent value (at most 21201 per item: SD1.5 at 512x512 fits). spectral: "
                            "QMC on the lowest DCT frequencies per channel, iid for the rest (any size). auto: full when "
                            "it fits, spectral otherwise.",
                ),
                io.Int.Input(
                    "spectral_coefficients", display_name="spectral_coefficients", default=64, min=1, max=MAX_SPECTRAL_COEFFICIENTS,
                    tooltip="spectral mode: low-frequency DCT coefficients per channel that get QMC points. channels x "
                            "this must stay <= 21201 (Sobol' dimensions): at most 5300 for 4-channel latents "
                            "(SD1.5, SDXL), 1325 for 16-channel ones (SD3, Flux); a larger value stops before "
                            "sampling with an error naming this input. Low frequencies carry "
                            "brightness/colour/layout statistics.",
                ),
                io.Boolean.Input(
                    "antithetic", display_name="antithetic", default=False,
                    tooltip="Follow every Sobol' point by its reflection (z, -z), interleaved: antithetic pairs inside "
                            "each replicate (points_per_replicate must be even).",
                ),
            ],
            outputs=[io.Noise.Output("noise", display_name="noise", tooltip=NOISE_OUTPUT_TOOLTIP)],
        )

    @classmethod
    def validate_inputs(cls, points_per_replicate: int | None = None, antithetic: bool | None = None) -> bool | str:
        # Core skips its own min/max/type checks for the inputs named here (and for every input when a **kwargs
        # parameter is present), so only these two are named and their widget bounds are re-checked here. A linked
        # input is not known at validation time (None): execute() checks it then.
        if points_per_replicate is not None:
            if isinstance(points_per_replicate, bool) or not isinstance(points_per_replicate, int):
                return f"points_per_replicate must be an integer, got {points_per_replicate!r}"
            if not 1 <= points_per_replicate <= MAX_POINTS_PER_REPLICATE:
                return (f"points_per_replicate must be between 1 and {MAX_POINTS_PER_REPLICATE}, got "
                        f"{points_per_replicate}")
        if antithetic is not None and not isinstance(antithetic, bool):
            return f"antithetic must be a boolean, got {antithetic!r}"
        if antithetic and points_per_replicate is not None and points_per_replicate % 2:
            return "points_per_replicate must be even when antithetic is on (points + reflections)"
        return True

    @classmethod
    def execute(cls, noise_seed: int, points_per_replicate: int = 8, mode: str = "auto",
                spectral_coefficients: int = 64, antithetic: bool = False) -> io.NodeOutput:
        if antithetic and points_per_replicate % 2:
            raise ValueError("points_per_replicate must be even when antithetic is on (points + reflections)")
        n_points = points_per_replicate // 2 if antithetic else points_per_replicate
        if not is_power_of_two(n_points):
            log.warning("Sobol RQMC Latent Batch: %d points per replicate is not a power of two; items stay exactly "
                        "N(0, I) but the stratification is lost.", n_points)
        return io.NodeOutput(
            SobolRQMCNoiseGenerator(noise_seed, points_per_replicate, mode, spectral_coefficients, antithetic)
        )


NODES = [AntitheticLatentNoise, SobolRQMCLatentBatch]
