"""Development commands that run from a clone (``soak``, ``guidance-bench``) reuse the e2e test helpers.

``tests/comfy_host.py`` (find ComfyUI, build the tiny checkpoint, start a server) and ``tests/workflow_tiny.py``
are not part of the installed pack; this loads them by path from the checkout, under the module name the test
suite registers (``<package>.tests.<stem>``), so a test session and a command share one copy.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


class CheckoutMissing(RuntimeError):
    """The command runs outside a checkout of the repository (no tests/ folder next to the pack)."""


def load_test_module(stem: str) -> ModuleType:
    """``tests/<stem>.py`` of this checkout, loaded by path (cached in ``sys.modules``)."""
    top = (__package__ or "antithetic_sampling").split(".")[0]
    name = f"{top}.tests.{stem}"
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    path = ROOT / "tests" / f"{stem}.py"
    if not path.is_file():
        raise CheckoutMissing(f"{path} not found: this command runs from a checkout of the repository "
                              "(it uses the e2e helpers in tests/)")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception:
        sys.modules.pop(name, None)
        raise
    return mod
