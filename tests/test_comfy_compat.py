"""The compatibility layer (nodes/comfy_compat.py) driven with the call shapes of newer ComfyUI cores.

The tested core (0.3.64) has no nested latents, no downscale ratios and no intermediate dtype; these tests hand
the shims fake objects with the newer signatures and behaviour (as read in ComfyUI's sources up to about 0.38),
and ``run_guided`` is driven end to end on fake core modules that behave like a newer core, against a
transcription of newer core's ``common_ksampler``. No ComfyUI checkout needed.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes import comfy_compat as cc


class FakeNested:
    """Stand-in for comfy.nested_tensor.NestedTensor: is_nested, unbind(), ctor from a list, .to()."""

    is_nested = True

    def __init__(self, tensors):
        self.tensors = list(tensors)

    def unbind(self):
        return self.tensors

    def to(self, *args, **kwargs):
        return FakeNested([t.to(*args, **kwargs) for t in self.tensors])


# ----------------------------------------------------------------------------- transcriptions of newer core


def newer_prepare_noise_inner(latent_image, generator, noise_inds=None):
    """comfy/sample.py prepare_noise_inner of newer cores: float32 draws, then cast."""
    if noise_inds is None:
        return torch.randn(latent_image.size(), dtype=torch.float32, layout=latent_image.layout, generator=generator,
                           device="cpu").to(dtype=latent_image.dtype)
    unique_inds, inverse = np.unique(noise_inds, return_inverse=True)
    noises = []
    for i in range(unique_inds[-1] + 1):
        noise = torch.randn([1] + list(latent_image.size())[1:], dtype=torch.float32, layout=latent_image.layout,
                            generator=generator, device="cpu").to(dtype=latent_image.dtype)
        if i in unique_inds:
            noises.append(noise)
    return torch.cat([noises[i] for i in inverse], axis=0)


def newer_prepare_noise(latent_image, seed, noise_inds=None):
    generator = torch.Generator().manual_seed(seed)  # core uses torch.manual_seed (the global RNG): same numbers
    if getattr(latent_image, "is_nested", False):
        return FakeNested([newer_prepare_noise_inner(t, generator, noise_inds) for t in latent_image.unbind()])
    return newer_prepare_noise_inner(latent_image, generator, noise_inds)


def old_prepare_noise(latent_image, seed, noise_inds=None):
    """comfy/sample.py prepare_noise of 0.3.64: draws directly in the latent's dtype."""
    generator = torch.Generator().manual_seed(seed)
    if noise_inds is None:
        return torch.randn(latent_image.size(), dtype=latent_image.dtype, generator=generator, device="cpu")
    unique_inds, inverse = np.unique(noise_inds, return_inverse=True)
    noises = []
    for i in range(unique_inds[-1] + 1):
        n = torch.randn([1] + list(latent_image.size())[1:], dtype=latent_image.dtype, generator=generator)
        if i in unique_inds:
            noises.append(n)
    return torch.cat([noises[i] for i in inverse], axis=0)


# ----------------------------------------------------------------------------- prepare_noise


@pytest.mark.parametrize("index", [None, [3, 1, 1]])
def test_prepare_noise_equals_core_for_float32_latents(index):
    latent = torch.zeros(3 if index else 2, 4, 8, 8)
    ours = cc.prepare_noise(latent, 77, index)
    assert torch.equal(ours, old_prepare_noise(latent, 77, index))
    assert torch.equal(ours, newer_prepare_noise(latent, 77, index))


def test_prepare_noise_draws_float32_then_casts_like_newer_core():
    latent = torch.zeros(3, 7, dtype=torch.float16)  # small enough that a direct fp16 draw gives other numbers
    ours = cc.prepare_noise(latent, 5)
    assert ours.dtype == torch.float16
    assert torch.equal(ours, newer_prepare_noise(latent, 5))
    assert not torch.equal(ours, old_prepare_noise(latent, 5))


@pytest.mark.parametrize("index", [None, [1, 0]])
def test_prepare_noise_nested_latent_like_newer_core(index):
    latent = FakeNested([torch.zeros(2, 16, 3, 8, 8), torch.zeros(2, 8, 32, dtype=torch.bfloat16)])
    ours = cc.prepare_noise(latent, 9, index)
    ref = newer_prepare_noise(latent, 9, index)
    assert isinstance(ours, FakeNested)
    for a, b in zip(ours.unbind(), ref.unbind(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_prepare_noise_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    cc.prepare_noise(torch.zeros(2, 4, 4, 4), 123)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- fix_empty_latent / finish_latent


def test_fix_empty_latent_follows_each_signature():
    calls = []

    def old(model, latent_image):
        calls.append(("old",))
        return latent_image

    def mid(model, latent_image, downscale_ratio_spacial=None):
        calls.append(("mid", downscale_ratio_spacial))
        return latent_image

    def new(model, latent_image, downscale_ratio_spacial=None, downscale_ratio_temporal=None):
        calls.append(("new", downscale_ratio_spacial, downscale_ratio_temporal))
        return latent_image

    latent = {"samples": torch.zeros(1, 4, 8, 8), "downscale_ratio_spacial": 16, "downscale_ratio_temporal": 4}
    assert cc.fix_empty_latent(old, None, latent)[1] == ()
    assert cc.fix_empty_latent(mid, None, latent)[1] == ("downscale_ratio_spacial",)
    assert cc.fix_empty_latent(new, None, latent)[1] == cc.DOWNSCALE_KEYS
    assert cc.fix_empty_latent(new, None, {"samples": latent["samples"]})[1] == cc.DOWNSCALE_KEYS
    assert calls == [("old",), ("mid", 16), ("new", 16, 4), ("new", None, None)]


class FakeMM:
    def __init__(self, dtype=None):
        if dtype is not None:
            self.intermediate_dtype = lambda: dtype

    @staticmethod
    def intermediate_device():
        return torch.device("cpu")


def test_finish_latent_casts_to_the_intermediate_dtype_and_pops_consumed_keys():
    latent = {"samples": torch.zeros(1), "downscale_ratio_spacial": 16, "batch_index": [0]}
    out = cc.finish_latent(latent, torch.ones(2, 4, dtype=torch.float32), ("downscale_ratio_spacial",),
                           FakeMM(torch.float16))
    assert out["samples"].dtype == torch.float16 and "downscale_ratio_spacial" not in out
    assert out["batch_index"] == [0] and "downscale_ratio_spacial" in latent  # input untouched
    out = cc.finish_latent(latent, torch.ones(2, 4, dtype=torch.float32), (), FakeMM())  # 0.3.64: no dtype
    assert out["samples"].dtype == torch.float32 and out["downscale_ratio_spacial"] == 16


def test_brownian_list_is_explicit():
    assert "dpmpp_2m_sde" in cc.BROWNIAN_TREE_SAMPLERS and "dpmpp_3m_sde_gpu" in cc.BROWNIAN_TREE_SAMPLERS
    for name in ("exp_heun_2_x0_sde", "er_sde", "sa_solver", "seeds_2", "euler_ancestral"):
        assert name not in cc.BROWNIAN_TREE_SAMPLERS


# ----------------------------------------------------------------------------- run_guided on a newer fake core


class NewerCFGGuider:
    """The parts of a newer core's CFGGuider that run_guided touches: sample() packs nested latents and passes
    latent_shapes to outer_sample (newer signature); sampling itself is replaced by a fixed, deterministic map."""

    def __init__(self, model_patcher):
        self.model_patcher = model_patcher
        self.model_options = {}
        self.original_conds = {}
        self.cfg = 1.0

    def set_conds(self, positive, negative):
        self.original_conds = {"positive": positive, "negative": negative}

    def set_cfg(self, cfg):
        self.cfg = cfg

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        if latent_image.is_nested:
            shapes = [t.shape for t in latent_image.unbind()]
            flat_l = torch.cat([t.reshape(t.shape[0], -1) for t in latent_image.unbind()], 1)
            flat_n = torch.cat([t.reshape(t.shape[0], -1) for t in noise.unbind()], 1)
        else:
            shapes, flat_l, flat_n = [latent_image.shape], latent_image, noise
        out = self.outer_sample(flat_n, flat_l, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                                latent_shapes=shapes)
        if len(shapes) > 1:
            parts, start = [], 0
            for s in shapes:
                n = int(np.prod(s[1:]))
                parts.append(out[:, start:start + n].reshape(s))
                start += n
            return FakeNested(parts)
        return out

    def outer_sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
                     seed=None, latent_shapes=None):
        self.seen_latent_shapes = latent_shapes
        return (latent_image + float(sigmas[0]) * noise) * 0.5 + float(self.cfg)


@pytest.fixture
def newer_core(monkeypatch):
    """Fake ``comfy.*`` modules with newer-core signatures (and a bare ``comfy_api`` so the node module imports),
    installed for one test; ``guidance_nodes`` is imported fresh on them and dropped again afterwards."""
    comfy_api = types.ModuleType("comfy_api")
    latest = types.ModuleType("comfy_api.latest")
    latest.io = types.SimpleNamespace(ComfyNode=type("ComfyNode", (), {}))
    latest.ui = types.SimpleNamespace()
    comfy_api.latest = latest
    comfy = types.ModuleType("comfy")
    samplers = types.ModuleType("comfy.samplers")
    sample = types.ModuleType("comfy.sample")
    mm = types.ModuleType("comfy.model_management")
    utils = types.ModuleType("comfy.utils")
    preview = types.ModuleType("latent_preview")
    samplers.CFGGuider = NewerCFGGuider
    samplers.sampler_object = lambda name: ("sampler", name)
    samplers.SAMPLER_NAMES = ["euler"]

    class KSampler:
        SAMPLERS, SCHEDULERS = ["euler"], ["normal"]

        def __init__(self, model, steps, device, sampler=None, scheduler=None, denoise=None, model_options=None):
            self.sigmas = torch.linspace(14.6, 0.0, steps + 1)

    samplers.KSampler = KSampler

    def fix_empty_latent_channels(model, latent_image, downscale_ratio_spacial=None, downscale_ratio_temporal=None):
        if latent_image.is_nested:
            return latent_image
        if downscale_ratio_spacial is not None and downscale_ratio_spacial != 8:
            r = downscale_ratio_spacial / 8
            latent_image = torch.nn.functional.interpolate(latent_image, scale_factor=r, mode="nearest-exact")
        return latent_image

    sample.fix_empty_latent_channels = fix_empty_latent_channels
    sample.prepare_noise = newer_prepare_noise
    mm.intermediate_device = lambda: torch.device("cpu")
    mm.intermediate_dtype = lambda: torch.float16
    utils.PROGRESS_BAR_ENABLED = False
    preview.prepare_callback = lambda model, steps, x0_output_dict=None: None
    comfy.samplers, comfy.sample, comfy.model_management, comfy.utils = samplers, sample, mm, utils
    for name, mod in {"comfy": comfy, "comfy.samplers": samplers, "comfy.sample": sample,
                      "comfy.model_management": mm, "comfy.utils": utils, "latent_preview": preview,
                      "comfy_api": comfy_api, "comfy_api.latest": latest}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    name = "antithetic_sampling.nodes.guidance_nodes"
    package = sys.modules["antithetic_sampling.nodes"]
    saved = sys.modules.pop(name, None), getattr(package, "guidance_nodes", None)
    gn = importlib.import_module(name)
    try:
        yield types.SimpleNamespace(samplers=samplers, sample=sample, mm=mm, gn=gn)
    finally:
        sys.modules.pop(name, None)
        if saved[0] is not None:
            sys.modules[name] = saved[0]
        if saved[1] is not None:
            package.guidance_nodes = saved[1]
        elif hasattr(package, "guidance_nodes"):
            delattr(package, "guidance_nodes")


def newer_common_ksampler(core, model, seed, steps, cfg, latent):
    """Transcription of newer core's nodes.common_ksampler + comfy.sample.sample (with the fake guider)."""
    latent_image = core.sample.fix_empty_latent_channels(model, latent["samples"],
                                                         latent.get("downscale_ratio_spacial", None),
                                                         latent.get("downscale_ratio_temporal", None))
    noise = core.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    sigmas = core.samplers.KSampler(model, steps, None).sigmas
    guider = core.samplers.CFGGuider(model)
    guider.set_conds(None, None)
    guider.set_cfg(cfg)
    samples = guider.sample(noise, latent_image, None, sigmas, seed=seed)
    samples = samples.to(device=core.mm.intermediate_device(), dtype=core.mm.intermediate_dtype())
    out = latent.copy()
    out.pop("downscale_ratio_spacial", None)
    out.pop("downscale_ratio_temporal", None)
    out["samples"] = samples
    return out


def _equal(a, b) -> bool:
    if getattr(a, "is_nested", False):
        return all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a.unbind(), b.unbind(), strict=True))
    return a.dtype == b.dtype and torch.equal(a, b)


MODEL = types.SimpleNamespace(load_device="cpu", model_options={})


@pytest.mark.parametrize("kind", ["plain", "downscale", "nested", "nested_batch_index"])
def test_run_guided_at_w0_equals_newer_core_ksampler(newer_core, kind):
    guider_class, run_guided = newer_core.gn.guider_class, newer_core.gn.run_guided

    if kind == "plain":
        latent = {"samples": torch.zeros(2, 4, 8, 8)}
    elif kind == "downscale":
        latent = {"samples": torch.zeros(2, 4, 8, 8), "downscale_ratio_spacial": 16}
    else:
        latent = {"samples": FakeNested([torch.zeros(2, 16, 3, 8, 8), torch.zeros(2, 8, 32)])}
        if kind == "nested_batch_index":
            latent["batch_index"] = [3, 1]
    ours, guider = run_guided(MODEL, 42, 4, 3.0, "euler", "normal", None, None, latent, 1.0, 0.0, 2.0, 0.1, 0.3,
                              "sure_residual")
    ref = newer_common_ksampler(newer_core, MODEL, 42, 4, 3.0, latent)
    assert isinstance(guider, guider_class()) and isinstance(guider, NewerCFGGuider)
    assert set(ours) == set(ref)  # downscale keys popped like core
    assert _equal(ours["samples"], ref["samples"])
    if kind.startswith("nested"):
        assert guider.seen_latent_shapes == [t.shape for t in latent["samples"].unbind()]
    if kind == "downscale":
        assert ours["samples"].shape[-1] == 16  # the ratio reached fix_empty_latent_channels


def test_guider_overrides_only_predict_noise_and_sample(newer_core):
    assert cc.guider_overrides(newer_core.gn.guider_class()) == {"predict_noise", "sample"}
