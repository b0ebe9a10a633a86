"""Real ComfyUI: the batch-queue client (``antithetic-queue``) against the session server.

- a seed sweep over an antithetic workflow (Antithetic Latent Noise -> SamplerCustomAdvanced, Pair Diversity
  Metric and Confidence Interval on the decoded batch) collects every image and every metric number;
- a run cancelled halfway (as Ctrl-C does) deletes/interrupts only its own prompts; the rerun with the same
  manifest finishes the rest: nothing lost, nothing run twice;
- a broken workflow gives the per-node, per-input error, and a failing node the execution error;
- a UI-format workflow (reroute, bypassed node, "fixed" after the seed) is converted through the live /object_info.
"""

from __future__ import annotations

import json
import random

import pytest
from antithetic_sampling.nodes.api_client.cli import main as cli_main
from antithetic_sampling.nodes.api_client.client import BatchRunner
from antithetic_sampling.nodes.api_client.jobs import build_jobs, parse_sweep
from antithetic_sampling.nodes.api_client.manifest import Manifest
from antithetic_sampling.nodes.local_comfy import txt2img_graph as t2i
from antithetic_sampling.nodes.local_comfy.paths import CHECKPOINT_NAME

pytestmark = pytest.mark.e2e

BATCH = 4
# seeds no other e2e test uses, so nothing is served from the shared server's cache
BASE_SEED = 700_000 + random.Random(6).randrange(100_000)


def _has(server, cls: str) -> bool:
    try:
        server.object_info(cls)
        return True
    except KeyError:
        return False


def _graph(server, steps: int = 2, batch: int = BATCH, metrics: bool = True) -> dict:
    extra = {}
    if metrics and _has(server, "PairDiversityMetric"):
        extra["diversity"] = {"class_type": "PairDiversityMetric",
                              "inputs": {"images": "@image", "pairing": "interleaved", "group_size": 2}}
    if metrics and _has(server, "NoiseDesignConfidenceInterval"):
        info = server.object_info("NoiseDesignConfidenceInterval")
        inputs = {"images": "@image"}
        # fill the widgets from the node's own defaults, then pick the antithetic-pairs design
        for sec in ("required", "optional"):
            for name, spec in (info["input"].get(sec) or {}).items():
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if name != "images" and "default" in opts and sec == "required":
                    inputs[name] = opts["default"]
        for name in inputs:
            if name == "design":
                inputs[name] = "antithetic pairs"
        extra["interval"] = {"class_type": "NoiseDesignConfidenceInterval", "inputs": inputs}
    noise = {"class_type": "AntitheticLatentNoise",
             "inputs": {"noise_seed": BASE_SEED, "group_size": 2, "layout": "interleaved"}}
    return t2i.txt2img_graph(noise=noise, batch_size=batch, width=64, height=64, steps=steps,
                            filename_prefix="e2e_client", extra_nodes=extra)


def _write(tmp_path, graph, name="wf.json"):
    p = tmp_path / name
    p.write_text(json.dumps(graph))
    return p


def test_seed_sweep_collects_every_image_and_metric(comfy_server, tmp_path):
    graph = _graph(comfy_server)
    wf = _write(tmp_path, graph)
    out = tmp_path / "out"
    seeds = f"{BASE_SEED}..{BASE_SEED + 3}"
    code = cli_main([str(wf), "--server", comfy_server.url, "--sweep", f"noise.noise_seed={seeds}",
                     "--out", str(out), "--no-progress"])
    assert code == 0
    done = Manifest(out / "manifest.jsonl").done()
    assert sorted(r["params"]["noise.noise_seed"] for r in done.values()) == list(range(BASE_SEED, BASE_SEED + 4))
    from PIL import Image

    digests = set()
    for rec in done.values():
        assert rec["server"] == comfy_server.url and rec["prompt_id"]
        saved = [f for f in rec["files"] if f["node"] == t2i.SAVE]
        assert len(saved) == BATCH
        for f in saved:
            img = Image.open(out / f["path"])
            assert img.size == (64, 64)
            digests.add(f["sha256"])
        if "diversity" in graph:
            assert isinstance(rec["numbers"].get("diversity.text.Pearson correlation"), float), rec["numbers"]
            assert "diversity" in rec["ui"]
        if "interval" in graph:
            assert any(k.startswith("interval.text.") and k.endswith(".low") for k in rec["numbers"]), rec["numbers"]
    assert len(digests) == 4 * BATCH  # every seed and every batch item is a different image


def test_resume_after_interruption_loses_nothing_repeats_nothing(comfy_server, tmp_path):
    graph = _graph(comfy_server, metrics=False)
    start = BASE_SEED + 100
    jobs = build_jobs(graph, [], [parse_sweep(f"noise.noise_seed={start}..{start + 5}")])
    out = tmp_path / "out"
    runner = BatchRunner([comfy_server.url], out, progress=False, max_in_flight=2, log=lambda s: None)

    def on_event(kind, rec):
        if kind == "done" and len(runner.manifest.done()) >= 2:
            runner.request_stop()

    runner.on_event = on_event
    first = runner.run(jobs)
    assert first.exit_code == 130
    assert 2 <= first.done < 6
    m = Manifest(out / "manifest.jsonl")
    ours = {r["prompt_id"] for r in m.job_records("queued")}
    queue = comfy_server.get_json("/queue")
    assert not ours & {item[1] for k in ("queue_running", "queue_pending") for item in queue[k]}
    done_first = {k: r["prompt_id"] for k, r in m.done().items()}

    second = BatchRunner([comfy_server.url], out, progress=False, log=lambda s: None).run(jobs)
    assert second.exit_code == 0
    assert second.skipped == len(done_first) and second.done == 6 - len(done_first)
    m = Manifest(out / "manifest.jsonl")
    done_records = m.job_records("done")
    assert len(done_records) == 6 and len({r["job"] for r in done_records}) == 6  # each job done exactly once
    rerun_queued = {r["job"] for r in m.job_records("queued") if r["run"] == second_run_id(m)}
    assert not rerun_queued & set(done_first)  # nothing finished in the first run was queued again
    for r in done_records:
        assert len([f for f in r["files"] if f["node"] == t2i.SAVE]) == BATCH
        for f in r["files"]:
            assert (out / f["path"]).is_file()


def second_run_id(m: Manifest) -> str:
    return [r["run"] for r in m.records if r.get("type") == "run"][-1]


def test_broken_workflow_gives_per_node_error(comfy_server, tmp_path, capsys):
    graph = _graph(comfy_server, metrics=False)
    graph[t2i.CHECKPOINT]["inputs"]["ckpt_name"] = "no_such_model.safetensors"
    graph[t2i.SIGMAS]["inputs"]["steps"] = 100000
    wf = _write(tmp_path, graph)
    code = cli_main([str(wf), "--server", comfy_server.url, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "ComfyUI rejected the workflow (it failed validation):" in err
    assert ("node checkpoint (CheckpointLoaderSimple): input 'ckpt_name': 'no_such_model.safetensors' is not one "
            "of the allowed values") in err
    assert "node sigmas (BasicScheduler): input 'steps': 100000 is above the maximum" in err
    rec = Manifest(tmp_path / "out" / "manifest.jsonl").job_records("error")[0]
    assert rec["error"]["kind"] == "validation" and "checkpoint" in rec["error"]["node_errors"]


@pytest.mark.parametrize("dummy", [0])
def test_failing_node_gives_execution_error(comfy_server, tmp_path, capsys, dummy):
    if not _has(comfy_server, "PairDiversityMetric"):
        pytest.skip("PairDiversityMetric not loaded")
    graph = _graph(comfy_server, batch=3)  # an odd batch cannot be split into pairs
    graph["noise"]["inputs"]["noise_seed"] = BASE_SEED + 300
    # the interval node would fail on the odd batch too, and ComfyUI's order between the two is not fixed
    graph.pop("interval", None)
    wf = _write(tmp_path, graph)
    code = cli_main([str(wf), "--server", comfy_server.url, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "node diversity (PairDiversityMetric) failed while running: ValueError:" in err
    assert "images" in err.split("failed while running", 1)[1]  # the node's message names the input


def _ui_workflow() -> dict:
    def node(nid, typ, inputs=(), outputs=(), widgets=None, mode=0):
        n = {"id": nid, "type": typ, "mode": mode, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": nid,
             "inputs": list(inputs), "outputs": list(outputs), "properties": {"Node name for S&R": typ}}
        if widgets is not None:
            n["widgets_values"] = widgets
        return n

    links = [[1, 1, 0, 5, 0, "MODEL"], [2, 1, 1, 2, 0, "CLIP"], [3, 1, 1, 3, 0, "CLIP"], [4, 2, 0, 5, 1, "CONDITIONING"],
             [5, 3, 0, 5, 2, "CONDITIONING"], [6, 4, 0, 9, 0, "LATENT"], [7, 9, 0, 5, 3, "LATENT"],
             [8, 5, 0, 6, 0, "LATENT"], [9, 1, 2, 10, 0, "VAE"], [10, 10, 0, 6, 1, "VAE"], [11, 6, 0, 7, 0, "IMAGE"]]
    nodes = [
        node(1, "CheckpointLoaderSimple", outputs=[{"name": "MODEL", "type": "MODEL", "links": [1]},
                                                   {"name": "CLIP", "type": "CLIP", "links": [2, 3]},
                                                   {"name": "VAE", "type": "VAE", "links": [9]}],
             widgets=[CHECKPOINT_NAME]),
        node(2, "CLIPTextEncode", [{"name": "clip", "type": "CLIP", "link": 2}], widgets=["a lighthouse"]),
        node(3, "CLIPTextEncode", [{"name": "clip", "type": "CLIP", "link": 3}], widgets=["blurry"]),
        node(4, "EmptyLatentImage", widgets=[64, 64, 1]),
        node(5, "KSampler", [{"name": "model", "type": "MODEL", "link": 1},
                             {"name": "positive", "type": "CONDITIONING", "link": 4},
                             {"name": "negative", "type": "CONDITIONING", "link": 5},
                             {"name": "latent_image", "type": "LATENT", "link": 7}],
             widgets=[BASE_SEED, "fixed", 1, 4.0, "euler", "normal", 1.0]),
        node(6, "VAEDecode", [{"name": "samples", "type": "LATENT", "link": 8}, {"name": "vae", "type": "VAE", "link": 10}]),
        node(7, "SaveImage", [{"name": "images", "type": "IMAGE", "link": 11}], widgets=["e2e_client_ui"]),
        # bypassed: its LATENT input passes straight through to the sampler
        node(9, "LatentUpscaleBy", [{"name": "samples", "type": "LATENT", "link": 6}],
             [{"name": "LATENT", "type": "LATENT", "links": [7]}], widgets=["nearest-exact", 2.0], mode=4),
        node(10, "Reroute", [{"name": "", "type": "*", "link": 9}], [{"name": "", "type": "VAE", "links": [10]}]),
        node(11, "Note", widgets=["converted by antithetic-queue"]),
    ]
    return {"last_node_id": 11, "last_link_id": 11, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def test_ui_workflow_converted_through_live_object_info(comfy_server, tmp_path):
    wf = _write(tmp_path, _ui_workflow(), "ui.json")
    api_path = tmp_path / "api.json"
    out = tmp_path / "out"
    code = cli_main([str(wf), "--server", comfy_server.url, "--sweep", f"KSampler.seed={BASE_SEED + 400},"
                     f"{BASE_SEED + 401}", "--save-api", str(api_path), "--out", str(out), "--no-progress"])
    assert code == 0
    api = json.loads(api_path.read_text())
    assert api["5"]["inputs"]["latent_image"] == ["4", 0] and api["6"]["inputs"]["vae"] == ["1", 2]
    assert api["5"]["inputs"]["steps"] == 1 and api["5"]["inputs"]["sampler_name"] == "euler"
    done = Manifest(out / "manifest.jsonl").done()
    assert len(done) == 2
    for rec in done.values():
        (f,) = rec["files"]
        from PIL import Image

        assert Image.open(out / f["path"]).size == (64, 64)  # the bypassed 2x upscale did not run
