"""Bad input to the commands gets one plain line that names the option and what it accepts, exit status 2, no
traceback, and nothing is run or queued first: demo's --n / --steps / --weights / --out, train's hint, the batch
client's --set / --sweep values against the input's type, estimate's --confidence and malformed workflow files.
Also: the node definitions the client converts UI workflows with offline are package data (non-editable install)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from antithetic_sampling.nodes import cli as sampling_cli
from antithetic_sampling.nodes import cli_args
from antithetic_sampling.nodes.api_client import cli as queue_cli

ROOT = Path(__file__).resolve().parents[1]
API_WF = ROOT / "workflows" / "api" / "k_antithetic_gallery.json"  # one noise node (8) and a BasicScheduler
DEAD_SERVER = "http://127.0.0.1:9"  # nothing listens: a command that got this far would exit 3, not 2


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def _sampling(argv, capsys) -> str:
    """antithetic-sampling ARGV that must be refused: its one error line."""
    with pytest.raises(SystemExit) as exc:
        sampling_cli.main(argv)
    assert exc.value.code == 2
    return _one_line(capsys.readouterr().err)


# --------------------------------------------------------------------------------------------- demo
@pytest.mark.parametrize("n", ["3", "6", "12", "-4", "0", "20", "eight"])
def test_demo_n_must_be_a_multiple_of_8_of_at_least_16(n, capsys):
    line = _sampling(["demo", "--n", n], capsys)
    assert line.startswith("antithetic-sampling demo: error: argument --n:")
    assert "a multiple of 8, at least 16" in line and "16, 24, 32" in line


def test_demo_help_says_what_n_accepts():
    text = " ".join(cli_args.parser("demo").format_help().split())
    assert "a multiple of 8, at least 16" in text


@pytest.mark.parametrize("steps", ["0", "-1"])
def test_demo_steps_zero_is_refused_not_replaced_by_the_default(steps, capsys):
    line = _sampling(["demo", "--steps", steps], capsys)
    assert "argument --steps:" in line and "at least 1" in line


def test_demo_weights_missing_folder(tmp_path, capsys):
    line = _sampling(["demo", "--weights", str(tmp_path / "MISSING")], capsys)
    assert "argument --weights:" in line and "MISSING is not a folder" in line
    assert "digits_denoiser.safetensors and digits_denoiser.json" in line


def test_demo_out_existing_file(tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    line = _sampling(["demo", "--out", str(f)], capsys)
    assert "argument --out:" in line and "is an existing file" in line and "accepted: a folder" in line
    assert f.read_text() == "keep me"


def test_demo_out_below_a_file(tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("")
    line = _sampling(["demo", "--out", str(f / "sub")], capsys)
    assert "argument --out:" in line and "is a file, not a folder" in line


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder nobody can create in)")
def test_demo_out_where_the_os_refuses_to_create_it(capsys):
    # root passes the permission check up front on /proc; the folder's creation then fails: still one line
    line = _sampling(["demo", "--out", "/proc/antithetic-demo-out"], capsys)
    assert "argument --out:" in line and "/proc/antithetic-demo-out" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write to a read-only folder")
def test_demo_out_in_a_read_only_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        line = _sampling(["demo", "--out", str(ro / "demo")], capsys)
    finally:
        ro.chmod(0o700)
    assert "argument --out:" in line and "not writable" in line


def test_demo_bad_n_in_a_fresh_process_has_no_traceback(tmp_path):
    # this checkout as `antithetic_sampling` for the subprocess (whatever the folder is called)
    (tmp_path / "antithetic_sampling").symlink_to(ROOT, target_is_directory=True)
    code = "import sys; from antithetic_sampling.nodes.cli import main; sys.exit(main(['demo', '--n', '12']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "argument --n" in _one_line(proc.stderr)


# --------------------------------------------------------------------------------------------- train's hint
def _fake_nag_training(monkeypatch):
    """train --model nag without the minutes of training: the 'trained' files are copies of the shipped ones."""
    from antithetic_sampling.nodes.evidence import digits, train

    def fake(stem, result):
        def run(out_dir, *a, **k):
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            for suffix in (".safetensors", ".json"):
                shutil.copyfile(digits.WEIGHTS_DIR / f"{stem}{suffix}", Path(out_dir) / f"{stem}{suffix}")
            return result
        return run

    monkeypatch.setattr(train, "train_level_dropout", fake(digits.NAG_STEM, {
        "training": {"train_time_s": 0}, "validation": {"loss": 0.3, "loss_unconditional": 1.0}, "schedule": {}}))
    monkeypatch.setattr(train, "train_regressor", fake(digits.REGRESSOR_STEM, {
        "training": {"train_time_s": 0}, "validation": {"nll": 0.0, "mean_abs_log_error": 0.0}}))
    return train


def test_train_nag_hint_is_a_command_that_accepts_the_folder(tmp_path, monkeypatch, capsys):
    train = _fake_nag_training(monkeypatch)
    out = tmp_path / "trained_weights" / "nag-1"
    assert train.main(["--model", "nag", "--out", str(out)]) == 0
    hint = capsys.readouterr().out.strip().splitlines()[-1]
    command = hint.split("`")[1]
    argv = shlex.split(command)
    assert argv[0] == "antithetic-sampling" and argv[1] == "guidance-h2h", hint
    args = cli_args.parser(argv[1]).parse_args(argv[2:])
    assert args.weights == out
    # demo is not the command for these weights, and says which one is
    line = _sampling(["demo", "--weights", str(out)], capsys)
    assert "argument --weights:" in line and "guidance-h2h --weights" in line


# --------------------------------------------------------------------------------------------- antithetic-queue
def _queue(argv, capsys) -> tuple[int, str, str]:
    code = queue_cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("spec, accepted", [
    ("Antithetic Latent Noise.noise_seed=abc..3", "a whole number from 0 to"),
    ("Antithetic Latent Noise.noise_seed=0..3:0.5", "a whole number from 0 to"),
    ("Antithetic Latent Noise.noise_seed=-1..2", "a whole number from 0 to"),
    ("Antithetic Latent Noise.layout=interleaved,diagonal", "interleaved, halves"),
    ("Antithetic Latent Noise.group_size=2,true", "a whole number"),
])
def test_sweep_values_are_checked_against_the_inputs_type_before_anything_is_queued(spec, accepted, capsys):
    # a live run (no --dry-run) against a dead server: refused with 2 before any server is contacted
    code, out, err = _queue([str(API_WF), "--sweep", spec, "--server", DEAD_SERVER, "--no-progress"], capsys)
    assert code == 2 and out == ""
    line = _one_line(err)
    assert line.startswith("error: --sweep ") and accepted in line and "node 8 (AntitheticLatentNoise)" in line


def test_set_value_is_checked_too_and_from_the_workflow_when_no_definition_exists(capsys):
    code, _, err = _queue([str(API_WF), "--set", "BasicScheduler.steps=many", "--dry-run"], capsys)
    assert code == 2 and "whole number" in _one_line(err) and "--set BasicScheduler.steps" in err
    # a class the shipped definitions do not know: the workflow's own value says it is a number
    graph = json.loads(API_WF.read_text())
    graph["99"] = {"class_type": "SomeoneElsesNode", "inputs": {"strength": 0.5}}
    from antithetic_sampling.nodes.api_client.jobs import SpecError, build_jobs, parse_set

    with pytest.raises(SpecError, match=r"accepted: a number, as the workflow gives it"):
        build_jobs(graph, [parse_set("99.strength=strong")], definitions={})
    assert build_jobs(graph, [parse_set("99.strength=0.75")], definitions={})[0].prompt["99"]["inputs"] == {
        "strength": 0.75}


def test_valid_values_pass_and_are_normalised(capsys):
    code, out, err = _queue([str(API_WF), "--sweep", "Antithetic Latent Noise.noise_seed=0..4:2",
                             "--set", "Prompt.text=42", "--dry-run"], capsys)
    assert code == 0, err
    jobs = [json.loads(line) for line in out.splitlines()]
    assert [j["params"] for j in jobs] == [{"8.noise_seed": v} for v in (0, 2, 4)]
    from antithetic_sampling.nodes.api_client.jobs import build_jobs, parse_set, parse_sweep

    defs = queue_cli.input_definitions(None)
    graph = json.loads(API_WF.read_text())
    job = build_jobs(graph, [parse_set("Prompt.text=42")], [parse_sweep("8.noise_seed=[4.0]")], definitions=defs)[0]
    assert job.prompt["2"]["inputs"]["text"] == "42" and job.prompt["8"]["inputs"]["noise_seed"] == 4
    assert isinstance(job.prompt["8"]["inputs"]["noise_seed"], int)


def test_ui_workflow_sweep_checked_against_the_shipped_definitions(capsys):
    code, _, err = _queue([str(ROOT / "workflows/k_antithetic_gallery.json"), "--sweep", "8.group_size=4,four",
                           "--dry-run"], capsys)
    assert code == 2
    assert "'four' does not fit node 8" in err.strip().splitlines()[-1] and "whole number" in err


def test_malformed_object_info_names_the_file(tmp_path, capsys):
    bad = tmp_path / "object_info.json"
    bad.write_text("{not json")
    code, _, err = _queue([str(API_WF), "--object-info", str(bad), "--dry-run"], capsys)
    assert code == 2 and str(bad) in _one_line(err)


# --------------------------------------------------------------------------------------------- estimate
def test_estimate_confidence_is_refused_before_any_prompt(capsys):
    code, out, err = _queue(["estimate", str(API_WF), "--target", "0.01", "--confidence", "1.5",
                             "--server", DEAD_SERVER, "--no-progress"], capsys)
    assert code == 2 and out == ""
    line = _one_line(err)
    assert "--confidence 1.5" in line and "between 0 and 1" in line


def test_estimate_malformed_json_names_the_file(tmp_path, capsys):
    bad = tmp_path / "my_workflow.json"
    bad.write_text('{"3": {"class_type": ')
    code, _, err = _queue(["estimate", str(bad), "--target", "0.01", "--server", DEAD_SERVER], capsys)
    assert code == 2
    line = _one_line(err)
    assert str(bad) in line and "not valid JSON" in line


def test_estimate_set_value_is_type_checked(capsys):
    wf = ROOT / "workflows/api/sobol_rqmc_estimate.json"
    code, _, err = _queue(["estimate", str(wf), "--target", "0.01", "--noise-node", "SobolRQMCLatentBatch",
                           "--set", "SobolRQMCLatentBatch.noise_seed=x", "--server", DEAD_SERVER], capsys)
    assert code == 2 and "whole number" in _one_line(err)


# --------------------------------------------------------------------------------------------- package data
@pytest.mark.slow
def test_non_editable_install_converts_ui_workflows_offline(tmp_path):
    """`pip install .` (not -e) into a fresh venv, no dependencies (the dry run needs none): the installed
    antithetic-queue converts a UI workflow with the node definitions shipped inside the package."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                             "demo_out", "bench_out", "trained_weights", "out"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(src)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    shutil.rmtree(src)  # nothing may be read from the source tree
    work = tmp_path / "elsewhere"
    work.mkdir()
    wf = work / "sobol_rqmc_estimate.json"
    shutil.copyfile(ROOT / "workflows" / "sobol_rqmc_estimate.json", wf)
    proc = subprocess.run([str(venv / "bin" / "antithetic-queue"), str(wf), "--sweep",
                           "SobolRQMCLatentBatch.points_per_replicate=8,16", "--dry-run"],
                          cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "shipped node definitions" in proc.stderr and str(venv) in proc.stderr
    assert [json.loads(line)["params"] for line in proc.stdout.splitlines()] == [
        {"8.points_per_replicate": 8}, {"8.points_per_replicate": 16}]
