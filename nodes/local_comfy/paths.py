"""Where the launcher's things are: the pack it installs into ComfyUI, the stand-in modules, the cache.

Standard library only (so every other launcher module can import it, and nothing here starts ComfyUI or torch).
"""

from __future__ import annotations

import os
import pathlib

# The pack root (this file is <pack>/nodes/local_comfy/paths.py): what gets symlinked into custom_nodes/.
ROOT = pathlib.Path(__file__).resolve().parents[2]
# Importable stand-ins for modules ComfyUI imports while starting but SD1.x txt2img never uses (see _stubs/README.md).
STUBS_DIR = pathlib.Path(__file__).resolve().parent / "_stubs"
# The pack's folder name under custom_nodes/ of a launched server.
PACK_FOLDER = "antithetic-sampling"
# The tiny checkpoint's file name under models/checkpoints/ of a launched server (see tiny_checkpoint.py).
CHECKPOINT_NAME = "tiny_sd15.safetensors"


def cache_dir() -> pathlib.Path:
    """``$ANTITHETIC_SAMPLING_CACHE``, else ``$XDG_CACHE_HOME/antithetic-sampling`` or ``~/.cache/antithetic-sampling``:
    the generated checkpoints and the installed frontend packages live there."""
    d = os.environ.get("ANTITHETIC_SAMPLING_CACHE")
    if d:
        return pathlib.Path(d).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "antithetic-sampling"
