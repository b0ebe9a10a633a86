"""Batch-queue client without any server: --set/--sweep grammar, sweep products, job identity, manifest,
UI -> API conversion against a canned /object_info, error wording, numbers found in text outputs."""

from __future__ import annotations

import json

import pytest
from antithetic_sampling.nodes.api_client.client import (
    format_execution_error,
    format_rejection,
    numbers_from_text,
    split_outputs,
)
from antithetic_sampling.nodes.api_client.convert import ConversionError, convert_ui_to_api, widget_names
from antithetic_sampling.nodes.api_client.jobs import (
    SpecError,
    build_jobs,
    job_key,
    parse_set,
    parse_sweep,
    parse_sweep_values,
    resolve_node,
)
from antithetic_sampling.nodes.api_client.manifest import Manifest

# ----------------------------------------------------------------------------------------------- grammar


def test_set_parses_json_and_text():
    t, v = parse_set("3.seed=42")
    assert (t.node, t.input, v) == ("3", "seed", 42)
    assert parse_set("KSampler.cfg=7.5")[1] == 7.5
    assert parse_set("5.text=a red fox")[1] == "a red fox"
    assert parse_set('5.text="quoted"')[1] == "quoted"
    assert parse_set('6.model=["4", 0]')[1] == ["4", 0]
    assert parse_set("7.flag=true")[1] is True
    t, v = parse_set("Antithetic Latent Noise.noise_seed=3")  # title with spaces
    assert t.node == "Antithetic Latent Noise" and t.input == "noise_seed"
    t, _ = parse_set("v1.5 model.ckpt_name=x.safetensors")  # dots in the title: the last dot splits
    assert t.node == "v1.5 model" and t.input == "ckpt_name"


@pytest.mark.parametrize("bad", ["3seed=1", "3.seed", ".seed=1", "3.=1"])
def test_set_rejects_malformed(bad):
    with pytest.raises(SpecError):
        parse_set(bad)


def test_sweep_ranges_and_lists():
    assert parse_sweep_values("0..4") == [0, 1, 2, 3, 4]
    assert len(parse_sweep_values("0..99")) == 100
    assert parse_sweep_values("3..1") == [3, 2, 1]
    assert parse_sweep_values("0..10:5") == [0, 5, 10]
    assert parse_sweep_values("0.5..1.5:0.25") == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert parse_sweep_values("euler,dpmpp_2m,ddim") == ["euler", "dpmpp_2m", "ddim"]
    assert parse_sweep_values("1,2.5,true") == [1, 2.5, True]
    assert parse_sweep_values('"a, b",c') == ["a, b", "c"]
    assert parse_sweep_values("[1, [2, 3]]") == [1, [2, 3]]
    assert parse_sweep_values("7") == [7]
    with pytest.raises(SpecError):
        parse_sweep_values("0..10:0")
    with pytest.raises(SpecError):
        parse_sweep_values("0..10:-1")
    with pytest.raises(SpecError):
        parse_sweep_values("a,,b")
    with pytest.raises(SpecError):
        parse_sweep("3.seed=")


# ----------------------------------------------------------------------------------------------- jobs

GRAPH = {
    "1": {"class_type": "Loader", "inputs": {"ckpt_name": "a.safetensors"}, "_meta": {"title": "Load"}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 4, "model": ["1", 0]}, "_meta": {"title": "Sampler"}},
    "4": {"class_type": "Noise", "inputs": {"noise_seed": 100}, "_meta": {"title": "Antithetic Latent Noise"}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}, "_meta": {"title": "Save"}},
    "10": {"class_type": "SaveImage", "inputs": {"filename_prefix": "y"}, "_meta": {"title": "Save"}},
}


def test_resolve_node_by_id_title_class():
    assert resolve_node(GRAPH, "3") == "3"
    assert resolve_node(GRAPH, "Sampler") == "3"
    assert resolve_node(GRAPH, "KSampler") == "3"
    assert resolve_node(GRAPH, "Antithetic Latent Noise") == "4"
    with pytest.raises(SpecError, match="used by nodes 10, 9"):
        resolve_node(GRAPH, "Save")
    with pytest.raises(SpecError, match="several SaveImage"):
        resolve_node(GRAPH, "SaveImage")
    with pytest.raises(SpecError, match="no node 'Nope'"):
        resolve_node(GRAPH, "Nope")


def test_sweep_product_order_params_and_keys():
    sweeps = [parse_sweep("3.seed=0..2"), parse_sweep("Sampler.steps=4,8")]
    jobs = build_jobs(GRAPH, [parse_set("Load.ckpt_name=b.safetensors")], sweeps)
    assert len(jobs) == 6
    assert [j.params for j in jobs[:2]] == [{"3.seed": 0, "3.steps": 4}, {"3.seed": 0, "3.steps": 8}]
    assert all(j.prompt["1"]["inputs"]["ckpt_name"] == "b.safetensors" for j in jobs)
    assert [j.prompt["3"]["inputs"]["seed"] for j in jobs] == [0, 0, 1, 1, 2, 2]
    assert len({j.key for j in jobs}) == 6
    assert GRAPH["3"]["inputs"]["seed"] == 5  # the base graph is not modified
    # stable: the same arguments give the same keys; titles do not matter
    again = build_jobs(GRAPH, [parse_set("1.ckpt_name=b.safetensors")], [parse_sweep("3.seed=0..2"),
                                                                          parse_sweep("3.steps=4,8")])
    assert [j.key for j in again] == [j.key for j in jobs]
    retitled = json.loads(json.dumps(GRAPH))
    retitled["3"]["_meta"]["title"] = "other"
    assert job_key(retitled) == job_key(GRAPH)


def test_repeat_and_seed_stride():
    jobs = build_jobs(GRAPH, [], [parse_sweep("3.seed=0,1")], repeat=3)
    assert len(jobs) == 6 and len({j.key for j in jobs}) == 6
    assert [j.repeat for j in jobs] == [0, 1, 2, 0, 1, 2]
    strided = build_jobs(GRAPH, [], [parse_sweep("3.seed=0,1")], repeat=2, repeat_seed_stride=1000)
    assert [j.prompt["3"]["inputs"]["seed"] for j in strided] == [0, 1000, 1, 1001]
    assert [j.prompt["4"]["inputs"]["noise_seed"] for j in strided] == [100, 1100, 100, 1100]
    with pytest.raises(SpecError):
        build_jobs(GRAPH, repeat=0)


def test_unknown_input_is_caught_with_object_info():
    info = {"KSampler": {"input": {"required": {"seed": ["INT", {}], "steps": ["INT", {}]}}}}
    with pytest.raises(SpecError, match="has no input 'sead'"):
        build_jobs(GRAPH, [parse_set("3.sead=1")], object_info=info)
    # an input the node has but the graph left out (an optional one) is accepted
    info["KSampler"]["input"]["optional"] = {"denoise": ["FLOAT", {}]}
    assert build_jobs(GRAPH, [parse_set("3.denoise=0.5")], object_info=info)[0].prompt["3"]["inputs"]["denoise"] == 0.5


# ----------------------------------------------------------------------------------------------- manifest


def test_manifest_latest_state_and_torn_line(tmp_path):
    path = tmp_path / "m.jsonl"
    m = Manifest(path)
    m.append({"type": "run", "run": "r1"})
    m.append({"type": "job", "job": "a", "status": "queued", "prompt_id": "p1"})
    m.append({"type": "job", "job": "a", "status": "done", "files": []})
    m.append({"type": "job", "job": "b", "status": "queued", "prompt_id": "p2"})
    with open(path, "a") as fh:
        fh.write('{"type": "job", "job": "b", "sta')  # killed mid-write
    m2 = Manifest(path)
    assert set(m2.done()) == {"a"}
    assert m2.state("b") == "queued"
    m2.append({"type": "job", "job": "b", "status": "done"})
    m3 = Manifest(path)
    assert set(m3.done()) == {"a", "b"}
    assert len(m3.job_records("done")) == 2


# ----------------------------------------------------------------------------------------------- conversion

OBJECT_INFO = {
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["tiny.safetensors", "v1-5.safetensors"], {}]}},
        "input_order": {"required": ["ckpt_name"]},
        "output": ["MODEL", "CLIP", "VAE"], "display_name": "Load Checkpoint",
    },
    "CLIPTextEncode": {
        "input": {"required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP", {}]}},
        "input_order": {"required": ["text", "clip"]}, "output": ["CONDITIONING"], "display_name": "CLIP Text Encode",
    },
    "EmptyLatentImage": {
        "input": {"required": {"width": ["INT", {"default": 512}], "height": ["INT", {"default": 512}],
                               "batch_size": ["INT", {"default": 1}]}},
        "input_order": {"required": ["width", "height", "batch_size"]}, "output": ["LATENT"],
    },
    "LatentUpscaleBy": {
        "input": {"required": {"samples": ["LATENT", {}], "upscale_method": [["nearest-exact"], {}],
                               "scale_by": ["FLOAT", {}]}},
        "input_order": {"required": ["samples", "upscale_method", "scale_by"]}, "output": ["LATENT"],
    },
    "KSampler": {
        "input": {"required": {
            "model": ["MODEL", {}], "seed": ["INT", {"control_after_generate": True}], "steps": ["INT", {}],
            "cfg": ["FLOAT", {}], "sampler_name": [["euler", "ddim"], {}], "scheduler": [["normal", "karras"], {}],
            "positive": ["CONDITIONING", {}], "negative": ["CONDITIONING", {}], "latent_image": ["LATENT", {}],
            "denoise": ["FLOAT", {}]}},
        "input_order": {"required": ["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                                     "negative", "latent_image", "denoise"]},
        "output": ["LATENT"], "display_name": "KSampler",
    },
    "VAEDecode": {
        "input": {"required": {"samples": ["LATENT", {}], "vae": ["VAE", {}]}},
        "input_order": {"required": ["samples", "vae"]}, "output": ["IMAGE"],
    },
    "SaveImage": {
        "input": {"required": {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
                  "hidden": {"prompt": "PROMPT"}},
        "input_order": {"required": ["images", "filename_prefix"], "hidden": ["prompt"]}, "output": [],
        "output_node": True,
    },
    # a V3-style node: COMBO with options, a forceInput INT, an optional widget, a seed by name
    "AntitheticLatentNoise": {
        "input": {"required": {"noise_seed": ["INT", {"default": 0}],
                               "layout": ["COMBO", {"options": ["interleaved", "halves"]}],
                               "k": ["INT", {"forceInput": True}]},
                  "optional": {"design_size": ["INT", {"default": 0}]}},
        "input_order": {"required": ["noise_seed", "layout", "k"], "optional": ["design_size"]},
        "output": ["NOISE"], "display_name": "Antithetic Latent Noise",
    },
}


def _node(nid, typ, inputs=(), outputs=(), widgets=None, mode=0, title=None):
    n = {"id": nid, "type": typ, "mode": mode, "inputs": [dict(i) for i in inputs],
         "outputs": [dict(o) for o in outputs], "properties": {}, "pos": [0, 0], "size": [100, 100]}
    if widgets is not None:
        n["widgets_values"] = widgets
    if title:
        n["title"] = title
    return n


def ui_workflow(control="randomize"):
    links = [
        [1, 1, 0, 5, 0, "MODEL"], [2, 1, 1, 2, 0, "CLIP"], [3, 1, 1, 3, 0, "CLIP"],
        [4, 2, 0, 5, 2, "CONDITIONING"], [5, 3, 0, 5, 3, "CONDITIONING"],
        [6, 4, 0, 8, 0, "LATENT"],      # empty latent -> bypassed upscale
        [7, 8, 0, 5, 4, "LATENT"],      # bypassed upscale -> sampler
        [8, 5, 0, 6, 0, "LATENT"], [9, 1, 2, 6, 1, "VAE"],
        [10, 6, 0, 12, 0, "IMAGE"],     # decode -> reroute
        [11, 12, 0, 7, 0, "IMAGE"],     # reroute -> save
        [12, 6, 0, 9, 0, "IMAGE"],      # decode -> muted save
        [13, 10, 0, 5, 1, "INT"],       # primitive -> sampler seed (converted widget)
        [14, 13, 0, 11, 0, "INT"],      # muted node -> noise.k: dropped
    ]
    nodes = [
        _node(1, "CheckpointLoaderSimple", widgets=["tiny.safetensors"]),
        _node(2, "CLIPTextEncode", [{"name": "clip", "type": "CLIP", "link": 2}], widgets=["a red fox"],
              title="Positive"),
        _node(3, "CLIPTextEncode", [{"name": "clip", "type": "CLIP", "link": 3}], widgets=["blurry"]),
        _node(4, "EmptyLatentImage", widgets=[64, 64, 2]),
        _node(5, "KSampler", [
            {"name": "model", "type": "MODEL", "link": 1},
            {"name": "seed", "type": "INT", "link": 13, "widget": {"name": "seed"}},
            {"name": "positive", "type": "CONDITIONING", "link": 4},
            {"name": "negative", "type": "CONDITIONING", "link": 5},
            {"name": "latent_image", "type": "LATENT", "link": 7},
        ], widgets=[123, control, 4, 7.5, "euler", "karras", 1.0]),
        _node(6, "VAEDecode", [{"name": "samples", "type": "LATENT", "link": 8},
                               {"name": "vae", "type": "VAE", "link": 9}]),
        _node(7, "SaveImage", [{"name": "images", "type": "IMAGE", "link": 11}], widgets=["fox"]),
        _node(8, "LatentUpscaleBy", [{"name": "samples", "type": "LATENT", "link": 6}],
              [{"name": "LATENT", "type": "LATENT", "links": [7]}], widgets=["nearest-exact", 1.5], mode=4),
        _node(9, "SaveImage", [{"name": "images", "type": "IMAGE", "link": 12}], widgets=["muted"], mode=2),
        _node(10, "PrimitiveNode", [], [{"name": "INT", "type": "INT", "links": [13]}], widgets=[777, "fixed"]),
        _node(11, "AntitheticLatentNoise", [{"name": "k", "type": "INT", "link": 14}],
              widgets=[55, "fixed", "halves", 8]),
        _node(12, "Reroute", [{"name": "", "type": "*", "link": 10}], [{"name": "", "type": "IMAGE", "links": [11]}]),
        _node(13, "EmptyLatentImage", widgets=[8, 8, 1], mode=2),
        _node(14, "Note", widgets=["what to look at"]),
    ]
    return {"last_node_id": 14, "last_link_id": 14, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def test_widget_names_follow_definition_order():
    assert widget_names(OBJECT_INFO["KSampler"]) == [
        ("seed", True), ("steps", False), ("cfg", False), ("sampler_name", False), ("scheduler", False),
        ("denoise", False)]
    # seed by name, COMBO type, forceInput skipped, optional after required
    assert widget_names(OBJECT_INFO["AntitheticLatentNoise"]) == [
        ("noise_seed", True), ("layout", False), ("design_size", False)]


@pytest.mark.parametrize("control", ["randomize", "fixed", True])
def test_convert_ui_to_api(control):
    api = convert_ui_to_api(ui_workflow(control), OBJECT_INFO)
    assert set(api) == {"1", "2", "3", "4", "5", "6", "7", "11"}  # no muted/bypassed/virtual nodes
    ks = api["5"]["inputs"]
    assert ks == {"seed": 777, "steps": 4, "cfg": 7.5, "sampler_name": "euler", "scheduler": "karras",
                  "denoise": 1.0, "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                  "latent_image": ["4", 0]}  # through the bypassed upscale, seed from the primitive
    assert api["7"]["inputs"] == {"filename_prefix": "fox", "images": ["6", 0]}  # through the reroute
    assert api["4"]["inputs"] == {"width": 64, "height": 64, "batch_size": 2}
    assert api["2"]["_meta"]["title"] == "Positive" and api["3"]["_meta"]["title"] == "CLIP Text Encode"
    assert api["11"]["inputs"] == {"noise_seed": 55, "layout": "halves", "design_size": 8}  # k's source is muted


def test_convert_refuses_unknown_class_and_subgraphs():
    ui = ui_workflow()
    ui["nodes"].append(_node(20, "SomePackNode", widgets=[1]))
    with pytest.raises(ConversionError, match="node 20.*'SomePackNode' is not installed"):
        convert_ui_to_api(ui, OBJECT_INFO)
    ui = ui_workflow()
    ui["definitions"] = {"subgraphs": [{"id": "0f0e-uuid"}]}
    ui["nodes"].append(_node(21, "0f0e-uuid"))
    with pytest.raises(ConversionError, match="subgraph"):
        convert_ui_to_api(ui, OBJECT_INFO)
    with pytest.raises(ConversionError):
        convert_ui_to_api({"3": {"class_type": "KSampler"}}, OBJECT_INFO)


# ----------------------------------------------------------------------------------------------- wording

REJECTION = {
    "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "", "extra_info": {}},
    "node_errors": {
        "3": {"class_type": "KSampler", "dependent_outputs": ["9"], "errors": [
            {"type": "value_bigger_than_max", "message": "Value 20000 bigger than max of 10000", "details": "steps",
             "extra_info": {"input_name": "steps", "received_value": 20000}},
            {"type": "value_not_in_list", "message": "Value not in list",
             "details": "sampler_name: 'eulr' not in ['euler', 'ddim']",
             "extra_info": {"input_name": "sampler_name", "received_value": "eulr",
                            "input_config": [["euler", "ddim"], {}]}},
        ]},
        "4": {"class_type": "CheckpointLoaderSimple", "dependent_outputs": ["9"], "errors": [
            {"type": "required_input_missing", "message": "Required input is missing", "details": "ckpt_name",
             "extra_info": {"input_name": "ckpt_name"}}]},
    },
}


def test_rejection_in_plain_words():
    text = format_rejection(REJECTION, {"3": {"class_type": "KSampler", "_meta": {"title": "My sampler"}}})
    lines = text.splitlines()
    assert lines[0] == "ComfyUI rejected the workflow (it failed validation):"
    assert "node 3 'My sampler' (KSampler): input 'steps': 20000 is above the maximum (10000)" in lines[1]
    assert "input 'sampler_name': 'eulr' is not one of the allowed values; allowed: euler, ddim" in lines[2]
    assert "node 4 (CheckpointLoaderSimple): input 'ckpt_name' is required but not connected or set" in lines[3]
    text = format_rejection({"error": {"type": "invalid_prompt", "message":
                                       "Cannot execute because node Foo does not exist.", "details": "Node ID '#7'"},
                             "node_errors": {}})
    assert "node Foo does not exist" in text and "#7" in text


def test_execution_error_wording():
    msg = {"node_id": "3", "node_type": "KSampler", "exception_type": "builtins.ValueError",
           "exception_message": "k must divide the batch size"}
    assert format_execution_error(msg) == "node 3 (KSampler) failed while running: ValueError: k must divide the batch size"


# ----------------------------------------------------------------------------------------------- numbers


def test_numbers_from_metric_text():
    text = """## Pair Diversity Metric
| metric | antithetic | reference | change |
|---|---|---|---|
| Pearson (pairs) | -0.84 | 0.01 | -8500% |
| 1 - SSIM | 0.91 | 0.55 | +65% |
Vendi score: 3.2
estimate = 0.512 ± 0.031
CI: 0.48, 0.54
"""
    nums = numbers_from_text(text)
    assert nums["Pearson (pairs).antithetic"] == -0.84
    assert nums["1 - SSIM.reference"] == 0.55
    assert nums["Vendi score"] == 3.2
    assert nums["estimate"] == [0.512, 0.031]
    assert nums["CI"] == [0.48, 0.54]
    assert numbers_from_text('{"a": 1, "b": {"c": [1.5, 2]}}') == {"a": 1, "b.c": [1.5, 2]}
    # the summaries our metric / CI nodes show on the node
    pdm = numbers_from_text("interleaved pairs, 2 pair(s) of 4 images\nPearson correlation: -0.6234 (reference 0.08, "
                            "-850.0%)\nVendi score (whole batch): 3.1\nCLIP cosine distance: n/a")
    assert pdm == {"Pearson correlation": -0.6234, "Pearson correlation.reference": 0.08,
                   "Vendi score (whole batch)": 3.1}
    ci = numbers_from_text("mean brightness: 0.51234  [0.4012, 0.6235]  (95% CI, antithetic pairs, pair units, dof 3)"
                           "\nefficiency vs iid at the same N: 3.2x (rho -0.52)")
    assert ci == {"mean brightness": 0.51234, "mean brightness.low": 0.4012, "mean brightness.high": 0.6235,
                  "efficiency vs iid at the same N": 3.2, "efficiency vs iid at the same N.rho": -0.52}
    # prose lines of a markdown report are not numbers (it once gave "Reference": 2.0)
    prose = numbers_from_text("Reference: 2 pair(s) of 4 images, same pairing; change = batch - reference\n"
                              "Note: 3 images were clipped\nVendi score: 3.1")
    assert prose == {"Vendi score": 3.1}


def test_split_outputs_files_ui_numbers():
    outputs = {
        "9": {"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"}]},
        "12": {"text": ["Vendi score: 2.5"], "value": [0.25]},
        "13": {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}], "animated": [False]},
    }
    files, ui, numbers = split_outputs(outputs)
    assert [f["filename"] for f in files] == ["a_00001_.png", "p.png"]
    assert ui == {"12": {"text": ["Vendi score: 2.5"], "value": [0.25]}, "13": {"animated": [False]}}
    assert numbers == {"12.text.Vendi score": 2.5, "12.value": 0.25}
