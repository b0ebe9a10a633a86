"""Smoke test of ``antithetic-sampling estimate-bench`` on tiny pools: every design/target/estimator row, the rule
chosen on the tuning repetitions, the generated verdicts and the evidence block. Numbers are not asserted (the
bench measures them); only their structure and their internal consistency."""

from __future__ import annotations

import json

from nodes.evidence import estimate_bench as eb


def test_estimate_bench_smoke(tmp_path, monkeypatch):
    monkeypatch.setattr(eb, "RULE_GRID", ((8, 1.0), (8, 0.9)))
    doc = tmp_path / "evidence.md"
    doc.write_text("a\n<!-- BEGIN:estimate-results -->\n(stale table)\n<!-- END:estimate-results -->\nb\n", encoding="utf-8")
    summary = tmp_path / "README.md"
    summary.write_text("<!-- BEGIN:estimate-headline -->\n(stale headline)\n<!-- END:estimate-headline -->\n", encoding="utf-8")
    code = eb.main(["--pool", "2048", "--reps", "6", "--design-reps", "6", "--tune-reps", "4", "--max-images", "2048",
                    "--out", str(tmp_path), "--readme", str(doc), "--summary", str(summary)])
    assert code == 0
    res = json.loads((tmp_path / "estimate_bench.json").read_text())
    assert len(res["rows"]) == len(eb.POOL_DESIGNS) * len(eb.TARGETS) * 2
    rules = res["rule"]["per_design"]
    assert {(r["design"], r["control_variate"]) for r in rules} == {(d, cv) for d in eb.POOL_DESIGNS for cv in (0, 1)}
    for rule in rules:  # each pick is one of its own grid rows
        mine = [g for g in res["rule_grid"] if g["design"] == rule["design"]
                and g["control_variate"] == rule["control_variate"]]
        assert len(mine) == 2 and (rule["pilot_units"], rule["aim"]) in {(g["pilot_units"], g["aim"]) for g in mine}
    assert set(res["cv_default"]) == set(eb.POOL_DESIGNS)
    for r in res["rows"]:
        assert r["reps"] == 6 and 0 <= r["coverage"] <= 1 and r["median_images"] <= r["p90_images"] <= 2048
        assert (2 * r["median_images"]) % 8 == 0  # whole prompts of 8 images (median of an even count: a midpoint)
    iid = {(r["statistic"], r["target"]): r["median_images"] for r in res["rows"]
           if r["design"] == "iid" and not r["control_variate"]}
    for r in res["rows"]:
        assert abs(r["fewer_than_iid"] - iid[(r["statistic"], r["target"])] / r["median_images"]) < 1e-9
    text = doc.read_text(encoding="utf-8")
    assert "(stale table)" not in text and "| brightness | ±0.001 |" in text and "Best estimator at ±0.001" in text
    assert (tmp_path / "estimate_pool").is_dir()  # pools cached for the next run
    assert "Rule settings on the tuning repetitions" in text and "Coverage of the final interval, the defaults" in text
    head = summary.read_text(encoding="utf-8")  # the README's short version: every estimator at ±0.001
    assert "(stale headline)" not in head and head.count(" | ") >= 2 * len(eb.POOL_DESIGNS) and "Best: " in head
    # --render-only rewrites the block from the saved JSON, rerunning nothing
    doc.write_text("<!-- BEGIN:estimate-results -->\nold\n<!-- END:estimate-results -->\n", encoding="utf-8")
    (tmp_path / "estimate_pool").rename(tmp_path / "moved_pools")
    assert eb.main(["--out", str(tmp_path), "--readme", str(doc), "--render-only"]) == 0
    assert doc.read_text(encoding="utf-8").count("| brightness | ±0.001 |") == len(eb.POOL_DESIGNS) * 2
    assert not (tmp_path / "estimate_pool").exists()
