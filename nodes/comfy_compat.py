"""The one compatibility layer between this pack and ComfyUI's internals (everything outside ``comfy_api``).

Every core module, class and function the sampling glue uses is reached through here, and every call whose
signature or behaviour moved between ComfyUI releases is adapted here by feature detection (``inspect.signature``,
``hasattr``, ``is_nested``), never by reading a version string. The shims follow current core (read in
ComfyUI's own sources up to about 0.38) and reduce to the old behaviour on older cores (0.3.64 is tested):

* ``fix_empty_latent`` - newer ``common_ksampler`` / ``SamplerCustomAdvanced`` pass the latent's
  ``downscale_ratio_spacial`` / ``downscale_ratio_temporal`` to ``comfy.sample.fix_empty_latent_channels``
  (whose parameter list grew from (model, latent) to (model, latent, spacial) to (model, latent, spacial,
  temporal)) and pop them from the output latent; nested latents are returned unchanged.
* ``prepare_noise`` - core ``prepare_noise`` with a private generator: newer core draws in float32 and then casts
  to the latent's dtype, and draws one component after another from the same generator for a nested latent.
* ``finish_latent`` - newer ``comfy.sample.sample`` casts the sampled latent to
  ``model_management.intermediate_dtype()`` (fp16 with ``--fp16-intermediates``) besides moving it to
  ``intermediate_device()``.
* ``CFGGuider.outer_sample`` / ``inner_sample`` gained ``latent_shapes`` (and ``sample()`` packs nested latents):
  the pack's guider overrides neither, so core's own signatures run unchanged; ``guider_overrides`` lets a test
  check that it stays that way.
* ``schema_options`` - fields that ``comfy_api``'s ``io.Schema`` gained after the oldest supported core (such as
  ``search_aliases``, the extra names the node search matches) are passed only where the schema class has them,
  read from its dataclass fields; on an older core the node is defined without them.

Import-light: nothing from ``comfy`` is imported at module import time, so the pure parts of the pack (and their
tests) never need a ComfyUI checkout.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np
import torch

# Latent keys newer core consumes in fix_empty_latent_channels and removes from the sampled latent.
DOWNSCALE_KEYS = ("downscale_ratio_spacial", "downscale_ratio_temporal")

# SDE samplers whose core implementation draws its step noise from a Brownian tree (BrownianTreeNoiseSampler) when
# no noise_sampler is passed. Explicit on purpose: newer SDE samplers (exp_heun_2_x0_sde, er_sde, seeds_*, sa_solver)
# use plain Gaussian noise, so "sde" in a name says nothing.
BROWNIAN_TREE_SAMPLERS = frozenset({
    "dpmpp_sde", "dpmpp_sde_gpu",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu",
})


# ----------------------------------------------------------------------------------------- plain imports


def samplers_module():
    import comfy.samplers

    return comfy.samplers


def cfg_guider_class():
    return samplers_module().CFGGuider


def calc_cond_batch(model, conds, x, timestep, model_options):
    return samplers_module().calc_cond_batch(model, conds, x, timestep, model_options)


def sampler_names() -> list[str]:
    return list(samplers_module().SAMPLER_NAMES)


def ksampler_sampler_names() -> list[str]:
    return list(samplers_module().KSampler.SAMPLERS)


def scheduler_names() -> list[str]:
    return list(samplers_module().KSampler.SCHEDULERS)


def sampler_object(name: str):
    return samplers_module().sampler_object(name)


def ksampler_object(sampler_function, extra_options, inpaint_options):
    return samplers_module().KSAMPLER(sampler_function, extra_options, inpaint_options)


def ksampler_sigmas(model, steps: int, sampler_name: str, scheduler: str, denoise: float) -> torch.Tensor:
    """The sigmas ``comfy.sample.sample`` would use (via ``comfy.samplers.KSampler``, as core does)."""
    return samplers_module().KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                                      scheduler=scheduler, denoise=denoise, model_options=model.model_options).sigmas


def brownian_tree_noise_sampler(x: torch.Tensor, sigma_min, sigma_max, seeds: list[int]):
    from comfy.k_diffusion.sampling import BrownianTreeNoiseSampler

    return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=list(seeds), cpu=True)


def prepare_callback(model, steps: int):
    import latent_preview

    return latent_preview.prepare_callback(model, steps)


def progress_bar_enabled() -> bool:
    import comfy.utils

    return bool(getattr(comfy.utils, "PROGRESS_BAR_ENABLED", True))


def guider_overrides(guider_cls) -> set[str]:
    """Which of CFGGuider's sampling methods ``guider_cls`` overrides (the shims above assume: predict_noise, sample)."""
    base = cfg_guider_class()
    names = ("predict_noise", "sample", "outer_sample", "inner_sample", "outer_predict_noise", "__call__")
    mro = guider_cls.__mro__
    own = mro[:mro.index(base)] if base in mro else mro
    return {n for n in names if any(n in vars(c) for c in own)}


# ----------------------------------------------------------------------------------------- V3 schema


def schema_fields(schema_cls: type) -> frozenset[str]:
    """The keyword arguments ``schema_cls`` (``comfy_api``'s ``io.Schema``, a dataclass) accepts."""
    if dataclasses.is_dataclass(schema_cls):
        return frozenset(f.name for f in dataclasses.fields(schema_cls) if f.init)
    return frozenset(n for n in inspect.signature(schema_cls).parameters if n != "self")


def schema_options(schema_cls: type, **optional: Any) -> dict[str, Any]:
    """The entries of ``optional`` that this core's ``schema_cls`` has a field for; the others are dropped.

    For fields newer cores added to ``io.Schema`` (``search_aliases``): ``io.Schema(node_id=..., ...,
    **schema_options(io.Schema, search_aliases=[...]))`` gives the node its aliases where the core knows the field and
    defines it exactly as before where it does not (``io.Schema`` rejects an unknown keyword).
    """
    have = schema_fields(schema_cls)
    return {k: v for k, v in optional.items() if k in have}


# ----------------------------------------------------------------------------------------- latents


def is_nested(t: Any) -> bool:
    """A nested latent (newer core: ``comfy.nested_tensor.NestedTensor``, e.g. video + audio)."""
    return bool(getattr(t, "is_nested", False))


def components(t: Any) -> list[torch.Tensor]:
    return list(t.unbind()) if is_nested(t) else [t]


def fix_empty_latent(fix_fn, model, latent: dict) -> tuple[Any, tuple[str, ...]]:
    """``fix_empty_latent_channels`` called as the running core calls it; returns (samples, keys it consumed).

    ``fix_fn``: ``comfy.sample.fix_empty_latent_channels`` (a parameter so a test can pass a newer signature).
    Newer cores take the latent's downscale ratios as extra positional parameters; those this core's function
    accepts are passed (``None`` when the latent has none, as core does) and later popped from the output latent.
    """
    try:
        params = list(inspect.signature(fix_fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    extra = max(0, min(len(positional) - 2, len(DOWNSCALE_KEYS)))
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        extra = len(DOWNSCALE_KEYS)
    keys = DOWNSCALE_KEYS[:extra]
    samples = fix_fn(model, latent["samples"], *[latent.get(k, None) for k in keys])
    return samples, keys


def fix_empty_latent_channels(model, latent: dict) -> tuple[Any, tuple[str, ...]]:
    import comfy.sample

    return fix_empty_latent(comfy.sample.fix_empty_latent_channels, model, latent)


def _noise_like(latent: torch.Tensor, gen: torch.Generator, batch_index) -> torch.Tensor:
    shape = list(latent.size())
    if batch_index is None:
        return torch.randn(shape, dtype=torch.float32, layout=latent.layout, generator=gen,
                           device="cpu").to(dtype=latent.dtype)
    unique, inverse = np.unique(batch_index, return_inverse=True)
    noises = []
    for i in range(int(unique[-1]) + 1):
        n = torch.randn([1] + shape[1:], dtype=torch.float32, layout=latent.layout, generator=gen,
                        device="cpu").to(dtype=latent.dtype)
        if i in unique:
            noises.append(n)
    return torch.cat([noises[i] for i in np.asarray(inverse).reshape(-1)], dim=0)


def prepare_noise(latent_image: Any, seed: int, batch_index=None) -> Any:
    """``comfy.sample.prepare_noise`` with a private generator: the same numbers, the global RNG untouched.

    Follows current core: float32 draws cast to the latent's dtype (identical to the older direct draw for float32
    latents, the only kind older cores build), and nested latents draw their components in order from one generator
    and come back in the latent's nested type.
    """
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    if is_nested(latent_image):
        return type(latent_image)([_noise_like(t, gen, batch_index) for t in latent_image.unbind()])
    return _noise_like(latent_image, gen, batch_index)


def finish_latent(latent: dict, samples: Any, consumed: tuple[str, ...], model_management=None) -> dict:
    """The output latent as core's sampler nodes build it: ``samples`` moved to the intermediate device (and cast
    to the intermediate dtype where core has one), and the keys ``fix_empty_latent`` consumed removed."""
    if model_management is None:
        import comfy.model_management as model_management
    kwargs = {"device": model_management.intermediate_device()}
    if hasattr(model_management, "intermediate_dtype"):
        kwargs["dtype"] = model_management.intermediate_dtype()
    out = latent.copy()
    for k in consumed:
        out.pop(k, None)
    out["samples"] = samples.to(**kwargs)
    return out
