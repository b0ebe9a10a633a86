"""Search aliases (nodes/search_aliases.py): searching ComfyUI's node menu for the pack's words finds its nodes.

The frontend's node search (NodeSearchService) matches ``name``, ``display_name`` and ``search_aliases`` of each
node definition, not its category. The unit tests read names and display names from the saved node definitions
(workflows/object_info/object_info.json) and the aliases from the table; the e2e test reads all three from a live
server's ``/object_info``, where the core's ``io.Schema`` has the field, and checks that a core without it still
loads every node, with no aliases.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
from antithetic_sampling.nodes.api_client import sync_workflows as sync
from antithetic_sampling.nodes.search_aliases import SEARCH_ALIASES, SEARCH_TERMS

ROOT = pathlib.Path(__file__).resolve().parents[1]

ALL = {"AntitheticLatentNoise", "SobolRQMCLatentBatch", "AntitheticSampler", "AntitheticKSampler", "NoiseAwarenessGuider",
       "NoiseAwarenessGuidedKSampler", "NoiseShiftProbe", "PairDiversityMetric", "NoiseDesignConfidenceInterval"}
RQMC = {"SobolRQMCLatentBatch", "NoiseDesignConfidenceInterval"}
# What each search must find, exactly (a node found for a word it has nothing to do with is a failure too).
EXPECTED = {
    "antithetic": ALL,
    "sobol": RQMC,
    "qmc": RQMC,
    "rqmc": RQMC,
    "noise awareness": {"NoiseAwarenessGuider", "NoiseAwarenessGuidedKSampler", "NoiseShiftProbe"},
    "diversity": {"AntitheticLatentNoise", "SobolRQMCLatentBatch", "AntitheticSampler", "AntitheticKSampler",
                  "PairDiversityMetric"},
}


def found(term: str, object_info: dict, classes: set[str], aliases: dict[str, list[str]]) -> set[str]:
    """The pack's nodes a menu search for ``term`` lists: ``term`` inside the id, display name or an alias."""
    t = term.lower()
    return {cls for cls in classes
            if any(t in s.lower() for s in [cls, object_info[cls].get("display_name") or "", *aliases.get(cls, [])])}


@pytest.fixture(scope="module")
def saved_info():
    return json.loads((ROOT / "workflows" / sync.SNAPSHOT_NAME).read_text(encoding="utf-8"))


def test_every_node_of_the_pack_has_aliases(saved_info):
    assert set(SEARCH_ALIASES) == sync.pack_classes(saved_info) == ALL
    for cls, aliases in SEARCH_ALIASES.items():
        assert aliases and all(a == a.strip().lower() for a in aliases), cls
        assert len(set(aliases)) == len(aliases), f"{cls}: duplicate alias"
        assert not {"nag"} & set(aliases), f"{cls}: a bare NAG names another method"


@pytest.mark.parametrize("term", SEARCH_TERMS)
def test_each_search_term_finds_its_nodes(term, saved_info):
    assert set(EXPECTED) == set(SEARCH_TERMS)
    assert found(term, saved_info, ALL, SEARCH_ALIASES) == EXPECTED[term]


def test_without_aliases_every_search_misses_nodes(saved_info):
    """The control: on ids and display names alone, each of these searches misses some of its nodes."""
    assert {t for t in SEARCH_TERMS if found(t, saved_info, ALL, {}) != EXPECTED[t]} == set(SEARCH_TERMS)


def core_schema_has_search_aliases(server) -> bool:
    """Ask the server's own core (its Python, its checkout) whether ``io.Schema`` has the field."""
    code = ("import dataclasses, sys; from comfy_api.latest import io; "
            "sys.stdout.write(str('search_aliases' in {f.name for f in dataclasses.fields(io.Schema)}))")
    proc = subprocess.run([server.env.python, "-c", code], cwd=str(server.env.comfy_path), env=server.env.env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1] == "True"


def test_live_object_info_carries_the_aliases_where_the_core_has_the_field(comfy_server):
    info = comfy_server.object_info()
    classes = sync.pack_classes(info)
    assert classes == ALL
    if core_schema_has_search_aliases(comfy_server):
        assert {cls: info[cls].get("search_aliases") for cls in ALL} == SEARCH_ALIASES
        for term in SEARCH_TERMS:
            assert found(term, info, ALL, {c: info[c]["search_aliases"] for c in ALL}) == EXPECTED[term], term
    else:  # an older core: every node still loads (its definition has no aliases to offer)
        assert all(not info[cls].get("search_aliases") for cls in ALL)

