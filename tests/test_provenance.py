"""Published numbers cannot drift from the code (``nodes/evidence/provenance.py``).

* Every generated block of README.md and docs/*.md, and the pictures of docs/images, record the command that wrote
  them and the fingerprint of the code, weights and parsed arguments behind them; the fingerprint must be the
  current code's (change the code, regenerate the block in the same change).
* The deterministic blocks (``check: rerun``: the bench tables and headline, the demo's pictures) are regenerated
  here in a scratch copy of the documents and must come out identical.
* The checker itself: a one-line change to a constant of the Sobol generator in a copy of the source tree changes
  the fingerprint and is reported as stale; a block that does not reproduce is reported with its diff; a picture
  that is not the one recorded is reported.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil

import pytest
from antithetic_sampling.nodes.evidence import provenance

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Blocks whose inputs changed after they were generated and that are too expensive (or need a quiet machine /
# a ComfyUI checkout) to regenerate in the change that made them stale: "<file>:<block>" -> why. The test below
# fails as soon as one of them is current again, so that this list only shrinks.
KNOWN_STALE: dict[str, str] = {}


def _key(problem: str) -> str | None:
    head = problem.split(": stale:", 1)[0]
    if ": block " not in head:
        return None
    path, _, name = head.partition(": block ")
    return f"{pathlib.Path(path).relative_to(ROOT).as_posix()}:{name.strip(chr(39))}"


# ----------------------------------------------------------------------------------------- the repository
def test_every_generated_block_and_picture_records_the_current_code():
    problems = provenance.check_fingerprints(ROOT)
    unexpected = [p for p in problems if _key(p) not in KNOWN_STALE]
    assert not unexpected, "\n".join(unexpected)
    still_stale = {_key(p) for p in problems}
    assert set(KNOWN_STALE) <= still_stale, (
        f"regenerated, remove from KNOWN_STALE: {sorted(set(KNOWN_STALE) - still_stale)}")


def test_the_headline_bench_and_the_demo_pictures_are_rerun_by_ci():
    reruns = provenance.rerun_commands(ROOT)
    written = {w for ws in reruns.values() for w in ws}
    assert any(w.endswith("README.md: block 'bench-headline'") for w in written), reruns
    assert any(w.endswith("docs/evidence.md: block 'bench-results'") for w in written), reruns
    assert f"{provenance.IMAGES_DIR}/{provenance.MANIFEST}" in written, reruns
    for cmd in reruns:
        assert cmd.startswith("antithetic-sampling ") and " --quick" not in cmd, cmd


@pytest.mark.slow
@pytest.mark.parametrize("cmd", sorted(provenance.rerun_commands(ROOT)))
def test_deterministic_blocks_reproduce_exactly(cmd, tmp_path):
    problems = provenance.check_rerun(cmd, ROOT, scratch=tmp_path)
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------- the checker
@pytest.fixture
def tree(tmp_path) -> pathlib.Path:
    """A copy of the pack's source tree (code and weights) with one document holding one generated block."""
    root = tmp_path / "tree"
    shutil.copytree(ROOT / "nodes", root / "nodes", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "docs").mkdir()
    cmd = "antithetic-sampling bench --no-timing --readme docs/evidence.md"
    (root / "docs" / "evidence.md").write_text(
        f"# Evidence\n\n<!-- BEGIN:bench-results -->\n{provenance.header(cmd, 'fingerprint', root)}\n"
        "| a | b |\n<!-- END:bench-results -->\nafter\n", encoding="utf-8")
    return root


def _edit(path: pathlib.Path, old: str, new: str) -> None:
    src = path.read_text(encoding="utf-8")
    assert src.count(old) == 1, old
    path.write_text(src.replace(old, new), encoding="utf-8")


def test_a_one_line_change_to_the_sobol_generator_makes_the_block_stale(tree):
    assert provenance.check_fingerprints(tree, [tree / "docs" / "evidence.md"]) == []
    other = provenance.fingerprint("antithetic-sampling sync-workflows", tree)
    _edit(tree / "nodes" / "methods" / "sobol_rqmc.py", "TAIL_Z = 2.0537", "TAIL_Z = 2.0538")
    problems = provenance.check_fingerprints(tree, [tree / "docs" / "evidence.md"])
    assert len(problems) == 1 and "'bench-results': stale" in problems[0], problems
    assert "antithetic-sampling bench --no-timing --readme docs/evidence.md" in problems[0]
    # a command that never imports the generator keeps its fingerprint
    assert provenance.fingerprint("antithetic-sampling sync-workflows", tree) == other


def test_weights_and_argument_defaults_count_but_help_texts_and_new_commands_do_not(tree):
    cmd = "antithetic-sampling bench --no-timing"
    base = provenance.fingerprint(cmd, tree)
    args = tree / "nodes" / "cli_args.py"
    _edit(args, 'help="skip the noise generation timing"', 'help="skip the timing of noise generation"')
    _edit(tree / "nodes" / "cli.py", '    "sync-workflows": (', '    "new-bench": ("evidence.bench", "main", "x"),\n'
          '    "sync-workflows": (')
    assert provenance.fingerprint(cmd, tree) == base
    _edit(args, "type=int, default=0, help=\"base seed of every design's noise",
          "type=int, default=1, help=\"base seed of every design's noise")
    assert provenance.fingerprint(cmd, tree) != base  # a changed default changes the numbers
    weights = next((tree / "nodes" / "evidence" / "weights").glob("digits_denoiser.safetensors"))
    before = provenance.fingerprint(cmd, tree)
    weights.write_bytes(weights.read_bytes() + b"\0")
    assert provenance.fingerprint(cmd, tree) != before
    assert "nodes/evidence/weights/digits_denoiser.safetensors" in provenance.dependencies("bench", tree)
    assert "nodes/methods/sobol_rqmc.py" in provenance.dependencies("bench", tree)
    assert "nodes/cli.py" not in provenance.dependencies("bench", tree)


def test_a_block_without_provenance_or_with_an_unknown_command_is_reported(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- BEGIN:a -->\nhand-typed\n<!-- END:a -->\n<!-- BEGIN:b -->\n"
                   '<!-- provenance {"command": "make bench", "code": "0", "check": "rerun"} -->\nt\n<!-- END:b -->\n')
    problems = provenance.check_fingerprints(ROOT, [doc])
    assert len(problems) == 2
    assert "'a': no provenance line" in problems[0] and "not an antithetic-sampling command" in problems[1]


def test_a_block_checked_by_a_test_needs_that_test_to_exist(tmp_path):
    doc = tmp_path / "x.md"
    rec = '<!-- provenance {"command": "python -m pytest tests/%s", "check": "test"} -->'
    doc.write_text(f"<!-- BEGIN:a -->\n{rec % 'test_e2e_readme_estimate.py'}\nout\n<!-- END:a -->\n"
                   f"<!-- BEGIN:b -->\n{rec % 'test_gone.py'}\nout\n<!-- END:b -->\n")
    problems = provenance.check_fingerprints(ROOT, [doc])
    assert len(problems) == 1 and "'b': the test that checks it" in problems[0]


def test_replace_block_records_the_command_only_when_run_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = tmp_path / "docs" / "e.md"
    doc.parent.mkdir()
    doc.write_text("a\n<!-- BEGIN:x -->\nold\n<!-- END:x -->\nb\n")
    assert provenance.replace_block(doc, "x", "new")
    assert doc.read_text() == "a\n<!-- BEGIN:x -->\nnew\n<!-- END:x -->\nb\n"
    with provenance.command("noise-bench", ["--quick", "--readme", str(doc)]):
        assert provenance.replace_block(doc, "x", "newer\n", rerun=True)
    (block,) = provenance.read_blocks(doc)
    assert block.body == "newer" and block.record["check"] == "rerun"
    assert block.record["command"] == "antithetic-sampling noise-bench --quick --readme docs/e.md"  # relative
    assert block.record["code"] == provenance.fingerprint(block.record["command"])
    assert provenance.current_command() is None


def test_rerun_reports_a_block_that_no_longer_reproduces_with_its_diff(tree):
    cmd = "antithetic-sampling bench --no-timing --readme docs/evidence.md"
    doc = tree / "docs" / "evidence.md"
    _edit(doc, '"check": "fingerprint"', '"check": "rerun"')

    def runner(text):
        def run(command, cwd):
            assert command == cmd and (cwd / "docs" / "evidence.md").is_file()
            src = (cwd / "docs" / "evidence.md").read_text()
            (cwd / "docs" / "evidence.md").write_text(src.replace("| a | b |", text))
        return run

    assert provenance.check_rerun(cmd, tree, runner=runner("| a | b |")) == []
    problems = provenance.check_rerun(cmd, tree, runner=runner("| a | c |"))
    assert len(problems) == 1 and "no longer reproduces" in problems[0]
    assert "-| a | b |" in problems[0] and "+| a | c |" in problems[0]
    assert doc.read_text().count("| a | b |") == 1  # the published file is never touched
    assert provenance.check_rerun("antithetic-sampling bench --readme /abs/evidence.md", tree, runner=runner(""))


def test_pictures_must_be_the_ones_their_manifest_records(tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(ROOT / "nodes", root / "nodes", ignore=shutil.ignore_patterns("__pycache__"))
    images = root / provenance.IMAGES_DIR
    images.mkdir(parents=True)
    (images / "a.png").write_bytes(b"png a")
    with provenance.command("demo", ["--images", provenance.IMAGES_DIR]):
        manifest = provenance.write_image_manifest(images, {"a.png": "the a"}, {"x": 1.0}, root=root)
    assert manifest["pictures"]["a.png"]["sha256"] == hashlib.sha256(b"png a").hexdigest()
    assert json.loads((images / provenance.MANIFEST).read_text())["numbers"] == provenance.numbers_digest({"x": 1.0})
    assert provenance.check_fingerprints(root) == []
    (images / "a.png").write_bytes(b"png A")
    (images / "b.png").write_bytes(b"png b")
    problems = provenance.check_fingerprints(root)
    assert any("a.png: not the picture" in p for p in problems) and any("b.png: not in manifest.json" in p
                                                                       for p in problems), problems


def test_stamp_records_a_writer_and_an_old_tree_reads_as_stale(tree, tmp_path):
    doc = tree / "docs" / "evidence.md"
    doc.write_text("x\n<!-- BEGIN:t -->\n| measured |\n<!-- END:t -->\n", encoding="utf-8")
    assert "no provenance line" in provenance.check_fingerprints(tree, [doc])[0]
    cmd = "antithetic-sampling noise-bench --readme docs/evidence.md"
    old = tmp_path / "old"
    shutil.copytree(tree / "nodes", old / "nodes")
    _edit(old / "nodes" / "methods" / "sobol_rqmc.py", "TAIL_Z = 2.0537", "TAIL_Z = 2.05")
    provenance.stamp(doc, "t", cmd, code_root=old)  # generated by older code: stale, and the check says so
    assert doc.read_text(encoding="utf-8").endswith("| measured |\n<!-- END:t -->\n")
    assert "'t': stale" in provenance.check_fingerprints(tree, [doc])[0]
    provenance.stamp(doc, "t", cmd, code_root=tree)
    assert provenance.check_fingerprints(tree, [doc]) == []
    with pytest.raises(provenance.ProvenanceError, match="no block 'u'"):
        provenance.stamp(doc, "u", cmd)


def test_rerun_of_the_pictures_compares_the_numbers_they_draw_and_names_those_that_moved(tmp_path):
    root = tmp_path / "tree"
    images = root / provenance.IMAGES_DIR
    images.mkdir(parents=True)
    cmd = "antithetic-sampling demo --images docs/images"

    def manifest(x):
        return {"command": cmd, "code": "0", "check": "rerun", "numbers": provenance.numbers_digest({"x": x}),
                "shown": {"iid: CI width vs iid": 1.0, "RQMC: CI width vs iid": x}, "pictures": {}}

    (images / provenance.MANIFEST).write_text(json.dumps(manifest(0.42)))

    def runner(x):
        def run(command, cwd):
            (cwd / provenance.IMAGES_DIR / provenance.MANIFEST).write_text(json.dumps(manifest(x)))
        return run

    assert provenance.check_rerun(cmd, root, runner=runner(0.42)) == []
    (problem,) = provenance.check_rerun(cmd, root, runner=runner(0.57))
    assert "no longer draws the same numbers" in problem and "RQMC: CI width vs iid: 0.42 -> 0.57" in problem
    assert "iid: CI width" not in problem.replace("RQMC: CI width", "")


def test_a_block_records_the_code_its_command_started_with(tmp_path, monkeypatch, capsys):
    """A file in the command's closure edited while it runs: the block keeps the fingerprint taken at the start
    (so the check reports it stale), and the command warns."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "nodes", root / "nodes", ignore=shutil.ignore_patterns("__pycache__", "weights"))
    (root / "nodes" / "evidence" / "weights").mkdir()
    monkeypatch.setattr(provenance, "ROOT", root)
    cmd = "antithetic-sampling metric-bench"
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- BEGIN:x -->\nold\n<!-- END:x -->\n", encoding="utf-8")
    with provenance.command("metric-bench", []):
        before = provenance.fingerprint(cmd)
        target = root / "nodes" / "methods" / "diversity.py"
        target.write_text(target.read_text(encoding="utf-8") + "\n# edited mid-run\n", encoding="utf-8")
        provenance.replace_block(doc, "x", "new numbers")
    assert provenance.read_blocks(doc)[0].record["code"] == before != provenance.fingerprint(cmd)
    assert "changed while it ran" in capsys.readouterr().err
