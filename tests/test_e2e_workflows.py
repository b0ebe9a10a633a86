"""The example workflows against a real ComfyUI (the session ``comfy_server`` fixture, tiny SD1.5 checkpoint).

For every workflow in workflows/: every node type exists in the live ``/object_info`` and every link's type
matches the output and input it joins; the API copy executes the same as the conversion of the UI file through
the live ``/object_info`` (class types, inputs, links; ``_meta.title`` is a display name); the API copy runs
through ``POST /prompt`` on the tiny checkpoint (shrunk by nodes/local_comfy/tiny_workflow.py: model names, 64 px, 2 steps; SD3.5's text encoders rewired to the checkpoint's CLIP,
flow kept through ModelSamplingSD3) and every output node has its outputs in ``/history``; and
``/api/workflow_templates`` lists exactly the UI workflows, serving each JSON and its .jpg thumbnail.
"""

from __future__ import annotations

import copy
import json
import pathlib
import time

import pytest
from antithetic_sampling.nodes.api_client.convert import convert_ui_to_api
from antithetic_sampling.nodes.api_client.workflow_builder import link_type_errors
from antithetic_sampling.nodes.local_comfy.paths import PACK_FOLDER
from antithetic_sampling.nodes.local_comfy.tiny_workflow import output_nodes, shrink_for_tiny

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[1]
WF = ROOT / "workflows"
NAMES = sorted(p.stem for p in WF.glob("*.json"))
FRONTEND_ONLY = {"Note", "MarkdownNote"}
IMAGE_OUTPUT_NODES = {"SaveImage", "PreviewImage", "MaskPreview", "PairDiversityMetric",
                      "NoiseDesignConfidenceInterval"}
TEXT_OUTPUT_NODES = {"PreviewAny", "PairDiversityMetric", "NoiseDesignConfidenceInterval"}


def load(name: str, api: bool = False) -> dict:
    return json.loads(((WF / "api") if api else WF).joinpath(f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def live_info(comfy_server) -> dict:
    return comfy_server.object_info()


@pytest.mark.parametrize("name", NAMES)
def test_node_types_exist_and_links_match(name, live_info):
    ui = load(name)
    missing = sorted({n["type"] for n in ui["nodes"] if n["type"] not in FRONTEND_ONLY} - set(live_info))
    assert not missing, f"{name}: node types not on the server: {missing}"
    assert link_type_errors(ui, live_info) == []


def executed(api: dict) -> dict:
    """What ComfyUI executes of an API-format graph: per node id its class type and inputs (widget values and
    links ``[node id, output slot]``). ``_meta.title`` is a display name (the core renames its nodes between
    versions, e.g. "CFGGuider" -> "CFG Guider" in 0.33) and is never read by the executor."""
    return {nid: {"class_type": node["class_type"], "inputs": node["inputs"]} for nid, node in api.items()}


@pytest.mark.parametrize("name", NAMES)
def test_api_copy_agrees_with_live_conversion(name, live_info):
    assert executed(load(name, api=True)) == executed(convert_ui_to_api(load(name), live_info)), (
        f"workflows/api/{name}.json is stale: run `antithetic-sampling sync-workflows`"
    )


def test_executed_view_sees_what_runs_and_only_that(live_info):
    """Control for the comparison above: a changed input value, link or class type is a difference; a title is not."""
    name = "antithetic_vs_independent"
    live = convert_ui_to_api(load(name), live_info)
    nid, node = next((k, v) for k, v in live.items() if any(isinstance(x, int) for x in v["inputs"].values()))
    key = next(k for k, x in node["inputs"].items() if isinstance(x, int) and not isinstance(x, bool))
    changed = copy.deepcopy(live)
    changed[nid]["inputs"][key] += 1
    assert executed(changed) != executed(live), f"a changed input ({nid}.{key}) went unnoticed"
    lid, lnode = next((k, v) for k, v in live.items() if any(isinstance(x, list) for x in v["inputs"].values()))
    lkey = next(k for k, x in lnode["inputs"].items() if isinstance(x, list))
    relinked = copy.deepcopy(live)
    relinked[lid]["inputs"][lkey] = [relinked[lid]["inputs"][lkey][0], relinked[lid]["inputs"][lkey][1] + 1]
    assert executed(relinked) != executed(live), f"a changed link ({lid}.{lkey}) went unnoticed"
    retyped = copy.deepcopy(live)
    retyped[nid]["class_type"] += "Renamed"
    assert executed(retyped) != executed(live), "a changed class type went unnoticed"
    retitled = copy.deepcopy(live)
    for n in retitled.values():
        n.setdefault("_meta", {})["title"] = "renamed by a newer core"
    assert executed(retitled) == executed(live)


@pytest.mark.parametrize("name", NAMES)
def test_api_copy_runs_on_the_tiny_checkpoint(name, comfy_server, live_info):
    api = load(name, api=True)
    graph = shrink_for_tiny(api, seed_offset=int(time.time()) % 100_000)  # fresh seeds: never served from cache
    entry = comfy_server.run(graph)
    outputs = comfy_server.outputs(entry)
    expected = output_nodes(graph, live_info)
    assert expected, f"{name} has no output node"
    missing = sorted(set(expected) - set(outputs))
    assert not missing, f"{name}: output nodes without outputs in /history: {missing}"
    for nid in expected:
        ct = graph[nid]["class_type"]
        if ct in IMAGE_OUTPUT_NODES:
            assert outputs[nid].get("images"), f"{name}: {ct} ({nid}) returned no image"
        if ct in TEXT_OUTPUT_NODES:
            assert outputs[nid].get("text"), f"{name}: {ct} ({nid}) returned no text"
        if ct == "SaveImage":
            batch = _batch_of(graph)
            assert len(outputs[nid]["images"]) == batch, f"{name}: SaveImage {nid} saved the whole batch"
            img = comfy_server.fetch_image(outputs[nid]["images"][0])
            assert img.size == (64, 64)


def _batch_of(graph: dict) -> int:
    return next(int(n["inputs"]["batch_size"]) for n in graph.values() if "batch_size" in n["inputs"])


def test_workflow_templates_lists_exactly_the_ui_workflows(comfy_server):
    listing = comfy_server.get_json("/api/workflow_templates")
    assert sorted(listing.get(PACK_FOLDER, [])) == NAMES, listing
    for name in NAMES:
        served = comfy_server.get_json(f"/api/workflow_templates/{PACK_FOLDER}/{name}.json")
        assert served == load(name)
        jpg = comfy_server._request("GET", f"/api/workflow_templates/{PACK_FOLDER}/{name}.jpg")
        assert jpg[:3] == b"\xff\xd8\xff", f"{name}.jpg not served as a JPEG"


def test_frontend_extension_served_once(comfy_server):
    ours = [e for e in comfy_server.get_json("/extensions") if "antithetic" in e]
    assert ours == [f"/extensions/{PACK_FOLDER}/antithetic_sampling.js"], ours
    js = comfy_server._request("GET", ours[0]).decode()
    assert "registerExtension" in js
