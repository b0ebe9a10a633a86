"""Core validation stays on for every input of every node (no ComfyUI needed: reads the node sources).

ComfyUI skips its min/max/combo checks for every input of a node whose ``validate_inputs`` / ``VALIDATE_INPUTS``
takes ``**kwargs``, and for each input it names; so none may take ``**kwargs``.
"""

from __future__ import annotations

import ast
import pathlib

NODES = pathlib.Path(__file__).resolve().parents[1] / "nodes"


def _validators():
    for path in sorted(NODES.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef) and fn.name in {"validate_inputs", "VALIDATE_INPUTS"}:
                    yield f"{path.name}:{cls.name}.{fn.name}", fn


def test_no_validator_swallows_inputs():
    found = dict(_validators())
    assert "noise_nodes.py:SobolRQMCLatentBatch.validate_inputs" in found
    for name, fn in found.items():
        assert fn.args.kwarg is None, f"{name} takes **{fn.args.kwarg.arg}: core would skip validating every input"
        assert fn.args.vararg is None, f"{name} takes *{fn.args.vararg.arg}"
