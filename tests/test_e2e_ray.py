"""``antithetic-queue --ray`` against real ComfyUI: Ray actors, each running a ``--cpu`` ComfyUI with the tiny checkpoint.

- resume after the driver is killed (SIGKILL): a cluster started with ``ray start --head`` (what a cluster user
  does), the console command joins it; killed after a few prompts, its actors and their ComfyUI die with it; the
  same command again finishes the rest: every job done exactly once over both runs;
- a local cluster (``ray.init(num_cpus=2)``) with two CPU actors: 20 prompts of the antithetic workflow
  (Antithetic Latent Noise and RandomNoise -> SamplerCustomAdvanced, Pair Diversity Metric) each done exactly once,
  every image byte-identical to a one-server run (the session ``comfy_server``);
- the ComfyUI process of one actor SIGKILLed midway: the run finishes, its prompts were requeued on the other
  actor, nothing lost or done twice, and Ray restarts the actor with a fresh ComfyUI.

Skipped with the reason when Ray or ComfyUI is absent. No wall-clock assertions.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from antithetic_sampling.nodes.api_client import soak
from antithetic_sampling.nodes.api_client.client import BatchRunner
from antithetic_sampling.nodes.api_client.jobs import build_jobs, parse_set
from antithetic_sampling.nodes.api_client.manifest import Manifest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'antithetic-sampling[ray]')")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

N = 20
BATCH = 2
# seeds no other test uses: nothing is served from a server's cache
BASE_SEED = 900_000 + random.Random(14).randrange(50_000)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cenv(comfy_env):
    return comfy_env


def _graph(seed: int) -> dict:
    graph = soak.soak_workflow()
    for node in graph.values():
        for name in ("noise_seed", "seed"):  # noise nodes, core KSampler and Antithetic KSampler
            if isinstance(node["inputs"].get(name), int):
                node["inputs"][name] = seed
    return graph


# the workflow's Pair Diversity Metric node: its numbers are in every done record
METRIC = next(k for k, v in soak.soak_workflow().items() if v["class_type"] == "PairDiversityMetric")


def _jobs(seed: int, n: int = N):
    return build_jobs(_graph(seed), [parse_set(f"EmptyLatentImage.batch_size={BATCH}")], [], repeat=n,
                      repeat_seed_stride=1)


def _images(rec: dict) -> list[str]:
    return sorted(f["sha256"] for f in rec["files"] if f["type"] == "output")


def _exactly_once(manifest: Path, n: int) -> dict[str, dict]:
    m = Manifest(manifest)
    done = m.job_records("done")
    assert len(done) == n and len({r["job"] for r in done}) == n, f"{len(done)} done records"
    assert not m.job_records("error")
    for rec in done:
        assert len(_images(rec)) == 2 * BATCH  # antithetic and independent branch
        assert isinstance(rec["numbers"].get(f"{METRIC}.text.Pearson correlation"), float), rec["numbers"]
        for f in rec["files"]:
            assert (manifest.parent / f["path"]).is_file()
    return {r["job"]: r for r in done}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


# ------------------------------------------------------------------------- resume after the driver is killed


def test_resume_after_the_driver_is_killed(cenv, tmp_path):
    if ray.is_initialized():
        pytest.skip("needs a Ray cluster of its own (this process already joined one)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COMFYUI_PATH": str(cenv.comfy_path), "COMFYUI_PYTHON": cenv.python,
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}  # no token to hand to the driver
    env.pop("RAY_ADDRESS", None)
    ray_bin = Path(sys.executable).with_name("ray")
    head_log = open(tmp_path / "head.log", "wb")  # noqa: SIM115 - closed at the end
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True)
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(_graph(BASE_SEED + 1000)))
    out = tmp_path / "out"
    n = 8
    boot = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('antithetic_sampling', {str(ROOT / '__init__.py')!r}, "
            f"submodule_search_locations=[{str(ROOT)!r}]); m = importlib.util.module_from_spec(spec); "
            "sys.modules['antithetic_sampling'] = m; spec.loader.exec_module(m); "
            "from antithetic_sampling.nodes.api_client.cli import main; sys.exit(main(sys.argv[1:]))")
    argv = [sys.executable, "-c", boot, str(wf), "--ray", f"127.0.0.1:{port}", "--ray-cpu-workers", "2",
            "--ray-test-checkpoint", "--set", f"EmptyLatentImage.batch_size={BATCH}", "--repeat", str(n),
            "--repeat-seed-stride", "1", "--out", str(out), "--no-progress"]
    try:
        deadline = time.time() + 300
        while head.poll() is None and time.time() < deadline:  # until the head is up
            if "Ray runtime started" in (tmp_path / "head.log").read_text(errors="replace"):
                break
            time.sleep(0.5)
        assert head.poll() is None and "Ray runtime started" in (tmp_path / "head.log").read_text(
            errors="replace"), (tmp_path / "head.log").read_text(errors="replace")[-3000:]
        driver = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        manifest = out / "manifest.jsonl"
        while driver.poll() is None and not (manifest.exists() and len(Manifest(manifest).done()) >= 2):
            time.sleep(0.2)
        assert driver.poll() is None, driver.stderr.read()
        driver.kill()  # SIGKILL: no clean-up of any kind
        driver.wait()
        first = Manifest(manifest)
        done_first = {k: r["prompt_id"] for k, r in first.done().items()}
        assert 2 <= len(done_first) < n
        actors = next(r for r in first.records if r.get("type") == "run")["ray"]["actors"]
        # the driver's actors and their ComfyUI die with it (the cluster stays)
        pids = [a["comfy_pid"] for a in actors]
        deadline = time.time() + 120
        while any(_alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.5)
        assert not any(_alive(p) for p in pids), "ComfyUI of a killed driver still running"

        again = subprocess.run(argv, env=env, stderr=subprocess.PIPE, text=True, timeout=1200)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"resuming: {len(done_first)} of {n} jobs already done" in again.stderr
        done = _exactly_once(manifest, n)  # over both runs: every job once
        for key, pid in done_first.items():
            assert done[key]["prompt_id"] == pid
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` ends the cluster on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        head_log.close()


# ------------------------------------------------------------------------- two actors on a local cluster


@pytest.fixture(scope="module")
def ray_comfy(cenv):
    from antithetic_sampling.nodes.api_client.ray_cluster import RayCluster

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    cluster = RayCluster(cpu_workers=2, comfyui=str(cenv.comfy_path), python=cenv.python, test_checkpoint=True,
                         max_restarts=2, log=lambda s: None)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def one_server_run(comfy_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_server")
    res = BatchRunner([comfy_server.url], out, progress=False, log=lambda s: None).run(_jobs(BASE_SEED))
    assert res.exit_code == 0 and res.done == N
    return _exactly_once(out / "manifest.jsonl", N)


def test_two_actors_every_prompt_once_images_identical(ray_comfy, one_server_run, tmp_path):
    assert len(ray_comfy.servers) == 2
    res = BatchRunner(ray_comfy.servers, tmp_path, progress=False, log=lambda s: None).run(_jobs(BASE_SEED))
    assert res.exit_code == 0 and res.done == N and res.requeued == 0
    done = _exactly_once(tmp_path / "manifest.jsonl", N)
    assert set(done) == set(one_server_run)
    for key, rec in done.items():
        assert _images(rec) == _images(one_server_run[key]), f"job {rec['index']}"
        assert rec["numbers"][f"{METRIC}.text.Pearson correlation"] == one_server_run[key]["numbers"][
            f"{METRIC}.text.Pearson correlation"]
    by_actor = {r["server"] for r in done.values()}
    assert by_actor == {s.url for s in ray_comfy.servers}  # both actors made some


def test_comfyui_of_one_actor_killed_nothing_lost_or_done_twice(ray_comfy, tmp_path):
    victim = ray_comfy.servers[1]
    victim_url, victim_pid = victim.url, victim.info["comfy_pid"]
    killed, messages = [], []
    runner = BatchRunner(ray_comfy.servers, tmp_path, progress=False, poll_interval=1.0, log=messages.append)

    def on_event(kind, rec):
        # SIGKILL the ComfyUI process (not the actor) while it runs one of our prompts, a third of the way in
        if kind == "done" and not killed and len(runner.manifest.done()) >= N // 3 and victim.inflight:
            os.kill(victim_pid, signal.SIGKILL)
            killed.append(len(runner.manifest.done()))

    runner.on_event = on_event
    res = runner.run(_jobs(BASE_SEED + 500))
    assert killed, "the victim never had a prompt in flight"
    assert res.exit_code == 0, messages
    assert res.done == N and res.requeued >= 1
    done = _exactly_once(tmp_path / "manifest.jsonl", N)
    m = Manifest(tmp_path / "manifest.jsonl")
    requeued = m.job_records("requeued")
    assert requeued and all(r["server"] == victim_url for r in requeued)
    # a requeued prompt was finished elsewhere: on the other actor or the restarted one, never the dead ComfyUI
    for r in requeued:
        assert done[r["job"]]["prompt_id"] != r["prompt_id"]
    assert any(f"server {victim_url} is gone" in msg for msg in messages)
    # Ray restarts the actor with a fresh ComfyUI; the driver takes it back (within the run or right after)
    deadline = time.time() + 300
    while not victim.alive and time.time() < deadline:
        if victim.comeback():
            victim.alive = True
        time.sleep(1)
    assert victim.info["comfy_pid"] != victim_pid and victim.restarts >= 1 and not _alive(victim_pid)
    assert victim.probe()["exec_info"]["queue_remaining"] == 0
