"""The compatibility layer (nodes/comfy_compat.py) driven with the call shapes of newer ComfyUI cores.

The tested core (0.3.64) has no nested latents, no downscale ratios and no intermediate dtype; these tests hand
the shims fake objects with the newer signatures and behaviour (as read in ComfyUI's sources up to about 0.38),
and ``run_guided`` is driven end to end on fake core modules that behave like a newer core, against a
transcription of newer core's ``common_ksampler``. No ComfyUI checkout needed.
"""

from __future__ import annotations

import dataclasses
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


def calc_cond_batch(model, conds, x, timestep, model_options):
    """A fake model: each cond is a per-element denoiser D(x, sigma) = x / (1 + sigma^2) + bias (ideal for N(0, 1)
    data plus a cond-specific offset), so every item and value is independent of the rest of the batch."""
    s = timestep.reshape(-1, *([1] * (x.ndim - 1))).to(x)
    model.calls.append(len([c for c in conds if c is not None]))
    return [None if c is None else x / (1.0 + s * s) + c["bias"] for c in conds]


def sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options={}, seed=None):  # noqa: B006
    """Transcription of core's sampling_function and cfg_function (pre-CFG hooks rewrite conds_out before CFG,
    post-CFG hooks see the rewritten cond_denoised)."""
    uncond_ = None if cond_scale == 1.0 and not model_options.get("disable_cfg1_optimization", False) else uncond
    conds = [cond, uncond_]
    if "sampler_calc_cond_batch_function" in model_options:
        out = model_options["sampler_calc_cond_batch_function"](
            {"conds": conds, "input": x, "sigma": timestep, "model": model, "model_options": model_options})
    else:
        out = calc_cond_batch(model, conds, x, timestep, model_options)
    for fn in model_options.get("sampler_pre_cfg_function", []):
        out = fn({"conds": conds, "conds_out": out, "cond_scale": cond_scale, "timestep": timestep, "input": x,
                  "sigma": timestep, "model": model, "model_options": model_options})
    cond_pred, uncond_pred = out[0], out[1]
    cfg_result = cond_pred if uncond_pred is None else uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        cfg_result = fn({"denoised": cfg_result, "cond": cond, "uncond": uncond, "cond_scale": cond_scale,
                         "model": model, "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": timestep,
                         "model_options": model_options, "input": x})
    return cfg_result


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

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 - core's signature
        return sampling_function(self.inner_model, x, timestep, self.conds.get("negative"), self.conds.get("positive"),
                                 self.cfg, model_options=model_options, seed=seed)

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
        self.seen_sampler, self.seen_sigmas, self.seen_seed = sampler, sigmas, seed
        x = (latent_image + float(sigmas[0]) * noise) * 0.5 + float(self.cfg)
        fn = getattr(sampler, "sampler_function", None)
        if fn is not None:  # a fake KSAMPLER (below): run its function the way core's KSAMPLER.sample does
            x = fn(None, x, sigmas, extra_args={"seed": seed}, callback=callback, disable=disable_pbar,
                   **sampler.extra_options)
        return x


class FakeKSAMPLER:
    """core KSAMPLER's constructor: (sampler_function, extra_options, inpaint_options)."""

    def __init__(self, sampler_function, extra_options=None, inpaint_options=None):
        self.sampler_function = sampler_function
        self.extra_options = dict(extra_options or {})
        self.inpaint_options = dict(inpaint_options or {})


def fake_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """An ancestral-like sampler: adds the step noise of every step (core default: iid from the seed)."""
    if noise_sampler is None:
        gen = torch.Generator().manual_seed(int((extra_args or {}).get("seed", 0)))
        noise_sampler = lambda s, t: torch.randn(x.shape, generator=gen)  # noqa: E731
    for i in range(len(sigmas) - 1):
        x = x * 0.9 + float(sigmas[i + 1]) * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


def fake_deterministic(model, x, sigmas, extra_args=None, callback=None, disable=None):
    return x * 0.5


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
    samplers.calc_cond_batch = calc_cond_batch
    samplers.KSAMPLER = FakeKSAMPLER
    samplers.sampler_object = lambda name: FakeKSAMPLER(
        fake_ancestral if name == "euler_ancestral" else fake_deterministic)
    samplers.SAMPLER_NAMES = ["euler", "euler_ancestral"]

    class KSampler:
        SAMPLERS, SCHEDULERS = ["euler", "euler_ancestral"], ["normal"]

        def __init__(self, model, steps, device, sampler=None, scheduler=None, denoise=None, model_options=None):
            # core: denoise < 1 keeps the last steps + 1 sigmas of a schedule of int(steps / denoise) steps
            total = steps if denoise is None or denoise > 0.9999 else int(steps / denoise)
            self.sigmas = torch.linspace(14.6, 0.0, total + 1)[-(steps + 1):]

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
    package = sys.modules["antithetic_sampling.nodes"]
    fresh = ("sampler_nodes", "guidance_nodes")  # imported on the fakes, the real ones put back afterwards
    saved = {m: (sys.modules.pop(f"{package.__name__}.{m}", None), getattr(package, m, None)) for m in fresh}
    mods = {m: importlib.import_module(f"{package.__name__}.{m}") for m in fresh}
    try:
        yield types.SimpleNamespace(samplers=samplers, sample=sample, mm=mm, gn=mods["guidance_nodes"],
                                    sn=mods["sampler_nodes"])
    finally:
        for m, (module, attr) in saved.items():
            sys.modules.pop(f"{package.__name__}.{m}", None)
            if module is not None:
                sys.modules[f"{package.__name__}.{m}"] = module
            if attr is not None:
                setattr(package, m, attr)
            elif hasattr(package, m):
                delattr(package, m)


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
    samples = guider.sample(noise, latent_image, core.samplers.sampler_object("euler"), sigmas, seed=seed)
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


# ----------------------------------------------------------------------------- composition with other patches


class EpsModelSampling:
    sigma_max = 14.6

    @staticmethod
    def noise_scaling(sigma, noise, latent_image, max_denoise=False):
        return latent_image + noise * sigma.reshape(-1, *([1] * (noise.ndim - 1))).to(noise)


def apg_like(args):
    """A pre-CFG hook that rewrites the conditional output (like core APG / FreSca / LatentApplyOperationCFG)."""
    out = list(args["conds_out"])
    out[0] = out[0] * 0.5 + 0.3
    return out


def eps_scaling_like(args):
    """A post-CFG hook that rescales the noise prediction (like core Epsilon Scaling)."""
    x, d = args["input"], args["denoised"]
    return x - (x - d) / 1.05


def _guided_step(gn, scale, pre=(), post=(), estimator="calibrated_residual", cfg=3.0, x=None):
    guider = gn.guider_class()(types.SimpleNamespace())
    guider.set_cfg(cfg)
    guider.set_awareness(scale, 1000.0, 0.0, 0.3, estimator, measure=True)
    guider.inner_model = types.SimpleNamespace(model_sampling=EpsModelSampling(), calls=[])
    guider.conds = {"positive": [{"bias": 0.1}][0], "negative": [{"bias": -0.1}][0]}
    guider.shift_log, guider._calls, guider._item_keys = [], 0, [11, 12]
    sigmas = torch.tensor([8.0, 4.0, 2.0, 0.0])
    mo = {"transformer_options": {"sample_sigmas": sigmas}, "sampler_pre_cfg_function": list(pre),
          "sampler_post_cfg_function": list(post)}
    out = guider.predict_noise(x, sigmas[1:2].expand(x.shape[0]), mo, seed=5)
    return out, guider.shift_log[-1], mo


def _state():
    # A state that carries 1.25x the noise of its nominal level 4 (data ~ N(0, 1)): the estimate reads high.
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 4, 16, 16, generator=g) + 4.0 * 1.25 * torch.randn(2, 4, 16, 16, generator=g)


@pytest.mark.parametrize("estimator", ["calibrated_residual", "sure_residual"])
def test_correction_is_computed_from_raw_outputs_and_added_on_top_of_the_hooks(newer_core, estimator):
    gn, x = newer_core.gn, _state()
    plain0, _, _ = _guided_step(gn, 0.0, estimator=estimator, x=x)
    plain1, log1, _ = _guided_step(gn, 1.0, estimator=estimator, x=x)
    hooked0, _, _ = _guided_step(gn, 0.0, (apg_like,), (eps_scaling_like,), estimator, x=x)
    hooked1, logh, mo = _guided_step(gn, 1.0, (apg_like,), (eps_scaling_like,), estimator, x=x)
    assert log1["applied"] and logh["applied"]  # the state is shifted: the correction acts
    assert logh["ratio"] == log1["ratio"]  # the level estimate does not move when hooks are added
    assert not torch.equal(hooked0, plain0)  # the hooks do change the chain ...
    # ... and the correction rides on top of it unchanged: D~ - D_cfg is the same with and without the hooks
    torch.testing.assert_close(hooked1 - hooked0, plain1 - plain0, rtol=0, atol=1e-6)
    assert mo["sampler_pre_cfg_function"] == [apg_like]  # the caller's model_options are not modified


def test_w0_measuring_returns_the_chain_untouched(newer_core):
    gn, x = newer_core.gn, _state()
    hooked0, log, _ = _guided_step(gn, 0.0, (apg_like,), (eps_scaling_like,), x=x)
    chain = sampling_function(types.SimpleNamespace(calls=[]), x, torch.full((2,), 4.0), {"bias": -0.1},
                              {"bias": 0.1}, 3.0, {"sampler_pre_cfg_function": [apg_like],
                                                   "sampler_post_cfg_function": [eps_scaling_like]})
    assert torch.equal(hooked0, chain) and log["ratio"] is not None and not log["applied"]


def test_probe_noise_is_keyed_per_item(newer_core):
    """An item's probe noise depends on its own key only: the same item alone or after another gives the same
    draws, and two items with different keys get different draws."""
    gn = newer_core.gn
    both = gn.keyed_probe_noise((2, 4, 8, 8), 5, [11, 12], 3)
    alone = gn.keyed_probe_noise((1, 4, 8, 8), 5, [12], 3)
    assert torch.equal(both[1:], alone) and not torch.equal(both[0], both[1])
    assert not torch.equal(gn.keyed_probe_noise((1, 4, 8, 8), 5, [12], 4), alone)  # fresh draws per call
    noise = torch.randn(3, 4, 8, 8)
    keys = gn.item_keys(noise, torch.zeros(3, 4, 8, 8))
    assert keys[1:] == gn.item_keys(noise[1:], torch.zeros(2, 4, 8, 8)) and len(set(keys)) == 3
    nested = gn.item_keys(FakeNested([noise, noise[:, :1]]), None)
    assert len(set(nested)) == 3 and nested != gn.item_keys(noise, None)


# ----------------------------------------------------------------------------- V3 schema fields


@dataclasses.dataclass
class NewerSchema:
    """io.Schema of a core with ``search_aliases`` (a dataclass field, as in newer comfy_api/latest/_io.py)."""

    node_id: str
    display_name: str = None
    category: str = "sd"
    search_aliases: list[str] = dataclasses.field(default_factory=list)
    is_output_node: bool = False


@dataclasses.dataclass
class OlderSchema:
    """io.Schema of a core without the field: passing it would raise TypeError."""

    node_id: str
    display_name: str = None
    category: str = "sd"
    is_output_node: bool = False


def test_schema_options_pass_search_aliases_where_the_schema_has_the_field():
    opts = cc.schema_options(NewerSchema, search_aliases=["sobol", "qmc"])
    assert opts == {"search_aliases": ["sobol", "qmc"]}
    assert NewerSchema(node_id="X", category="c", **opts).search_aliases == ["sobol", "qmc"]


def test_schema_options_drop_search_aliases_where_the_schema_lacks_it():
    with pytest.raises(TypeError):  # the control: the older schema really refuses the keyword
        OlderSchema(node_id="X", search_aliases=["sobol"])
    opts = cc.schema_options(OlderSchema, search_aliases=["sobol", "qmc"])
    assert opts == {}
    assert OlderSchema(node_id="X", category="c", **opts) == OlderSchema(node_id="X", category="c")


def test_schema_options_read_a_plain_class_signature_too():
    class PlainSchema:
        def __init__(self, node_id, search_aliases=None):
            self.node_id, self.search_aliases = node_id, search_aliases

    assert cc.schema_options(PlainSchema, search_aliases=["rqmc"], is_dev_only=True) == {"search_aliases": ["rqmc"]}


# ----------------------------------------------------------------------------- Antithetic KSampler on the fake core


def newer_sampler_custom_advanced(core, sn, model, seed, steps, cfg, sampler_name, latent, denoise, k, layout):
    """Transcription of the composition Antithetic Latent Noise + Antithetic Sampler + CFGGuider + BasicScheduler
    (KSampler's sigmas) + newer core's SamplerCustomAdvanced.execute."""
    from antithetic_sampling.nodes.noise_objects import AntitheticNoiseGenerator

    noise = AntitheticNoiseGenerator(seed, k, layout)
    sampler = sn.mirrored_sampler(sampler_name, k, layout)
    sigmas = core.samplers.KSampler(model, steps, None, denoise=denoise).sigmas
    guider = core.samplers.CFGGuider(model)
    guider.set_conds(None, None)
    guider.set_cfg(cfg)
    latent = latent.copy()
    latent["samples"] = core.sample.fix_empty_latent_channels(model, latent["samples"],
                                                              latent.get("downscale_ratio_spacial", None),
                                                              latent.get("downscale_ratio_temporal", None))
    samples = guider.sample(noise.generate_noise(latent), latent["samples"], sampler, sigmas,
                            denoise_mask=latent.get("noise_mask"), seed=noise.seed)
    samples = samples.to(core.mm.intermediate_device())
    out = latent.copy()
    out.pop("downscale_ratio_spacial", None)
    out.pop("downscale_ratio_temporal", None)
    out["samples"] = samples
    return out, guider


@pytest.mark.parametrize("sampler_name", ["euler_ancestral", "euler"])
@pytest.mark.parametrize("kind", ["plain", "denoise", "slice", "k4_halves", "downscale"])
def test_antithetic_ksampler_equals_its_sampler_custom_advanced_composition(newer_core, sampler_name, kind):
    k, layout, denoise = 2, "interleaved", 1.0
    latent = {"samples": torch.zeros(4, 4, 8, 8)}
    if kind == "denoise":
        latent = {"samples": torch.linspace(-1, 1, 4 * 4 * 8 * 8).reshape(4, 4, 8, 8)}
        denoise = 0.6
    elif kind == "slice":
        latent = {"samples": torch.zeros(2, 4, 8, 8), "batch_index": [2, 3]}
    elif kind == "k4_halves":
        k, layout = 4, "halves"
        latent = {"samples": torch.zeros(8, 4, 8, 8)}
    elif kind == "downscale":
        latent = {"samples": torch.zeros(4, 4, 8, 8), "downscale_ratio_spacial": 16}
    ours = newer_core.sn.antithetic_ksample(MODEL, 7, 5, 3.0, sampler_name, "normal", None, None, latent, denoise,
                                            k, layout)
    ref, guider = newer_sampler_custom_advanced(newer_core, newer_core.sn, MODEL, 7, 5, 3.0, sampler_name, latent,
                                                denoise, k, layout)
    # Newer core's KSampler path casts to the intermediate dtype (fp16 with --fp16-intermediates, as this fake core
    # says); SamplerCustomAdvanced keeps float32. The drop-in follows KSampler; the numbers are the same.
    assert ours["samples"].dtype == newer_core.mm.intermediate_dtype()
    assert torch.equal(ours["samples"], ref["samples"].to(ours["samples"].dtype))
    assert set(ours) == set(ref)
    assert len(guider.seen_sigmas) == 6 and (denoise == 1.0) == (float(guider.seen_sigmas[0]) > 14.5)
    if kind == "slice":  # the slice is items 2-3 of the full batch: the same latents as there
        full = newer_core.sn.antithetic_ksample(MODEL, 7, 5, 3.0, sampler_name, "normal", None, None,
                                                {"samples": torch.zeros(4, 4, 8, 8)}, denoise, k, layout)
        assert torch.equal(ours["samples"], full["samples"][2:])


def test_antithetic_ksampler_mirrors_the_step_noise(newer_core):
    """euler_ancestral: the two members of a pair end as exact mirrors of each other around the latent map (the
    fake ancestral update is odd in (x, step noise)); core's own iid step noise (the control) breaks the mirror."""
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    cfg = 0.0  # the fake guider adds cfg: 0 keeps the update odd
    ours = newer_core.sn.antithetic_ksample(MODEL, 3, 4, cfg, "euler_ancestral", "normal", None, None, latent, 1.0)
    s = ours["samples"].float()
    assert torch.allclose(s[0], -s[1], atol=1e-2) and s[0].abs().mean() > 0.1
    guider = newer_core.samplers.CFGGuider(MODEL)
    guider.set_cfg(cfg)
    from antithetic_sampling.nodes.noise_objects import AntitheticNoiseGenerator

    plain = newer_core.sn.sample_like_ksampler(MODEL, guider, 3, 4, "euler_ancestral", "normal",
                                               latent, 1.0, noise=type("N", (), {
                                                   "seed": 3, "generate_noise": AntitheticNoiseGenerator(3).generate_noise
                                               })())  # the same start, no design: core's own step noise
    p = plain["samples"].float()
    assert not torch.allclose(p[0], -p[1], atol=1e-1)


@pytest.mark.parametrize(("args", "name"), [
    ({"seed": -1}, "seed"), ({"steps": 0}, "steps"), ({"cfg": float("nan")}, "cfg"), ({"denoise": 1.5}, "denoise"),
    ({"group_size": 1}, "group_size"), ({"layout": "rows"}, "layout"), ({"design_size": -2}, "design_size"),
    ({"sampler_name": "nope"}, "sampler_name"), ({"scheduler": "nope"}, "scheduler"),
    ({"latent_image": torch.zeros(2, 4, 8, 8)}, "latent_image"),
])
def test_antithetic_ksampler_names_the_bad_input(newer_core, args, name):
    kw = {"model": MODEL, "seed": 1, "steps": 3, "cfg": 2.0, "sampler_name": "euler", "scheduler": "normal",
          "positive": None, "negative": None, "latent_image": {"samples": torch.zeros(2, 4, 8, 8)}, "denoise": 1.0,
          "group_size": 2, "layout": "interleaved", "design_size": 0}
    kw.update(args)
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        newer_core.sn.antithetic_ksample(**kw)
