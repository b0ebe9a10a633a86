"""Real ComfyUI: the README's ``antithetic-queue estimate`` example, run as the README writes it.

The command is read from the README's ``readme-estimate`` block (its ``$`` line) and run verbatim, from a folder
that holds ``workflows/api/brightness_pairs.json``, with one addition: ``--server`` of the test's server (the
README's command uses the default 127.0.0.1:8188). The workflow is the shipped one through the e2e tests'
``shrink_for_tiny`` (tiny checkpoint, 64 px, 2 steps), the one thing a CPU test server can run in seconds.

The README's printed output is this run's: on the ComfyUI and torch versions the block records, line for line;
on any other, line for line with the numbers masked (the format). ``ANTITHETIC_UPDATE_README=1`` rewrites the
block from the run instead of comparing (then commit the README).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from antithetic_sampling.nodes.api_client.cli import main as cli_main
from antithetic_sampling.nodes.local_comfy.tiny_workflow import shrink_for_tiny

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = "readme-estimate"
BEGIN, END = f"<!-- BEGIN:{BLOCK} -->", f"<!-- END:{BLOCK} -->"
PROVENANCE = re.compile(r"ComfyUI (\S+), torch (\S+)\)")


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"README.md has no {BLOCK} block"
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def readme_example() -> tuple[list[str], list[str], tuple[str, str] | None]:
    """(argv of the ``$`` line, the output lines shown under it, (ComfyUI, torch) the output was made with)."""
    block = readme_block()
    fence = re.search(r"```\n(.*?)```", block, flags=re.S)
    assert fence, "the readme-estimate block has no code block"
    lines = fence.group(1).rstrip("\n").splitlines()
    assert lines and lines[0].startswith("$ antithetic-queue estimate "), lines[:1]
    m = PROVENANCE.search(block)
    return shlex.split(lines[0][2:]), lines[1:], (m.group(1), m.group(2)) if m else None


def _mask(line: str) -> str:
    return re.sub(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?", "#", line)


def _write_block(argv_line: str, output: list[str], comfy: str, torch_version: str) -> None:
    body = "\n".join([
        "```",
        argv_line,
        *output,
        "```",
        "",
        f"(Printed by `tests/test_e2e_readme_estimate.py`, which runs this command verbatim against the e2e server: "
        f"ComfyUI {comfy}, torch {torch_version})",
    ])
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    record = json.dumps({"command": "python -m pytest tests/test_e2e_readme_estimate.py", "check": "test"})
    README.write_text(f"{head}{BEGIN}\n<!-- provenance {record} -->\n{body}\n{END}{rest.split(END, 1)[1]}",
                      encoding="utf-8")


def test_readme_example_names_a_shipped_workflow_with_one_noise_node():
    from antithetic_sampling.nodes.api_client.estimate import detect_design

    argv, _, _ = readme_example()
    wf = ROOT / argv[2]
    assert wf.is_file() and wf.parent == ROOT / "workflows" / "api", f"{argv[2]} is not shipped in workflows/api/"
    spec = detect_design(json.loads(wf.read_text(encoding="utf-8")))  # no --noise-node needed
    assert spec.design == "pairs" and spec.batch % spec.unit_size == 0


def test_readme_estimate_command_runs_verbatim(comfy_server, tmp_path, monkeypatch, capsys):
    argv, shown, made_with = readme_example()
    assert argv[:2] == ["antithetic-queue", "estimate"]
    workflow = Path(argv[2])
    assert not workflow.is_absolute()
    here = tmp_path / "cwd"
    (here / workflow.parent).mkdir(parents=True)
    api = json.loads((ROOT / workflow).read_text(encoding="utf-8"))
    (here / workflow).write_text(json.dumps(shrink_for_tiny(api)), encoding="utf-8")
    monkeypatch.chdir(here)

    code = cli_main([*argv[1:], "--server", comfy_server.url])  # argv[0] is the console script
    out = capsys.readouterr().out
    assert code == 0, out
    printed = out.rstrip("\n").splitlines()
    assert printed and (here / "runs").is_dir()

    stats = comfy_server.get_json("/system_stats")["system"]
    comfy, torch_version = str(stats.get("comfyui_version")), str(stats.get("pytorch_version"))
    if os.environ.get("ANTITHETIC_UPDATE_README") == "1":
        _write_block("$ " + shlex.join(argv), printed, comfy, torch_version)
        return
    if made_with == (comfy, torch_version):
        assert printed == shown, ("the README's estimate output is not what the command prints now; rerun with "
                                  "ANTITHETIC_UPDATE_README=1 and commit README.md")
    else:  # another core or torch: other numbers, the same lines
        assert [_mask(x) for x in printed] == [_mask(x) for x in shown], (
            f"the README's estimate output (made with {made_with}) has another format than the command prints now")
