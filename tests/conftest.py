"""Shared pytest set-up.

The repository root is both the ComfyUI pack and the Python package ``antithetic_sampling``. Register it
under that name from the checkout (whatever the folder is called) so tests never import our ``nodes``
package as a top-level ``nodes`` (that name belongs to ComfyUI's ``nodes.py``).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _register_package() -> None:
    mod = sys.modules.get("antithetic_sampling")
    if mod is not None and pathlib.Path(mod.__file__).resolve().parent == ROOT:
        return
    spec = importlib.util.spec_from_file_location(
        "antithetic_sampling", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["antithetic_sampling"] = module
    spec.loader.exec_module(module)


_register_package()

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard requirement of the tests
    pass
