"""The e2e launcher's preflight (nodes/local_comfy/preflight.py, checkout.py): requirements from the checkout,
flags from --help; and how the suite reports a missing ComfyUI (one short skip line, the full reason once).

No ComfyUI needed: a fake checkout in a temporary folder and the probe's answer as data. One test runs the real
probe when a checkout is there (skips otherwise).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
from antithetic_sampling.nodes.local_comfy import preflight

ROOT = pathlib.Path(__file__).resolve().parents[1]

REQUIREMENTS = """\
comfyui-frontend-package==1.27.10
torch
torchvision
torchaudio
numpy>=1.25.0
PyYAML
Pillow
soundfile
-r other.txt
git+https://example.invalid/x.git
av>=14.2.0 ; python_version >= "3.9"

#non essential dependencies:
kornia>=0.7.1
spandrel
"""


def test_parse_requirements_reads_names_specifiers_and_the_essential_section():
    reqs = preflight.parse_requirements(REQUIREMENTS)
    assert [r.name for r in reqs] == [
        "comfyui-frontend-package", "torch", "torchvision", "torchaudio", "numpy", "PyYAML", "Pillow", "soundfile",
        "av", "kornia", "spandrel",
    ]
    by = {r.name: r for r in reqs}
    assert by["numpy"].specifier == ">=1.25.0" and by["av"].specifier == ">=14.2.0"
    assert by["comfyui-frontend-package"].specifier == "==1.27.10"
    assert by["torch"].essential and by["av"].essential
    assert not by["kornia"].essential and not by["spandrel"].essential


def test_module_names_of_distributions_not_installed():
    assert preflight.module_guesses("PyYAML") == ["yaml"]
    assert preflight.module_guesses("Pillow") == ["PIL"]
    assert preflight.module_guesses("comfyui-frontend-package") == ["comfyui_frontend_package"]
    assert preflight.module_guesses("Some.Dist_name") == ["some_dist_name"]


def _probe(**dists):
    return {"torchvision": False, "torchvision_error": "not installed", "dists": dists}


def _info(installed, modules, missing=(), version_ok=True):
    return {"installed": installed, "modules": list(modules), "missing_modules": list(missing), "version_ok": version_ok}


def test_only_essential_requirements_imported_at_start_up_block():
    reqs = preflight.parse_requirements(REQUIREMENTS)
    probe = _probe(**{
        "comfyui-frontend-package": _info("1.58.1", ["comfyui_frontend_package"], version_ok=False),
        "torch": _info("2.13.0", ["torch", "functorch"]),
        "torchvision": _info(None, ["torchvision"], ["torchvision"]),
        "torchaudio": _info(None, ["torchaudio"], ["torchaudio"]),
        "numpy": _info(None, ["numpy"], ["numpy"]),
        "PyYAML": _info("6.0", ["yaml"]),
        "Pillow": _info("11", ["PIL"]),
        "soundfile": _info(None, ["soundfile"], ["soundfile"]),
        "av": _info("14.2.0", ["av"]),
        "kornia": _info(None, ["kornia"], ["kornia"]),
        "spandrel": _info("0.4", ["spandrel"]),
    })
    startup = {"torch", "numpy", "yaml", "PIL", "av", "torchvision", "spandrel", "kornia"}
    checks = {c.requirement.name: c for c in preflight.check_requirements(reqs, probe, startup)}
    assert [n for n, c in checks.items() if c.blocking] == ["numpy"]
    assert "not installed" in checks["numpy"].note
    assert "stands in" in checks["torchvision"].note and not checks["torchvision"].blocking
    assert "not imported while ComfyUI starts" in checks["torchaudio"].note
    assert "not imported while ComfyUI starts" in checks["soundfile"].note
    assert "non-essential" in checks["kornia"].note and not checks["kornia"].blocking
    assert "does not satisfy ==1.27.10" in checks["comfyui-frontend-package"].note
    assert checks["torch"].note == "" and not checks["torch"].blocking


def test_a_missing_requirement_of_the_pack_itself_blocks():
    """matplotlib is imported by the pack's nodes, not by ComfyUI's start-up: still blocking, with the fix named."""
    reqs = [r.__class__(r.name, r.specifier, r.essential, r.line, pack=True)
            for r in preflight.parse_requirements("numpy>=1.25\nmatplotlib>=3.7\n")]
    probe = _probe(numpy=_info("2.1", ["numpy"]), matplotlib=_info(None, ["matplotlib"], ["matplotlib"]))
    checks = {c.requirement.name: c for c in preflight.check_requirements(reqs, probe, startup=set())}
    assert checks["matplotlib"].blocking and "requirements.txt" in checks["matplotlib"].note
    assert not checks["numpy"].blocking


def test_startup_imports_follow_the_checkout_from_main(tmp_path):
    (tmp_path / "main.py").write_text(
        "import os\nimport comfy.core\nfrom app import server\n"
        "try:\n    import optional_thing\nexcept ImportError:\n    pass\n"
        "def start():\n    import execution\n    import lazy_dep\n"
    )
    (tmp_path / "comfy").mkdir()
    (tmp_path / "comfy" / "__init__.py").write_text("")
    (tmp_path / "comfy" / "core.py").write_text("import numpy as np\nfrom . import helpers\n")
    (tmp_path / "comfy" / "helpers.py").write_text("from yaml import safe_load\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "server.py").write_text("import aiohttp\nif True:\n    import PIL.Image\n")
    (tmp_path / "execution.py").write_text("import torch\n")
    (tmp_path / "comfy_extras").mkdir()
    (tmp_path / "comfy_extras" / "nodes_audio.py").write_text("import torchaudio\n")
    found = preflight.startup_imports(tmp_path)
    assert {"os", "numpy", "yaml", "aiohttp", "PIL", "torch"} <= found
    assert not found & {"optional_thing", "lazy_dep", "torchaudio", "comfy", "app", "execution"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"--cpu", "--base-directory", "--disable-api-nodes", "--database-url"},
         ["--disable-api-nodes", "--database-url", "sqlite:///:memory:"]),
        ({"--cpu", "--base-directory", "--disable-api-nodes", "--offline", "--database-url"},
         ["--offline", "--database-url", "sqlite:///:memory:"]),
        ({"--cpu", "--base-directory"}, []),
    ],
)
def test_launch_flags_follow_what_main_py_lists(flags, expected):
    assert preflight.launch_flags(flags) == expected


def test_discover_on_the_real_checkout(comfy_env):
    cenv = comfy_env
    assert {"--cpu", "--base-directory", "--port"} <= set(cenv.server_flags)
    assert set(cenv.launch_flags) <= set(cenv.server_flags) | {"sqlite:///:memory:"}


@pytest.mark.slow
def test_without_comfyui_the_skip_is_reported_once_and_short(tmp_path):
    """Every e2e test skips with one short reason, folded into one summary line; the full reason is printed once."""
    env = {**os.environ, "COMFYUI_PATH": str(tmp_path / "no-comfyui-here"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "e2e",
         "tests/test_e2e_metrics.py", "tests/test_e2e_noise.py", "tests/test_local_comfy_preflight.py"],
        cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    skipped = [ln for ln in out.splitlines() if ln.startswith("SKIPPED")]
    assert len(skipped) == 1, skipped
    assert re.match(r"SKIPPED \[(\d+)\] tests/conftest\.py:\d+: e2e: no usable ComfyUI", skipped[0]), skipped[0]
    assert int(re.search(r"\[(\d+)\]", skipped[0]).group(1)) > 10  # tests of three files, folded into one line
    assert len(skipped[0]) < 160
    assert out.count(str(tmp_path / "no-comfyui-here")) == 1  # the full reason, once
    assert "e2e skipped: no ComfyUI checkout at" in out
