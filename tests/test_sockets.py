"""Every socket of every node of the pack has a name: checked in the saved /object_info snapshot (refreshed from a
live server by ``antithetic-sampling sync-workflows --server URL --save-object-info``, which saves every node of
the pack). ComfyUI labels an output by its display_name, else by its type: six outputs all labelled FLOAT cannot be
told apart without hovering."""

from __future__ import annotations

import json
import pathlib

import pytest
from antithetic_sampling.nodes.api_client import sync_workflows as sync

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACK_NODES = {
    "AntitheticLatentNoise", "SobolRQMCLatentBatch", "AntitheticSampler", "AntitheticKSampler", "NoiseAwarenessGuider",
    "NoiseAwarenessGuidedKSampler", "NoiseShiftProbe", "PairDiversityMetric", "NoiseDesignConfidenceInterval",
}


@pytest.fixture(scope="module")
def snapshot() -> dict:
    return json.loads((ROOT / "workflows" / sync.SNAPSHOT_NAME).read_text(encoding="utf-8"))


def test_snapshot_holds_every_node_of_the_pack(snapshot):
    assert PACK_NODES <= {c for c, info in snapshot.items() if "antithetic" in str(info.get("python_module", ""))}


def unnamed_outputs(info: dict) -> list[str]:
    """Outputs labelled only by their type (no display_name), or sharing a label with another output."""
    names, types = info["output_name"], info["output"]
    bad = [f"output {i} labelled only by its type {t}" for i, (n, t) in enumerate(zip(names, types, strict=True))
           if not n or n == t]
    return bad + [f"label {n!r} used twice" for n in sorted({n for n in names if names.count(n) > 1})]


@pytest.mark.parametrize("cls", sorted(PACK_NODES))
def test_every_output_is_labelled_by_name_not_type(cls, snapshot):
    assert unnamed_outputs(snapshot[cls]) == []


@pytest.mark.parametrize("cls", sorted(PACK_NODES))
def test_every_input_has_a_display_name(cls, snapshot):
    for section in ("required", "optional"):
        for name, spec in (snapshot[cls]["input"].get(section) or {}).items():
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            assert opts.get("display_name"), f"{cls}.{name} has no display_name"


def test_the_check_catches_an_output_labelled_by_its_type(snapshot):
    broken = json.loads(json.dumps(snapshot["PairDiversityMetric"]))
    broken["output_name"][0] = broken["output"][0]
    broken["output_name"][2] = broken["output_name"][1]
    assert unnamed_outputs(broken) == ["output 0 labelled only by its type FLOAT",
                                       "label 'centered_correlation' used twice"]


def test_every_socket_in_the_source_has_a_display_name():
    """The same rule on the node sources, so a new input cannot slip in between two snapshot refreshes."""
    import ast

    missing = []
    for path in sorted((ROOT / "nodes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("Input", "Output") and isinstance(node.func.value, ast.Attribute)
                    and isinstance(node.func.value.value, ast.Name) and node.func.value.value.id == "io"
                    and not any(k.arg == "display_name" for k in node.keywords)):
                missing.append(f"{path.name}:{node.lineno}")
    assert missing == []
