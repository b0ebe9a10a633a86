"""End-to-end: Antithetic KSampler in a real ComfyUI (tiny random SD1.5 checkpoint, CPU).

The drop-in's promise: core KSampler's inputs and output, and exactly the latents (bit for bit) of its
SamplerCustomAdvanced composition, Antithetic Latent Noise + Antithetic Sampler (mirrored step noise) + CFGGuider +
BasicScheduler, on the paths where that matters: an ancestral sampler (step noise mirrored), img2img with
denoise < 1 (sigmas cut like KSampler's), an SDE sampler on a Brownian tree with groups of 4 in the halves layout,
and a LatentFromBatch slice (items depend only on (seed, batch_index)). Latents are compared through SaveLatent
files, images through SaveImage. Random weights: only the plumbing is meaningful.
"""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.e2e

STEPS, CFG = 3, 4.0
KSAMPLER_INPUTS = ["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative",
                   "latent_image", "denoise"]


def drop_in(seed, sampler, *, denoise=1.0, latent="@latent", group_size=2, layout="interleaved", **extra) -> dict:
    return {"class_type": "AntitheticKSampler", "inputs": {
        "model": "@model", "seed": seed, "steps": STEPS, "cfg": CFG, "sampler_name": sampler, "scheduler": "normal",
        "positive": "@positive", "negative": "@negative", "latent_image": latent, "denoise": denoise,
        "group_size": group_size, "layout": layout, **extra}}


def composition_nodes(seed, sampler, group_size=2, layout="interleaved") -> dict:
    return {
        "noise": {"class_type": "AntitheticLatentNoise",
                  "inputs": {"noise_seed": seed, "group_size": group_size, "layout": layout}},
        "sampler": {"class_type": "AntitheticSampler",
                    "inputs": {"sampler_name": sampler, "group_size": group_size, "layout": layout}},
    }


def outputs(name: str, samples) -> dict:
    return {
        f"lat_{name}": {"class_type": "SaveLatent", "inputs": {"samples": samples, "filename_prefix": f"ks_{name}"}},
        f"dec_{name}": {"class_type": "VAEDecode", "inputs": {"samples": samples, "vae": "@vae"}},
        f"img_{name}": {"class_type": "SaveImage", "inputs": {"images": [f"dec_{name}", 0],
                                                              "filename_prefix": f"ks_{name}"}},
    }


def latent_of(server, hist, name) -> torch.Tensor:
    from safetensors.torch import load_file

    (info,) = server.outputs(hist)[f"lat_{name}"]["latents"]
    path = server.base_dir / "output" / info.get("subfolder", "") / info["filename"]
    return load_file(str(path))["latent_tensor"]


def images_of(server, hist, name) -> list[np.ndarray]:
    return [np.asarray(im) for im in server.images(hist, f"img_{name}")]


CASES = {
    # name: (sampler, denoise, group_size, layout, img2img)
    "ancestral": ("euler_ancestral", 1.0, 2, "interleaved", False),
    "ancestral_img2img": ("euler_ancestral", 0.6, 2, "interleaved", True),
    "brownian_k4_halves": ("dpmpp_2m_sde", 1.0, 4, "halves", False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_drop_in_equals_its_sampler_custom_advanced_composition(comfy_server, comfy_graph, case):
    sampler, denoise, k, layout, img2img = CASES[case]
    seed = {"ancestral": 501, "ancestral_img2img": 502, "brownian_k4_halves": 503}[case]
    extra, latent = {}, None
    if img2img:  # a non-empty latent to start from: core KSampler's output
        extra["start_empty"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64,
                                                                             "batch_size": 4}}
        latent = {"class_type": "KSampler", "inputs": {
            "model": "@model", "seed": seed + 1000, "steps": STEPS, "cfg": CFG, "sampler_name": "euler",
            "scheduler": "normal", "positive": "@positive", "negative": "@negative",
            "latent_image": ["start_empty", 0], "denoise": 1.0}}
    extra["ks"] = drop_in(seed, sampler, denoise=denoise, group_size=k, layout=layout)
    extra["core"] = {"class_type": "KSampler", "inputs": {**{n: v for n, v in extra["ks"]["inputs"].items()
                                                             if n in KSAMPLER_INPUTS}}}
    extra.update(outputs("ks", ["ks", 0]))
    extra.update(outputs("sca", "@samples"))
    extra.update(outputs("core", ["core", 0]))
    parts = composition_nodes(seed, sampler, k, layout)
    graph = comfy_graph(noise=parts["noise"], sampler=parts["sampler"], seed=seed, batch_size=4, steps=STEPS,
                        cfg=CFG, denoise=denoise, latent=latent, save=False, extra_nodes=extra)
    hist = comfy_server.run(graph)

    ours, ref = latent_of(comfy_server, hist, "ks"), latent_of(comfy_server, hist, "sca")
    assert ours.shape == (4, 4, 8, 8) and ours.dtype == ref.dtype
    assert torch.equal(ours, ref), f"{case}: drop-in latents differ from the composition's"
    assert all(np.array_equal(a, b) for a, b in zip(images_of(comfy_server, hist, "ks"),
                                                    images_of(comfy_server, hist, "sca"), strict=True))
    # Not a comparison of two identical plain runs: core KSampler (iid noise, same seed) gives other latents, and
    # the members of a group are different images.
    assert not torch.equal(ours, latent_of(comfy_server, hist, "core"))
    assert not torch.equal(ours[0], ours[1])


def test_slice_reproduces_the_full_batch(comfy_server, comfy_graph):
    """Item k depends only on (seed, k): a LatentFromBatch slice of items 2-3 gets the latents those items get in
    the full batch, with mirrored step noise (euler_ancestral)."""
    seed = 511
    extra = {
        "full": drop_in(seed, "euler_ancestral"),
        "slice_lat": {"class_type": "LatentFromBatch", "inputs": {"samples": "@latent", "batch_index": 2,
                                                                  "length": 2}},
        "part": drop_in(seed, "euler_ancestral", latent=["slice_lat", 0]),
        **outputs("full", ["full", 0]), **outputs("part", ["part", 0]),
    }
    graph = comfy_graph(seed=seed, batch_size=4, steps=STEPS, save=False, extra_nodes=extra)
    hist = comfy_server.run(graph)
    full, part = latent_of(comfy_server, hist, "full"), latent_of(comfy_server, hist, "part")
    assert part.shape[0] == 2 and torch.equal(part, full[2:])


def test_object_info_is_core_ksampler_plus_the_design(comfy_server):
    ours = comfy_server.object_info("AntitheticKSampler")
    core = comfy_server.object_info("KSampler")
    req, core_req = ours["input"]["required"], core["input"]["required"]
    assert list(req) == KSAMPLER_INPUTS + ["group_size", "layout"] == ours["input_order"]["required"]
    assert list(ours["input"]["optional"]) == ["design_size", "mask"]
    for name in KSAMPLER_INPUTS:  # same socket / widget type, default and range as core KSampler
        ours_spec, core_spec = req[name], core_req[name]
        ours_type = ours_spec[0] if ours_spec[0] != "COMBO" else ours_spec[1]["options"]
        assert ours_type == core_spec[0], name
        for key in ("default", "min", "max", "step"):
            if key in core_spec[1] and name != "sampler_name":
                assert ours_spec[1].get(key) == core_spec[1][key], (name, key)
    assert req["sampler_name"][1]["default"] == "euler" and req["scheduler"][1]["default"] == "normal"
    assert req["seed"][1]["control_after_generate"] is True
    assert ours["output"] == core["output"] == ["LATENT"] and ours["output_name"] == ["latent"]
    for section in ("required", "optional"):
        for name, spec in ours["input"][section].items():
            assert spec[1].get("tooltip") and spec[1].get("display_name") == name, name
    assert ours["category"] == "antithetic/sampling" and "ICLR 2026" in ours["description"]
    assert "SamplerCustomAdvanced" in ours["description"]


def test_bad_design_is_named(comfy_server, comfy_graph):
    from antithetic_sampling.nodes.local_comfy.errors import ComfyError

    extra = {"ks": drop_in(521, "euler", layout="halves", design_size=2), **outputs("bad", ["ks", 0])}
    graph = comfy_graph(seed=521, batch_size=4, steps=STEPS, save=False, extra_nodes=extra)
    with pytest.raises(ComfyError, match="design_size"):
        comfy_server.run(graph)


# ------------------------------------------------------------------------------------------- blueprints


def _blueprint(name: str) -> dict:
    import json

    from antithetic_sampling.nodes.api_client.sync_workflows import ROOT, SUBGRAPHS

    return json.loads((ROOT / SUBGRAPHS / f"{name}.json").read_text(encoding="utf-8"))


def test_antithetic_blueprint_equals_the_drop_in(comfy_server, comfy_graph):
    """The 'Antithetic Sampling (SamplerCustomAdvanced)' blueprint, flattened as the frontend queues a placed
    subgraph node, gives Antithetic KSampler's latents (euler_ancestral, groups of 4)."""
    from antithetic_sampling.nodes.api_client.blueprints import flatten_to_api

    seed = 531
    drop = drop_in(seed, "euler_ancestral", group_size=4)
    values = {k: v for k, v in drop["inputs"].items() if k not in ("model", "positive", "negative", "latent_image")}
    values.update({"model": "@model", "positive": "@positive", "negative": "@negative", "latent_image": "@latent"})
    flat = flatten_to_api(_blueprint("Antithetic Sampling (SamplerCustomAdvanced)"),
                          comfy_server.object_info(), values)
    extra = {"ks": drop, **outputs("ks", ["ks", 0]), **flat["nodes"], **outputs("bp", flat["outputs"][0])}
    graph = comfy_graph(seed=seed, batch_size=4, steps=STEPS, save=False, extra_nodes=extra)
    hist = comfy_server.run(graph)
    assert torch.equal(latent_of(comfy_server, hist, "ks"), latent_of(comfy_server, hist, "bp"))


def test_blueprints_are_listed_where_the_core_serves_them(comfy_server):
    """Newer cores list ``<pack>/subgraphs/*.json`` at /global_subgraphs (feature-detected: skipped on a core
    without the route). Ours are listed under the pack and served whole; every inner node exists on the server."""
    import json

    from antithetic_sampling.nodes.api_client.blueprints import BLUEPRINTS

    try:
        listed = comfy_server.get_json("/global_subgraphs")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            pytest.skip("this ComfyUI has no /global_subgraphs (subgraph blueprints came with newer cores)")
        raise
    ours = {i: e for i, e in listed.items() if e.get("info", {}).get("node_pack") == "custom_nodes.antithetic-sampling"}
    assert sorted(e["name"] for e in ours.values()) == sorted(BLUEPRINTS)
    known = set(comfy_server.object_info())
    for entry_id, entry in ours.items():
        full = comfy_server.get_json(f"/global_subgraphs/{entry_id}")
        data = json.loads(full["data"])
        assert data == _blueprint(entry["name"])
        (sub,) = data["definitions"]["subgraphs"]
        assert {n["type"] for n in sub["nodes"]} <= known
