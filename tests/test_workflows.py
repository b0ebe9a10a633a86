"""The example workflows in workflows/ (no ComfyUI needed): structure, seeds, links, API copies, thumbnails, JS.

Node definitions come from the saved ``workflows/object_info/object_info.json`` (refreshed from a live server
by ``antithetic-sampling sync-workflows --server URL --save-object-info``); tests/test_e2e_workflows.py repeats
the type and agreement checks against a real server's ``/object_info``.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest
from antithetic_sampling.nodes.api_client import sync_workflows as sync
from antithetic_sampling.nodes.api_client.convert import convert_ui_to_api, widget_names
from antithetic_sampling.nodes.api_client.example_workflows import BUILDERS, SD15, SD35, SDXL
from antithetic_sampling.nodes.api_client.workflow_builder import UIGraph, link_type_errors

ROOT = pathlib.Path(__file__).resolve().parents[1]
WF = ROOT / "workflows"
NAMES = sorted(p.stem for p in WF.glob("*.json"))
OUR_NODES = {
    "AntitheticLatentNoise", "SobolRQMCLatentBatch", "AntitheticSampler", "AntitheticKSampler", "NoiseAwarenessGuider",
    "NoiseAwarenessGuidedKSampler", "NoiseShiftProbe", "PairDiversityMetric", "NoiseDesignConfidenceInterval",
}
FRONTEND_ONLY = {"Note", "MarkdownNote"}


@pytest.fixture(scope="module")
def object_info() -> dict:
    return json.loads((WF / sync.SNAPSHOT_NAME).read_text(encoding="utf-8"))


def load(name: str) -> dict:
    return json.loads((WF / f"{name}.json").read_text(encoding="utf-8"))


def test_the_six_workflows_exist():
    assert set(NAMES) == set(BUILDERS), "workflows/*.json and example_workflows.BUILDERS differ"
    assert len(NAMES) >= 6


def test_only_ui_workflows_are_template_candidates():
    # ComfyUI lists <pack>/workflows/*.json (glob, not recursive): API copies and the object_info snapshot live
    # in subfolders so the templates browser never offers them.
    for path in WF.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert "nodes" in data and "links" in data, f"{path.name} is not UI format"
    for path in (WF / "api").glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert all("class_type" in v for v in data.values()), f"api/{path.name} is not API format"


@pytest.mark.parametrize("name", NAMES)
def test_ui_structure(name, object_info):
    ui = load(name)
    assert ui["version"] == 0.4
    ids = [n["id"] for n in ui["nodes"]]
    assert len(ids) == len(set(ids)) and ui["last_node_id"] == max(ids)
    assert ui["last_link_id"] == max(link[0] for link in ui["links"])
    by_id = {n["id"]: n for n in ui["nodes"]}
    for link in ui["links"]:
        lid, src, sslot, dst, dslot, _typ = link
        assert lid in by_id[src]["outputs"][sslot]["links"], f"link {lid} missing from its origin's outputs"
        assert by_id[dst]["inputs"][dslot]["link"] == lid
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        assert node["type"] in object_info, f"{name}: unknown node type {node['type']}"
        cnr = node["properties"]["cnr_id"]
        assert cnr == ("antithetic-sampling" if node["type"] in OUR_NODES else "comfy-core"), node["type"]
        assert node["properties"]["Node name for S&R"] == node["type"]
    assert link_type_errors(ui, object_info) == []
    # a note that explains what to look at, and groups that structure the comparison
    notes = [n for n in ui["nodes"] if n["type"] in FRONTEND_ONLY]
    assert notes and len(notes[0]["widgets_values"][0]) > 200
    assert len(ui["groups"]) >= 3
    assert any(n["type"] in OUR_NODES for n in ui["nodes"])


@pytest.mark.parametrize("name", NAMES)
def test_widgets_follow_node_definitions_with_fixed_after_every_seed(name, object_info):
    for node in load(name)["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        names = widget_names(object_info[node["type"]])
        values = node["widgets_values"]
        assert len(values) == len(names) + sum(c for _, c in names), f"{name}: {node['type']} widget count"
        i = 0
        for wname, control in names:
            i += 1
            if control:
                assert values[i] == "fixed", f"{name}: {node['type']}.{wname} must be followed by 'fixed'"
                i += 1


@pytest.mark.parametrize("name", NAMES)
def test_api_copy_agrees_with_ui(name, object_info):
    api = json.loads((WF / "api" / f"{name}.json").read_text(encoding="utf-8"))
    assert api == convert_ui_to_api(load(name), object_info)


def test_sync_check_reports_up_to_date(capsys):
    assert sync.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_sync_check_detects_a_stale_copy(tmp_path):
    wf = tmp_path / "workflows"
    (wf / "api").mkdir(parents=True)
    (wf / "object_info").mkdir()
    (wf / sync.SNAPSHOT_NAME).write_text((WF / sync.SNAPSHOT_NAME).read_text(encoding="utf-8"), encoding="utf-8")
    ui = load(NAMES[0])
    (wf / f"{NAMES[0]}.json").write_text(json.dumps(ui), encoding="utf-8")
    assert sync.main(["--workflows", str(wf), "--check"]) == 1  # no API copy yet
    assert sync.main(["--workflows", str(wf)]) == 0
    assert sync.main(["--workflows", str(wf), "--check"]) == 0
    for node in ui["nodes"]:  # edit a widget in the UI file: the copy is stale again
        if node["type"] == "CLIPTextEncode":
            node["widgets_values"][0] = "an edited prompt"
            break
    (wf / f"{NAMES[0]}.json").write_text(json.dumps(ui), encoding="utf-8")
    assert sync.main(["--workflows", str(wf), "--check"]) == 1


@pytest.mark.parametrize("name", NAMES)
def test_builders_reproduce_the_saved_workflows(name, object_info):
    # The saved files are exactly what the builder makes from the saved node definitions (no hand edits that a
    # rebuild would lose); `sync-workflows --build --server URL` regenerates both after a node changes.
    assert json.loads(sync.dumps(BUILDERS[name](object_info))) == load(name)


def test_model_file_names_are_the_ones_users_have():
    models = set()
    for name in NAMES:
        for node in load(name)["nodes"]:
            if node["type"] == "CheckpointLoaderSimple":
                models.add(node["widgets_values"][0])
    assert models == {SD15, SDXL, SD35}


@pytest.mark.parametrize("name", NAMES)
def test_thumbnail_is_a_jpeg_of_the_same_name(name):
    jpg = WF / f"{name}.jpg"
    assert jpg.is_file(), f"missing thumbnail {jpg.name} (tests/test_browser.py writes them with --update-thumbnails)"
    head = jpg.read_bytes()[:3]
    assert head == b"\xff\xd8\xff", f"{jpg.name} is not a JPEG"


def test_builder_rejects_bad_values(object_info):
    g = UIGraph(object_info)
    with pytest.raises(KeyError, match="no input"):
        g.add("RandomNoise", (0, 0), seed=1)
    with pytest.raises(ValueError, match="not one of"):
        g.add("KSamplerSelect", (0, 0), sampler_name="no_such_sampler")
    noise = g.add("RandomNoise", (0, 0))
    with pytest.raises(TypeError, match="cannot link"):
        g.add("VAEDecode", (0, 0), samples=noise["NOISE"])


def test_link_type_check_catches_a_wrong_link(object_info):
    ui = load("antithetic_vs_independent")
    link = ui["links"][0]
    link[5] = "IMAGE"
    assert link_type_errors(ui, object_info)


# ------------------------------------------------------------------------------------------------ js/

JS = ROOT / "js" / "antithetic_sampling.js"


def test_js_registers_exactly_one_extension():
    text = JS.read_text(encoding="utf-8")
    assert len(re.findall(r"app\.registerExtension\(", text)) == 1
    assert 'from "../../scripts/app.js"' in text
    assert [p.name for p in (ROOT / "js").glob("*.js")] == ["antithetic_sampling.js"]


def test_js_served_through_one_mechanism_only():
    # WEB_DIRECTORY *and* a [tool.comfy] web entry would serve the JS twice.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    tool_comfy = pyproject.split("[tool.comfy]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^\s*web\s*=", tool_comfy, re.M)
    assert 'WEB_DIRECTORY = "./js"' in (ROOT / "__init__.py").read_text(encoding="utf-8")
