"""Every command the README shows runs in the test suite as written.

The README's code blocks are parsed (a block whose first line starts with ``$ `` is a command and its output;
any other block is a list of commands, ``# comments`` dropped). Each command must be claimed by one entry of
``RUNNERS``: the test that runs it. A command added to the README without a test fails
``test_every_readme_command_is_run_by_a_test``.

- the install block (``cd ComfyUI/custom_nodes``, ``git clone https://github.com/...``, ``pip install -r ...``) runs
  line by line in bash inside a fresh venv, with git told (``url.<local>.insteadOf``) to fetch that URL from this
  checkout: no network, the same command;
- ``make demo`` runs in a copy of this checkout whose ``.venv`` is already set up (the set-up itself is what
  ``antithetic-sampling setup-bench`` measures in docs/testing.md); ``make test`` is what CI runs (``.ci/run``);
- ``antithetic-queue ... --ray auto ...`` runs as written plus ``--dry-run`` (no cluster here: every node, input
  and sweep value is still checked); ``ray start --head`` is what ``tests/test_e2e_ray.py`` starts its cluster with;
- ``$ antithetic-queue estimate ...`` runs verbatim against a real ComfyUI in ``tests/test_e2e_readme_estimate.py``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GITHUB = "https://github.com/antithetic-sampling/antithetic-sampling"


def readme_blocks() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    return [block.rstrip("\n").splitlines() for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)]


def readme_commands() -> list[str]:
    out = []
    for lines in readme_blocks():
        if lines and lines[0].startswith("$ "):
            out += [ln[2:].strip() for ln in lines if ln.startswith("$ ")]
            continue
        for ln in lines:
            words = shlex.split(ln, comments=True)
            if words:
                out.append(shlex.join(words))
    return out


# command pattern -> the test that runs it (module::function)
RUNNERS: dict[str, str] = {
    r"cd ComfyUI/custom_nodes": "test_readme_commands.py::test_install_block_runs_as_written",
    r"git clone " + re.escape(GITHUB): "test_readme_commands.py::test_install_block_runs_as_written",
    r"pip install -r antithetic-sampling/requirements\.txt": "test_readme_commands.py::test_install_block_runs_as_written",
    r"make demo": "test_readme_commands.py::test_make_demo_runs_as_written",
    r"make test": "test_readme_commands.py::test_make_test_is_what_ci_runs",
    r"ray start --head": "test_readme_commands.py::test_ray_start_is_how_the_ray_test_starts_its_cluster",
    r"antithetic-queue (?!estimate).*": "test_readme_commands.py::test_queue_commands_run_as_written_as_dry_runs",
    r"antithetic-queue estimate .*": "test_e2e_readme_estimate.py::test_readme_estimate_command_runs_verbatim",
}


def _runner(command: str) -> str | None:
    hits = [test for pattern, test in RUNNERS.items() if re.fullmatch(pattern, command)]
    return hits[0] if len(hits) == 1 else None


def test_every_readme_command_is_run_by_a_test():
    commands = readme_commands()
    assert len(commands) >= 8, commands
    unclaimed = [c for c in commands if _runner(c) is None]
    assert not unclaimed, f"README commands no test runs (add one and an entry in RUNNERS): {unclaimed}"
    for test in set(RUNNERS.values()):
        module, func = test.split("::")
        assert f"def {func}(" in (ROOT / "tests" / module).read_text(encoding="utf-8"), f"{test} does not exist"


def _block_with(command_start: str) -> list[str]:
    for lines in readme_blocks():
        if any(ln.startswith(command_start) for ln in lines):
            return lines
    raise AssertionError(f"no README code block with {command_start!r}")


@pytest.mark.slow
def test_install_block_runs_as_written(tmp_path):
    """cd ComfyUI/custom_nodes; git clone <GitHub URL>; pip install -r .../requirements.txt, in a fresh venv."""
    block = _block_with("git clone ")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    (tmp_path / "ComfyUI" / "custom_nodes").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(env_dir),
           # git fetches the README's URL from this checkout (its committed state): the command as written, offline
           "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{ROOT}.insteadOf", "GIT_CONFIG_VALUE_0": GITHUB,
           "PYTHONPATH": ""}
    script = "set -euo pipefail\n" + "\n".join(block) + "\n"
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pack = tmp_path / "ComfyUI" / "custom_nodes" / "antithetic-sampling"
    assert (pack / "__init__.py").is_file() and (pack / "nodes").is_dir()
    # what the README says the line installs: the pack's runtime dependencies, never torch
    check = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
             "('numpy', 'scipy', 'safetensors', 'matplotlib', 'torch')}))")
    found = json.loads(subprocess.run([str(env_dir / "bin" / "python"), "-c", check], capture_output=True,
                                      text=True, check=True, env=env).stdout)
    assert found == {"numpy": True, "scipy": True, "safetensors": True, "matplotlib": True, "torch": False}


def _checkout_copy(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "demo_out",
        "bench_out", "trained_weights", "runs"))
    return dest


@pytest.mark.slow
def test_make_demo_runs_as_written(tmp_path):
    """`make demo` in a checkout whose venv is set up: make finds the set-up done and runs the demo's recipe."""
    repo = _checkout_copy(tmp_path / "repo")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "antithetic_sampling").symlink_to(repo, target_is_directory=True)
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    # the console script of an editable install of this copy, on the Python running the tests
    script = bin_dir / "antithetic-sampling"
    script.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(pkg))} exec {shlex.quote(sys.executable)} "
                      "-m antithetic_sampling.nodes.cli \"$@\"\n")
    script.chmod(0o755)
    for stamp in (".base", ".demo-ready"):
        (repo / ".venv" / stamp).touch()  # newer than pyproject.toml: the set-up is done
    dry = subprocess.run(["make", "-n", "demo"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert "pip install" not in dry and "antithetic-sampling demo" in dry, dry
    proc = subprocess.run(["make", "demo"], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = repo / "demo_out"
    for name in ("pairs.png", "ci.png", "report.md", "numbers.json"):
        assert (out / name).is_file(), name
    assert "| antithetic pairs |" in proc.stdout and "wrote demo_out/" in proc.stdout


def test_make_demo_installs_only_the_demo_extra_and_test_the_dev_extra(tmp_path):
    """The set-up recipes as make would run them on a fresh clone (make -n: nothing is installed)."""
    repo = _checkout_copy(tmp_path / "repo")
    demo = subprocess.run(["make", "-n", "demo"], cwd=repo, capture_output=True, text=True, check=True).stdout
    test = subprocess.run(["make", "-n", "test"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert '-e ".[demo]"' in demo and ".[dev]" not in demo
    assert '-e ".[dev]"' in test
    for text in (demo, test):
        assert re.search(r"pip install --quiet torch==2\.13\.0\s*$", text, flags=re.M), text
    cpu = subprocess.run(["make", "-n", "demo", "TORCH_INDEX=--index-url https://download.pytorch.org/whl/cpu"],
                         cwd=repo, capture_output=True, text=True, check=True).stdout
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in cpu
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    heavy = {"ray", "playwright", "scikit-learn", "scikit-image", "pytest"}
    assert not {re.split(r"[<>=\[ ]", d)[0] for d in extras["demo"]} & heavy


def test_make_test_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^\s*make test\b", ci, flags=re.M), ".ci/run no longer runs the README's `make test`"


def test_ray_start_is_how_the_ray_test_starts_its_cluster():
    text = (ROOT / "tests" / "test_e2e_ray.py").read_text(encoding="utf-8")
    assert '"start", "--head"' in text or "ray start --head" in text


@pytest.mark.parametrize("command", [c for c in readme_commands() if re.fullmatch(r"antithetic-queue (?!estimate).*", c)])
def test_queue_commands_run_as_written_as_dry_runs(command, monkeypatch, capsys):
    from antithetic_sampling.nodes.api_client import cli as queue_cli

    monkeypatch.chdir(ROOT)
    argv = shlex.split(command)
    assert argv[0] == "antithetic-queue"
    code = queue_cli.main([*argv[1:], "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    jobs = [json.loads(line) for line in out.splitlines()]
    assert jobs and all(job["params"] for job in jobs)
