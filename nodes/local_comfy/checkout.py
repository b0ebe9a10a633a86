"""Find a ComfyUI checkout and the Python that runs it, and check that the two can start a server.

:func:`discover` looks at ``$COMFYUI_PATH`` (else ``~/comfy/ComfyUI``) and ``$COMFYUI_PYTHON`` (else the Python
running this code), runs the preflight (:mod:`.preflight`: the checkout's requirements and the flags ``main.py
--help`` lists) and returns a :class:`ComfyEnv`, or raises :class:`~.errors.ComfyUnavailable` with a precise reason
(the test fixture turns it into ``pytest.skip``, so the suite never fails only because ComfyUI is absent).

If ``import torchvision`` fails in that Python, ``nodes/local_comfy/_stubs`` (an importable stand-in that raises on
use) is prepended to the server's ``PYTHONPATH`` (:func:`base_env`): ComfyUI imports torchvision while starting,
SD1.x txt2img never calls it.

``python -m antithetic_sampling.nodes.local_comfy.checkout`` prints what :func:`discover` finds.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import sys
import time
from dataclasses import dataclass, field

from .errors import ComfyUnavailable
from .paths import STUBS_DIR
from .preflight import (
    check_requirements,
    checkout_requirements,
    launch_flags,
    probe_requirements,
    server_flags,
    startup_imports,
)


@dataclass
class ComfyEnv:
    """Where ComfyUI is and how to run it (result of :func:`discover`)."""

    comfy_path: pathlib.Path
    python: str
    version: str
    needs_torchvision_stub: bool
    env: dict[str, str] = field(default_factory=dict)
    probe_seconds: float = 0.0
    torchvision_note: str = ""
    # requirements.txt lines that are missing, optional or at another version, with what that means
    requirement_notes: list[str] = field(default_factory=list)
    # long options `main.py --help` lists, and the optional ones the server is started with
    server_flags: list[str] = field(default_factory=list)
    launch_flags: list[str] = field(default_factory=list)


def comfy_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("COMFYUI_PATH") or pathlib.Path.home() / "comfy" / "ComfyUI").expanduser()


def comfy_python() -> str:
    return os.environ.get("COMFYUI_PYTHON") or sys.executable


def comfy_version(path: pathlib.Path) -> str:
    """Read ``comfyui_version.py`` as text (never import ComfyUI here)."""
    try:
        text = (path / "comfyui_version.py").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return m.group(1) if m else "unknown"


def base_env(needs_stub: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env.setdefault("MKL_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONSTARTUP", None)
    if needs_stub:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(STUBS_DIR), env.get("PYTHONPATH", "")) if p)
    return env


def discover(timeout: float = 300.0) -> ComfyEnv:
    """Locate ComfyUI and check its Python; raise :class:`ComfyUnavailable` with a precise reason otherwise.

    The checkout's own ``requirements.txt`` says what must be importable (see :func:`check_requirements`);
    ``main.py --help`` says which server flags it accepts (see :func:`launch_flags`).
    """
    path = comfy_path()
    where = "COMFYUI_PATH" if os.environ.get("COMFYUI_PATH") else "default ~/comfy/ComfyUI"
    if not (path / "main.py").is_file() or not (path / "comfy").is_dir():
        raise ComfyUnavailable(
            f"no ComfyUI checkout at {path} ({where}): need main.py and comfy/ there; "
            "set COMFYUI_PATH to a ComfyUI checkout to run the e2e tests"
        )
    python = comfy_python()
    if shutil.which(python) is None and not pathlib.Path(python).is_file():
        raise ComfyUnavailable(f"ComfyUI python {python!r} (COMFYUI_PYTHON) not found")
    t0 = time.perf_counter()
    reqs = checkout_requirements(path)
    probe = probe_requirements(python, path, reqs, env=base_env(False), timeout=timeout)
    checks = check_requirements(reqs, probe, startup_imports(path))
    blocking = [c for c in checks if c.blocking]
    if blocking:
        details = "; ".join(f"{c.requirement.line} ({c.note})" for c in blocking)
        raise ComfyUnavailable(
            f"ComfyUI at {path} found, but its python {python} lacks what ComfyUI needs to start: {details}. "
            f"Install the checkout's requirements.txt into that python or set COMFYUI_PYTHON"
        )
    needs_stub = not probe["torchvision"]
    env = base_env(needs_stub)
    flags = server_flags(python, path, env)
    if "--base-directory" not in flags or "--cpu" not in flags:
        raise ComfyUnavailable(
            f"ComfyUI at {path}: `main.py --help` does not list --base-directory and --cpu, which this launcher "
            f"needs (too old a core?)"
        )
    return ComfyEnv(
        torchvision_note=probe["torchvision_error"],
        comfy_path=path,
        python=python,
        version=comfy_version(path),
        needs_torchvision_stub=needs_stub,
        env=env,
        probe_seconds=time.perf_counter() - t0,
        requirement_notes=[f"{c.requirement.line}: {c.note}" for c in checks if c.note],
        server_flags=sorted(flags),
        launch_flags=launch_flags(flags),
    )



def main() -> int:
    try:
        cenv = discover()
    except ComfyUnavailable as e:
        print(f"unavailable: {e}")
        return 1
    print(json.dumps({k: str(v) for k, v in cenv.__dict__.items() if k != "env"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
