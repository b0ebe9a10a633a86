"""The subgraph blueprints in ``subgraphs/`` (nodes/api_client/blueprints.py): rebuilt from code, well formed as
the frontend saves subgraphs, every promoted input wired where it says, and one widget per design parameter."""

from __future__ import annotations

import json
import pathlib

import pytest
from antithetic_sampling.nodes.api_client import sync_workflows as sync
from antithetic_sampling.nodes.api_client.blueprints import (
    BLUEPRINTS,
    INPUT_NODE,
    OUTPUT_NODE,
    build_blueprints,
    flatten_to_api,
)
from antithetic_sampling.nodes.api_client.workflow_builder import widget_names

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUBGRAPHS = ROOT / sync.SUBGRAPHS


@pytest.fixture(scope="module")
def object_info() -> dict:
    return json.loads((ROOT / "workflows" / sync.SNAPSHOT_NAME).read_text(encoding="utf-8"))


def load(name: str) -> dict:
    return json.loads((SUBGRAPHS / f"{name}.json").read_text(encoding="utf-8"))


def test_the_folder_holds_exactly_the_blueprints():
    assert sorted(p.stem for p in SUBGRAPHS.glob("*.json")) == sorted(BLUEPRINTS)
    assert [p for p in SUBGRAPHS.iterdir() if p.suffix != ".json"] == []


def test_saved_blueprints_are_what_the_code_builds(object_info):
    built = build_blueprints(object_info)
    for name, bp in built.items():
        assert load(name) == json.loads(sync.dumps(bp)), f"{name}: run `antithetic-sampling sync-workflows --build`"


def structure_errors(bp: dict, object_info: dict) -> list[str]:
    """What the frontend would trip over: the outer node, the subgraph's inputs/outputs and the inner links."""
    errors = []
    (outer,) = bp["nodes"]
    (sub,) = bp["definitions"]["subgraphs"]
    if outer["type"] != sub["id"]:
        errors.append("outer node type is not the subgraph id")
    if [i["name"] for i in outer["inputs"]] != [i["name"] for i in sub["inputs"]]:
        errors.append("outer inputs differ from the subgraph inputs")
    if [o["name"] for o in outer["outputs"]] != [o["name"] for o in sub["outputs"]]:
        errors.append("outer outputs differ from the subgraph outputs")
    nodes = {n["id"]: n for n in sub["nodes"]}
    links = {lk["id"]: lk for lk in sub["links"]}
    if len(links) != len(sub["links"]):
        errors.append("duplicate link ids")
    for n in sub["nodes"]:
        if n["type"] not in object_info:
            errors.append(f"inner node {n['id']}: unknown type {n['type']}")
            continue
        for slot, entry in enumerate(n["inputs"]):
            lk = links.get(entry["link"]) if entry["link"] is not None else None
            if entry["link"] is not None and (lk is None or lk["target_id"] != n["id"] or lk["target_slot"] != slot):
                errors.append(f"node {n['id']} input {entry['name']}: link {entry['link']} does not point here")
        for slot, entry in enumerate(n["outputs"]):
            for lid in entry["links"]:
                lk = links.get(lid)
                if lk is None or lk["origin_id"] != n["id"] or lk["origin_slot"] != slot:
                    errors.append(f"node {n['id']} output {slot}: link {lid} does not start here")
    for slot, spec in enumerate(sub["inputs"]):
        if not spec["linkIds"]:
            errors.append(f"input {spec['name']} feeds nothing")
        for lid in spec["linkIds"]:
            lk = links[lid]
            target = nodes[lk["target_id"]]["inputs"][lk["target_slot"]]
            if lk["origin_id"] != INPUT_NODE or lk["origin_slot"] != slot or target["link"] != lid:
                errors.append(f"input {spec['name']}: link {lid} is not wired from input slot {slot}")
            if target["type"] != spec["type"]:
                errors.append(f"input {spec['name']} ({spec['type']}) feeds {target['name']} ({target['type']})")
            if "widget" in target and target["name"] not in dict(widget_names(object_info[nodes[lk['target_id']]['type']])):
                errors.append(f"input {spec['name']}: {target['name']} is no widget")
    for slot, spec in enumerate(sub["outputs"]):
        for lid in spec["linkIds"]:
            lk = links[lid]
            if lk["target_id"] != OUTPUT_NODE or lk["target_slot"] != slot:
                errors.append(f"output {spec['name']}: link {lid} does not end at output slot {slot}")
            if nodes[lk["origin_id"]]["outputs"][lk["origin_slot"]]["type"] != spec["type"]:
                errors.append(f"output {spec['name']}: type differs from its source")
    widgets = [i["name"] for i in outer["inputs"] if "widget" in i]
    proxied = outer["properties"]["proxyWidgets"]
    if len(proxied) != len(widgets):
        errors.append("one proxy widget per promoted widget input expected")
    for nid, wname in proxied:
        if int(nid) not in nodes or wname not in dict(widget_names(object_info[nodes[int(nid)]["type"]])):
            errors.append(f"proxy widget {nid}.{wname} does not exist")
    return errors


@pytest.mark.parametrize("name", sorted(BLUEPRINTS))
def test_blueprint_is_well_formed(name, object_info):
    bp = load(name)
    assert structure_errors(bp, object_info) == []
    (sub,) = bp["definitions"]["subgraphs"]
    assert sub["name"] == name and sub["description"] and sub["category"] == "antithetic"


def test_the_structure_check_can_fail(object_info):
    bp = load(sorted(BLUEPRINTS)[0])
    (sub,) = bp["definitions"]["subgraphs"]
    sub["links"][-1]["target_slot"] += 1
    sub["inputs"][0]["type"] = "IMAGE"
    bp["nodes"][0]["properties"]["proxyWidgets"].append(["999", "seed"])
    errors = structure_errors(bp, object_info)
    assert len(errors) >= 3, errors


VALUES = {"model": ["ckpt", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["lat", 0],
          "seed": 5, "steps": 3, "cfg": 4.0, "sampler_name": "euler_ancestral", "scheduler": "normal",
          "denoise": 0.8}


def test_one_group_size_and_layout_drive_both_design_nodes(object_info):
    flat = flatten_to_api(load("Antithetic Sampling (SamplerCustomAdvanced)"), object_info,
                          {**VALUES, "group_size": 4, "layout": "halves"})
    by_class = {n["class_type"]: n["inputs"] for n in flat["nodes"].values()}
    assert by_class["AntitheticLatentNoise"]["group_size"] == by_class["AntitheticSampler"]["group_size"] == 4
    assert by_class["AntitheticLatentNoise"]["layout"] == by_class["AntitheticSampler"]["layout"] == "halves"
    assert by_class["AntitheticLatentNoise"]["noise_seed"] == 5
    assert by_class["AntitheticSampler"]["sampler_name"] == "euler_ancestral"
    assert (by_class["BasicScheduler"]["steps"], by_class["BasicScheduler"]["denoise"]) == (3, 0.8)
    assert by_class["CFGGuider"]["model"] == by_class["BasicScheduler"]["model"] == ["ckpt", 0]
    assert by_class["SamplerCustomAdvanced"]["latent_image"] == ["lat", 0]
    sca = next(nid for nid, n in flat["nodes"].items() if n["class_type"] == "SamplerCustomAdvanced")
    assert flat["outputs"] == [[sca, 0], [sca, 1]]
    with pytest.raises(KeyError, match="group_size"):
        flatten_to_api(load("Antithetic Sampling (SamplerCustomAdvanced)"), object_info, VALUES)


def test_sobol_blueprint_flattens(object_info):
    flat = flatten_to_api(load("Sobol RQMC Sampling (SamplerCustomAdvanced)"), object_info,
                          {**VALUES, "sampler_name": "euler", "points_per_replicate": 4})
    by_class = {n["class_type"]: n["inputs"] for n in flat["nodes"].values()}
    assert by_class["SobolRQMCLatentBatch"]["points_per_replicate"] == 4
    assert by_class["KSamplerSelect"]["sampler_name"] == "euler"
