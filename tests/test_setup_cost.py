"""``antithetic-sampling setup-bench``: its docs/testing.md block is rendered from what it measured (the minutes-long
measurement itself runs by hand: two fresh clones, two venvs)."""

from __future__ import annotations

from pathlib import Path

from antithetic_sampling.nodes.evidence import setup_cost

ROOT = Path(__file__).resolve().parents[1]


def _row(setup_s, venv_bytes, dists, **extra):
    return {"commit": "abc1234", "set-up_s": setup_s, "load": [1.0, 2.5], "torch": "2.13.0+cpu", "cuda": None,
            "python": "3.11.7", "dists": dists, "venv_bytes": venv_bytes, **extra}


def test_block_states_both_set_ups_with_the_measured_numbers(tmp_path):
    results = {"demo": _row(123.4, 1_198_206_783, 26, demo_s=41.2), "test": _row(456.7, 2_345_678_901, 150)}
    text = setup_cost.render(results, [])
    assert "| `make demo` | `setup-demo`" in text and "| 123 s | demo 41 s | 1,198 MB | 26 |" in text
    assert "| `make test` | `setup`" in text and "| 457 s | (the tests) | 2,346 MB | 150 |" in text
    assert "torch 2.13.0+cpu (CPU build)" in text and "load average 1.0–2.5" in text and "abc1234" in text
    doc = tmp_path / "testing.md"
    doc.write_text("a\n<!-- BEGIN:setup-cost -->\nold\n<!-- END:setup-cost -->\nb\n")
    assert setup_cost.replace_block(doc, text)
    assert doc.read_text() == f"a\n<!-- BEGIN:setup-cost -->\n{text}\n<!-- END:setup-cost -->\nb\n"


def test_testing_doc_has_the_block_filled():
    doc = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    block = doc.split("<!-- BEGIN:setup-cost -->", 1)[1].split("<!-- END:setup-cost -->", 1)[0]
    assert "`antithetic-sampling setup-bench" in block and "| `make demo` |" in block and "| `make test` |" in block
