"""``antithetic-queue --ray`` without ComfyUI: the driver logic it shares with ``--server``, and the Ray actors.

- Without Ray: ``BatchRunner`` with servers that can come back (as a Ray actor restarted by Ray does): every
  server down -> it waits, requeues, and gives the restarted one prompts again; a server that cannot come back
  ends the run as today (exit 3, rerun to resume).
- With Ray (skipped when it is not installed): a local cluster (``ray.init(num_cpus=2)``) with two actors that
  relay to the ComfyUI imitation of ``test_client_server.py`` (``attach_url``): 20 prompts, each done exactly once,
  images and numbers streamed back through Ray; one imitation dies mid-run: its actor dies, its prompts are
  requeued on the other actor, nothing lost or done twice; a rejected workflow gives the same per-node error text.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("websocket")
from antithetic_sampling.nodes.api_client.client import BatchRunner, Server  # noqa: E402
from antithetic_sampling.nodes.api_client.jobs import build_jobs, parse_sweep  # noqa: E402
from antithetic_sampling.nodes.api_client.manifest import Manifest  # noqa: E402


def _load_fake():
    """FakeComfy and GRAPH from test_client_server.py (tests are not a package: load it by path, once)."""
    name = "_client_server_fakes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_client_server.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


fakes = _load_fake()
FakeComfy, GRAPH = fakes.FakeComfy, fakes.GRAPH


fake = fakes.fake  # the client tests' fixture: imitation servers, stopped after the test


def _jobs(spec="3.seed=0..19"):
    return build_jobs(GRAPH, [], [parse_sweep(spec)])


def _records(out: Path, status: str) -> list[dict]:
    return Manifest(out / "manifest.jsonl").job_records(status)


# ------------------------------------------------------------------------------------- shared driver logic


class Restartable(Server):
    """A server that, once dead, comes back as a new ComfyUI (another FakeComfy): what a restarted actor is."""

    def __init__(self, first, replacement_factory, restarts: int = 1, restart_s: float = 0.5):
        super().__init__(first.url)
        self.replacement_factory = replacement_factory
        self.left = restarts
        self.restart_s = restart_s
        self.replacement = None
        self.asked: float | None = None

    def may_return(self) -> bool:
        return self.left > 0

    def comeback(self) -> bool:
        self.asked = self.asked or time.monotonic()
        if time.monotonic() - self.asked < self.restart_s:  # a restart takes a while
            return False
        if self.replacement is None:
            self.replacement = self.replacement_factory()
            self.left -= 1
            self.url = self.replacement.url
        return True


def test_a_server_that_comes_back_gets_prompts_again(fake, tmp_path):
    a = fake(step_time=0.02)
    b_first = fake(step_time=0.02, die_after=3)
    b = Restartable(b_first, lambda: fake(step_time=0.02))
    messages = []
    res = BatchRunner([a.url, b], tmp_path / "out", progress=False, poll_interval=0.5,
                      log=messages.append).run(_jobs())
    assert res.exit_code == 0, messages
    assert res.done == 20 and res.requeued >= 1
    done = _records(tmp_path / "out", "done")
    assert len(done) == 20 and len({r["job"] for r in done}) == 20
    assert any("is back (restarted)" in m for m in messages)
    # the replacement ran prompts: it was given work after it came back
    assert b.replacement is not None and b.replacement.executions
    made_by = {r["server"] for r in done}
    assert b.replacement.url in made_by and a.url in made_by
    # nothing ran twice anywhere
    ran = a.executions + b_first.executions + b.replacement.executions
    assert len(ran) == len(set(ran))


def test_every_server_down_waits_for_the_restart(fake, tmp_path):
    only = fake(step_time=0.02, die_after=2)
    srv = Restartable(only, lambda: fake(step_time=0.02))
    messages = []
    res = BatchRunner([srv], tmp_path / "out", progress=False, poll_interval=0.5, log=messages.append).run(
        _jobs("3.seed=0..5"))
    assert res.exit_code == 0, messages
    assert res.done == 6 and res.requeued >= 1
    assert any("every server is down; waiting" in m for m in messages)
    assert len({r["job"] for r in _records(tmp_path / "out", "done")}) == 6


def test_no_restart_left_ends_the_run_as_with_plain_servers(fake, tmp_path):
    only = fake(step_time=0.02, die_after=2)
    srv = Restartable(only, lambda: fake(step_time=0.02), restarts=0)
    res = BatchRunner([srv], tmp_path / "out", progress=False, poll_interval=0.5, log=lambda s: None).run(
        _jobs("3.seed=0..5"))
    assert res.exit_code == 3 and 1 <= res.done <= 2  # the second may finish as it dies, uncollected


# ------------------------------------------------------------------------------------------- real Ray


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'antithetic-sampling[ray]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _cluster(urls, **kw):
    from antithetic_sampling.nodes.api_client.ray_cluster import RayCluster

    return RayCluster(attach_urls=urls, log=lambda s: None, **kw)


def test_ray_actors_each_prompt_exactly_once(ray_local, fake, tmp_path):
    a, b = fake(step_time=0.02), fake(step_time=0.02)
    cluster = _cluster([a.url, b.url])
    try:
        servers = cluster.start()
        assert [s.url.startswith("ray://comfy-") for s in servers] == [True, True]
        res = BatchRunner(servers, tmp_path / "out", progress=False, poll_interval=0.5, log=lambda s: None).run(
            _jobs())
    finally:
        cluster.shutdown()
    assert res.exit_code == 0 and res.done == 20 and res.requeued == 0
    done = _records(tmp_path / "out", "done")
    assert len(done) == 20 and len({r["job"] for r in done}) == 20
    assert len(a.executions) + len(b.executions) == 20 and a.executions and b.executions
    for rec in done:  # images (bytes through Ray) and numbers, as with --server
        seed = rec["params"]["3.seed"]
        (f,) = rec["files"]
        assert (tmp_path / "out" / f["path"]).read_bytes() == f"PNG seed={seed} steps=3".encode()
        assert rec["numbers"]["12.text.Pearson"] == pytest.approx(-seed / 100)
        assert rec["server"].startswith("ray://comfy-")


def test_ray_actor_dies_its_prompts_go_to_the_other(ray_local, fake, tmp_path):
    a, b = fake(step_time=0.02), fake(step_time=0.02, die_after=4)
    cluster = _cluster([a.url, b.url], max_restarts=0)
    messages = []
    try:
        servers = cluster.start()
        res = BatchRunner(servers, tmp_path / "out", progress=False, poll_interval=0.5,
                          log=messages.append).run(_jobs())
    finally:
        cluster.shutdown()
    assert res.exit_code == 0, messages
    assert res.done == 20 and res.requeued >= 1
    done = _records(tmp_path / "out", "done")
    assert len(done) == 20 and len({r["job"] for r in done}) == 20
    killed = servers[1].url
    assert any(f"server {killed} is gone" in m for m in messages)
    for r in _records(tmp_path / "out", "requeued"):
        assert r["server"] == killed
    ran = a.executions + b.executions
    assert len(ran) == len(set(ran)) and set(r["prompt_id"] for r in done) <= set(ran)


def test_ray_rejection_is_explained_per_node(ray_local, fake, tmp_path):
    from antithetic_sampling.nodes.api_client.jobs import parse_set

    a = fake()
    cluster = _cluster([a.url])
    messages = []
    try:
        servers = cluster.start()
        jobs = build_jobs(GRAPH, [parse_set("3.steps=500")], [parse_sweep("3.seed=1,2")])
        res = BatchRunner(servers, tmp_path / "out", progress=False, log=messages.append).run(jobs)
    finally:
        cluster.shutdown()
    assert res.exit_code == 1 and res.failed == 1
    assert any("node 3 'Sampler' (FakeSampler): input 'steps': 500 is above the maximum (100)" in m for m in messages)


def test_ray_cancel_touches_only_our_prompts_and_resume_finishes(ray_local, fake, tmp_path):
    """Ctrl-C through the actors: our pending prompts deleted, our running one interrupted, nothing else."""
    srv = fake(step_time=0.03)
    srv.pending.append(("foreign-running", GRAPH | {"3": {"class_type": "FakeSampler",
                                                          "inputs": {"seed": 1, "steps": 10}}}, "other"))
    cluster = _cluster([srv.url])
    try:
        servers = cluster.start()
        runner = BatchRunner(servers, tmp_path / "out", progress=False, poll_interval=0.5, log=lambda s: None)

        def on_event(kind, rec):
            if kind == "done" and len(runner.manifest.done()) >= 3:
                srv.pending.append(("foreign-pending", GRAPH, "other"))
                runner.request_stop()

        runner.on_event = on_event
        first = runner.run(_jobs("3.seed=0..9"))
        assert first.exit_code == 130 and 3 <= first.done < 10
        assert "foreign-pending" not in srv.deleted and "foreign-running" not in srv.deleted
        assert None not in srv.interrupts
        ours = {r["prompt_id"] for r in _records(tmp_path / "out", "queued")}
        assert set(srv.deleted) <= ours and set(srv.interrupts) <= ours
        second = BatchRunner(servers, tmp_path / "out", progress=False, poll_interval=0.5,
                             log=lambda s: None).run(_jobs("3.seed=0..9"))
    finally:
        cluster.shutdown()
    assert second.exit_code == 0 and second.skipped == first.done and second.done == 10 - first.done
    assert len(_records(tmp_path / "out", "done")) == 10  # every job done exactly once over both runs


# ------------------------------------------------------------------------------------------- the command line


def test_cli_ray_options_are_checked(tmp_path, capsys):
    import json

    from antithetic_sampling.nodes.api_client.cli import main as cli_main

    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(GRAPH))
    assert cli_main([str(wf), "--ray", "--server", "http://127.0.0.1:9"]) == 2
    assert "--ray and --server exclude each other" in capsys.readouterr().err
    assert cli_main([str(wf), "--ray-cpu-workers", "2"]) == 2
    assert "need --ray" in capsys.readouterr().err
    assert cli_main([str(wf), "--ray", "--ray-cpu-workers", "-1"]) == 2
    # a dry run lists the jobs without starting a cluster
    assert cli_main([str(wf), "--ray", "auto", "--sweep", "3.seed=0..2", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 3 and "3 job(s)" in out.err and "Ray:" not in out.err


def test_cli_ray_without_ray_says_how_to_install(tmp_path, capsys, monkeypatch):
    import json

    from antithetic_sampling.nodes.api_client.cli import main as cli_main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(GRAPH))
    assert cli_main([str(wf), "--ray", "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'antithetic-sampling[ray]'" in capsys.readouterr().err
