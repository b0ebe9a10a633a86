"""The e2e launcher's preflight (nodes/local_comfy/host.py): requirements from the checkout, flags from --help.

No ComfyUI needed: a fake checkout in a temporary folder and the probe's answer as data. One test runs the real
probe when a checkout is there (skips otherwise).
"""

from __future__ import annotations

import pytest
from antithetic_sampling.nodes.local_comfy import host

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
    reqs = host.parse_requirements(REQUIREMENTS)
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
    assert host.module_guesses("PyYAML") == ["yaml"]
    assert host.module_guesses("Pillow") == ["PIL"]
    assert host.module_guesses("comfyui-frontend-package") == ["comfyui_frontend_package"]
    assert host.module_guesses("Some.Dist_name") == ["some_dist_name"]


def _probe(**dists):
    return {"torchvision": False, "torchvision_error": "not installed", "dists": dists}


def _info(installed, modules, missing=(), version_ok=True):
    return {"installed": installed, "modules": list(modules), "missing_modules": list(missing), "version_ok": version_ok}


def test_only_essential_requirements_imported_at_start_up_block():
    reqs = host.parse_requirements(REQUIREMENTS)
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
    checks = {c.requirement.name: c for c in host.check_requirements(reqs, probe, startup)}
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
            for r in host.parse_requirements("numpy>=1.25\nmatplotlib>=3.7\n")]
    probe = _probe(numpy=_info("2.1", ["numpy"]), matplotlib=_info(None, ["matplotlib"], ["matplotlib"]))
    checks = {c.requirement.name: c for c in host.check_requirements(reqs, probe, startup=set())}
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
    found = host.startup_imports(tmp_path)
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
    assert host.launch_flags(flags) == expected


def test_discover_on_the_real_checkout():
    try:
        cenv = host.discover()
    except host.ComfyUnavailable as e:
        pytest.skip(f"e2e: {e}")
    assert {"--cpu", "--base-directory", "--port"} <= set(cenv.server_flags)
    assert set(cenv.launch_flags) <= set(cenv.server_flags) | {"sqlite:///:memory:"}
