"""Smoke test of ``antithetic-sampling estimate-bench`` on tiny pools: every design/target/estimator row, the rule
chosen on the tuning repetitions, the generated verdicts and the evidence block. Numbers are not asserted (the
bench measures them); only their structure and their internal consistency."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nodes.api_client import estimate as est
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
    assert len(res["rows"]) == len(eb.POOL_DESIGNS) * len(eb.TARGETS) * len(eb.ESTIMATORS)
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
    assert "(stale table)" not in text and "| brightness | ±0.001 |" in text and "Fewest images at ±0.001" in text
    assert (tmp_path / "estimate_pool").is_dir()  # pools cached for the next run
    assert "Rule settings on the tuning repetitions" in text and "Coverage of the final interval, the defaults" in text
    head = summary.read_text(encoding="utf-8")  # the README's short version: every estimator at ±0.001
    assert "(stale headline)" not in head and head.count(" | ") >= 2 * len(eb.POOL_DESIGNS) and "Fewest images: " in head
    # --render-only rewrites the block from the saved JSON, rerunning nothing
    doc.write_text("<!-- BEGIN:estimate-results -->\nold\n<!-- END:estimate-results -->\n", encoding="utf-8")
    (tmp_path / "estimate_pool").rename(tmp_path / "moved_pools")
    assert eb.main(["--out", str(tmp_path), "--readme", str(doc), "--render-only"]) == 0
    assert doc.read_text(encoding="utf-8").count("| brightness | ±0.001 |") == len(eb.POOL_DESIGNS) * len(eb.ESTIMATORS)
    assert not (tmp_path / "estimate_pool").exists()


def test_fresh_mode_replicates_rows_on_new_images_and_flags_disagreement(tmp_path):
    """``--fresh N``: every row on freshly sampled units and on the pool, the comparison block written."""
    from nodes.evidence import estimate_fresh as ef

    doc = tmp_path / "evidence.md"
    doc.write_text("a\n<!-- BEGIN:estimate-fresh -->\n(stale)\n<!-- END:estimate-fresh -->\nb\n", encoding="utf-8")
    args = ["--fresh", "3", "--pool", "2048", "--fresh-truth", "1024", "--out", str(tmp_path)]
    assert eb.main(args) == 2  # no pool bench result to take the rules from: refused in one line
    # the rules come from the pool bench's result (the ones it chose), not from a copy
    rules = [{"design": d, "control_variate": cv, "pilot_units": 8 + 8 * cv, "aim": 1.0 - 0.1 * (d == "k4")}
             for d in eb.POOL_DESIGNS for cv in (False, True)]
    (tmp_path / "estimate_bench.json").write_text(json.dumps({"rule": {"per_design": rules}}), encoding="utf-8")
    code = eb.main(["--fresh", "3", "--pool", "2048", "--fresh-truth", "1024", "--fresh-fixed", "2",
                    "--fresh-rows", "k4,k4+cv", "--out", str(tmp_path), "--readme", str(doc)])
    assert code == 0
    res = json.loads((tmp_path / "estimate_fresh.json").read_text())
    assert [(r["design"], r["control_variate"]) for r in res["rows"]] == [("k4", False), ("k4", True)]
    for r in res["rows"]:
        assert r["pool"]["reps"] == r["fresh"]["reps"] == 3
        assert 0 <= r["fresh"]["fixed_size_coverage"] <= 1 and r["fixed_units"] % 2 == 0
        assert (r["pilot_units"], r["aim"]) == (16 if r["control_variate"] else 8, 0.9)
    assert res["truth"]["images"] >= 1024 and res["truth"]["brightness"]["se"] > 0
    # the fresh units of one row are all new: the stream sampled at least what the estimates used
    used = sum(r["fresh"]["mean_images"] * 3 for r in res["rows"])
    assert res["images_generated"] - res["truth"]["images"] >= used
    text = doc.read_text(encoding="utf-8")
    assert "(stale)" not in text and "| K-groups K=4 + cv (16, 0.9) |" in text and "Mann-Whitney" in text
    assert ef.parse_rows("headline") and ef.parse_rows("k4+cv,rqmc+auto") == [("k4", True), ("rqmc", "auto")]
    with pytest.raises(ValueError, match="fresh-rows"):
        ef.parse_rows("k8+cv")


def test_fresh_units_are_new_and_disjoint_from_the_pools():
    from nodes.evidence import estimate_fresh as ef

    src = ef.FreshUnits("k4", seed=0)
    a, b = src.take(5), src.take(5)
    assert not np.isin(a["coefs"][:, :, 0], b["coefs"][:, :, 0]).any()  # never handed out twice
    draw = src.draw_for("brightness")
    y3, items3, _ = draw(3)
    y6, items6, c6 = draw(6)  # the run's first units stay, new ones are appended
    assert np.array_equal(items6[:3], items3) and np.allclose(y6, items6.mean(1)) and c6.shape[:2] == (6, 4)
    # every pool chunk seed (seed * 1_000_003 + images) for seeds < 10**6 lies below every fresh seed
    assert (10**6 + 3) * 1_000_003 + 10**9 < ef.fresh_seed(0, 0, 0) < ef.fresh_seed(0, 1, 0) < ef.fresh_seed(1, 0, 0)


def test_two_proportion_z_flags_five_percent_under_the_null():
    from nodes.evidence import estimate_fresh as ef

    rng = np.random.default_rng(3)
    n = 400
    z = [ef.two_proportion_z(rng.binomial(n, 0.94) / n, n, rng.binomial(n, 0.94) / n, n) for _ in range(4000)]
    assert 0.035 <= np.mean(np.abs(z) > 1.96) <= 0.065  # nominal 0.05; binomial SE 0.0035
    # a real gap of 0.03 at 800 / 600 repetitions (the fresh 0.926 against the bench's 0.957) is flagged
    assert abs(ef.two_proportion_z(0.926, 800, 0.957, 600)) > 1.96


def test_run_rule_auto_is_the_design_alone_or_the_control_variate_by_the_pilot_projection():
    """--control-variates auto after the pilot: below the control variate's least images it is exactly the design
    alone's run, above it exactly the control variate's run on the same units (its pilot contains the other)."""
    rng = np.random.default_rng(11)
    g_max, k = 4000, 4
    coefs = rng.standard_normal((g_max, k, 24))
    items = 0.3 + 0.05 * (coefs[:, :, 0] ** 2 - 1) + 0.02 * rng.standard_normal((g_max, k))

    def draw(g):
        return items[:g].mean(1), items[:g], coefs[:g]

    for target, expect_cv in ((0.05, False), (0.002, True)):
        auto = eb.run_rule(draw, k, 0.3, target, "auto", 16000, 8, 1.0, (16, 1.0))
        alone = eb.run_rule(draw, k, 0.3, target, False, 16000, 8, 1.0)
        cv = eb.run_rule(draw, k, 0.3, target, True, 16000, 16, 1.0)
        assert auto["control_variate_used"] is expect_cv
        assert auto["control_variate_used"] == est.auto_control_variate(alone["pilot_projection"], k, 2, 16)
        same = cv if expect_cv else alone
        assert (auto["images"], auto["estimate"], auto["half_width"]) == (same["images"], same["estimate"],
                                                                          same["half_width"])


def test_auto_control_variate_threshold_is_the_cv_routes_least_images():
    # K-groups K=4, 2 groups per prompt, control-variate pilot 16 groups: it cannot stop before 18 groups = 72 images
    assert not est.auto_control_variate(72, 4, 2, 16) and est.auto_control_variate(73, 4, 2, 16)
    # iid, 8 per prompt, pilot 8: 16 images; a pilot below 4 units is raised to 4 and rounded up to a prompt
    assert not est.auto_control_variate(16, 1, 8, 8) and est.auto_control_variate(17, 1, 8, 8)
    assert not est.auto_control_variate(16, 2, 4, 2) and est.auto_control_variate(17, 2, 4, 2)


def test_workers_do_not_change_the_numbers(tmp_path, monkeypatch):
    """Every cell seeds its own generator from its key: one process or several give the same rows and rules."""
    monkeypatch.setattr(eb, "RULE_GRID", ((8, 1.0), (16, 0.9)))
    args = ["--pool", "2048", "--reps", "4", "--design-reps", "4", "--tune-reps", "3", "--max-images", "1024",
            "--out", str(tmp_path)]
    results = []
    for workers in ("1", "2"):
        assert eb.main([*args, "--workers", workers]) == 0
        res = json.loads((tmp_path / "estimate_bench.json").read_text())
        results.append({k: res[k] for k in ("rows", "rule", "rule_grid", "cv_default")})
    assert results[0] == results[1]


def test_design_alone_runs_the_clients_default_interval():
    """The bench's design-alone rows are what antithetic-queue estimate does by default: its --interval and
    --range defaults, on the same driver (a 0/1 flag switches to the betting sequence, as the client's would)."""
    ns = est.build_parser().parse_args(["w.json", "--target", "0.01"])
    assert ns.interval == eb.INTERVAL and est.parse_range(ns.range) == eb.VALUE_RANGE
    rng = np.random.default_rng(4)
    items = (rng.random((4000, 1)) < 0.05).astype(np.float64)  # a rare 0/1 flag, one image per unit

    def draw(g):
        return items[:g].mean(1), items[:g], np.zeros((g, 1, 1))

    r = eb.run_rule(draw, 1, 0.05, 0.02, False, 4000, 8, 1.0)
    assert r["interval"] == "betting" and r["images"] <= 4000 and r["half_width"] > 0
