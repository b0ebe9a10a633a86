"""antithetic-sampling — a ComfyUI node pack.

Antithetic and Sobol RQMC initial noise (Jia et al., "Antithetic Noise in Diffusion Models", ICLR 2026),
mirrored step noise for ancestral/SDE samplers, training-free Noise Awareness Guidance (after Zhong et al.,
ICLR 2026), pair-diversity metrics and design-aware confidence intervals.

ComfyUI imports this file. Nothing here imports ComfyUI at module level, so the pure math in
``nodes.methods`` stays importable (and testable) without a ComfyUI checkout.
"""

# Frontend extension: served once, at /extensions/<folder name>/ (pyproject has no `web` key on purpose).
WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    """V3 entry point: ComfyUI calls this to get the pack's node list."""
    from .nodes.extension import AntitheticSamplingExtension

    return AntitheticSamplingExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
