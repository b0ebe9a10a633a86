"""``antithetic-sampling setup-bench``: what the first command costs on a fresh clone.

Clones the checkout's committed state (``git clone``) into a temporary folder once per set-up and runs there, from
nothing: ``make setup-demo`` then ``make demo`` (what ``make demo`` does on first use), and ``make setup`` (what
``make test`` does before its tests). For each it records the wall time, the size of the resulting ``.venv``, the
number of installed distributions and the torch build that pip chose, and writes them as the ``setup-cost`` block of
``--readme FILE`` (docs/testing.md). Standard library only: it runs from any Python, without the pack's venv.

The times include pip resolving and installing every wheel from the indexes pip is configured with (on the machine
the shipped numbers come from, PyPI mirrors and a CPU torch wheel on local disk: no download time), so on another
machine they are a lower bound; the sizes are what pip installed and hold anywhere the same wheels are chosen.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BLOCK = "setup-cost"


def _du(path: pathlib.Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed, hard links counted once)."""
    seen, total = set(), 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def _timed(cmd: list[str], cwd: pathlib.Path, env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}) in {cwd}:\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return elapsed


def _venv_facts(clone: pathlib.Path) -> dict:
    py = clone / ".venv" / "bin" / "python"
    code = ("import json, importlib.metadata as m, platform, torch; "
            "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
            "'python': platform.python_version(), "
            "'dists': len({d.metadata['Name'].lower() for d in m.distributions()})}))")
    facts = json.loads(subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout)
    facts["venv_bytes"] = _du(clone / ".venv")
    return facts


def measure(source: pathlib.Path, python: str, make_args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    results = {}
    plans = {
        "demo": [("set-up", ["make", "setup-demo"]), ("demo", ["make", "demo"])],
        "test": [("set-up", ["make", "setup"])],
    }
    for name, steps in plans.items():
        with tempfile.TemporaryDirectory(prefix=f"setup-bench-{name}-") as tmp:
            clone = pathlib.Path(tmp) / "antithetic-sampling"
            subprocess.run(["git", "clone", "--quiet", str(source), str(clone)], check=True)
            row = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, text=True,
                                            capture_output=True, check=True).stdout.strip()}
            loads = [os.getloadavg()[0]]
            for label, cmd in steps:
                print(f"{name}: {' '.join(cmd)} ...", file=sys.stderr, flush=True)
                py_arg = [f"PYTHON={python}"] if python else []
                row[f"{label}_s"] = round(_timed([*cmd, *py_arg, *make_args], clone, env), 1)
                loads.append(os.getloadavg()[0])
            row["load"] = [round(min(loads), 1), round(max(loads), 1)]
            row.update(_venv_facts(clone))
            results[name] = row
            print(f"{name}: {row}", file=sys.stderr, flush=True)
    return results


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def _commits(results: dict) -> str:
    return " / ".join(dict.fromkeys(r["commit"] for r in results.values()))


def _loads(results: dict) -> str:
    lo = min(r["load"][0] for r in results.values())
    hi = max(r["load"][1] for r in results.values())
    return f"{lo:.1f}–{hi:.1f}"


def render(results: dict, make_args: list[str]) -> str:
    demo, test = results["demo"], results["test"]
    extra = f" {' '.join(make_args)}" if make_args else ""
    build = "CPU" if not demo["cuda"] else f"CUDA {demo['cuda']}"
    return "\n".join([
        f"Measured by `antithetic-sampling setup-bench --readme docs/testing.md` (commit {_commits(results)}): a fresh "
        f"`git clone` per row, `make …{extra}` with Python {demo['python']} on {platform.system()} {platform.machine()}, "
        f"pip's indexes on local disk (no download time), torch {demo['torch']} ({build} build) from a local wheel; "
        f"a two-core machine shared with other jobs (1-minute load average {_loads(results)} during the runs: "
        "expect less on an idle one).",
        "",
        "| first command | set-up (make target) | set-up wall time | then | `.venv` size | distributions installed |",
        "|---|---|---|---|---|---|",
        f"| `make demo` | `setup-demo`: torch, the pack, its `demo` extra | {demo['set-up_s']:.0f} s | demo "
        f"{demo['demo_s']:.0f} s | {_mb(demo['venv_bytes'])} | {demo['dists']} |",
        f"| `make test` | `setup`: torch, the pack, its `dev` extra | {test['set-up_s']:.0f} s | (the tests) | "
        f"{_mb(test['venv_bytes'])} | {test['dists']} |",
    ])


def replace_block(path: pathlib.Path, text: str) -> bool:
    src = path.read_text(encoding="utf-8")
    begin, end = f"<!-- BEGIN:{BLOCK} -->", f"<!-- END:{BLOCK} -->"
    if begin not in src or end not in src:
        return False
    head, rest = src.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}", encoding="utf-8")
    return True


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="antithetic-sampling setup-bench",
                                 description="Time and size of `make demo`'s and `make test`'s set-up on a fresh clone "
                                             "of this checkout's committed state (minutes; builds two venvs).")
    ap.add_argument("--source", type=pathlib.Path, default=ROOT,
                    help="git checkout to clone (default: this one; its committed state is measured)")
    ap.add_argument("--python", default=None,
                    help="the Python that make creates the venv with (default: the Makefile's, python3)")
    ap.add_argument("--make-arg", dest="make_args", action="append", default=[], metavar="VAR=VALUE",
                    help="extra make variable, repeatable (e.g. TORCH_INDEX=...)")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"),
                    help="output folder for setup_cost.json (default bench_out)")
    ap.add_argument("--readme", type=pathlib.Path, help="rewrite the setup-cost block of this markdown file")
    ap.add_argument("--from-json", type=pathlib.Path, default=None,
                    help="measure nothing: render the block from the setup_cost.json of an earlier run")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        # older runs saved the results alone
        results, make_args = saved.get("results", saved), saved.get("make_args", [])
    else:
        results, make_args = measure(args.source, args.python, args.make_args), args.make_args
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "setup_cost.json").write_text(json.dumps({"results": results, "make_args": make_args}, indent=2),
                                                  encoding="utf-8")
    text = render(results, make_args)
    print(text)
    if args.readme and not replace_block(args.readme, text):
        print(f"warning: no <!-- BEGIN:{BLOCK} --> block in {args.readme}; left unchanged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
