"""Both command-line entry points: --version, help before heavy imports, help text everywhere, and
antithetic-queue's input-name checks and offline dry runs on the shipped example workflows (no server)."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from antithetic_sampling.nodes import cli as sampling_cli
from antithetic_sampling.nodes import cli_args
from antithetic_sampling.nodes.api_client import cli as queue_cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "scipy", "matplotlib", "PIL")


def test_version_on_both_commands(capsys):
    assert sampling_cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"antithetic-sampling {cli_args.package_version()}"
    with pytest.raises(SystemExit) as exc:
        queue_cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip().startswith("antithetic-queue ")


@pytest.mark.parametrize("command", sorted(sampling_cli.COMMANDS))
def test_help_answers_before_heavy_modules_are_imported(command):
    code = (
        "import sys\nfrom antithetic_sampling.nodes.cli import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "usage: antithetic-sampling" in out
    assert out.strip().splitlines()[-1] == "HEAVY []", out


def _all_parsers(monkeypatch) -> dict[str, argparse.ArgumentParser]:
    parsers = {name: cli_args.parser(name) for name in cli_args.PARSERS}
    parsers["antithetic-queue"] = queue_cli.build_parser()
    from antithetic_sampling.nodes.api_client import soak, sync_workflows

    parsers["soak"] = soak.build_parser()
    from antithetic_sampling.nodes.evidence import setup_cost

    parsers["setup-bench"] = setup_cost.build_parser()
    seen = []

    def capture(self, *a, **k):
        seen.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        sync_workflows.main([])
    parsers["sync-workflows"] = seen[0]
    return parsers


def test_every_option_has_help_and_descriptions_are_plain_text(monkeypatch):
    for name, ap in _all_parsers(monkeypatch).items():
        for action in ap._actions:
            assert action.help and action.help.strip(), f"{name}: {action.option_strings or action.dest} has no help"
        text = ap.format_help()
        for markup in ("``", "**", ":mod:", ":func:"):
            assert markup not in text, f"{name} --help shows {markup!r}"


def _queue(argv, capsys) -> tuple[int, str, str]:
    code = queue_cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _examples() -> list[list[str]]:
    epilog = queue_cli.build_parser().epilog
    lines = [ln.strip() for ln in epilog.splitlines() if ln.strip().startswith("antithetic-queue ")]
    assert len(lines) >= 3
    return [shlex.split(ln)[1:] for ln in lines]


@pytest.mark.parametrize("example", _examples(), ids=lambda a: a[0])
def test_help_examples_run_offline_with_real_input_names(example, capsys, monkeypatch, tmp_path):
    """Every example in --help is valid: as a dry run it resolves its nodes and inputs on the shipped workflows
    without a server (--server URLs in an example are never contacted for an API workflow)."""
    monkeypatch.chdir(ROOT)
    argv = [a for a in example if a != "--dry-run"] + ["--dry-run"]
    if "--out" in argv:
        argv[argv.index("--out") + 1] = str(tmp_path / "out")
    code, out, err = _queue(argv, capsys)
    assert code == 0, err
    jobs = [json.loads(line) for line in out.splitlines()]
    assert jobs and all(job["params"] for job in jobs)
    assert not (tmp_path / "out").exists()


def test_unknown_input_is_refused_with_the_nodes_real_inputs(capsys):
    wf = str(ROOT / "workflows/api/k_antithetic_gallery.json")
    code, _, err = _queue([wf, "--sweep", "8.k=2,4", "--dry-run"], capsys)
    assert code == 2
    assert "no input 'k'" in err and "noise_seed, group_size, layout, design_size" in err
    # with node definitions (a UI workflow, converted offline) the message lists the definition's inputs
    code, _, err = _queue([str(ROOT / "workflows/k_antithetic_gallery.json"), "--set", "8.k=2", "--dry-run"], capsys)
    assert code == 2 and "no input 'k'" in err and "group_size" in err


def test_ui_dry_run_is_offline_with_the_shipped_definitions(capsys):
    code, out, err = _queue([str(ROOT / "workflows/sobol_rqmc_estimate.json"),
                             "--sweep", "SobolRQMCLatentBatch.points_per_replicate=8,16", "--dry-run"], capsys)
    assert code == 0 and "shipped node definitions" in err
    assert [json.loads(line)["params"] for line in out.splitlines()] == [
        {"8.points_per_replicate": 8}, {"8.points_per_replicate": 16}]


def test_ui_workflow_without_a_server_says_how_to_convert_it(capsys):
    code, _, err = _queue([str(ROOT / "workflows/sobol_rqmc_estimate.json"), "--server", "http://127.0.0.1:9",
                           "--dry-run"], capsys)
    assert code == 3 and "--object-info" in err and "object_info.json" in err


def test_outputs_note_never_names_a_missing_folder(tmp_path):
    out = tmp_path / "never_created"
    assert queue_cli._outputs_note(out, out / "manifest.jsonl") == "no output files downloaded"
    out.mkdir()
    (out / "manifest.jsonl").write_text("{}\n")
    assert queue_cli._outputs_note(out, out / "manifest.jsonl") == "no output files downloaded"
    (out / "job").mkdir()
    (out / "job" / "a.png").write_bytes(b"x")
    assert queue_cli._outputs_note(out, out / "manifest.jsonl") == f"1 output file(s) in {out}"
