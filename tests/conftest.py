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
# Real-ComfyUI end-to-end fixtures (owner: e2e infrastructure). The launcher lives in the pack (nodes/local_comfy/:
# checkout.py finds ComfyUI, server.py runs it; soak, guidance-bench and the Ray engine use it too).
# Fixtures: ``comfy_env`` (session: where ComfyUI is, found once), ``comfy_server`` (session: one running ComfyUI
# for the whole run) and ``comfy_graph`` (the txt2img_graph builder). Without a usable ComfyUI every test that needs
# one skips with the same short reason, reported on one line; the full reason is printed once, at the end.

import time as _time  # noqa: E402

import pytest  # noqa: E402
from antithetic_sampling.nodes.local_comfy.checkout import discover  # noqa: E402
from antithetic_sampling.nodes.local_comfy.errors import ComfyUnavailable  # noqa: E402
from antithetic_sampling.nodes.local_comfy.server import ComfyServer  # noqa: E402
from antithetic_sampling.nodes.local_comfy.tiny_checkpoint import ensure_checkpoint  # noqa: E402
from antithetic_sampling.nodes.local_comfy.txt2img_graph import txt2img_graph  # noqa: E402

E2E_SKIP = "e2e: no usable ComfyUI (full reason: the 'e2e skipped:' line of this run; setup: docs/testing.md)"
_comfy: dict = {}  # discover()'s ComfyEnv, or the ComfyUnavailable reason, once per session


def comfy_env_or_skip():
    """:func:`discover` once per session; every later call answers the same (a ComfyEnv, or the short skip)."""
    if not _comfy:
        try:
            _comfy["env"] = discover()
        except ComfyUnavailable as e:
            _comfy["reason"] = str(e)
    if "reason" in _comfy:
        pytest.skip(E2E_SKIP)
    return _comfy["env"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # pytest reports a fixture's skip at each test's own line, so 144 tests would print the reason on ~60 lines
    # of the -ra summary; one location for all of them folds them into one.
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2].endswith(E2E_SKIP):
        report.longrepr = (__file__, comfy_env_or_skip.__code__.co_firstlineno, E2E_SKIP)


def pytest_terminal_summary(terminalreporter):
    if "reason" in _comfy:
        terminalreporter.write_line(f"e2e skipped: {_comfy['reason']}")


def pytest_collection_modifyitems(config, items):
    # Anything that uses the real server is an e2e test, marked or not (so `-m "not e2e"` skips it).
    for item in items:
        if {"comfy_server", "comfy_env"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def comfy_env():
    """Where ComfyUI is and how to run it (``ComfyEnv``), found once per session; skips when unavailable."""
    return comfy_env_or_skip()


@pytest.fixture(scope="session")
def comfy_server(comfy_env, tmp_path_factory):
    """A running ComfyUI (``ComfyServer``) shared by the whole session; skips when unavailable."""
    t0 = _time.perf_counter()
    cenv = comfy_env
    ckpt, ckpt_s = ensure_checkpoint(cenv)
    server = ComfyServer(cenv, tmp_path_factory.mktemp("comfy_base"), ckpt)
    server.checkpoint_seconds = ckpt_s
    server.start()
    server.setup_seconds = cenv.probe_seconds + _time.perf_counter() - t0
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
    """The ``txt2img_graph`` builder (nodes/local_comfy/txt2img_graph.py): API-format SamplerCustomAdvanced graphs
    for the tiny model."""
    return txt2img_graph


# ---------------------------------------------------------------------------------------------------------
# Browser test option (owner: tests/test_browser.py).


def pytest_addoption(parser):
    parser.addoption(
        "--update-thumbnails",
        action="store_true",
        default=False,
        help="tests/test_browser.py: rewrite workflows/<name>.jpg from the browser's screenshot of each workflow",
    )
