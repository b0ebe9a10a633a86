"""``antithetic-sampling soak --quick`` against real ComfyUI servers (it starts its own), plus its checker.

The e2e test runs every phase on 6 prompts: one server, then two with one SIGKILLed halfway, then (where Ray is
installed) two Ray actors with one actor's ComfyUI SIGKILLed halfway. It reads the soak's
JSON and re-checks its claims from the manifests and files on disk: every job done exactly once with all its
images, the prompts of the killed server finished on the survivor, the README block rewritten and nothing else.
No wall-clock assertions. The checker test feeds ``verify_manifest`` broken manifests: the soak's checks can fail.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from antithetic_sampling.nodes.api_client import soak
from antithetic_sampling.nodes.api_client.manifest import Manifest

README = "intro\n\n<!-- BEGIN:soak-results -->\n(old table)\n<!-- END:soak-results -->\n\nrest\n"


@pytest.mark.e2e
@pytest.mark.slow
def test_soak_quick_every_prompt_exactly_once(comfy_env, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    out = tmp_path / "soak"
    code = soak.main(["--quick", "--out", str(out), "--readme", str(readme), "--no-progress"])
    result = json.loads((out / "soak.json").read_text(encoding="utf-8"))
    failed = [c for c in result["checks"] if not c["ok"]]
    assert code == 0 and result["ok"] and not failed, failed
    n = soak.QUICK_PROMPTS
    assert result["prompts"] == n and result["passed"] == len(result["checks"]) >= 20
    p1, p2 = result["phase1"], result["phase2"]

    # the claims, re-checked from the manifests and the downloaded files
    metric = next(k for k, v in soak.soak_workflow().items() if v["class_type"] == "PairDiversityMetric")
    for folder in ("phase1-single", "phase2-failover"):
        m = Manifest(out / folder / "manifest.jsonl")
        done = m.job_records("done")
        assert len(done) == n and len({r["job"] for r in done}) == n, folder
        assert not m.job_records("error"), folder
        for rec in done:
            files = [f for f in rec["files"] if f["type"] == "output"]
            assert len(files) == result["images_per_prompt"] == 2 * result["batch"]
            for f in files:
                assert hashlib.sha256((out / folder / f["path"]).read_bytes()).hexdigest() == f["sha256"]
            assert isinstance(rec["numbers"][f"{metric}.text.Pearson correlation"], float)
    assert set(Manifest(out / "phase1-single" / "manifest.jsonl").done()) == set(
        Manifest(out / "phase2-failover" / "manifest.jsonl").done())  # the same jobs in both phases

    assert p1["done"] == n and p1["failed"] == 0 and p1["alive_after"]
    assert p1["latency_s"]["n"] == n
    rss = p1["rss_mib"]
    assert 0 < rss["idle_before"] <= rss["peak"] and 0 < rss["after_all"] <= rss["peak"]

    killed = p2["killed"]
    assert killed["returncode"] == -9 and 1 <= killed["done_at_kill"] < n
    m2 = Manifest(out / "phase2-failover" / "manifest.jsonl")
    by_pid = {r["prompt_id"]: r["job"] for r in m2.job_records("queued")}
    done2 = m2.done()
    for pid in killed["running"] + killed["pending"]:  # what the killed server held finished on the survivor
        rec = done2[by_pid[pid]]
        assert rec["server"] == p2["servers"]["survivor"] or rec["prompt_id"] == pid
    requeued = m2.job_records("requeued")
    assert len(requeued) == len(p2["requeued_jobs"])
    assert all(r["server"] == p2["servers"]["killed"] for r in requeued)
    assert sum(p2["done_by_role"].values()) == n and p2["survivor_jobs_run_twice"] == 0
    assert p2["identical_to_single"] == n and p2["survivor_alive_after"]

    p3 = result["phase3"]
    try:
        import ray  # noqa: F401
    except ImportError:
        assert p3 is None and "Ray is not installed" in result["ray_skipped"]
    else:  # the Ray phase: two actors, one actor's ComfyUI SIGKILLed halfway
        m3 = Manifest(out / "phase3-ray" / "manifest.jsonl")
        done3 = m3.done()
        assert set(done3) == set(Manifest(out / "phase1-single" / "manifest.jsonl").done())
        assert len(m3.job_records("done")) == n and p3["duplicates"] == 0 and p3["failed"] == 0
        assert 1 <= p3["killed"]["done_at_kill"] < n and p3["killed"]["returncode"] == -9
        requeued3 = m3.job_records("requeued")
        assert requeued3 and all(r["server"] == p3["killed_server"] for r in requeued3)
        assert all(done3[r["job"]]["server"] != p3["killed_server"] for r in requeued3)
        assert p3["identical_to_single"] == n and sum(p3["done_by_role"].values()) == n
        assert "| Ray: `antithetic-queue --ray" in (out / "soak.md").read_text(encoding="utf-8")

    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n\n<!-- BEGIN:soak-results -->\n")
    assert text.endswith("<!-- END:soak-results -->\n\nrest\n")
    assert "(old table)" not in text and (out / "soak.md").read_text(encoding="utf-8").strip() in text
    assert f"{result['passed']}/{len(result['checks'])} checks passed" in text


def _manifest(tmp_path, jobs: dict[str, list[dict]]) -> Manifest:
    m = Manifest(tmp_path / "manifest.jsonl")
    m.append({"type": "run", "run": "r1"})
    for i, (key, recs) in enumerate(jobs.items()):
        for rec in recs:
            m.append({"type": "job", "job": key, "index": i, "repeat": 0, "params": {}, "run": "r1", **rec})
    return m


def test_checker_catches_duplicates_missing_jobs_and_broken_images(tmp_path):
    img = tmp_path / "a" / "1.png"
    img.parent.mkdir()
    img.write_bytes(b"png")
    good = {"type": "output", "path": "a/1.png", "sha256": hashlib.sha256(b"png").hexdigest()}
    bad = {**good, "sha256": "0" * 64}

    def done(pid, files):
        return {"status": "done", "prompt_id": pid, "server": "s", "files": files, "numbers": {},
                "wall_s": 1.0, "started_at": 1.0, "finished_at": 2.0}

    clean = _manifest(tmp_path, {"a": [{"status": "queued", "prompt_id": "p1"}, done("p1", [good])],
                                 "b": [{"status": "queued", "prompt_id": "p2"}, done("p2", [good])]})
    checks: list[dict] = []
    res = soak.verify_manifest(clean.path, tmp_path, 2, 1, None, checks)
    assert checks and all(c["ok"] for c in checks), checks
    assert res["done"] == 2 and res["latency_s"]["median"] == 1.0

    clean.path.unlink()
    broken = _manifest(tmp_path, {
        "a": [done("p1", [good]), done("p3", [good])],  # the same job collected twice
        "b": [done("p2", [bad])],  # an image that is not what was recorded
        "c": [{"status": "queued", "prompt_id": "p4"}],  # never finished
        "d": [{"status": "error", "error": {"message": "node 16 failed"}}],
    })
    checks = []
    res = soak.verify_manifest(broken.path, tmp_path, 4, 1, None, checks)
    failed = {c["check"] for c in checks if not c["ok"]}
    assert {"every job done exactly once", "0 failures", "every image downloaded and intact"} <= failed
    assert res["duplicates"] == 1 and res["missing"] == 2 and res["failed"] == 1


def test_percentile_matches_linear_interpolation():
    assert soak.percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    assert soak.percentile(list(range(101)), 50) == 50
    assert soak.summary([3.0, 1.0, 2.0]) == {"n": 3, "mean": 2.0, "median": 2.0, "p95": 2.9, "min": 1.0, "max": 3.0}
