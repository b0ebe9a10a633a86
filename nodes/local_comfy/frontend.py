"""A ComfyUI frontend of an exact version, installed once into the cache, for ``main.py --front-end-root``.

The browser tests use it for their newest-frontend cells: the frontend that a core bundles is whatever its
``requirements.txt`` pins; a newer one is the ``comfyui-frontend-package`` wheel from PyPI (static files only).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import uuid

from .errors import ComfyUnavailable
from .paths import cache_dir


def ensure_frontend(version: str, python: str | None = None, timeout: float = 600.0) -> pathlib.Path:
    """The ``static`` folder of ``comfyui-frontend-package==version``, installed once into the cache.

    ``python -m pip install --no-deps --target <cache>/frontend/<version>``: the package is static files only
    (no dependencies, so nothing can pull torch), kept apart from every environment. Serve it with
    ``main.py --front-end-root <returned folder>``. Raises :class:`ComfyUnavailable` (a reason to skip) when pip
    cannot fetch it, e.g. offline.
    """
    if not re.fullmatch(r"\d+(\.\d+)+", version):
        raise ValueError(f"frontend version must be exact (like 1.58.1), not {version!r}")
    target = cache_dir() / "frontend" / version
    static = target / "comfyui_frontend_package" / "static"
    if (static / "index.html").is_file():
        return static
    tmp = target.with_name(f".{version}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    cmd = [python or sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--no-compile", "--target", str(tmp), f"comfyui-frontend-package=={version}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not (tmp / "comfyui_frontend_package" / "static" / "index.html").is_file():
            raise ComfyUnavailable(
                f"could not install comfyui-frontend-package=={version} ({' '.join(cmd[:3])} rc={proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-600:]}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (static / "index.html").is_file():  # not another session that won the race
                raise
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ComfyUnavailable(f"could not install comfyui-frontend-package=={version}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return static

