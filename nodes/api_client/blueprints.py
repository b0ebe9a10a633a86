"""The pack's subgraph blueprints (``subgraphs/*.json``): common compositions as one node, defined in code.

Newer ComfyUI cores serve every ``custom_nodes/<pack>/subgraphs/*.json`` at ``GET /global_subgraphs`` and the
frontend offers them in the node library as blueprints (a subgraph node the user can open and edit). The folder
name is fixed by the core (``app/subgraph_manager.py``: the glob ``*/subgraphs/*.json`` under each custom_nodes
folder); a core without that route ignores the folder, so shipping it is the feature detection. The file name is
the blueprint's name.

A blueprint file is a UI-format workflow holding one node whose type is the id of the subgraph defined in
``definitions.subgraphs``: inner nodes and links (links as objects; origin -10 = the subgraph's input node,
target -20 = its output node), the subgraph's inputs (each may feed several inner inputs: one ``group_size``
widget drives both the noise node and the mirrored sampler, so they cannot disagree) and outputs, and
``proxyWidgets`` that show the promoted widgets on the outer node. Inner nodes are built with ``UIGraph`` against
``/object_info`` like the example workflows; ``antithetic-sampling sync-workflows --build`` writes the files and
``--check`` notices a stale one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .workflow_builder import Node, Out, UIGraph

INPUT_NODE, OUTPUT_NODE = -10, -20
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


@dataclass
class SubgraphInput:
    """One input of the subgraph node: ``targets`` are the inner (node, input name) pairs it feeds."""

    name: str
    type: str
    targets: list[tuple[Node, str]]
    label: str | None = None


@dataclass
class SubgraphOutput:
    name: str
    type: str
    source: Out


@dataclass
class Blueprint:
    name: str
    description: str
    graph: UIGraph
    inputs: list[SubgraphInput] = field(default_factory=list)
    outputs: list[SubgraphOutput] = field(default_factory=list)


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "antithetic-sampling/subgraphs/" + "/".join(parts)))


def _input_slot(node: dict, name: str, typ: str, widget: bool) -> int:
    """Index of ``name`` among the inner node's inputs; a widget input not listed yet (the builder lists only
    linked widgets) is appended the way the frontend saves a widget with a link."""
    for i, entry in enumerate(node["inputs"]):
        if entry["name"] == name:
            return i
    entry = {"name": name, "type": typ, "link": None}
    if widget:
        entry["widget"] = {"name": name}
    node["inputs"].append(entry)
    return len(node["inputs"]) - 1


def to_blueprint(bp: Blueprint) -> dict:
    """The blueprint file (UI-format workflow with one subgraph node) for ``bp``."""
    inner = bp.graph.to_json()
    nodes = {n["id"]: n for n in inner["nodes"]}
    links = [{"id": lid, "origin_id": src, "origin_slot": ss, "target_id": dst, "target_slot": ds, "type": typ}
             for lid, src, ss, dst, ds, typ in inner["links"]]
    next_link = len(links) + 1
    xs = [n["pos"][0] for n in inner["nodes"]]
    x_in, x_out = min(xs) - 260, max(n["pos"][0] + n["size"][0] for n in inner["nodes"]) + 120
    y0 = min(n["pos"][1] for n in inner["nodes"])

    sub_inputs, outer_inputs, proxy = [], [], []
    for slot, spec in enumerate(bp.inputs):
        widget = spec.type in WIDGET_TYPES
        ids = []
        for node, name in spec.targets:
            entry = nodes[node.id]
            target_slot = _input_slot(entry, name, spec.type, widget)
            entry["inputs"][target_slot]["link"] = next_link
            links.append({"id": next_link, "origin_id": INPUT_NODE, "origin_slot": slot, "target_id": node.id,
                          "target_slot": target_slot, "type": spec.type})
            ids.append(next_link)
            next_link += 1
        item = {"id": _uid(bp.name, "in", spec.name), "name": spec.name, "type": spec.type, "linkIds": ids,
                "pos": [x_in + 140, y0 + 20 + 20 * slot]}
        outer = {"name": spec.name, "type": spec.type, "link": None}
        if spec.label:
            item["label"] = outer["label"] = spec.label
        if widget:
            outer["widget"] = {"name": spec.name}
            proxy.append([str(spec.targets[0][0].id), spec.targets[0][1]])
        sub_inputs.append(item)
        outer_inputs.append(outer)

    sub_outputs, outer_outputs = [], []
    for slot, spec in enumerate(bp.outputs):
        src = nodes[spec.source.node.id]
        src["outputs"][spec.source.slot]["links"].append(next_link)
        links.append({"id": next_link, "origin_id": spec.source.node.id, "origin_slot": spec.source.slot,
                      "target_id": OUTPUT_NODE, "target_slot": slot, "type": spec.type})
        sub_outputs.append({"id": _uid(bp.name, "out", spec.name), "name": spec.name, "type": spec.type,
                            "linkIds": [next_link], "pos": [x_out + 20, y0 + 20 + 20 * slot]})
        outer_outputs.append({"name": spec.name, "type": spec.type, "links": []})
        next_link += 1

    sub_id = _uid(bp.name)
    last_node = max(nodes)
    subgraph: dict[str, Any] = {
        "id": sub_id, "version": 1,
        "state": {"lastGroupId": 0, "lastNodeId": last_node, "lastLinkId": next_link - 1, "lastRerouteId": 0},
        "revision": 0, "config": {}, "name": bp.name,
        "inputNode": {"id": INPUT_NODE, "bounding": [x_in, y0, 160, 40 + 20 * len(sub_inputs)]},
        "outputNode": {"id": OUTPUT_NODE, "bounding": [x_out, y0, 160, 40 + 20 * len(sub_outputs)]},
        "inputs": sub_inputs, "outputs": sub_outputs, "widgets": [],
        "nodes": inner["nodes"], "groups": [], "links": links, "extra": {},
        "category": "antithetic", "description": bp.description,
    }
    rows = len([i for i in outer_inputs if "widget" not in i]) + len(proxy)
    outer_node = {
        "id": last_node + 1, "type": sub_id, "pos": [0, 0], "size": [320, 46 + 24 * rows], "flags": {},
        "order": 0, "mode": 0, "inputs": outer_inputs, "outputs": outer_outputs,
        "properties": {"proxyWidgets": proxy, "cnr_id": "antithetic-sampling"}, "widgets_values": [],
        "title": bp.name,
    }
    return {"revision": 0, "last_node_id": last_node + 1, "last_link_id": 0, "nodes": [outer_node], "links": [],
            "version": 0.4, "definitions": {"subgraphs": [subgraph]}, "extra": {}}


# ------------------------------------------------------------------------------------------------ blueprints

SEED = 0
COL = 380


def _sampling_inputs(model_users: list[Node], guider: Node) -> list[SubgraphInput]:
    return [
        SubgraphInput("model", "MODEL", [(n, "model") for n in model_users]),
        SubgraphInput("positive", "CONDITIONING", [(guider, "positive")]),
        SubgraphInput("negative", "CONDITIONING", [(guider, "negative")]),
    ]


def build_antithetic_sampling(object_info: dict) -> Blueprint:
    """Antithetic Latent Noise + Antithetic Sampler + CFGGuider + BasicScheduler + SamplerCustomAdvanced: what
    Antithetic KSampler runs, as an editable subgraph (swap the guider, the scheduler, ...)."""
    g = UIGraph(object_info, name="antithetic_sampling_blueprint")
    noise = g.add("AntitheticLatentNoise", (0, 0), noise_seed=SEED, group_size=2, layout="interleaved")
    sampler = g.add("AntitheticSampler", (0, 220), sampler_name="euler_ancestral", group_size=2,
                    layout="interleaved")
    guider = g.add("CFGGuider", (0, 400), cfg=8.0)
    sched = g.add("BasicScheduler", (0, 560), scheduler="normal", steps=20, denoise=1.0)
    sca = g.add("SamplerCustomAdvanced", (COL, 0), noise=noise["NOISE"], guider=guider["GUIDER"],
                sampler=sampler["SAMPLER"], sigmas=sched["SIGMAS"])
    inputs = _sampling_inputs([guider, sched], guider) + [
        SubgraphInput("latent_image", "LATENT", [(sca, "latent_image")]),
        SubgraphInput("seed", "INT", [(noise, "noise_seed")]),
        SubgraphInput("steps", "INT", [(sched, "steps")]),
        SubgraphInput("cfg", "FLOAT", [(guider, "cfg")]),
        SubgraphInput("sampler_name", "COMBO", [(sampler, "sampler_name")]),
        SubgraphInput("scheduler", "COMBO", [(sched, "scheduler")]),
        SubgraphInput("denoise", "FLOAT", [(sched, "denoise")]),
        SubgraphInput("group_size", "INT", [(noise, "group_size"), (sampler, "group_size")]),
        SubgraphInput("layout", "COMBO", [(noise, "layout"), (sampler, "layout")]),
    ]
    outputs = [SubgraphOutput("output", "LATENT", sca[0]), SubgraphOutput("denoised_output", "LATENT", sca[1])]
    return Blueprint(
        "Antithetic Sampling (SamplerCustomAdvanced)",
        "Antithetic pairs (or groups of K) with mirrored step noise: Antithetic Latent Noise + Antithetic Sampler + "
        "CFGGuider + BasicScheduler + SamplerCustomAdvanced, with one group_size and one layout for both design "
        "nodes. The same latents as Antithetic KSampler; open it to swap the guider or the scheduler. Jia et al., "
        "'Antithetic Noise in Diffusion Models', ICLR 2026.",
        g, inputs, outputs)


def build_sobol_rqmc_sampling(object_info: dict) -> Blueprint:
    """Sobol RQMC Latent Batch + KSamplerSelect + CFGGuider + BasicScheduler + SamplerCustomAdvanced."""
    g = UIGraph(object_info, name="sobol_rqmc_sampling_blueprint")
    noise = g.add("SobolRQMCLatentBatch", (0, 0), noise_seed=SEED, points_per_replicate=8, mode="auto",
                  spectral_coefficients=64, antithetic=False)
    sel = g.add("KSamplerSelect", (0, 260), sampler_name="euler")
    guider = g.add("CFGGuider", (0, 380), cfg=8.0)
    sched = g.add("BasicScheduler", (0, 540), scheduler="normal", steps=20, denoise=1.0)
    sca = g.add("SamplerCustomAdvanced", (COL, 0), noise=noise["NOISE"], guider=guider["GUIDER"],
                sampler=sel["SAMPLER"], sigmas=sched["SIGMAS"])
    inputs = _sampling_inputs([guider, sched], guider) + [
        SubgraphInput("latent_image", "LATENT", [(sca, "latent_image")]),
        SubgraphInput("seed", "INT", [(noise, "noise_seed")]),
        SubgraphInput("steps", "INT", [(sched, "steps")]),
        SubgraphInput("cfg", "FLOAT", [(guider, "cfg")]),
        SubgraphInput("sampler_name", "COMBO", [(sel, "sampler_name")]),
        SubgraphInput("scheduler", "COMBO", [(sched, "scheduler")]),
        SubgraphInput("denoise", "FLOAT", [(sched, "denoise")]),
        SubgraphInput("points_per_replicate", "INT", [(noise, "points_per_replicate")]),
    ]
    outputs = [SubgraphOutput("output", "LATENT", sca[0]), SubgraphOutput("denoised_output", "LATENT", sca[1])]
    return Blueprint(
        "Sobol RQMC Sampling (SamplerCustomAdvanced)",
        "Randomised quasi-Monte Carlo noise for estimates with narrower confidence intervals: Sobol RQMC Latent "
        "Batch + KSamplerSelect + CFGGuider + BasicScheduler + SamplerCustomAdvanced. Batch = replicates x "
        "points_per_replicate; measure with Confidence Interval (noise design), 'RQMC replicates'. A deterministic "
        "sampler (euler, dpmpp_2m, ...) keeps the design; an ancestral one adds independent step noise.",
        g, inputs, outputs)


BLUEPRINTS: dict[str, Callable[[dict], Blueprint]] = {
    "Antithetic Sampling (SamplerCustomAdvanced)": build_antithetic_sampling,
    "Sobol RQMC Sampling (SamplerCustomAdvanced)": build_sobol_rqmc_sampling,
}


def build_blueprints(object_info: dict) -> dict[str, dict]:
    """{file stem: blueprint JSON} for every blueprint."""
    out = {}
    for name, builder in BLUEPRINTS.items():
        bp = builder(object_info)
        if bp.name != name:
            raise ValueError(f"blueprint {name!r} builds {bp.name!r}")
        out[name] = to_blueprint(bp)
    return out


def flatten_to_api(blueprint: dict, object_info: dict, values: dict[str, Any], prefix: str = "bp_") -> dict:
    """The API nodes a frontend queues for one placed blueprint node: its inner nodes (ids ``prefix + id``) with
    every subgraph input resolved from ``values`` (name -> a widget value, or a link ``[node_id, slot]`` of the
    surrounding graph). Returns ``{"nodes": {...}, "outputs": [[node_id, slot], ...]}``. Used by the tests to run
    a blueprint against the node it stands for."""
    from .convert import convert_ui_to_api

    (sub,) = blueprint["definitions"]["subgraphs"]
    nodes = {n["id"]: n for n in sub["nodes"]}
    fed: dict[tuple[int, str], str] = {}  # (inner node, input name) -> subgraph input name
    inner_links = []
    for link in sub["links"]:
        if link["origin_id"] == INPUT_NODE:
            target = nodes[link["target_id"]]
            fed[(target["id"], target["inputs"][link["target_slot"]]["name"])] = \
                sub["inputs"][link["origin_slot"]]["name"]
        elif link["target_id"] != OUTPUT_NODE:
            inner_links.append([link["id"], link["origin_id"], link["origin_slot"], link["target_id"],
                                link["target_slot"], link["type"]])
    missing = sorted({name for name in fed.values() if name not in values})
    if missing:
        raise KeyError(f"no value for the blueprint input(s) {missing}")
    ui_nodes = []
    for n in sub["nodes"]:
        n = dict(n)
        n["inputs"] = [dict(i, link=None) if (n["id"], i["name"]) in fed else i for i in n["inputs"]]
        ui_nodes.append(n)
    api = convert_ui_to_api({"nodes": ui_nodes, "links": inner_links}, object_info)
    out: dict[str, dict] = {}
    for nid, node in api.items():
        for name, value in node["inputs"].items():  # inner links first: an outer link may reuse an inner id
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in api:
                node["inputs"][name] = [prefix + str(value[0]), value[1]]
        for (inner_id, name), sub_name in fed.items():
            if str(inner_id) == nid:
                node["inputs"][name] = values[sub_name]
        out[prefix + nid] = node
    outputs = []
    for spec in sub["outputs"]:
        (lid,) = spec["linkIds"]
        link = next(lk for lk in sub["links"] if lk["id"] == lid)
        outputs.append([prefix + str(link["origin_id"]), link["origin_slot"]])
    return {"nodes": out, "outputs": outputs}
