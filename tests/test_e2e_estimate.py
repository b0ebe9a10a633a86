"""Real ComfyUI: ``antithetic-queue estimate`` on the tiny checkpoint.

- one server: an antithetic-pairs workflow whose Confidence Interval node gets the NOISE and the latent; the
  estimate runs pilot + stages until its image budget, and the reported interval equals the one recomputed here
  from the downloaded PNGs (own luma formula, own pair means, own Student-t); the noise coefficients the node
  reports are those of (z, -z) pairs; the control-variate interval equals its recomputation; a rerun resumes
  (queues nothing) and reports the same interval;
- two servers, one stopped while the estimate runs: the estimate finishes on the survivor, every prompt is done
  exactly once, and the interval again equals the recomputation from the images.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time

import numpy as np
import pytest
from antithetic_sampling.nodes.api_client.cli import main as cli_main
from antithetic_sampling.nodes.api_client.manifest import Manifest
from antithetic_sampling.nodes.local_comfy import txt2img_graph as t2i
from antithetic_sampling.nodes.local_comfy.server import ComfyServer
from antithetic_sampling.nodes.local_comfy.tiny_checkpoint import ensure_checkpoint
from antithetic_sampling.nodes.methods import noise_control_variates as ncv
from scipy import stats

pytestmark = pytest.mark.e2e

BATCH = 4  # 2 antithetic pairs per prompt
BASE_SEED = 900_000 + random.Random(12).randrange(50_000)


def _graph() -> dict:
    interval = {"class_type": "NoiseDesignConfidenceInterval", "inputs": {
        "images": "@image", "design": "antithetic pairs", "group_size": 2, "layout": "interleaved",
        "statistic": "mean brightness", "channel": 0, "threshold": 0.5, "confidence": 0.95,
        "noise": "@noise", "latent": "@latent"}}
    noise = {"class_type": "AntitheticLatentNoise",
             "inputs": {"noise_seed": BASE_SEED, "group_size": 2, "layout": "interleaved"}}
    return t2i.txt2img_graph(noise=noise, batch_size=BATCH, width=64, height=64, steps=2,
                            filename_prefix="e2e_estimate", extra_nodes={"interval": interval})


def _recompute(out, confidence=0.95):
    """Brightness per image from the PNGs on disk, prompts in seed order -> pair means -> Student-t interval."""
    from PIL import Image

    done = Manifest(out / "manifest.jsonl").done()
    recs = sorted(done.values(), key=lambda r: r["params"]["noise_seed"])
    values, coefs, prompts = [], [], []
    for p, rec in enumerate(recs):
        files = [f for f in rec["files"] if f["node"] == t2i.SAVE and f["type"] == "output"]
        assert len(files) == BATCH
        for f in files:
            rgb = np.asarray(Image.open(out / f["path"]).convert("RGB"), dtype=np.float64) / 255.0
            values.append(float((0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).mean()))
        coefs.append(np.asarray(rec["ui"]["interval"]["noise_coefficients"], dtype=np.float64))
        prompts += [p] * (BATCH // 2)
    v = np.asarray(values)
    pairs = v.reshape(-1, 2).mean(axis=1)
    g = pairs.shape[0]
    hw = stats.t.ppf(0.5 + confidence / 2, g - 1) * pairs.std(ddof=1) / math.sqrt(g)
    c = np.concatenate(coefs).reshape(-1, 2, coefs[0].shape[1])
    return recs, pairs, hw, c, np.asarray(prompts), v.reshape(-1, 2)


def _run(wf, out, servers, *extra):
    # --interval t: these runs check the t interval against its recomputation (auto may switch on skew)
    args = ["estimate", str(wf), "--target", "1e-7", "--max-images", "32", "--pilot-units", "4", "--out", str(out),
            "--no-progress", "--seed-start", str(BASE_SEED), "--interval", "t", *extra]
    for s in servers:
        args += ["--server", s]
    return cli_main(args)


def test_estimate_interval_equals_recomputation_from_images(comfy_server, tmp_path):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(_graph()))
    out = tmp_path / "out"
    assert _run(wf, out, [comfy_server.url], "--control-variates", "off") == 0
    res = json.loads((out / "estimate.json").read_text())
    recs, pairs, hw, coefs, _, _ = _recompute(out)
    assert res["reason"] == "budget spent" and res["images"] == 32 and res["units"] == 16 and len(recs) == 8
    assert len(res["stages"]) >= 2 and res["stages"][0]["images"] == 8  # pilot of 4 pairs, then a projected stage
    assert res["estimate"] == pytest.approx(pairs.mean(), rel=1e-12)
    assert res["half_width"] == pytest.approx(hw, rel=1e-9)
    assert res["low"] == pytest.approx(pairs.mean() - hw, rel=1e-9)
    assert res["dof"] == 15 and res["iid_images_same_width"] > 0
    assert (out / res["plot"]).stat().st_size > 1000
    # the node's noise coefficients are those of antithetic pairs (z, -z): every pair sums to zero
    assert coefs.shape == (16, 2, 24)
    np.testing.assert_allclose(coefs[:, 0], -coefs[:, 1], atol=1e-5)
    assert np.abs(coefs).max() > 0.1
    m = Manifest(out / "manifest.jsonl")
    assert [r for r in m.records if r.get("type") == "estimate_result"]
    n_records = len(m.records)

    # resume: the same command queues nothing new and reports the same interval
    assert _run(wf, out, [comfy_server.url], "--control-variates", "off") == 0
    again = json.loads((out / "estimate.json").read_text())
    assert again["half_width"] == res["half_width"] and again["estimate"] == res["estimate"]
    m2 = Manifest(out / "manifest.jsonl")
    assert len(m2.job_records("queued")) == len(m.job_records("queued"))
    assert len(m2.records) > n_records  # only run/estimate records were added

    # control variate on the same images: equals the cross-fitted interval recomputed here
    out_cv = tmp_path / "out_cv"
    import shutil

    shutil.copytree(out, out_cv)
    assert _run(wf, out_cv, [comfy_server.url], "--control-variates", "on") == 0
    cv = json.loads((out_cv / "estimate.json").read_text())
    _, pairs, _, coefs, prompts, items = _recompute(out_cv)
    ref, info = ncv.cross_fitted_interval(pairs, coefs, prompts, 0.95, item_values=items)
    assert cv["control_variates"] and cv["dof"] == 14 and cv["control_variate"]["folds"] == info["folds"]
    assert cv["estimate"] == pytest.approx(ref.estimate, rel=1e-9, abs=1e-12)
    assert cv["half_width"] == pytest.approx(ref.half_width, rel=1e-9)

    # --control-variates auto: the pilot (4 pairs) projects the whole budget (32 images) against the control
    # variate's least 16 (its pilot of 4 pairs and one prompt), so it switches on after the pilot and reports the
    # same interval as `on` on the same images
    out_auto = tmp_path / "out_auto"
    shutil.copytree(out, out_auto)
    assert _run(wf, out_auto, [comfy_server.url], "--control-variates", "auto") == 0
    auto = json.loads((out_auto / "estimate.json").read_text())
    assert [s["control_variate"] for s in auto["stages"]][:2] == [True, True] and auto["control_variates"]
    assert (auto["estimate"], auto["half_width"], auto["images"]) == (cv["estimate"], cv["half_width"], cv["images"])


def test_estimate_over_two_servers_with_one_stopped(comfy_server, tmp_path):
    cenv = comfy_server.env
    ckpt, _ = ensure_checkpoint(cenv)
    second = ComfyServer(cenv, tmp_path / "second", ckpt)
    second.start()
    wf = tmp_path / "wf.json"
    g = _graph()
    g["noise"]["inputs"]["noise_seed"] = BASE_SEED + 1000
    wf.write_text(json.dumps(g))
    out = tmp_path / "out"
    stopped = {}

    def stop_second_midway():
        path = out / "manifest.jsonl"
        deadline = time.time() + 600
        while time.time() < deadline and not stopped:
            if path.exists():
                recs = Manifest(path).job_records("done")
                if len(recs) >= 3 and any(r["server"] == second.url for r in recs):
                    stopped["done_before"] = len(recs)
                    second.stop()
                    stopped["at"] = time.time()
                    return
            time.sleep(0.2)

    watcher = threading.Thread(target=stop_second_midway, daemon=True)
    watcher.start()
    try:
        code = cli_main(["estimate", str(wf), "--target", "1e-7", "--max-images", "48", "--pilot-units", "4",
                         "--out", str(out), "--no-progress", "--seed-start", str(BASE_SEED + 1000),
                         "--control-variates", "off", "--interval", "t", "--server", comfy_server.url,
                         "--server", second.url])
    finally:
        watcher.join(timeout=5)
        second.stop()
    assert stopped, "the second server was never stopped while the estimate ran"
    assert code == 0
    res = json.loads((out / "estimate.json").read_text())
    recs, pairs, hw, _, _, _ = _recompute(out)
    assert res["images"] == 48 and len(recs) == 12
    assert sorted(r["params"]["noise_seed"] for r in recs) == list(range(BASE_SEED + 1000, BASE_SEED + 1012))
    assert {r["server"] for r in recs} == {comfy_server.url, second.url}
    m = Manifest(out / "manifest.jsonl")
    assert len({r["job"] for r in m.job_records("done")}) == len(m.job_records("done")) == 12  # each exactly once
    assert res["estimate"] == pytest.approx(pairs.mean(), rel=1e-12)
    assert res["half_width"] == pytest.approx(hw, rel=1e-9)


def test_interval_node_per_image_values_and_width_ratio(comfy_server):
    """The interval node's new inputs on a real server: per-image values from another node's STRING, the noise
    coefficients of RQMC noise, and the report's iid half-width on N - 1 dof with the width ratio."""
    values = [0.1, 0.4, 0.2, 0.5, 0.3, 0.9, 0.6, 0.7]
    interval = {"class_type": "NoiseDesignConfidenceInterval", "inputs": {
        "images": "@image", "design": "RQMC replicates", "group_size": 4, "layout": "interleaved",
        "statistic": "per-image values", "channel": 0, "threshold": 0.5, "confidence": 0.95,
        "values": ["scores", 0], "noise": "@noise", "latent": "@latent"}}
    scores = {"class_type": "PrimitiveString", "inputs": {"value": json.dumps(values)}}
    noise = {"class_type": "SobolRQMCLatentBatch", "inputs": {"noise_seed": BASE_SEED + 5000, "points_per_replicate": 4,
                                                                "mode": "auto", "spectral_coefficients": 64,
                                                                "antithetic": False}}
    g = t2i.txt2img_graph(noise=noise, batch_size=8, width=64, height=64, steps=2, filename_prefix="e2e_est_node",
                         extra_nodes={"scores": scores, "interval": interval})
    hist = comfy_server.run(g)
    out = ComfyServer.outputs(hist)["interval"]
    assert out["values"] == pytest.approx(values)
    coefs = np.asarray(out["noise_coefficients"])
    assert coefs.shape == (8, 24) and np.abs(coefs).max() > 0.1
    text = out["text"][0]
    reps = np.asarray(values).reshape(2, 4).mean(axis=1)
    assert f"{reps.mean():.5g}" in text and "narrower than iid at the same N" in text



def _flag_graph(seed: int, threshold: float) -> dict:
    """Antithetic pairs; every image shrunk to one pixel (core ImageScale, area) and read by the interval node as
    'fraction above threshold': a per-image 0/1 value (is the image's mean colour brighter than the threshold?)."""
    tiny = {"class_type": "ImageScale", "inputs": {"image": "@image", "upscale_method": "area", "width": 1,
                                                   "height": 1, "crop": "disabled"}}
    interval = {"class_type": "NoiseDesignConfidenceInterval", "inputs": {
        "images": ["tiny", 0], "design": "antithetic pairs", "group_size": 2, "layout": "interleaved",
        "statistic": "fraction above threshold", "channel": 0, "threshold": threshold, "confidence": 0.95}}
    noise = {"class_type": "AntitheticLatentNoise",
             "inputs": {"noise_seed": seed, "group_size": 2, "layout": "interleaved"}}
    return t2i.txt2img_graph(noise=noise, batch_size=BATCH, width=64, height=64, steps=2,
                            filename_prefix="e2e_estimate_flag", extra_nodes={"tiny": tiny, "interval": interval})


def test_estimate_value_on_a_per_image_flag_reports_the_betting_interval(comfy_server, tmp_path):
    """`estimate --value interval.values` on a real server where every image's value is 0 or 1: the default
    switches to the betting confidence sequence, never reports zero width, and its interval equals the one
    recomputed here from the values in the manifest (same stages, same aimed bets, same budget horizon)."""
    from antithetic_sampling.nodes.methods import betting_confidence as bc

    seed = BASE_SEED + 2000
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(_flag_graph(seed, 0.25)))
    out = tmp_path / "out"
    code = cli_main(["estimate", str(wf), "--value", "interval.values", "--target", "0.05", "--max-images", "48",
                     "--pilot-units", "4", "--out", str(out), "--no-progress", "--seed-start", str(seed),
                     "--control-variates", "off", "--no-plot", "--server", comfy_server.url])
    assert code == 0
    res = json.loads((out / "estimate.json").read_text())
    recs = sorted(Manifest(out / "manifest.jsonl").done().values(), key=lambda r: r["params"]["noise_seed"])
    values = np.concatenate([np.asarray(r["ui"]["interval"]["values"], dtype=np.float64) for r in recs])
    assert set(np.unique(values)) <= {0.0, 1.0} and values.shape[0] == res["images"]
    assert res["interval_method"] == "betting confidence sequence"
    assert res["interval_switch"].startswith("few distinct values") and res["value_range"] == [0.0, 1.0]
    assert res["high"] - res["low"] > 0
    pairs = values.reshape(-1, 2).mean(axis=1)
    cs = bc.BettingConfidenceSequence(0.0, 1.0, 0.95, horizon=48 // 2)  # the budget in units
    seen = 0
    for stage in res["stages"]:
        cs.extend(pairs[seen:stage["units"]], goal=0.05)
        seen = stage["units"]
        if stage["interval"] == "betting confidence sequence":
            r = cs.interval()
            assert stage["half_width"] == pytest.approx(r.half_width, rel=1e-12, abs=1e-15)
    assert seen == pairs.shape[0]
    assert (res["low"], res["high"]) == (pytest.approx(r.low, abs=1e-12), pytest.approx(r.high, abs=1e-12))
    assert res["estimate"] == pytest.approx(pairs.mean(), rel=1e-12)
    # the same values rejected by a range that excludes 1: a named error, no interval
    code = cli_main(["estimate", str(wf), "--value", "interval.values", "--range", "0", "0.5", "--target", "0.05",
                     "--max-images", "48", "--pilot-units", "4", "--out", str(out), "--no-progress",
                     "--seed-start", str(seed), "--control-variates", "off", "--no-plot",
                     "--server", comfy_server.url])
    assert code == 2 if values.max() > 0.5 else code == 0


def test_interval_node_never_says_plus_minus_zero_for_a_rare_outcome(comfy_server):
    """The interval node on 8 independent images whose per-image value is 0 every time: auto reports the exact
    binomial interval [0, 1 - 0.025^(1/8)], not ± 0; the t choice would be ± 0."""
    values = [0] * 8
    interval = {"class_type": "NoiseDesignConfidenceInterval", "inputs": {
        "images": "@image", "design": "iid", "group_size": 2, "layout": "interleaved",
        "statistic": "per-image values", "channel": 0, "threshold": 0.5, "confidence": 0.95,
        "values": ["scores", 0], "interval": "auto"}}
    scores = {"class_type": "PrimitiveString", "inputs": {"value": json.dumps(values)}}
    noise = {"class_type": "RandomNoise", "inputs": {"noise_seed": BASE_SEED + 6000}}
    g = t2i.txt2img_graph(noise=noise, batch_size=8, width=64, height=64, steps=2, filename_prefix="e2e_est_rare",
                         extra_nodes={"scores": scores, "interval": interval})
    text = ComfyServer.outputs(comfy_server.run(g))["interval"]["text"][0]
    assert "Clopper-Pearson" in text
    assert f"{1 - 0.025 ** (1 / 8):.5g}" in text
