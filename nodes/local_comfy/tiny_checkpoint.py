"""The tiny SD1.5 checkpoint of a ComfyUI checkout: generated once per core version, then taken from the cache.

:func:`ensure_checkpoint` returns the cached file, or runs :mod:`.tiny_checkpoint_builder` in the checkout's Python
(it needs ComfyUI's own model classes) and moves the result into the cache atomically (several test sessions may
generate at once). Cache file name: core version, generator version and CLIP dtype
(``tiny_sd15-comfy<version>-g<generator>-clip<dtype>.safetensors`` under :func:`.paths.cache_dir`).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import subprocess
import time
import uuid
from typing import TYPE_CHECKING

from . import tiny_checkpoint_builder
from .paths import cache_dir
from .tiny_checkpoint_builder import GENERATOR_VERSION

if TYPE_CHECKING:
    from .checkout import ComfyEnv


def checkpoint_cache_path(version: str, clip_dtype: str = "fp8") -> pathlib.Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version)
    return cache_dir() / f"tiny_sd15-comfy{safe}-g{GENERATOR_VERSION}-clip{clip_dtype}.safetensors"


def ensure_checkpoint(cenv: ComfyEnv, clip_dtype: str = "fp8", timeout: float = 900.0) -> tuple[pathlib.Path, float]:
    """Return (cached checkpoint path, seconds spent generating it; 0.0 when it was cached)."""
    out = checkpoint_cache_path(cenv.version, clip_dtype)
    if out.is_file() and out.stat().st_size > 0:
        return out, 0.0
    out.parent.mkdir(parents=True, exist_ok=True)
    # Unique temp name then atomic rename: several test sessions may generate at once.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    t0 = time.perf_counter()
    builder = pathlib.Path(tiny_checkpoint_builder.__file__).resolve()
    cmd = [cenv.python, str(builder), str(tmp), "--clip-dtype", clip_dtype]
    env = dict(cenv.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(cenv.comfy_path), env.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.run(cmd, cwd=str(cenv.comfy_path), env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not tmp.is_file():
            raise RuntimeError(
                f"tiny checkpoint generation failed (rc={proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return out, time.perf_counter() - t0

