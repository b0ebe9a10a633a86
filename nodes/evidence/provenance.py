"""Provenance of the published numbers: which command wrote each generated block, and a fingerprint of the code
and weights behind it, so that CI notices when the code no longer produces what the documentation says.

Every measured table or sentence of the documentation lives between ``<!-- BEGIN:name -->`` and
``<!-- END:name -->`` and is rewritten only by a command (``replace_block``, used by every bench). When that command
runs through ``antithetic-sampling <command>`` (``nodes/cli.py`` sets the context), the block's first line records::

    <!-- provenance {"command": "antithetic-sampling bench --no-timing --readme docs/evidence.md", "code": "3f0c…",
                     "check": "rerun"} -->

* ``command``: exactly what was run, from the repository root (paths relative to it);
* ``code``: the fingerprint, sha256 over (a) the source of the command's module and of every pack module it
  imports, transitively (found statically: every relative import anywhere in a file, function-level ones included,
  so the closure is what the command can execute, not what one run happened to touch); (b) the data files those
  modules load (``DATA_FILES``: the shipped weights, the soak's workflow); (c) the command's arguments as parsed,
  defaults filled in (so a changed default counts while a reworded ``--help`` does not: ``nodes/cli_args.py``
  itself is left out for the commands it parses);
* ``check``: ``rerun`` when the block is deterministic and cheap (CI reruns the command in a scratch copy of the
  documents and compares the text exactly), ``fingerprint`` otherwise (CI compares the recorded fingerprint with
  the current code's: change the code, regenerate the block in the same change); ``test`` for a block that a test
  writes and compares against a live run on every CI run (the README's estimate example, printed by
  ``antithetic-queue estimate`` against the e2e server): its ``command`` is that test file, which must exist.

Pictures are recorded the same way in a ``manifest.json`` beside them (``write_image_manifest``), with each
picture's sha256 and a digest of the numbers drawn (the rerun check compares those numbers, not the PNG bytes,
which depend on the matplotlib version and fonts).

``antithetic-sampling provenance`` lists every block with its state (``--rerun`` also reruns the cheap commands);
the test suite's provenance test is the CI check.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROGRAM = "antithetic-sampling"
PACKAGE = "nodes"
# Markdown files that hold generated blocks, and the folder of published pictures (relative to the root).
DOCUMENTS = ("README.md", "docs/*.md")
IMAGES_DIR = "docs/images"
MANIFEST = "manifest.json"
# Data files a module loads (relative to the root; globs). A fingerprint covers them when the module is imported.
DATA_FILES: dict[str, tuple[str, ...]] = {
    "nodes/evidence/digits.py": ("nodes/evidence/weights/*.json", "nodes/evidence/weights/*.safetensors"),
    "nodes/api_client/soak.py": ("workflows/api/antithetic_vs_independent.json",),
}
# Argument-parsing modules: replaced in the fingerprint by the command's parsed arguments.
ARGUMENT_MODULES = ("nodes/cli_args.py",)
# The machinery that runs commands and records blocks: it computes no number (a new command in the CLI's table
# must not make every published block stale), so the walk neither covers nor follows it.
MACHINERY = ("nodes/cli.py", "nodes/evidence/provenance.py")
CHECKS = ("rerun", "fingerprint", "test")
FINGERPRINT_HEX = 16  # 64 bits of the sha256: a record, not a security boundary

_HEADER = re.compile(r"^<!-- provenance (\{.*\}) -->$")
_current: dict | None = None


class ProvenanceError(ValueError):
    """A command that cannot be fingerprinted (not an ``antithetic-sampling`` command, or arguments it refuses)."""


# --------------------------------------------------------------------------------------------- the command
@contextlib.contextmanager
def command(name: str, argv: Iterable[str]):
    """Within this context, blocks written record ``antithetic-sampling <name> <argv>`` (``nodes/cli.py`` uses it).

    Absolute paths inside the current directory are written relative to it (the command is rerun from the root).
    """
    global _current
    cwd = pathlib.Path.cwd().resolve()
    args = []
    for a in argv:
        p = pathlib.Path(a)
        if p.is_absolute():
            with contextlib.suppress(ValueError):
                a = str(p.resolve().relative_to(cwd))
        args.append(a)
    cmd = shlex.join([PROGRAM, name, *args])
    try:  # the code as it is when the command starts: a long run's files may be edited before it writes
        code = fingerprint(cmd)
    except (ProvenanceError, OSError):
        code = None
    previous, _current = _current, {"command": cmd, "code": code}
    try:
        yield
    finally:
        _current = previous


def current_command() -> str | None:
    """The command being run through ``antithetic-sampling`` (None outside one: a block then records nothing)."""
    return _current["command"] if _current else None


def split_command(cmd: str) -> tuple[str, list[str]]:
    """``"antithetic-sampling bench --quick"`` -> ``("bench", ["--quick"])``."""
    parts = shlex.split(cmd)
    if len(parts) < 2 or parts[0] != PROGRAM:
        raise ProvenanceError(f"not an {PROGRAM} command: {cmd!r}")
    return parts[1], parts[2:]


# --------------------------------------------------------------------------------------------- dependencies
def _module_file(root: pathlib.Path, dotted: str) -> pathlib.Path | None:
    p = root.joinpath(*dotted.split("."))
    if p.with_suffix(".py").is_file():
        return p.with_suffix(".py")
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return None


def _imports(root: pathlib.Path, path: pathlib.Path, dotted: str) -> set[str]:
    """Pack modules a file imports (relative imports, at any depth of the file: function-level ones too)."""
    package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if _module_file(root, sub):
                found.add(sub)  # `from .. import cli_args`: the submodule, not the package's docstring
            elif _module_file(root, base):
                found.add(base)  # a name defined in that module (or package __init__)
    return found


def command_module(name: str, root: pathlib.Path | None = None) -> str:
    """Dotted module of ``antithetic-sampling <name>`` (from ``nodes/cli.py``'s COMMANDS table in ``root``)."""
    root = pathlib.Path(root or ROOT)
    tree = ast.parse((root / PACKAGE / "cli.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in targets):
                table = ast.literal_eval(node.value)
                if name not in table:
                    raise ProvenanceError(f"{PROGRAM} has no command {name!r}")
                return f"{PACKAGE}.{table[name][0]}"
    raise ProvenanceError(f"no COMMANDS table in {root / PACKAGE / 'cli.py'}")


def dependencies(name: str, root: pathlib.Path | None = None) -> list[str]:
    """Files (relative to ``root``, sorted) the numbers of ``antithetic-sampling <name>`` depend on."""
    root = pathlib.Path(root or ROOT)
    seen: set[str] = set()
    todo = [command_module(name, root)]
    while todo:
        dotted = todo.pop()
        if dotted in seen:
            continue
        seen.add(dotted)
        path = _module_file(root, dotted)
        if path is not None and path.relative_to(root).as_posix() not in MACHINERY:
            todo.extend(_imports(root, path, dotted))
    files: set[str] = set()
    for dotted in seen:
        path = _module_file(root, dotted)
        if path is None:
            continue
        rel = path.relative_to(root).as_posix()
        if rel in MACHINERY or (rel in ARGUMENT_MODULES and _parses(name, root)):
            continue
        files.add(rel)
        for pattern in DATA_FILES.get(rel, ()):
            files.update(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file())
    return sorted(files)


def _parses(name: str, root: pathlib.Path) -> bool:
    """Whether ``nodes/cli_args.py`` in ``root`` has a parser for ``name`` (its PARSERS table)."""
    path = root / "nodes" / "cli_args.py"
    if not path.is_file():  # an older tree: each command parsed its own arguments
        return False
    src = path.read_text(encoding="utf-8")
    return re.search(rf"^\s+{re.escape(json.dumps(name))}\s*:", src, re.M) is not None


def _parsed_arguments(name: str, argv: list[str], root: pathlib.Path) -> str:
    """The command's arguments as its parser reads them, defaults filled in (loaded from ``root``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_provenance_cli_args_{abs(hash(str(root)))}",
                                                  root / "nodes" / "cli_args.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            ns = module.parser(name).parse_args(argv)
    except SystemExit as exc:
        raise ProvenanceError(f"{PROGRAM} {name} refuses the arguments {shlex.join(argv)!r}") from exc
    return json.dumps({k: str(v) for k, v in sorted(vars(ns).items())}, sort_keys=True)


def fingerprint(cmd: str, root: pathlib.Path | None = None) -> str:
    """sha256 (hex) of the code, data and parsed arguments the numbers of command ``cmd`` depend on."""
    root = pathlib.Path(root or ROOT)
    name, argv = split_command(cmd)
    h = hashlib.sha256()
    for rel in dependencies(name, root):
        h.update(rel.encode() + b"\0" + hashlib.sha256((root / rel).read_bytes()).digest())
    if _parses(name, root):
        h.update(b"arguments\0" + _parsed_arguments(name, argv, root).encode())
    return h.hexdigest()[:FINGERPRINT_HEX]


# --------------------------------------------------------------------------------------------- blocks
def _recorded_code(cmd: str, root: pathlib.Path | None) -> str:
    """The fingerprint a block written now records: for the running command, the code it started with (taken by
    :func:`command`), so that files edited during a long run cannot pass for the code that produced the numbers."""
    code = fingerprint(cmd, root)
    if root is None and _current and _current["command"] == cmd and _current.get("code"):
        if _current["code"] != code:
            print(f"warning: the code behind `{cmd}` changed while it ran; what it writes records the code it "
                  "started with, so the check reports it stale until it is rerun", file=sys.stderr)
        code = _current["code"]
    return code


def header(cmd: str, check: str, root: pathlib.Path | None = None) -> str:
    """The provenance line of a block written by ``cmd``."""
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
    record = {"command": cmd, "code": _recorded_code(cmd, root), "check": check}
    return f"<!-- provenance {json.dumps(record, ensure_ascii=False)} -->"


@dataclasses.dataclass
class Block:
    path: pathlib.Path
    name: str
    record: dict | None  # the provenance line, parsed (None: none recorded)
    body: str  # the generated text, without the provenance line

    @property
    def where(self) -> str:
        return f"{self.path}: block {self.name!r}"


def read_blocks(path: pathlib.Path) -> list[Block]:
    """Every generated block of a markdown file, in order."""
    path = pathlib.Path(path)
    src = path.read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"<!-- BEGIN:([\w.-]+) -->\n?(.*?)<!-- END:\1 -->", src, re.S):
        body = m.group(2)
        first, _, rest = body.partition("\n")
        hm = _HEADER.match(first.strip())
        record = json.loads(hm.group(1)) if hm else None
        out.append(Block(path, m.group(1), record, (rest if hm else body).strip()))
    return out


def replace_block(path: pathlib.Path, name: str, text: str, *, rerun: bool = False) -> bool:
    """Rewrite the block between ``<!-- BEGIN:name -->`` and ``<!-- END:name -->`` (True if the file has it).

    Run through ``antithetic-sampling`` the block's first line records the command and the code fingerprint;
    ``rerun=True`` declares the block deterministic and cheap enough for CI to rerun and compare exactly.
    """
    path = pathlib.Path(path)
    src = path.read_text(encoding="utf-8")
    begin, end = f"<!-- BEGIN:{name} -->", f"<!-- END:{name} -->"
    if begin not in src or end not in src:
        return False
    head, rest = src.split(begin, 1)
    _, tail = rest.split(end, 1)
    cmd = current_command()
    line = f"{header(cmd, 'rerun' if rerun else 'fingerprint')}\n" if cmd else ""
    path.write_text(f"{head}{begin}\n{line}{text.strip()}\n{end}{tail}", encoding="utf-8")
    return True


def stamp(path: pathlib.Path, name: str, cmd: str, check: str = "fingerprint", code_root: pathlib.Path | None = None
          ) -> None:
    """Record ``cmd`` as the writer of an existing block, its text unchanged, with the fingerprint of the code in
    ``code_root`` (default: this checkout). For a block generated before provenance was recorded, or on a branch
    without it; ``code_root`` a checkout of the commit that generated it when its code changed since (the check
    then reports it stale, as it is)."""
    path = pathlib.Path(path)
    block = next((b for b in read_blocks(path) if b.name == name), None)
    if block is None:
        raise ProvenanceError(f"{path} has no block {name!r}")
    src = path.read_text(encoding="utf-8")
    begin, end = f"<!-- BEGIN:{name} -->", f"<!-- END:{name} -->"
    head, rest = src.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{header(cmd, check, code_root)}\n{block.body}\n{end}{tail}", encoding="utf-8")


def write_blocks(paths, blocks: dict[str, str], rerun: Iterable[str] = ()) -> set[str]:
    """Rewrite, in every markdown file of ``paths``, each of ``blocks`` ({name: text}) that the file contains.

    The measured tables live in docs/evidence.md and the headline in README.md; one command can update both.
    ``rerun``: the names of the blocks CI may rerun (see ``replace_block``). Returns the names written; warns
    about the blocks that no file had (when files were given).
    """
    rerun = set(rerun)
    written: set[str] = set()
    for path in paths or ():
        for name, text in blocks.items():
            if replace_block(pathlib.Path(path), name, text, rerun=name in rerun):
                written.add(name)
    if paths and not written:
        print(f"warning: none of the blocks {', '.join(blocks)} found in {', '.join(map(str, paths))}; "
              "nothing rewritten")
    return written


def documents(root: pathlib.Path | None = None) -> list[pathlib.Path]:
    """The markdown files that hold generated blocks."""
    root = pathlib.Path(root or ROOT)
    return sorted({p for pattern in DOCUMENTS for p in root.glob(pattern) if p.is_file()})


# --------------------------------------------------------------------------------------------- pictures
def numbers_digest(numbers) -> str:
    """sha256 of a JSON-able object, canonical (sorted keys, floats as Python writes them)."""
    return hashlib.sha256(json.dumps(numbers, sort_keys=True, default=str).encode()).hexdigest()


def write_image_manifest(folder: pathlib.Path, pictures: dict[str, str], numbers, rerun: bool = True,
                         root: pathlib.Path | None = None, shown: dict | None = None) -> dict | None:
    """Record in ``folder/manifest.json`` which command drew ``pictures`` ({file name: what it shows}), the code
    fingerprint, each file's sha256 and the digest of ``numbers`` (what the pictures draw); ``shown``: the few
    numbers a reader sees, in clear (a failed rerun names those that moved). Outside an ``antithetic-sampling``
    command nothing is recorded (None)."""
    cmd = current_command()
    if cmd is None:
        return None
    folder = pathlib.Path(folder)
    manifest = {
        "command": cmd, "code": _recorded_code(cmd, root), "check": "rerun" if rerun else "fingerprint",
        "numbers": numbers_digest(numbers), "shown": shown or {},
        "pictures": {name: {"shows": shows, "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()}
                     for name, shows in sorted(pictures.items())},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def read_image_manifest(folder: pathlib.Path) -> dict | None:
    path = pathlib.Path(folder) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# --------------------------------------------------------------------------------------------- checks
def check_fingerprints(root: pathlib.Path | None = None, files: Iterable[pathlib.Path] | None = None) -> list[str]:
    """Problems (one line each) with the recorded provenance: a block without a provenance line, a fingerprint
    that no longer matches the code in ``root``, a command that no longer exists; the same for the pictures'
    manifest, plus a picture whose bytes or presence do not match it. Empty: everything is current."""
    root = pathlib.Path(root or ROOT)
    problems: list[str] = []
    cache: dict[str, str] = {}

    def current(cmd: str) -> str:
        if cmd not in cache:
            cache[cmd] = fingerprint(cmd, root)
        return cache[cmd]

    def compare(where: str, record: dict | None) -> None:
        if record is None:
            problems.append(f"{where}: no provenance line (regenerate it with the command that writes it)")
            return
        cmd = record.get("command", "")
        if record.get("check") == "test":  # compared with a live run by that test, not fingerprinted
            test = cmd.split()[-1] if cmd else ""
            if not (test.startswith("tests/") and (root / test).is_file()):
                problems.append(f"{where}: the test that checks it ({cmd!r}) does not exist")
            return
        try:
            now = current(cmd)
        except ProvenanceError as exc:
            problems.append(f"{where}: {exc}")
            return
        if record.get("code") != now:
            problems.append(f"{where}: stale: code, weights or defaults changed since `{cmd}` wrote it "
                            f"(recorded {str(record.get('code'))[:12]}, now {now[:12]}); rerun that command "
                            f"(`{PROGRAM} provenance --deps {split_command(cmd)[0]}` lists what it covers)")
        if record.get("check") not in CHECKS:
            problems.append(f"{where}: check must be one of {CHECKS}, got {record.get('check')!r}")

    for path in files if files is not None else documents(root):
        for block in read_blocks(path):
            compare(block.where, block.record)
    folder = root / IMAGES_DIR
    if files is None and folder.is_dir():
        manifest = read_image_manifest(folder)
        compare(f"{folder / MANIFEST}", manifest)
        listed = (manifest or {}).get("pictures", {})
        for png in sorted(folder.glob("*.png")):
            entry = listed.get(png.name)
            if entry is None:
                problems.append(f"{png}: not in {MANIFEST} (no command recorded as drawing it)")
            elif entry.get("sha256") != hashlib.sha256(png.read_bytes()).hexdigest():
                problems.append(f"{png}: not the picture `{manifest['command']}` drew (sha256 differs)")
        for name in listed:
            if not (folder / name).is_file():
                problems.append(f"{folder / MANIFEST}: lists {name}, which is missing")
    return problems


def rerun_commands(root: pathlib.Path | None = None) -> dict[str, list[str]]:
    """{command: [what it wrote that CI reruns]} over the documents' blocks and the pictures' manifest."""
    out: dict[str, list[str]] = {}
    for path in documents(root):
        for block in read_blocks(path):
            if block.record and block.record.get("check") == "rerun":
                out.setdefault(block.record["command"], []).append(block.where)
    manifest = read_image_manifest(pathlib.Path(root or ROOT) / IMAGES_DIR)
    if manifest and manifest.get("check") == "rerun":
        out.setdefault(manifest["command"], []).append(f"{IMAGES_DIR}/{MANIFEST}")
    return out


def default_runner(cmd: str, cwd: pathlib.Path) -> None:
    """Run ``cmd`` in-process from ``cwd`` (through ``nodes/cli.py``, as a user's shell would)."""
    from .. import cli

    name, argv = split_command(cmd)
    old = pathlib.Path.cwd()
    os.chdir(cwd)
    try:
        rc = cli.main([name, *argv])
    finally:
        os.chdir(old)
    if rc:
        raise RuntimeError(f"`{cmd}` exited with {rc}")


def check_rerun(cmd: str, root: pathlib.Path | None = None, runner: Callable[[str, pathlib.Path], None] | None = None,
                scratch: pathlib.Path | None = None) -> list[str]:
    """Rerun ``cmd`` in a scratch copy of the documents (and of the pictures folder) and compare what it wrote
    with what is published: every block it recorded with ``check: rerun`` must come out identical, text and
    fingerprint; the pictures' manifest must record the same numbers. Problems, one line each."""
    root = pathlib.Path(root or ROOT)
    for arg in shlex.split(cmd):
        if pathlib.Path(arg).is_absolute():
            return [f"`{cmd}`: an absolute path cannot be rerun in a scratch copy ({arg})"]
    runner = runner or default_runner
    with contextlib.ExitStack() as stack:
        work = pathlib.Path(scratch) if scratch else pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory()))
        docs = documents(root)
        for p in docs:
            dest = work / p.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
        if (root / IMAGES_DIR).is_dir():
            (work / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
            if (root / IMAGES_DIR / MANIFEST).is_file():
                shutil.copy2(root / IMAGES_DIR / MANIFEST, work / IMAGES_DIR / MANIFEST)
        runner(cmd, work)
        problems = []
        for p in docs:
            fresh = {b.name: b for b in read_blocks(work / p.relative_to(root))}
            for block in read_blocks(p):
                if not (block.record and block.record.get("command") == cmd and block.record.get("check") == "rerun"):
                    continue
                new = fresh.get(block.name)
                if new is None or new.body != block.body:
                    problems.append(f"{block.where}: `{cmd}` no longer reproduces it:\n{_diff(block.body, new)}")
                elif new.record != block.record:
                    problems.append(f"{block.where}: same text, but recorded as {block.record}, now {new.record}")
        old_manifest = read_image_manifest(root / IMAGES_DIR)
        if old_manifest and old_manifest.get("command") == cmd and old_manifest.get("check") == "rerun":
            new_manifest = read_image_manifest(work / IMAGES_DIR) or {}
            if new_manifest.get("numbers") != old_manifest.get("numbers"):
                was, now = old_manifest.get("shown") or {}, new_manifest.get("shown") or {}
                moved = "; ".join(f"{k}: {was.get(k)} -> {now.get(k)}" for k in sorted({*was, *now})
                                  if was.get(k) != now.get(k))
                problems.append(f"{IMAGES_DIR}/{MANIFEST}: `{cmd}` no longer draws the same numbers "
                                f"(digest {str(old_manifest.get('numbers'))[:12]} -> "
                                f"{str(new_manifest.get('numbers'))[:12]}{'; ' + moved if moved else ''}); "
                                "regenerate the pictures")
        return problems


def _diff(old: str, new: Block | None) -> str:
    if new is None:
        return "    (the command did not write the block)"
    import difflib

    lines = difflib.unified_diff(old.splitlines(), new.body.splitlines(), "published", "rerun", lineterm="", n=0)
    return "\n".join(f"    {line}" for line in list(lines)[:40])


# --------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog=f"{PROGRAM} provenance",
        description="Which command wrote each generated block and picture, and whether the code still matches.")
    ap.add_argument("--rerun", action="store_true", help="also rerun the deterministic commands and compare exactly")
    ap.add_argument("--deps", metavar="COMMAND", help="list the files a command's fingerprint covers (e.g. bench)")
    ap.add_argument("--stamp", nargs=2, metavar=("FILE", "BLOCK"),
                    help="record --command as the writer of this block, text unchanged: only for a block that "
                         "command generated before provenance was recorded (or on a branch without it), never in "
                         "place of rerunning a command whose code changed")
    ap.add_argument("--command", help="with --stamp: the command that generated the block, as run from the root")
    ap.add_argument("--check", choices=CHECKS, default="fingerprint", help="with --stamp (default fingerprint)")
    ap.add_argument("--code-from", type=pathlib.Path, default=None,
                    help="with --stamp: a checkout of the commit that generated the block (default: this one)")
    args = ap.parse_args(argv)
    if args.stamp:
        if not args.command:
            print("error: --stamp needs --command", file=sys.stderr)
            return 2
        try:
            stamp(pathlib.Path(args.stamp[0]), args.stamp[1], args.command, args.check, args.code_from)
        except (ProvenanceError, OSError) as exc:
            print(f"error: --stamp: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.deps:
        try:
            print("\n".join(dependencies(args.deps)))
        except ProvenanceError as exc:
            print(f"error: --deps: {exc}", file=sys.stderr)
            return 2
        return 0
    for path in documents():
        for block in read_blocks(path):
            r = block.record or {}
            print(f"{path.relative_to(ROOT)} {block.name}: {r.get('check', '-')}: {r.get('command', '(none)')}")
    problems = check_fingerprints()
    if args.rerun:
        for cmd in rerun_commands():
            print(f"rerunning `{cmd}` ...", flush=True)
            problems += check_rerun(cmd)
    print("\n".join(problems) if problems else "every block and picture matches the code")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
