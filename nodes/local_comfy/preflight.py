"""Preflight of a ComfyUI checkout: will its Python start the server, and which server flags does it take?

* Requirements: the checkout's own ``requirements.txt`` (plus this pack's) is read (:func:`parse_requirements`,
  :func:`checkout_requirements`); a short subprocess in the ComfyUI Python (:func:`probe_requirements`) checks each
  distribution (installed, version, the modules it provides, located with find_spec); :func:`check_requirements`
  classifies the answer. A requirement that ComfyUI's start-up imports unconditionally (followed statically from
  ``main.py``, :func:`startup_imports`) and that is missing blocks; the rest become notes.
* Flags: ``main.py --help`` says which server flags the checkout accepts (:func:`server_flags`); :func:`launch_flags`
  picks the optional ones the launcher wants (``--offline`` or the older ``--disable-api-nodes``,
  ``--database-url``).

Everything that cannot run raises :class:`~.errors.ComfyUnavailable` (a reason to skip, not to fail).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import subprocess
from dataclasses import dataclass

from .errors import ComfyUnavailable
from .paths import ROOT

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


def checkout_requirements(checkout: pathlib.Path) -> list[Requirement]:
    """The checkout's ``requirements.txt``, then the lines of this pack's own that the checkout does not list
    (what the pack's nodes import beyond ComfyUI: numpy, scipy, safetensors, matplotlib), marked ``pack=True``."""
    try:
        reqs = parse_requirements((checkout / "requirements.txt").read_text(encoding="utf-8"))
    except OSError as e:
        raise ComfyUnavailable(f"ComfyUI at {checkout} has no readable requirements.txt: {e}") from e
    known = {normalize_dist(r.name) for r in reqs}
    pack_file = ROOT / "requirements.txt"
    if pack_file.is_file():
        reqs += [dataclasses.replace(r, pack=True) for r in parse_requirements(pack_file.read_text(encoding="utf-8"))
                 if normalize_dist(r.name) not in known]
    return reqs


def probe_requirements(
    python: str, checkout: pathlib.Path, reqs: list[Requirement], env: dict[str, str], timeout: float
) -> dict:
    """Run the probe (``_PROBE``) in ``python`` from the checkout; return its answer:
    ``{"torchvision": bool, "torchvision_error": str, "dists": {name: {installed, version_ok, modules,
    missing_modules}}}``."""
    payload = json.dumps([{"name": r.name, "specifier": r.specifier, "guesses": module_guesses(r.name)} for r in reqs])
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE, payload],
            cwd=str(checkout),
            env=env,
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
    return json.loads(line[len("@@PROBE@@") :])


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

