"""A real local ComfyUI with this pack: locate it, give it a tiny checkpoint, run it, talk to it over HTTP.

Used by the test suite's e2e fixture ``comfy_server``, ``antithetic-sampling soak``, ``guidance-bench`` and the Ray
engine of ``antithetic-queue``: ``from antithetic_sampling.nodes.local_comfy.host import ComfyServer, discover``.

What it does
------------
* Finds ComfyUI at ``$COMFYUI_PATH`` or ``~/comfy/ComfyUI`` and its Python at ``$COMFYUI_PYTHON`` or the
  Python running the tests. The preflight reads the checkout's own ``requirements.txt``: a short subprocess in
  that Python checks each distribution (installed, version, the modules it provides, located with find_spec);
  one that ComfyUI's start-up imports unconditionally (followed statically from ``main.py``) and that is
  missing raises :class:`ComfyUnavailable` (the fixture turns that into ``pytest.skip`` with the reason), so
  the suite never fails only because ComfyUI is absent; the rest become notes. ``main.py --help`` says which
  server flags the checkout accepts (``--offline`` or the older ``--disable-api-nodes``, ``--database-url``).
* If ``import torchvision`` fails in that Python, ``nodes/local_comfy/_stubs`` (an importable stand-in that raises on use)
  is prepended to the server's ``PYTHONPATH``: ComfyUI imports torchvision while starting, SD1.x txt2img
  never calls it.
* Generates (once, then cached) ``tiny_sd15.safetensors``: a random-weight SD1.5-layout checkpoint built by
  instantiating ComfyUI's own ``UNetModel`` (model_channels 320, channel_mult [1], one res block, one
  transformer block, context 768), ``CLIPTextModel`` (full CLIP-L, the SD1 loader needs it) and ``TAESD``
  classes on the ``meta`` device for exact key names and shapes, filled with seeded random weights (norm scales
  1, biases 0, others N(0, 1/fan_in)); UNet/VAE fp16, CLIP float8_e4m3fn by default (upcast on load).
  Cache: ``$ANTITHETIC_SAMPLING_CACHE`` or ``~/.cache/antithetic-sampling``; run
  ``python nodes/local_comfy/host.py make-checkpoint OUT.safetensors`` with ComfyUI on ``sys.path`` to build one.
* :func:`ensure_frontend` installs an exact ``comfyui-frontend-package`` version (``pip --target``, no
  dependencies) into the cache, for ``main.py --front-end-root`` (the browser test's newest-frontend cells).
* :class:`ComfyServer` starts ``main.py --cpu`` on a free 127.0.0.1 port with its own ``--base-directory``
  (the pack symlinked as ``custom_nodes/antithetic-sampling``, the checkpoint linked into
  ``models/checkpoints``), ``OMP_NUM_THREADS=1``, log in ``<base>/comfyui.log``; HTTP via stdlib ``urllib``.
  ``cpu=False`` runs on the GPU(s) the process sees; ``checkout_folders=True`` uses the checkout's own models and
  custom nodes (the Ray actors of ``antithetic-queue --ray``) with a private output/temp folder.

Only the standard library is imported at module level (PIL lazily in :meth:`ComfyServer.fetch_image`,
torch/comfy only inside the checkpoint generator, which runs in the ComfyUI subprocess).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

# The pack root (this file is <pack>/nodes/local_comfy/host.py): what gets symlinked into custom_nodes/.
ROOT = pathlib.Path(__file__).resolve().parents[2]
STUBS_DIR = pathlib.Path(__file__).resolve().parent / "_stubs"
PACK_FOLDER = "antithetic-sampling"
CHECKPOINT_NAME = "tiny_sd15.safetensors"
# Bump when the generated checkpoint's content changes (part of the cache file name).
GENERATOR_VERSION = 1

# Distributions whose import name differs from the normalised distribution name, for a requirement that is not
# installed (an installed one names its modules itself: importlib.metadata's top_level.txt / RECORD).
IMPORT_NAME_ALIASES: dict[str, tuple[str, ...]] = {
    "pyyaml": ("yaml",),
    "pillow": ("PIL",),
    "opencv-python": ("cv2",),
    "opencv-python-headless": ("cv2",),
    "scikit-image": ("skimage",),
    "scikit-learn": ("sklearn",),
    "pydantic-settings": ("pydantic_settings",),
    "protobuf": ("google.protobuf",),
    "beautifulsoup4": ("bs4",),
}
# Requirements the launcher can do without: a stand-in it provides itself (see STUBS_DIR).
STAND_INS = {"torchvision": "nodes/local_comfy/_stubs stands in (SD1.x txt2img never calls it)"}
# The modules ComfyUI's own start-up imports, statically: main.py and what it imports of the checkout.
STARTUP_ENTRY_POINTS = ("main.py",)


class ComfyUnavailable(RuntimeError):
    """ComfyUI (or a dependency of it) is not there: a reason to skip, not to fail."""


class ComfyError(RuntimeError):
    """The server rejected a prompt (HTTP 400 with node_errors) or the prompt failed while executing."""

    def __init__(self, message: str, payload: Any = None) -> None:
        super().__init__(message)
        self.payload = payload


# --------------------------------------------------------------------------------------------- environment


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


# ------------------------------------------------------------------------------------------ requirements


@dataclass(frozen=True)
class Requirement:
    """One line of a ``requirements.txt``: distribution name, version specifier, and whether ComfyUI lists it
    among its essential dependencies (lines above a "non essential" / "optional" comment)."""

    name: str
    specifier: str
    essential: bool
    line: str
    # a line of this pack's own requirements.txt: the pack's nodes import it, so it must be importable
    pack: bool = False


_REQ_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*([^;#]*)")


def normalize_dist(name: str) -> str:
    """PEP 503 name: lowercase, runs of ``-_.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(text: str) -> list[Requirement]:
    """The requirements of a ComfyUI ``requirements.txt`` (options, URLs, ``-r`` includes and markers skipped).

    ComfyUI separates what it needs from extras with a comment (``#non essential dependencies:``); everything
    after a comment that says "non essential" or "optional" counts as not essential.
    """
    out: list[Requirement] = []
    essential = True
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            low = line.lower()
            if "non essential" in low or "non-essential" in low or "optional" in low:
                essential = False
            continue
        if line.startswith("-") or "://" in line or line.startswith((".", "/")):
            continue
        m = _REQ_LINE.match(line)
        if m:
            out.append(Requirement(m.group(1), m.group(3).strip(), essential, line))
    return out


def _guarded_imports(tree) -> set[int]:
    """ids of Import/ImportFrom nodes inside a try: block (ComfyUI guards optional imports that way)."""
    import ast

    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for stmt in node.body:
                for sub in ast.walk(stmt):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        guarded.add(id(sub))
    return guarded


def startup_imports(checkout: pathlib.Path) -> set[str]:
    """Top-level names of the third-party modules ComfyUI's start-up imports unconditionally.

    Follows the checkout's own modules from ``main.py`` (module-level and function-level imports: main.py runs
    its functions while starting) and collects the external modules imported at module level outside ``try:``
    blocks. Built-in node modules (``comfy_extras``) and custom nodes are loaded by file later, and a failure
    there only disables those nodes, so they are not followed.
    """
    import ast

    def local_path(mod: str) -> pathlib.Path | None:
        parts = mod.split(".")
        for cand in (checkout.joinpath(*parts).with_suffix(".py"), checkout.joinpath(*parts, "__init__.py")):
            if cand.is_file():
                return cand
        return None

    external: set[str] = set()
    seen: set[pathlib.Path] = set()
    todo = [checkout / e for e in STARTUP_ENTRY_POINTS]
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        guarded = _guarded_imports(tree)
        module_level = {id(n) for n in tree.body}
        for stmt in tree.body:  # imports nested in module-level if/with blocks count as module level too
            if isinstance(stmt, (ast.If, ast.With)):
                module_level.update(id(n) for n in ast.walk(stmt))
        pkg_parts = path.relative_to(checkout).parent.parts
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve inside the checkout
                    base = pkg_parts[: len(pkg_parts) - node.level + 1]
                    mod = ".".join([*base, node.module] if node.module else base)
                    names = [mod] + [f"{mod}.{a.name}" for a in node.names]
                else:
                    names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                if not name:
                    continue
                local = local_path(name)
                if local is not None:
                    if node.__class__.__name__ == "Import" or id(node) not in guarded:
                        if not name.startswith("comfy_extras") and not name.startswith("custom_nodes"):
                            todo.append(local)
                elif id(node) in module_level and id(node) not in guarded and not getattr(node, "level", 0):
                    top = name.split(".")[0]
                    if not ((checkout / top).is_dir() or (checkout / f"{top}.py").is_file()):
                        external.add(top)
    return external


# Runs in the ComfyUI python with the checkout's requirements (JSON on argv[1]): for each distribution, is it
# installed, at a version the checkout accepts, and which modules does it provide (metadata, else a guess)?
# Modules are only located (find_spec): importing torch, transformers, av ... costs seconds. torchvision is
# imported for real when present, because a torchvision built for another torch is installed but fails on import.
_PROBE = r"""
import importlib, importlib.metadata as md, importlib.util, json, re, sys
reqs = json.loads(sys.argv[1])
try:
    from packaging.specifiers import SpecifierSet
except Exception:
    SpecifierSet = None
out = {"torchvision": False, "torchvision_error": "not installed", "dists": {}}
if importlib.util.find_spec("torchvision") is not None:
    try:
        import torchvision  # noqa: F401
        out["torchvision"], out["torchvision_error"] = True, ""
    except Exception as e:
        out["torchvision_error"] = f"{type(e).__name__}: {e}"
def provided(dist):
    top = dist.read_text("top_level.txt")
    if top:  # one entry a line, sometimes a path inside the package ("pkg/sub")
        return sorted({t.strip().split("/")[0] for t in top.split() if t.strip() and not t.startswith("_")})
    mods = set()
    for f in dist.files or []:
        p = str(f)
        if p.endswith(".py") or p.endswith(".so") or "/__init__." in p:
            head = p.split("/")[0]
            if head.endswith(".py"):
                head = head[:-3]
            if ".dist-info" not in head and ".data" not in head and not head.startswith("_") and head != "..":
                mods.add(head.split(".")[0])
    return sorted(mods)
for r in reqs:
    name, spec, guesses = r["name"], r["specifier"], r["guesses"]
    info = {"installed": None, "version_ok": True, "modules": [], "missing_modules": []}
    try:
        dist = md.distribution(name)
        info["installed"] = dist.version
        info["modules"] = provided(dist) or guesses
        if spec and SpecifierSet is not None:
            try:
                info["version_ok"] = SpecifierSet(spec).contains(dist.version, prereleases=True)
            except Exception:
                pass
    except md.PackageNotFoundError:
        info["modules"] = guesses
    for m in info["modules"]:
        try:
            if importlib.util.find_spec(m) is None:
                info["missing_modules"].append(m)
        except Exception as e:
            info["missing_modules"].append(f"{m} ({type(e).__name__}: {e})")
    out["dists"][name] = info
print("@@PROBE@@" + json.dumps(out))
"""


def module_guesses(dist_name: str) -> list[str]:
    """Import names of a distribution that is not installed (an installed one is asked instead)."""
    norm = normalize_dist(dist_name)
    if norm in IMPORT_NAME_ALIASES:
        return list(IMPORT_NAME_ALIASES[norm])
    return [norm.replace("-", "_")]


@dataclass
class RequirementCheck:
    """What the preflight found for one requirement (``blocking``: the server cannot start without it)."""

    requirement: Requirement
    installed: str | None
    version_ok: bool
    modules: list[str]
    missing_modules: list[str]
    blocking: bool
    note: str


def check_requirements(reqs: list[Requirement], probe: dict, startup: set[str]) -> list[RequirementCheck]:
    """Classify each requirement from the probe's answer.

    Blocking: an essential requirement that is not importable and that ComfyUI's start-up imports
    unconditionally (``startup``), unless the launcher has a stand-in for it. A wrong version, a missing
    optional requirement, or one only imported by optional code (audio, video, upscale nodes ...) is a note.
    """
    checks = []
    for r in reqs:
        info = probe["dists"].get(r.name, {})
        installed = info.get("installed")
        missing = list(info.get("missing_modules", []))
        modules = list(info.get("modules", []))
        importable = installed is not None and not missing
        needed_at_start = any(m.split(".")[0] in startup for m in modules)
        norm = normalize_dist(r.name)
        note = ""
        blocking = False
        if norm == "torchvision" and not probe.get("torchvision"):
            note = STAND_INS["torchvision"]
        elif not importable:
            what = "not installed" if installed is None else f"cannot locate {', '.join(missing)}"
            if r.pack:
                blocking = True
                note = f"{what}; this pack's nodes import it (pip install -r {ROOT / 'requirements.txt'} into that python)"
            elif r.essential and needed_at_start:
                blocking = True
                note = what
            elif r.essential:
                note = f"{what}; not imported while ComfyUI starts (only optional nodes use it)"
            else:
                note = f"{what}; listed as non-essential"
        elif not info.get("version_ok", True):
            note = f"installed {installed} does not satisfy {r.specifier} (ComfyUI starts anyway; results may differ)"
        checks.append(RequirementCheck(r, installed, info.get("version_ok", True), modules, missing, blocking, note))
    return checks


# ------------------------------------------------------------------------------------------ server flags


def server_flags(python: str, checkout: pathlib.Path, env: dict[str, str], timeout: float = 120.0) -> set[str]:
    """The long options ``main.py --help`` lists (:class:`ComfyUnavailable` when it does not run)."""
    try:
        proc = subprocess.run(
            [python, "main.py", "--help"], cwd=str(checkout), env=env, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ComfyUnavailable(f"`main.py --help` of {checkout} did not run: {e}") from e
    if proc.returncode != 0:
        raise ComfyUnavailable(f"`main.py --help` of {checkout} failed (rc={proc.returncode}): {proc.stderr[-800:]}")
    return set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9_-]*)", proc.stdout))


def launch_flags(flags: set[str]) -> list[str]:
    """The optional server flags this launcher wants, as far as the checkout supports them.

    * paid API nodes off (they need the network; skipping them saves start time): ``--disable-api-nodes`` in
      older cores; newer ones deprecate it for ``--offline``, which is preferred when listed;
    * the database in memory (``--database-url``, where a database exists): the default sqlite file lives inside
      the checkout, which stays untouched.
    """
    out: list[str] = []
    if "--offline" in flags:
        out.append("--offline")
    elif "--disable-api-nodes" in flags:
        out.append("--disable-api-nodes")
    if "--database-url" in flags:
        out += ["--database-url", "sqlite:///:memory:"]
    return out


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
    try:
        reqs = parse_requirements((path / "requirements.txt").read_text(encoding="utf-8"))
    except OSError as e:
        raise ComfyUnavailable(f"ComfyUI at {path} has no readable requirements.txt: {e}") from e
    # and what this pack's nodes import beyond ComfyUI (numpy, scipy, safetensors, matplotlib)
    known = {normalize_dist(r.name) for r in reqs}
    pack_file = ROOT / "requirements.txt"
    if pack_file.is_file():
        reqs += [dataclasses.replace(r, pack=True) for r in parse_requirements(pack_file.read_text(encoding="utf-8"))
                 if normalize_dist(r.name) not in known]
    payload = json.dumps([{"name": r.name, "specifier": r.specifier, "guesses": module_guesses(r.name)} for r in reqs])
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE, payload],
            cwd=str(path),
            env=base_env(False),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ComfyUnavailable(f"could not run the ComfyUI python {python!r}: {e}") from e
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@PROBE@@")), None)
    if line is None:
        raise ComfyUnavailable(
            f"dependency probe failed in {python!r} (rc={proc.returncode}): {proc.stderr.strip()[-800:]}"
        )
    probe = json.loads(line[len("@@PROBE@@") :])
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


# ------------------------------------------------------------------------------------------ tiny checkpoint


def cache_dir() -> pathlib.Path:
    d = os.environ.get("ANTITHETIC_SAMPLING_CACHE")
    if d:
        return pathlib.Path(d).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "antithetic-sampling"


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
    cmd = [cenv.python, str(pathlib.Path(__file__).resolve()), "make-checkpoint", str(tmp), "--clip-dtype", clip_dtype]
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


# ------------------------------------------------------------------------------------------ frontend package


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


# The UNet that ComfyUI detects as SD15 (model_detection.py: model_channels 320, context 768, no linear
# proj_in, no adm): depth is free, so one level, one res block, one transformer block (25.8 M params).
TINY_UNET_CONFIG: dict[str, Any] = {
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [1],
    "channel_mult": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [1, 1],
    "transformer_depth_middle": 1,
    "context_dim": 768,
    "num_heads": 8,
    "num_head_channels": -1,
    "use_spatial_transformer": True,
    "use_linear_in_transformer": False,
    "legacy": False,
    "adm_in_channels": None,
    "use_checkpoint": False,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}


def make_tiny_checkpoint(out: str | os.PathLike, seed: int = 0, clip_dtype: str = "fp8") -> dict[str, Any]:
    """Build the random-weight SD1.5-layout checkpoint. Needs ComfyUI importable (``comfy`` on sys.path).

    Runs in the ComfyUI python (see :func:`ensure_checkpoint`). Returns a small report dict.
    """
    import torch

    torch.set_num_threads(1)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before comfy.model_management is imported: no CUDA probing
    import comfy.clip_model
    import comfy.model_detection
    import comfy.ops
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.taesd.taesd
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from safetensors.torch import save_file

    ops = comfy.ops.disable_weight_init
    with torch.device("meta"):
        unet = UNetModel(dtype=torch.float32, device="meta", operations=ops, **TINY_UNET_CONFIG)
        clip_json = pathlib.Path(comfy.sd1_clip.__file__).with_name("sd1_clip_config.json")
        clip_cfg = json.loads(clip_json.read_text(encoding="utf-8"))
        clip = comfy.clip_model.CLIPTextModel(clip_cfg, torch.float32, "meta", ops)
        taesd = comfy.taesd.taesd.TAESD()

    gen = torch.Generator().manual_seed(seed)
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm)

    def fill(module: torch.nn.Module, prefix: str, dtype: torch.dtype, sd: dict[str, torch.Tensor]) -> None:
        owners = {}
        for mname, mod in module.named_modules():
            for pname, _ in mod.named_parameters(recurse=False):
                owners[f"{mname}.{pname}" if mname else pname] = mod
        for name, p in sorted(module.state_dict().items()):
            shape = tuple(p.shape)
            leaf = name.rsplit(".", 1)[-1]
            mod = owners.get(name)
            if name.endswith("vae_scale"):
                t = torch.ones(shape)
            elif leaf == "bias" or name.endswith("vae_shift"):
                t = torch.zeros(shape)
            elif isinstance(mod, norm_types) and leaf == "weight":
                t = torch.ones(shape)
            else:
                fan_in = 1
                for s in shape[1:]:
                    fan_in *= s
                t = torch.randn(shape, generator=gen) / max(fan_in, 1) ** 0.5
            sd[prefix + name] = t.to(dtype).contiguous()

    sd: dict[str, torch.Tensor] = {}
    fill(unet, "model.diffusion_model.", torch.float16, sd)
    te_dtype = torch.float8_e4m3fn if clip_dtype == "fp8" else torch.float16
    clip_sd: dict[str, torch.Tensor] = {}
    fill(clip, "cond_stage_model.transformer.", torch.float32, clip_sd)
    for k, v in clip_sd.items():
        # The SD1 loader keeps only text_model.*; text_projection is not in SD1.5 checkpoints either.
        if k.startswith("cond_stage_model.transformer.text_model."):
            # Matrices (and embedding tables) in te_dtype; 1-D norm scales and biases stay fp16.
            sd[k] = v.to(te_dtype if v.ndim >= 2 else torch.float16).contiguous()
    fill(taesd, "first_stage_model.", torch.float16, sd)

    # Self-check with ComfyUI's own detection: this must come out as SD15.
    cfg = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    if not isinstance(cfg, comfy.supported_models.SD15):
        raise RuntimeError(f"generated UNet detected as {type(cfg).__name__ if cfg else None}, not SD15")
    save_file(sd, str(out), metadata={"generator": "antithetic-sampling nodes/local_comfy/host.py", "seed": str(seed)})
    n_params = {
        "unet": sum(v.numel() for k, v in sd.items() if k.startswith("model.")),
        "clip": sum(v.numel() for k, v in sd.items() if k.startswith("cond_stage_model.")),
        "vae": sum(v.numel() for k, v in sd.items() if k.startswith("first_stage_model.")),
    }
    return {"path": str(out), "bytes": os.path.getsize(out), "params": n_params, "detected": type(cfg).__name__}


# ----------------------------------------------------------------------------------------------- the server


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the server when the test process dies, even if it is killed before teardown."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except Exception:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A running ComfyUI (``--cpu``) on 127.0.0.1 with its own base directory, spoken to over HTTP.

    Attributes: ``url`` (``http://127.0.0.1:PORT``), ``base_dir`` (pathlib), ``log_path``, ``env`` (the
    :class:`ComfyEnv`), ``client_id``, ``start_seconds`` (spawn to ready), ``checkpoint_seconds`` (0 if
    cached), ``checkpoint_path``.
    """

    def __init__(
        self,
        cenv: ComfyEnv,
        base_dir: str | os.PathLike,
        checkpoint: str | os.PathLike | None,
        extra_args: list[str] | None = None,
        cpu: bool = True,
        checkout_folders: bool = False,
    ) -> None:
        self.env = cenv
        self.base_dir = pathlib.Path(base_dir)
        self.checkpoint_path = pathlib.Path(checkpoint) if checkpoint is not None else None
        self.extra_args = list(extra_args or [])
        # cpu=False: the GPU(s) the process may see (CUDA_VISIBLE_DEVICES, set by Ray for a num_gpus=1 actor).
        self.cpu = cpu
        # checkout_folders=True: the checkout's own models/, custom_nodes/ (the pack installed there) and input/;
        # only output/ and temp/ live in base_dir, so that servers sharing a checkout never overwrite each other's
        # images. False (tests, soak): base_dir is the whole base directory, the pack symlinked, the checkpoint linked.
        self.checkout_folders = checkout_folders
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base_dir / "comfyui.log"
        self.client_id = uuid.uuid4().hex
        self.start_seconds = 0.0
        self.checkpoint_seconds = 0.0
        self.setup_seconds = 0.0
        self._log_file = None

    # -- lifecycle
    def _prepare_base(self) -> None:
        if self.checkout_folders:
            for sub in ("output", "temp"):
                (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
            return
        for sub in ("custom_nodes", "models/checkpoints", "input", "output", "temp", "user"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        link = self.base_dir / "custom_nodes" / PACK_FOLDER
        if not link.exists():
            link.symlink_to(ROOT, target_is_directory=True)
        ckpt = self.base_dir / "models" / "checkpoints" / CHECKPOINT_NAME
        if self.checkpoint_path is not None and not ckpt.exists():
            try:
                ckpt.symlink_to(self.checkpoint_path)
            except OSError:
                shutil.copyfile(self.checkpoint_path, ckpt)

    def start(self, timeout: float | None = None) -> ComfyServer:
        timeout = float(timeout or os.environ.get("COMFYUI_START_TIMEOUT", 300))
        self._prepare_base()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if self.checkout_folders:
            folders = ["--output-directory", str(self.base_dir / "output"), "--temp-directory", str(self.base_dir / "temp")]
        else:
            folders = ["--base-directory", str(self.base_dir)]
        cmd = [
            self.env.python,
            "main.py",
            *(["--cpu"] if self.cpu else []),
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            *folders,
            # what the checkout supports of: API nodes off, database in memory (see launch_flags)
            *self.env.launch_flags,
            *self.extra_args,
        ]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file.write(f"$ {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(self.env.comfy_path),
            env=self.env.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_text()[-4000:]
                self.stop()
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode} while starting. Log tail:\n{tail}")
            try:
                self._request("GET", "/system_stats", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.perf_counter() > deadline:
                tail = self.log_text()[-4000:]
                self.stop()
                raise RuntimeError(f"ComfyUI not ready after {timeout:.0f} s. Log tail:\n{tail}")
            time.sleep(0.2)
        self.start_seconds = time.perf_counter() - t0
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 15)  # SIGTERM to the server's own session (it was started with one)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, 9)
                proc.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> ComfyServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP
    def _request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> bytes:
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - 127.0.0.1 only
            return resp.read()

    def get_json(self, path: str, timeout: float = 60) -> Any:
        return json.loads(self._request("GET", path, timeout=timeout))

    def post_json(self, path: str, body: Any, timeout: float = 60) -> Any:
        raw = self._request("POST", path, body, timeout=timeout)
        return json.loads(raw) if raw.strip() else None

    def object_info(self, cls: str | None = None) -> dict:
        """``/object_info`` (all classes) or the entry of one class (``KeyError`` if the server lacks it)."""
        if cls is None:
            return self.get_json("/object_info")
        info = self.get_json(f"/object_info/{urllib.parse.quote(cls)}")
        if cls not in info:
            raise KeyError(f"{cls} not in /object_info")
        return info[cls]

    def queue(self, prompt_graph: dict, client_id: str | None = None, extra_data: dict | None = None) -> str:
        """POST /prompt; return the prompt_id. HTTP 400 raises :class:`ComfyError` with the node_errors text."""
        body: dict[str, Any] = {"prompt": prompt_graph, "client_id": client_id or self.client_id}
        if extra_data:
            body["extra_data"] = extra_data
        try:
            answer = self.post_json("/prompt", body)
        except urllib.error.HTTPError as e:
            raw = e.read().decode(errors="replace")
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw
            raise ComfyError(f"POST /prompt rejected (HTTP {e.code}): {format_prompt_error(payload)}", payload) from e
        if answer.get("node_errors"):
            raise ComfyError(f"POST /prompt node_errors: {format_prompt_error(answer)}", answer)
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600, poll: float = 0.1) -> dict:
        """Poll /history/{id} until the prompt finished; return its history entry.

        Raises :class:`ComfyError` (message = the execution error: node, type, exception message) when the
        status is ``error``, ``TimeoutError`` after ``timeout`` seconds (generous; no test should rely on it).
        """
        deadline = time.perf_counter() + timeout
        while True:
            hist = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}")
            entry = hist.get(prompt_id)
            if entry is not None:
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    raise ComfyError(f"prompt {prompt_id} failed: {format_execution_error(entry)}", entry)
                if status.get("completed", status.get("status_str") == "success"):
                    return entry
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}. Log tail:\n{self.log_text()[-4000:]}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout} s")
            time.sleep(poll)
            poll = min(poll * 1.5, 0.25)

    def run(self, prompt_graph: dict, timeout: float = 600) -> dict:
        """``queue`` + ``wait``: return the history entry."""
        return self.wait(self.queue(prompt_graph), timeout=timeout)

    @staticmethod
    def outputs(history: dict) -> dict:
        """``{node_id: {"images": [...], "text": [...], ...}}`` of a history entry."""
        return history.get("outputs", {})

    def images(self, history: dict, node_id: str | None = None) -> list:
        """All images (PIL) of a history entry, or of one output node, in order."""
        infos = []
        for nid, out in self.outputs(history).items():
            if node_id is None or nid == node_id:
                infos.extend(out.get("images", []))
        return [self.fetch_image(i) for i in infos]

    def fetch_image(self, info: dict):
        """GET /view for one ``{"filename", "subfolder", "type"}`` entry; return a loaded ``PIL.Image``."""
        from PIL import Image

        q = urllib.parse.urlencode(
            {"filename": info["filename"], "subfolder": info.get("subfolder", ""), "type": info.get("type", "output")}
        )
        img = Image.open(io.BytesIO(self._request("GET", f"/view?{q}")))
        img.load()
        return img

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def pack_import_problems(self) -> list[str]:
        """What the log says went wrong while our pack loaded (empty: it loaded cleanly); see comfy_log."""
        from .comfy_log import pack_import_problems

        return pack_import_problems(self.log_text(), PACK_FOLDER)


def format_prompt_error(payload: Any) -> str:
    """Readable text of a /prompt rejection: the error message plus every node error."""
    if not isinstance(payload, dict):
        return str(payload)[:2000]
    parts = []
    err = payload.get("error")
    if isinstance(err, dict):
        parts.append(f"{err.get('type')}: {err.get('message')} {err.get('details') or ''}".strip())
    for nid, ne in (payload.get("node_errors") or {}).items():
        for e in ne.get("errors", []):
            parts.append(f"node {nid} ({ne.get('class_type')}): {e.get('type')}: {e.get('message')} {e.get('details')}")
    return " | ".join(parts) or json.dumps(payload)[:2000]


def format_execution_error(entry: dict) -> str:
    """Readable text of a failed prompt's ``execution_error`` / ``execution_interrupted`` messages."""
    parts = []
    for msg in (entry.get("status") or {}).get("messages", []):
        if not isinstance(msg, (list, tuple)) or len(msg) != 2:
            continue
        kind, data = msg
        if kind == "execution_error":
            parts.append(
                f"node {data.get('node_id')} ({data.get('node_type')}): "
                f"{data.get('exception_type')}: {data.get('exception_message')}"
            )
        elif kind == "execution_interrupted":
            parts.append(f"interrupted at node {data.get('node_id')} ({data.get('node_type')})")
    return " | ".join(parts) or json.dumps(entry.get("status"))[:2000]


def execution_error(entry_or_exc: Any) -> dict:
    """The ``execution_error`` data dict of a failed history entry (or of a :class:`ComfyError`), or {}."""
    entry = entry_or_exc.payload if isinstance(entry_or_exc, ComfyError) else entry_or_exc
    for msg in ((entry or {}).get("status") or {}).get("messages", []):
        if isinstance(msg, (list, tuple)) and len(msg) == 2 and msg[0] == "execution_error":
            return msg[1]
    return {}


# -------------------------------------------------------------------------------------------- graph helper

# Node ids used by txt2img_graph (API-format ids may be any string).
CHECKPOINT, POSITIVE, NEGATIVE, LATENT = "checkpoint", "positive", "negative", "latent"
NOISE, SAMPLER, SIGMAS, GUIDER = "noise", "sampler", "sigmas", "guider"
SAMPLE, DECODE, SAVE = "sample", "decode", "save"


def txt2img_graph(
    noise: dict | None = None,
    sampler: dict | str | None = None,
    guider: dict | None = None,
    *,
    seed: int = 0,
    batch_size: int = 4,
    width: int = 64,
    height: int = 64,
    steps: int = 4,
    cfg: float = 4.0,
    scheduler: str = "normal",
    denoise: float = 1.0,
    positive: str = "a photo of a cat",
    negative: str = "blurry",
    model_sampling: str | dict | None = None,
    model_patches: list[dict] | None = None,
    sigmas: dict | None = None,
    latent: dict | None = None,
    extra_nodes: dict[str, dict] | None = None,
    save: bool = True,
    filename_prefix: str = "e2e",
    checkpoint: str = CHECKPOINT_NAME,
) -> dict:
    """A minimal API-format txt2img graph for the tiny checkpoint, built around ``SamplerCustomAdvanced``.

    Default graph (node ids are the module constants, e.g. ``graph["noise"]["inputs"]["noise_seed"]``)::

        checkpoint  CheckpointLoaderSimple(tiny_sd15.safetensors)  -> MODEL 0, CLIP 1, VAE 2
        [model0..]  model_sampling node, then model_patches in order (each takes the previous MODEL)
        positive / negative  CLIPTextEncode
        latent      EmptyLatentImage(width, height, batch_size)
        noise       RandomNoise(noise_seed=seed)            <- ``noise=`` replaces it
        sampler     KSamplerSelect("euler")                 <- ``sampler=`` a name or a node spec
        sigmas      BasicScheduler(scheduler, steps, denoise) <- ``sigmas=``
        guider      CFGGuider(cfg)                          <- ``guider=``
        sample      SamplerCustomAdvanced(noise, guider, sampler, sigmas, latent)
        decode      VAEDecode(sample.0)  ->  save  SaveImage(filename_prefix)   (``save=False`` drops save)

    A *node spec* is ``{"class_type": "...", "inputs": {...}}``. Inside its inputs, these strings become links:
    ``"@model"`` (the final, patched MODEL), ``"@clip"``, ``"@vae"``, ``"@positive"``, ``"@negative"``,
    ``"@latent"``, ``"@noise"``, ``"@sampler"``, ``"@sigmas"``, ``"@guider"``, ``"@samples"`` (sampler output 0)
    and ``"@image"`` (decoded IMAGE). A plain link ``["node_id", index]`` is kept as is.

    * ``noise``: e.g. ``{"class_type": "AntitheticLatentNoise", "inputs": {"noise_seed": 1, "k": 2}}``.
    * ``sampler``: ``"euler_ancestral"`` (-> KSamplerSelect) or a spec such as
      ``{"class_type": "AntitheticSampler", "inputs": {"sampler_name": "euler_ancestral", "k": 2}}``.
    * ``guider``: e.g. ``{"class_type": "MyGuider", "inputs": {"model": "@model", "positive": "@positive",
      "negative": "@negative", "cfg": 3.0}}``.
    * ``model_sampling``: ``"eps"`` | ``"v_prediction"`` | ``"v_prediction_zsnr"`` (ModelSamplingDiscrete) |
      ``"flow"`` (ModelSamplingSD3, shift 3) | a spec with ``"model": "@model"``.
    * ``model_patches``: specs applied after model_sampling; each ``"@model"`` means the previous MODEL.
      They get ids ``model1``, ``model2`` ...
    * ``extra_nodes``: ``{id: spec}`` added as is (``@`` references resolved), e.g. a metrics node on
      ``"@image"`` or a second SaveImage.

    ``save=False`` drops the SaveImage node (``decode`` stays): then add an output node through ``extra_nodes``
    (ComfyUI rejects a prompt without outputs), e.g.
    ``{"preview": {"class_type": "PreviewImage", "inputs": {"images": "@image"}}}``.

    Identical prompts are served from ComfyUI's cache: vary ``seed`` (or a node input) between runs that
    must execute. Returns a new dict each call; edit it freely before ``comfy_server.queue(graph)``.
    """
    g: dict[str, dict] = {}
    refs: dict[str, list] = {}
    g[CHECKPOINT] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}
    refs.update({"@model": [CHECKPOINT, 0], "@clip": [CHECKPOINT, 1], "@vae": [CHECKPOINT, 2]})

    def resolve(spec: dict) -> dict:
        spec = copy.deepcopy(spec)
        spec["inputs"] = {
            k: (list(refs[v]) if isinstance(v, str) and v in refs else v) for k, v in spec.get("inputs", {}).items()
        }
        for k, v in spec["inputs"].items():
            if isinstance(v, str) and v.startswith("@") and v not in refs:
                raise KeyError(f"unknown reference {v!r} in input {k!r} of {spec.get('class_type')}")
        return spec

    if isinstance(model_sampling, str):
        presets = {
            "eps": ("ModelSamplingDiscrete", {"sampling": "eps", "zsnr": False}),
            "v_prediction": ("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": False}),
            "v_prediction_zsnr": ("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": True}),
            "flow": ("ModelSamplingSD3", {"shift": 3.0}),
        }
        if model_sampling not in presets:
            raise ValueError(f"model_sampling must be one of {sorted(presets)} or a node spec, not {model_sampling!r}")
        cls, inputs = presets[model_sampling]
        model_sampling = {"class_type": cls, "inputs": {"model": "@model", **inputs}}
    for i, spec in enumerate(([model_sampling] if model_sampling else []) + list(model_patches or [])):
        nid = f"model{i}"
        g[nid] = resolve(spec)
        refs["@model"] = [nid, 0]

    g[POSITIVE] = {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": list(refs["@clip"])}}
    g[NEGATIVE] = {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": list(refs["@clip"])}}
    refs.update({"@positive": [POSITIVE, 0], "@negative": [NEGATIVE, 0]})
    g[LATENT] = resolve(
        latent
        or {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch_size}}
    )
    refs["@latent"] = [LATENT, 0]
    g[NOISE] = resolve(noise or {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}})
    if sampler is None or isinstance(sampler, str):
        sampler = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler or "euler"}}
    g[SAMPLER] = resolve(sampler)
    g[SIGMAS] = resolve(
        sigmas
        or {
            "class_type": "BasicScheduler",
            "inputs": {"model": "@model", "scheduler": scheduler, "steps": steps, "denoise": denoise},
        }
    )
    refs.update({"@noise": [NOISE, 0], "@sampler": [SAMPLER, 0], "@sigmas": [SIGMAS, 0]})
    g[GUIDER] = resolve(
        guider
        or {
            "class_type": "CFGGuider",
            "inputs": {"model": "@model", "positive": "@positive", "negative": "@negative", "cfg": cfg},
        }
    )
    refs["@guider"] = [GUIDER, 0]
    g[SAMPLE] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": [NOISE, 0],
            "guider": [GUIDER, 0],
            "sampler": [SAMPLER, 0],
            "sigmas": [SIGMAS, 0],
            "latent_image": [LATENT, 0],
        },
    }
    refs["@samples"] = [SAMPLE, 0]
    # VAEDecode is always there (ComfyUI runs only what an output node needs, so unused it costs nothing).
    g[DECODE] = {"class_type": "VAEDecode", "inputs": {"samples": [SAMPLE, 0], "vae": list(refs["@vae"])}}
    refs["@image"] = [DECODE, 0]
    if save:
        g[SAVE] = {"class_type": "SaveImage", "inputs": {"images": [DECODE, 0], "filename_prefix": filename_prefix}}
    for nid, spec in (extra_nodes or {}).items():
        g[nid] = resolve(spec)
    return g


# ---------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-checkpoint", help="write the tiny SD1.5 checkpoint (run with ComfyUI on sys.path)")
    mk.add_argument("out")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--clip-dtype", choices=["fp8", "fp16"], default="fp8")
    sub.add_parser("probe", help="print what discover() finds")
    args = ap.parse_args(argv)
    if args.cmd == "make-checkpoint":
        t0 = time.perf_counter()
        report = make_tiny_checkpoint(args.out, seed=args.seed, clip_dtype=args.clip_dtype)
        report["seconds"] = round(time.perf_counter() - t0, 2)
        print(json.dumps(report))
        return 0
    try:
        cenv = discover()
    except ComfyUnavailable as e:
        print(f"unavailable: {e}")
        return 1
    print(json.dumps({k: str(v) for k, v in cenv.__dict__.items() if k != "env"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
