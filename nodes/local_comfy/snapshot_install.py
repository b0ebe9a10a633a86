"""Install a ComfyUI source snapshot into the cache with its own CPU-only Python, then run the e2e suite on it.

``make test-e2e`` (and ``.ci/run``) call this file. A snapshot is an upstream source archive
``ComfyUI-<version>.tar.gz`` whose top folder is ``ComfyUI-<version>/`` (the project keeps them in
``../shared/comfyui/`` next to the repository; ``--snapshots`` or ``$COMFYUI_SNAPSHOTS`` point elsewhere).

Layout, per version, under the pack's cache (``$ANTITHETIC_SAMPLING_CACHE``, else ``$XDG_CACHE_HOME`` or
``~/.cache``, then ``antithetic-sampling``; the same rule as ``paths.cache_dir``)::

    comfyui/<version>/ComfyUI-<version>/   the unpacked checkout         -> COMFYUI_PATH
    comfyui/<version>/venv/                its Python                    -> COMFYUI_PYTHON
    comfyui/<version>/constraints.txt      torch==2.13.0 (pip may never swap torch for a CUDA build)
    comfyui/<version>/req.txt              the checkout's requirements.txt without torch/torchvision/torchaudio/spandrel
    comfyui/<version>/installed.json       the stamp: written only after the install started ComfyUI once

The recipe (each step is skipped when its result is already there, so an install made by hand with the same
recipe is adopted, not rebuilt):

1. unpack the archive (``tarfile`` with the ``data`` filter: no absolute paths, no links out of the folder);
2. ``python -m venv``; ``pip install -c constraints.txt torch==2.13.0`` (the CPU wheel where the index has one);
   the checkout's requirements without the torch family, ``requests`` and this pack's ``requirements.txt``;
   then ``--no-deps torchvision==0.28.0 torchaudio==2.11.1 spandrel`` (``--no-deps``: each would pull a CUDA
   torch);
3. the compiled libraries of those two wheels link CUDA (PyPI has no CPU build of either for Linux): they are
   moved to ``comfyui/<version>/<package>-so-aside/``; torchaudio then skips its extension and torchvision its
   C++ operators, and their pure-PyTorch parts work. ComfyUI 0.33 imports torchaudio while starting
   (``comfy.sd`` -> the LTX audio VAE); both versions import torchvision;
4. should ``import torchvision`` still fail, the launcher (``checkout.discover``) puts its stand-in
   ``nodes/local_comfy/_stubs`` on the server's ``PYTHONPATH``, and so does the check below;
5. the check that it works: ``main.py --cpu --quick-test-for-ci`` (ComfyUI's own: load every node, then exit 0)
   in a throw-away ``--base-directory``, with the stand-in on the path when torchvision does not import. Only
   then is ``installed.json`` written (version, recipe, the archive's SHA-256, torch/torchaudio versions, seconds).

A stamp whose recipe or archive hash differs is stale: the steps run again (a changed archive is unpacked anew).
A missing archive is not an error: ``test`` prints why it skipped and exits 0 (``install`` exits 3).

Usage::

    python nodes/local_comfy/snapshot_install.py install --version 0.33.0 [--snapshots ../shared/comfyui]
    python nodes/local_comfy/snapshot_install.py test --version 0.33.0 [--snapshots DIR] -- -m e2e [pytest args]

``install`` prints ``COMFYUI_PATH=...`` and ``COMFYUI_PYTHON=...``; ``test`` installs, then runs
``python -m pytest`` (this Python) with both set. Standard library only; runs as a file or as
``antithetic_sampling.nodes.local_comfy.snapshot_install``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the pack (repository root)
STUBS_DIR = HERE / "_stubs"
DEFAULT_SNAPSHOTS = ROOT.parent / "shared" / "comfyui"
# Bump when the steps below change: an older stamp then no longer counts.
RECIPE = 1
TORCH_PIN = "torch==2.13.0"
TORCHAUDIO_PIN = "torchaudio==2.11.1"  # accepts torch >= 2.11
TORCHVISION_PIN = "torchvision==0.28.0"
# ComfyUI's requirements that pip must not resolve on its own (each would pull a CUDA torch) or that we handle.
TORCH_FAMILY = ("torch", "torchvision", "torchaudio", "spandrel")
STAMP = "installed.json"


class SnapshotMissing(RuntimeError):
    """No archive for that version: a reason to skip."""


class InstallFailed(RuntimeError):
    """A step of the recipe failed; the message says which and shows the tool's output."""


def cache_dir() -> pathlib.Path:
    d = os.environ.get("ANTITHETIC_SAMPLING_CACHE")
    if d:
        return pathlib.Path(d).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "antithetic-sampling"


def install_root(version: str) -> pathlib.Path:
    if not re.fullmatch(r"\d+(\.\d+)+", version):
        raise ValueError(f"ComfyUI version must look like 0.33.0, not {version!r}")
    return cache_dir() / "comfyui" / version


def checkout_path(version: str) -> pathlib.Path:
    return install_root(version) / f"ComfyUI-{version}"


def venv_python(version: str) -> pathlib.Path:
    return install_root(version) / "venv" / "bin" / "python"


def find_snapshot(version: str, snapshots: str | os.PathLike | None = None) -> pathlib.Path:
    folder = pathlib.Path(snapshots or os.environ.get("COMFYUI_SNAPSHOTS") or DEFAULT_SNAPSHOTS).expanduser()
    archive = folder / f"ComfyUI-{version}.tar.gz"
    if not archive.is_file():
        have = sorted(p.name for p in folder.glob("ComfyUI-*.tar.gz")) if folder.is_dir() else []
        raise SnapshotMissing(
            f"no ComfyUI {version} snapshot: {archive} does not exist"
            + (f" (there: {', '.join(have)})" if have else f" ({folder} has no ComfyUI-*.tar.gz)" if folder.is_dir()
               else f" (no folder {folder})")
        )
    return archive


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_stamp(version: str) -> dict | None:
    try:
        return json.loads((install_root(version) / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stamp_is_current(version: str, archive_sha: str) -> bool:
    stamp = read_stamp(version)
    return (
        stamp is not None
        and stamp.get("recipe") == RECIPE
        and stamp.get("archive_sha256") == archive_sha
        and (checkout_path(version) / "main.py").is_file()
        and venv_python(version).is_file()
    )


def _run(cmd: list[str], what: str, timeout: float = 3600, **kw) -> subprocess.CompletedProcess:
    print(f"[snapshot] {what}: {' '.join(cmd)}", flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InstallFailed(f"{what} failed: {e}") from e
    if proc.returncode != 0:
        raise InstallFailed(f"{what} failed (rc={proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def unpack(archive: pathlib.Path, version: str) -> None:
    """Unpack into a temporary folder beside the target, then rename (an interrupted unpack leaves no checkout)."""
    root = install_root(version)
    target = checkout_path(version)
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        print(f"[snapshot] unpack {archive} -> {target}", flush=True)
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - Python < 3.10.12 / 3.11.4: refuse anything that could leave the folder
                for m in tar.getmembers():
                    if m.name.startswith("/") or ".." in pathlib.PurePosixPath(m.name).parts or m.issym() or m.islnk():
                        raise InstallFailed(f"{archive}: unsafe member {m.name!r}")
                tar.extractall(tmp)  # noqa: S202 - members checked above
        top = tmp / f"ComfyUI-{version}"
        if not (top / "main.py").is_file():
            raise InstallFailed(f"{archive} has no ComfyUI-{version}/main.py")
        if target.exists():
            shutil.rmtree(target)
        os.replace(top, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def filtered_requirements(text: str) -> str:
    """The checkout's requirements.txt without the torch family (installed pinned or --no-deps, see the recipe)."""
    keep = []
    for line in text.splitlines():
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if name and name.group(1).lower() in TORCH_FAMILY:
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def build_venv(version: str, python: str) -> None:
    root = install_root(version)
    vpy = venv_python(version)
    if not vpy.is_file():
        _run([python, "-m", "venv", str(root / "venv")], "create the venv")
    (root / "constraints.txt").write_text(TORCH_PIN + "\n", encoding="utf-8")
    (root / "req.txt").write_text(
        filtered_requirements((checkout_path(version) / "requirements.txt").read_text(encoding="utf-8")),
        encoding="utf-8",
    )
    pip = [str(vpy), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", str(root / "constraints.txt")]
    _run([*pip, TORCH_PIN], "install torch (pinned)")
    _run([*pip, "-r", str(root / "req.txt"), "requests", "-r", str(ROOT / "requirements.txt")],
         "install ComfyUI's requirements and the pack's")
    _run([*pip, "--no-deps", TORCHVISION_PIN, TORCHAUDIO_PIN, "spandrel"],
         "install torchvision, torchaudio and spandrel without dependencies")


def site_packages(version: str) -> pathlib.Path:
    found = sorted((install_root(version) / "venv" / "lib").glob("python3*/site-packages"))
    if not found:
        raise InstallFailed(f"no site-packages under {install_root(version) / 'venv'}")
    return found[-1]


# The compiled libraries of the PyPI wheels that link CUDA: {package: glob inside it}.
CUDA_LINKED = {"torchaudio": "lib/*.so", "torchvision": "*.so"}


def move_cuda_libraries(version: str) -> list[str]:
    """Move the wheels' CUDA-linked compiled libraries to ``<root>/<package>-so-aside/`` (idempotent).

    Without them torchaudio skips its extension and torchvision its C++ operators; the pure-PyTorch parts
    (what ComfyUI's start-up and the SD1.x graphs touch) work. Returns what was moved now.
    """
    moved = []
    for package, pattern in CUDA_LINKED.items():
        aside = install_root(version) / f"{package}-so-aside"
        for so in sorted((site_packages(version) / package).glob(pattern)):
            aside.mkdir(exist_ok=True)
            shutil.move(str(so), str(aside / so.name))
            moved.append(f"{package}/{so.relative_to(site_packages(version) / package)}")
    if moved:
        print(f"[snapshot] moved aside (they link CUDA): {', '.join(moved)}", flush=True)
    return moved


_VERSIONS = (
    "import json, importlib\n"
    "out = {}\n"
    "for m in ('torch', 'torchaudio', 'torchvision'):\n"
    "    try:\n"
    "        out[m] = importlib.import_module(m).__version__\n"
    "    except Exception as e:\n"
    "        out[m] = None; out[m + '_error'] = f'{type(e).__name__}: {e}'[:300]\n"
    "print('@@V@@' + json.dumps(out))\n"
)


def probe_versions(version: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([str(venv_python(version)), "-c", _VERSIONS], capture_output=True, text=True, env=env,
                          cwd=str(checkout_path(version)), timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@V@@")), None)
    if line is None:
        raise InstallFailed(f"the venv's python does not run (rc={proc.returncode}): {proc.stderr[-1500:]}")
    return json.loads(line[5:])


def quick_start(version: str, needs_stub: bool, timeout: float = 900) -> float:
    """``main.py --cpu --quick-test-for-ci``: ComfyUI loads every node and exits 0. Returns seconds."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    if needs_stub:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(STUBS_DIR), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="comfy-quick-") as base:
        for sub in ("custom_nodes", "models", "input", "output", "temp", "user"):
            os.makedirs(os.path.join(base, sub))
        cmd = [str(venv_python(version)), "main.py", "--cpu", "--quick-test-for-ci", "--base-directory", base,
               "--database-url", "sqlite:///:memory:"]
        t0 = time.perf_counter()
        _run(cmd, "check that ComfyUI starts", timeout=timeout, cwd=str(checkout_path(version)), env=env)
        return time.perf_counter() - t0


@contextlib.contextmanager
def _locked(version: str):
    """One installer per version at a time (two sessions may ask at once)."""
    import fcntl

    root = install_root(version)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def install(version: str, snapshots: str | os.PathLike | None = None, python: str | None = None) -> dict:
    """Make ``comfyui/<version>`` a working install (see the module docstring); return its stamp."""
    archive = find_snapshot(version, snapshots)
    digest = sha256(archive)
    with _locked(version):
        if stamp_is_current(version, digest):
            return read_stamp(version)
        t0 = time.perf_counter()
        root = install_root(version)
        stamp = read_stamp(version)
        # An old stamp from another archive: unpack anew. No stamp (a hand-made install): keep its checkout if
        # it is the same version.
        stale_checkout = stamp is not None and stamp.get("archive_sha256") != digest
        if stale_checkout or not (checkout_path(version) / "main.py").is_file() or not _same_version(version):
            unpack(archive, version)
        steps = []
        versions = probe_versions(version) if venv_python(version).is_file() else {}
        complete = (
            str(versions.get("torch") or "").split("+")[0] == TORCH_PIN.split("==")[1]
            and (site_packages(version) / "torchaudio").is_dir()
            and (site_packages(version) / "spandrel").is_dir()
            and (site_packages(version) / "torchvision").is_dir()
        )
        if complete and not stale_checkout and (stamp is None or stamp.get("recipe") == RECIPE):
            steps.append("venv adopted")
        else:
            build_venv(version, python or sys.executable)
            steps.append("venv built")
        if move_cuda_libraries(version):
            steps.append("CUDA-linked libraries moved aside")
        versions = probe_versions(version)
        if versions.get("torchaudio") is None:
            raise InstallFailed(f"torchaudio does not import: {versions.get('torchaudio_error')}")
        needs_stub = versions.get("torchvision") is None
        quick = quick_start(version, needs_stub)
        stamp = {
            "version": version,
            "recipe": RECIPE,
            "archive": archive.name,
            "archive_sha256": digest,
            "comfyui_path": str(checkout_path(version)),
            "python": str(venv_python(version)),
            "torch": versions.get("torch"),
            "torchaudio": versions.get("torchaudio"),
            "torchvision": versions.get("torchvision") or "launcher stand-in (nodes/local_comfy/_stubs)",
            "steps": steps,
            "quick_start_seconds": round(quick, 1),
            "install_seconds": round(time.perf_counter() - t0, 1),
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = root / f".{STAMP}.tmp"
        tmp.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, root / STAMP)
        return stamp


def _same_version(version: str) -> bool:
    try:
        text = (checkout_path(version) / "comfyui_version.py").read_text(encoding="utf-8")
    except OSError:
        return False
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return bool(m) and m.group(1) == version


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["install", "test"])
    ap.add_argument("--version", default=os.environ.get("COMFYUI_VERSION", "0.33.0"))
    ap.add_argument("--snapshots", default=None, help=f"folder of ComfyUI-<version>.tar.gz (default {DEFAULT_SNAPSHOTS})")
    ap.add_argument("--python", default=None, help="the Python that creates the venv (default: this one)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        stamp = install(args.version, args.snapshots, args.python)
    except SnapshotMissing as e:
        what = "SKIPPED the e2e suite against" if args.command == "test" else "cannot install"
        print(f"[snapshot] {what} ComfyUI {args.version}: {e}", flush=True)
        return 0 if args.command == "test" else 3
    except InstallFailed as e:
        print(f"[snapshot] install of ComfyUI {args.version} failed: {e}", file=sys.stderr, flush=True)
        return 2
    print(f"[snapshot] ComfyUI {args.version} ready in {time.perf_counter() - t0:.1f} s "
          f"({', '.join(stamp.get('steps', []))}; stamp {install_root(args.version) / STAMP})", flush=True)
    env = {"COMFYUI_PATH": stamp["comfyui_path"], "COMFYUI_PYTHON": stamp["python"]}
    if args.command == "install":
        for k, v in env.items():
            print(f"{k}={v}")
        return 0
    cmd = [sys.executable, "-m", "pytest", *pytest_args]
    print(f"[snapshot] COMFYUI_PATH={env['COMFYUI_PATH']} COMFYUI_PYTHON={env['COMFYUI_PYTHON']} {' '.join(cmd)}",
          flush=True)
    return subprocess.call(cmd, env=dict(os.environ, **env), cwd=str(ROOT))


if __name__ == "__main__":
    sys.exit(main())
