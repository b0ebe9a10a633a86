"""End-to-end: the Noise Awareness Guidance nodes in a real ComfyUI (tiny random SD1.5 checkpoint, CPU).

Random weights: only the plumbing is meaningful (parameterisations, equality with core KSampler at w = 0,
cfg = 1, NOISE input with mirrored step noise), not image quality.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

STEPS = 3


def _ksampler_inputs(seed: int, cfg: float = 4.0, sampler: str = "euler") -> dict:
    return {"model": "@model", "seed": seed, "steps": STEPS, "cfg": cfg, "sampler_name": sampler,
            "scheduler": "normal", "positive": "@positive", "negative": "@negative", "latent_image": "@latent",
            "denoise": 1.0}


def _awareness(scale: float, estimator: str = "sure_residual", start: float = 1000.0, end: float = 0.0) -> dict:
    return {"awareness_scale": scale, "sigma_start": start, "sigma_end": end, "max_level_shift": 0.3,
            "level_estimator": estimator}


def _save(name: str, samples_node: str) -> dict:
    return {
        f"dec_{name}": {"class_type": "VAEDecode", "inputs": {"samples": [samples_node, 0], "vae": "@vae"}},
        f"save_{name}": {"class_type": "SaveImage", "inputs": {"images": [f"dec_{name}", 0], "filename_prefix": name}},
    }


def _pixels(server, hist, node_id) -> list[np.ndarray]:
    imgs = server.images(hist, node_id)
    assert imgs, f"no images from {node_id}"
    return [np.asarray(im) for im in imgs]


def _probe_json(server, hist, node_id="probe") -> dict:
    texts = server.outputs(hist)[node_id]["text"]
    return json.loads(texts[0])


@pytest.mark.parametrize("kind", ["eps", "v_prediction", "flow"])
def test_guidance_nodes_run_for_each_parameterisation(comfy_server, comfy_graph, kind):
    seed = {"eps": 11, "v_prediction": 12, "flow": 13}[kind]
    extra = {
        "core": {"class_type": "KSampler", "inputs": _ksampler_inputs(seed)},
        "guided0": {"class_type": "NoiseAwarenessGuidedKSampler", "inputs": {**_ksampler_inputs(seed), **_awareness(0.0)}},
        "guided1": {"class_type": "NoiseAwarenessGuidedKSampler",
                    "inputs": {**_ksampler_inputs(seed), **_awareness(1.5, "calibrated_residual")}},
        "probe": {"class_type": "NoiseShiftProbe",
                  "inputs": {**_ksampler_inputs(seed), **_awareness(1.0, "calibrated_residual")}},
        "save_plot": {"class_type": "SaveImage", "inputs": {"images": ["probe", 0], "filename_prefix": "shift"}},
        **_save("core", "core"), **_save("guided0", "guided0"), **_save("guided1", "guided1"),
    }
    guider = {"class_type": "NoiseAwarenessGuider",
              "inputs": {"model": "@model", "positive": "@positive", "negative": "@negative", "cfg": 4.0,
                         **_awareness(1.0, "calibrated_residual")}}
    graph = comfy_graph(seed=seed, batch_size=2, steps=STEPS, model_sampling=kind, guider=guider, extra_nodes=extra)
    hist = comfy_server.run(graph)

    core, g0, g1 = (_pixels(comfy_server, hist, f"save_{n}") for n in ("core", "guided0", "guided1"))
    assert all(np.array_equal(a, b) for a, b in zip(core, g0, strict=True)), "w = 0 must equal core KSampler"
    assert len(g1) == 2 and all(np.isfinite(a).all() for a in g1)
    assert _pixels(comfy_server, hist, "save")  # SamplerCustomAdvanced + NoiseAwarenessGuider

    numbers = _probe_json(comfy_server, hist)
    assert [s["step"] for s in numbers["steps"]] == list(range(STEPS))
    assert numbers["regular_evaluations"] == 2 * STEPS
    assert 1.0 < numbers["cost_vs_cfg"] <= 2.0
    measured = [s["ratio_mean"] for s in numbers["steps"][1:] if s["ratio_mean"] is not None]
    assert measured and all(0.2 < r < 5 for r in measured)
    plot = _pixels(comfy_server, hist, "save_plot")[0]
    assert plot.shape[2] == 3 and plot.std() > 0


def test_cfg_one_and_guider_defaults(comfy_server, comfy_graph):
    seed = 21
    extra = {
        "guided": {"class_type": "NoiseAwarenessGuidedKSampler",
                   "inputs": {**_ksampler_inputs(seed, cfg=1.0), **_awareness(1.0, "calibrated_residual")}},
        "probe": {"class_type": "NoiseShiftProbe",
                  "inputs": {**_ksampler_inputs(seed, cfg=1.0), **_awareness(0.0, "calibrated_residual")}},
        **_save("guided", "guided"),
    }
    graph = comfy_graph(seed=seed, batch_size=2, steps=STEPS, save=False, extra_nodes=extra)
    hist = comfy_server.run(graph)
    assert len(_pixels(comfy_server, hist, "save_guided")) == 2
    numbers = _probe_json(comfy_server, hist)
    assert numbers["regular_evaluations"] == STEPS  # cfg == 1: ComfyUI skips the uncond pass, so do we
    assert not any(s["corrected"] for s in numbers["steps"])  # awareness_scale 0 = measure only


def test_cfg_one_batches_the_sure_probe_with_the_regular_call(comfy_server, comfy_graph):
    """cfg == 1 (no uncond pass): the SURE probe rides in the regular calc_cond_batch call as extra batch items;
    the numbers stay those of a working estimator and the guided sampler runs."""
    seed = 23
    extra = {
        "probe": {"class_type": "NoiseShiftProbe",
                  "inputs": {**_ksampler_inputs(seed, cfg=1.0), **_awareness(1.0, "sure_residual")}},
        "probe8": {"class_type": "NoiseShiftProbe",
                   "inputs": {**_ksampler_inputs(seed, cfg=4.0), **_awareness(1.0, "sure_residual")}},
        "guided": {"class_type": "NoiseAwarenessGuidedKSampler",
                   "inputs": {**_ksampler_inputs(seed, cfg=1.0), **_awareness(1.0, "sure_residual")}},
        **_save("guided", "guided"),
    }
    graph = comfy_graph(seed=seed, batch_size=2, steps=STEPS, save=False, extra_nodes=extra)
    hist = comfy_server.run(graph)
    numbers = _probe_json(comfy_server, hist)
    assert numbers["batched_probe_steps"] == STEPS and numbers["regular_evaluations"] == STEPS
    assert numbers["extra_evaluations"] >= STEPS  # the probe counts as an evaluation even when batched
    # what the probe measures (1 - tr J / d per image; on random weights it is often too small for a level estimate,
    # which then falls back to the nominal level)
    fractions = [f for s in numbers["steps"] for f in s["noise_fraction"]]
    assert len(fractions) == 2 * STEPS and all(np.isfinite(fractions)) and all(-1 < f < 1.5 for f in fractions)
    assert _probe_json(comfy_server, hist, "probe8")["batched_probe_steps"] == 0  # cfg != 1: its own call
    imgs = _pixels(comfy_server, hist, "save_guided")
    assert len(imgs) == 2 and all(np.isfinite(a).all() and a.std() > 0 for a in imgs)


def test_antithetic_noise_input_mirrors_step_noise(comfy_server, comfy_graph):
    """NOISE from Antithetic Latent Noise + euler_ancestral: w = 0 equals SamplerCustomAdvanced with the
    Antithetic Sampler (mirrored step noise) on the same noise; w > 0 runs."""
    seed = 31
    noise = {"class_type": "AntitheticLatentNoise", "inputs": {"noise_seed": seed, "group_size": 2,
                                                               "layout": "interleaved"}}
    sampler = {"class_type": "AntitheticSampler",
               "inputs": {"sampler_name": "euler_ancestral", "group_size": 2, "layout": "interleaved"}}
    extra = {
        "guided0": {"class_type": "NoiseAwarenessGuidedKSampler",
                    "inputs": {**_ksampler_inputs(seed, sampler="euler_ancestral"), **_awareness(0.0),
                               "noise": "@noise"}},
        "guided1": {"class_type": "NoiseAwarenessGuidedKSampler",
                    "inputs": {**_ksampler_inputs(seed, sampler="euler_ancestral"),
                               **_awareness(1.0, "calibrated_residual"), "noise": "@noise"}},
        **_save("guided0", "guided0"), **_save("guided1", "guided1"),
    }
    graph = comfy_graph(noise=noise, sampler=sampler, seed=seed, batch_size=4, steps=STEPS, scheduler="normal",
                        extra_nodes=extra)
    hist = comfy_server.run(graph)
    ref = _pixels(comfy_server, hist, "save")
    g0 = _pixels(comfy_server, hist, "save_guided0")
    assert all(np.array_equal(a, b) for a, b in zip(ref, g0, strict=True))
    assert len(_pixels(comfy_server, hist, "save_guided1")) == 4


def test_bad_inputs_are_named(comfy_server, comfy_graph):
    from antithetic_sampling.nodes.local_comfy.errors import ComfyError

    extra = {"guided": {"class_type": "NoiseAwarenessGuidedKSampler",
                        "inputs": {**_ksampler_inputs(41), **_awareness(1.0, start=0.5, end=2.0)}},
             **_save("guided", "guided")}
    graph = comfy_graph(seed=41, batch_size=1, steps=2, save=False, extra_nodes=extra)
    with pytest.raises(ComfyError, match="sigma_end"):
        comfy_server.run(graph)


def test_w0_equals_ksampler_on_every_core_path(comfy_server, comfy_graph):
    """awareness_scale 0 (guided KSampler) and the measuring probe equal core KSampler bit for bit on the paths
    common_ksampler takes: a LatentFromBatch slice (batch_index), img2img (denoise < 1 on a non-empty latent) with a
    noise mask, and an ancestral sampler drawing core's own step noise."""
    seed = 91
    first = {"class_type": "KSampler", "inputs": _ksampler_inputs(seed)}
    mask = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 32}}
    paths = {
        "slice": ({"class_type": "LatentFromBatch", "inputs": {"samples": "@latent", "batch_index": 1, "length": 2}},
                  {}),
        "img2img": ({"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["first", 0], "mask": ["mask", 0]}},
                    {"denoise": 0.6}),
        "ancestral": ({"class_type": "LatentFromBatch", "inputs": {"samples": "@latent", "batch_index": 0,
                                                                   "length": 3}},
                      {"sampler_name": "euler_ancestral"}),
    }
    extra = {"first": first, "mask": mask}
    for name, (lat, over) in paths.items():
        extra[f"lat_{name}"] = lat
        inputs = {**_ksampler_inputs(seed), **over, "latent_image": [f"lat_{name}", 0]}
        extra[f"core_{name}"] = {"class_type": "KSampler", "inputs": inputs}
        extra[f"g_{name}"] = {"class_type": "NoiseAwarenessGuidedKSampler", "inputs": {**inputs, **_awareness(0.0)}}
        extra[f"p_{name}"] = {"class_type": "NoiseShiftProbe", "inputs": {**inputs, **_awareness(0.0)}}
        extra.update(_save(f"core_{name}", f"core_{name}"))
        extra.update(_save(f"g_{name}", f"g_{name}"))
        extra[f"dec_p_{name}"] = {"class_type": "VAEDecode", "inputs": {"samples": [f"p_{name}", 2], "vae": "@vae"}}
        extra[f"save_p_{name}"] = {"class_type": "SaveImage",
                                   "inputs": {"images": [f"dec_p_{name}", 0], "filename_prefix": f"p_{name}"}}
    graph = comfy_graph(seed=seed, batch_size=3, steps=STEPS, save=False, extra_nodes=extra)
    hist = comfy_server.run(graph)
    for name in paths:
        core = _pixels(comfy_server, hist, f"save_core_{name}")
        for kind in ("g", "p"):
            ours = _pixels(comfy_server, hist, f"save_{kind}_{name}")
            assert all(np.array_equal(a, b) for a, b in zip(core, ours, strict=True)), f"{kind} != KSampler: {name}"
