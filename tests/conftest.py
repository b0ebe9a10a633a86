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


# ---------------------------------------------------------------------------------------------------------
# Real-ComfyUI end-to-end fixtures (owner: e2e infrastructure). The launcher lives in the pack
# (nodes/local_comfy/host.py: soak, guidance-bench and the Ray engine use it too).
# Fixtures: ``comfy_server`` (session: one running ComfyUI for the whole run; skips with the reason when
# ComfyUI or a dependency is missing) and ``comfy_graph`` (the txt2img_graph builder).

import time as _time  # noqa: E402

import pytest  # noqa: E402
from antithetic_sampling.nodes.local_comfy import host as comfy_host  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # Anything that uses the real server is an e2e test, marked or not (so `-m "not e2e"` skips it).
    for item in items:
        if "comfy_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A running ComfyUI (``comfy_host.ComfyServer``) shared by the whole session; skips when unavailable."""
    t0 = _time.perf_counter()
    try:
        cenv = comfy_host.discover()
    except comfy_host.ComfyUnavailable as e:
        pytest.skip(f"e2e: {e}")
    ckpt, ckpt_s = comfy_host.ensure_checkpoint(cenv)
    server = comfy_host.ComfyServer(cenv, tmp_path_factory.mktemp("comfy_base"), ckpt)
    server.checkpoint_seconds = ckpt_s
    server.start()
    server.setup_seconds = _time.perf_counter() - t0
    print(
        f"\n[comfy_server] ComfyUI {cenv.version} at {server.url}: probe {cenv.probe_seconds:.1f}s, checkpoint "
        f"{f'generated in {ckpt_s:.1f}s' if ckpt_s else 'cached'}, server ready in {server.start_seconds:.1f}s, "
        f"total {server.setup_seconds:.1f}s; torchvision stub: {cenv.needs_torchvision_stub}; "
        f"flags {' '.join(cenv.launch_flags)}; log {server.log_path}"
        + "".join(f"\n[comfy_server] requirements.txt: {n}" for n in cenv.requirement_notes)
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def comfy_graph():
    """The ``comfy_host.txt2img_graph`` builder (API-format SamplerCustomAdvanced graph for the tiny model)."""
    return comfy_host.txt2img_graph


# ---------------------------------------------------------------------------------------------------------
# Browser test option (owner: tests/test_browser.py).


def pytest_addoption(parser):
    parser.addoption(
        "--update-thumbnails",
        action="store_true",
        default=False,
        help="tests/test_browser.py: rewrite workflows/<name>.jpg from the browser's screenshot of each workflow",
    )
