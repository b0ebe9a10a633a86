"""Batch-queue client against small local ComfyUI imitations: real HTTP + websocket sockets (aiohttp in a
thread) that imitate /prompt, /history, /view, /queue, /interrupt, /object_info and the /ws messages.

Covers: a sweep collects every file and number; resume skips what is done and adopts what is still queued;
Ctrl-C deletes/interrupts only our prompts; HTTP 400 node errors; execution errors; an unreachable server;
two servers with one dying mid-run (every job done exactly once, the manifest says which server made what).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("websocket")
from aiohttp import web  # noqa: E402
from antithetic_sampling.nodes.api_client.cli import main as cli_main  # noqa: E402
from antithetic_sampling.nodes.api_client.client import BatchRunner, InFlight  # noqa: E402
from antithetic_sampling.nodes.api_client.jobs import build_jobs, parse_sweep  # noqa: E402
from antithetic_sampling.nodes.api_client.manifest import Manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

OBJECT_INFO = {
    "FakeSampler": {"input": {"required": {"seed": ["INT", {"control_after_generate": True, "min": 0}],
                                           "steps": ["INT", {"min": 1, "max": 100}]},
                              "optional": {"explode": ["BOOLEAN", {}], "sleep": ["FLOAT", {}]}},
                    "input_order": {"required": ["seed", "steps"], "optional": ["explode", "sleep"]},
                    "output": ["IMAGE"], "display_name": "Fake Sampler"},
    "FakeSave": {"input": {"required": {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {}]}},
                 "input_order": {"required": ["images", "filename_prefix"]}, "output": [], "output_node": True},
    "FakeMetric": {"input": {"required": {"images": ["IMAGE", {}]}}, "input_order": {"required": ["images"]},
                   "output": ["FLOAT"], "output_node": True, "display_name": "Pair Diversity Metric"},
}

GRAPH = {
    "3": {"class_type": "FakeSampler", "inputs": {"seed": 0, "steps": 3}, "_meta": {"title": "Sampler"}},
    "9": {"class_type": "FakeSave", "inputs": {"images": ["3", 0], "filename_prefix": "fake"}},
    "12": {"class_type": "FakeMetric", "inputs": {"images": ["3", 0]}, "_meta": {"title": "Pair Diversity Metric"}},
}


class FakeComfy:
    """A ComfyUI imitation on 127.0.0.1:<free port>. One prompt runs at a time, like the real one."""

    def __init__(self, step_time: float = 0.01, die_after: int | None = None) -> None:
        self.step_time = step_time
        self.die_after = die_after  # stop abruptly when this many prompts have *started*
        self.pending: list[tuple[str, dict, str]] = []  # (prompt_id, graph, client_id)
        self.running: tuple[str, dict, str] | None = None
        self.history: dict[str, dict] = {}
        self.files: dict[str, bytes] = {}
        self.executions: list[str] = []  # prompt ids in the order they ran
        self.deleted: list[str] = []
        self.interrupts: list[str | None] = []
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.started = 0
        self.dead = False
        self._interrupt = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    # -------------------------------------------------------------- plumbing
    async def _start(self) -> None:
        app = web.Application()
        r = app.router
        r.add_get("/prompt", self.get_prompt)
        r.add_post("/prompt", self.post_prompt)
        r.add_get("/queue", self.get_queue)
        r.add_post("/queue", self.post_queue)
        r.add_post("/interrupt", self.post_interrupt)
        r.add_get("/history/{pid}", self.get_history)
        r.add_get("/object_info", self.get_object_info)
        r.add_get("/object_info/{cls}", self.get_object_info_cls)
        r.add_get("/view", self.get_view)
        r.add_get("/ws", self.ws)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await self.site.start()
        self.port = self.site._server.sockets[0].getsockname()[1]
        self.worker = asyncio.ensure_future(self._work())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if not self.dead:
            self.call(self._die())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _die(self) -> None:
        """Like a killed process: sockets closed, port refused, queue and history gone."""
        self.dead = True
        self.worker.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        await self.runner.cleanup()

    async def send(self, client_id: str, typ: str, data: dict) -> None:
        ws = self.sockets.get(client_id)
        if ws is not None and not ws.closed:
            try:
                await ws.send_str(json.dumps({"type": typ, "data": data}))
            except ConnectionResetError:
                pass

    # -------------------------------------------------------------- routes
    async def ws(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        cid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[cid] = ws
        await ws.send_str(json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                                 "sid": cid}}))
        async for _ in ws:
            pass
        self.sockets.pop(cid, None)
        return ws

    async def get_prompt(self, request):
        return web.json_response({"exec_info": {"queue_remaining": len(self.pending) + bool(self.running)}})

    async def post_prompt(self, request):
        body = await request.json()
        graph = body["prompt"]
        node_errors = {}
        for nid, node in graph.items():
            if node["class_type"] not in OBJECT_INFO:
                return web.json_response({"error": {"type": "invalid_prompt", "message":
                                                    f"Cannot execute because node {node['class_type']} does not exist.",
                                                    "details": f"Node ID '#{nid}'", "extra_info": {}},
                                          "node_errors": {}}, status=400)
            steps = node["inputs"].get("steps")
            if isinstance(steps, int) and steps > 100:
                node_errors[nid] = {"class_type": node["class_type"], "dependent_outputs": ["9"], "errors": [
                    {"type": "value_bigger_than_max", "message": f"Value {steps} bigger than max of 100",
                     "details": "steps", "extra_info": {"input_name": "steps", "received_value": steps}}]}
        if node_errors:
            return web.json_response({"error": {"type": "prompt_outputs_failed_validation",
                                                "message": "Prompt outputs failed validation", "details": "",
                                                "extra_info": {}}, "node_errors": node_errors}, status=400)
        pid = str(body.get("prompt_id") or uuid.uuid4())
        self.pending.append((pid, graph, body.get("client_id", "")))
        return web.json_response({"prompt_id": pid, "number": len(self.executions), "node_errors": {}})

    def _item(self, entry):
        return [0, entry[0], entry[1], {"client_id": entry[2]}, ["9"]]

    async def get_queue(self, request):
        return web.json_response({"queue_running": [self._item(self.running)] if self.running else [],
                                  "queue_pending": [self._item(e) for e in self.pending]})

    async def post_queue(self, request):
        body = await request.json()
        for pid in body.get("delete", []):
            self.deleted.append(pid)
            self.pending = [e for e in self.pending if e[0] != pid]
        return web.Response()

    async def post_interrupt(self, request):
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}
        pid = body.get("prompt_id")
        self.interrupts.append(pid)
        if pid is None or (self.running and self.running[0] == pid):
            self._interrupt = True
        return web.Response()

    async def get_history(self, request):
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def get_object_info(self, request):
        return web.json_response(OBJECT_INFO)

    async def get_object_info_cls(self, request):
        cls = request.match_info["cls"]
        return web.json_response({cls: OBJECT_INFO[cls]} if cls in OBJECT_INFO else {})

    async def get_view(self, request):
        name = request.query["filename"]
        if request.query.get("type") != "output" or name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name], content_type="image/png")

    # -------------------------------------------------------------- execution
    async def _work(self) -> None:
        while True:
            if not self.pending:
                await asyncio.sleep(0.005)
                continue
            self.running = self.pending.pop(0)
            pid, graph, cid = self.running
            self.started += 1
            if self.die_after is not None and self.started > self.die_after:
                asyncio.ensure_future(self._die())
                return
            self.executions.append(pid)
            await self._execute(pid, graph, cid)
            self.running = None
            await self.send(cid, "executing", {"node": None, "prompt_id": pid})

    async def _execute(self, pid: str, graph: dict, cid: str) -> None:
        self._interrupt = False
        messages = [["execution_start", {"prompt_id": pid}]]
        await self.send(cid, "execution_start", {"prompt_id": pid})
        await self.send(cid, "execution_cached", {"nodes": [], "prompt_id": pid})
        sampler = next(n for n in graph.values() if n["class_type"] == "FakeSampler")
        seed, steps = sampler["inputs"]["seed"], sampler["inputs"]["steps"]
        await self.send(cid, "executing", {"node": "3", "prompt_id": pid})
        for i in range(steps):
            await asyncio.sleep(self.step_time + float(sampler["inputs"].get("sleep", 0)))
            if self._interrupt:
                mes = {"prompt_id": pid, "node_id": "3", "node_type": "FakeSampler", "executed": []}
                messages.append(["execution_interrupted", mes])
                await self.send(cid, "execution_interrupted", mes)
                self.history[pid] = {"prompt": [0, pid, graph, {}, []], "outputs": {},
                                     "status": {"status_str": "error", "completed": False, "messages": messages}}
                return
            await self.send(cid, "progress", {"value": i + 1, "max": steps, "prompt_id": pid, "node": "3"})
        if sampler["inputs"].get("explode"):
            mes = {"prompt_id": pid, "node_id": "3", "node_type": "FakeSampler", "exception_type": "builtins.ValueError",
                   "exception_message": "seed exploded", "traceback": [], "executed": [], "current_inputs": {},
                   "current_outputs": []}
            messages.append(["execution_error", mes])
            await self.send(cid, "execution_error", mes)
            self.history[pid] = {"prompt": [0, pid, graph, {}, []], "outputs": {},
                                 "status": {"status_str": "error", "completed": False, "messages": messages}}
            return
        name = f"fake_{pid[:8]}_00001_.png"
        self.files[name] = f"PNG seed={seed} steps={steps}".encode()
        outputs = {
            "9": {"images": [{"filename": name, "subfolder": "", "type": "output"}]},
            "12": {"text": [f"| metric | value |\n|---|---|\n| Pearson | {-seed / 100:.2f} |\nVendi score: {seed + 1}"]},
        }
        for nid, out in outputs.items():
            await self.send(cid, "executed", {"node": nid, "output": out, "prompt_id": pid})
        messages.append(["execution_success", {"prompt_id": pid}])
        self.history[pid] = {"prompt": [0, pid, graph, {}, ["9"]], "outputs": outputs,
                             "status": {"status_str": "success", "completed": True, "messages": messages}}


@pytest.fixture
def fake():
    servers = []

    def make(**kw):
        srv = FakeComfy(**kw)
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.stop()


def _jobs(spec="3.seed=0..9", graph=GRAPH, **kw):
    return build_jobs(graph, [], [parse_sweep(spec)], **kw)


def _runner(servers, tmp_path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("poll_interval", 0.5)
    kw.setdefault("log", lambda s: None)
    return BatchRunner([s.url for s in servers], tmp_path / "out", **kw)


def _done(tmp_path):
    return Manifest(tmp_path / "out" / "manifest.jsonl").done()


def test_sweep_collects_every_file_and_number(fake, tmp_path):
    srv = fake()
    events = []
    runner = _runner([srv], tmp_path, on_event=lambda kind, rec: events.append(kind))
    res = runner.run(_jobs())
    assert res.exit_code == 0 and res.done == 10 and res.failed == 0
    done = _done(tmp_path)
    assert len(done) == 10
    seeds = sorted(r["params"]["3.seed"] for r in done.values())
    assert seeds == list(range(10))
    for rec in done.values():
        seed = rec["params"]["3.seed"]
        (f,) = rec["files"]
        assert (tmp_path / "out" / f["path"]).read_bytes() == f"PNG seed={seed} steps=3".encode()
        assert rec["numbers"]["12.text.Pearson"] == pytest.approx(-seed / 100)
        assert rec["numbers"]["12.text.Vendi score"] == seed + 1
        assert rec["server"] == srv.url and rec["prompt_id"] in srv.executions
        assert rec["wall_s"] >= 0
    assert len(srv.executions) == 10
    assert events.count("queued") == 10 and events.count("done") == 10
    # the same command again: nothing is queued, nothing runs
    res2 = _runner([srv], tmp_path).run(_jobs())
    assert res2.exit_code == 0 and res2.skipped == 10 and res2.done == 0
    assert len(srv.executions) == 10


def test_resume_after_cancel_loses_nothing_repeats_nothing(fake, tmp_path):
    srv = fake(step_time=0.02)
    # someone else's prompt runs first and someone else's waits: the cancel must not touch them
    srv.pending.append(("foreign-running", GRAPH | {"3": {"class_type": "FakeSampler",
                                                          "inputs": {"seed": 1, "steps": 10}}}, "other"))
    runner = _runner([srv], tmp_path, max_in_flight=2)
    done_count = []

    def on_event(kind, rec):
        if kind == "done":
            done_count.append(rec)
            if len(done_count) == 3:
                srv.pending.append(("foreign-pending", GRAPH, "other"))
                runner.request_stop()

    runner.on_event = on_event
    res = runner.run(_jobs())
    assert res.exit_code == 130
    # a prompt that finished while cancelling is collected, not thrown away
    assert 3 <= res.done < 10 and res.cancelled >= 1
    n_first = res.done
    assert "foreign-pending" not in srv.deleted and "foreign-running" not in srv.deleted
    assert all(p is not None for p in srv.interrupts)  # never a global interrupt
    time.sleep(0.1)
    assert "foreign-pending" in [e[0] for e in srv.pending] + srv.executions
    ours = {r["prompt_id"] for r in Manifest(tmp_path / "out" / "manifest.jsonl").job_records("queued")}
    assert set(srv.deleted) <= ours and set(i for i in srv.interrupts) <= ours
    first = dict(_done(tmp_path))
    assert len(first) == n_first
    # resume
    res2 = _runner([srv], tmp_path).run(_jobs())
    assert res2.exit_code == 0 and res2.skipped == n_first and res2.done == 10 - n_first
    done = _done(tmp_path)
    assert len(done) == 10
    recs = Manifest(tmp_path / "out" / "manifest.jsonl").job_records("done")
    assert len(recs) == 10  # every job done exactly once over both runs
    for k, rec in first.items():
        assert done[k]["prompt_id"] == rec["prompt_id"]


def test_resume_adopts_prompts_left_queued(fake, tmp_path):
    """A client killed hard leaves 'queued' records; the rerun collects/waits for them instead of rerunning."""
    srv = fake(step_time=0.01)
    jobs = _jobs("3.seed=0..3")
    m = Manifest(tmp_path / "out" / "manifest.jsonl")
    for job in jobs[:2]:  # queued by a "previous run" that died before collecting
        pid = str(uuid.uuid4())
        m.append({"type": "job", "status": "queued", "job": job.key, "index": job.index, "params": job.params,
                  "prompt_id": pid, "server": srv.url})
        srv.pending.append((pid, job.prompt, "dead-client"))
    time.sleep(0.3)
    res = _runner([srv], tmp_path).run(jobs)
    assert res.exit_code == 0 and res.done == 4
    assert len(srv.executions) == 4  # the two old prompts were not run again
    assert len(_done(tmp_path)) == 4


def test_validation_error_is_printed_per_node_and_input(fake, tmp_path, capsys):
    srv = fake()
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(GRAPH))
    code = cli_main([str(wf), "--server", srv.url, "--set", "Sampler.steps=500", "--sweep", "3.seed=1,2",
                     "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "ComfyUI rejected the workflow (it failed validation):" in err
    assert "node 3 'Sampler' (FakeSampler): input 'steps': 500 is above the maximum (100)" in err
    assert err.count("is above the maximum") == 1  # printed once, not once per job
    assert srv.executions == []
    recs = Manifest(tmp_path / "out" / "manifest.jsonl").job_records("error")
    assert recs and recs[0]["error"]["kind"] == "validation"


def test_unknown_node_class_message(fake, tmp_path, capsys):
    srv = fake()
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(GRAPH | {"20": {"class_type": "NotInstalled", "inputs": {}}}))
    code = cli_main([str(wf), "--server", srv.url, "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    assert "node NotInstalled does not exist" in capsys.readouterr().err


def test_execution_error_keeps_what_was_collected(fake, tmp_path):
    srv = fake()
    graph = json.loads(json.dumps(GRAPH))
    jobs = build_jobs(graph, [], [parse_sweep("3.seed=0..3"), parse_sweep("3.explode=false,true")],
                      object_info=OBJECT_INFO)  # "explode" is optional: known from the definition
    messages = []
    res = _runner([srv], tmp_path, max_in_flight=1, log=messages.append).run(jobs)
    assert res.exit_code == 1 and res.failed == 1
    assert res.done == 1  # seed 0 / explode false ran before the failure; the rest was not queued
    assert any("node 3 'Sampler' (FakeSampler) failed while running: ValueError: seed exploded" in m for m in messages)
    assert len(_done(tmp_path)) == 1
    # --keep-going runs everything else and still exits 1
    res2 = _runner([srv], tmp_path, keep_going=True).run(jobs)
    assert res2.exit_code == 1 and res2.done == 3 and res2.failed == 4
    assert len(_done(tmp_path)) == 4


def test_unreachable_server(tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(GRAPH))
    code = cli_main([str(wf), "--server", f"127.0.0.1:{port}", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 3
    err = capsys.readouterr().err
    assert f"cannot reach ComfyUI at http://127.0.0.1:{port}" in err and "Connection refused" in err


def test_ui_workflow_converted_through_object_info(fake, tmp_path):
    srv = fake()
    ui = {"last_node_id": 3, "last_link_id": 2, "version": 0.4, "groups": [], "config": {}, "extra": {},
          "links": [[1, 3, 0, 9, 0, "IMAGE"], [2, 3, 0, 12, 0, "IMAGE"]],
          "nodes": [
              {"id": 3, "type": "FakeSampler", "mode": 0, "title": "Sampler", "inputs": [],
               "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1, 2]}],
               "widgets_values": [5, "randomize", 2, False, 0.0]},
              {"id": 9, "type": "FakeSave", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
               "outputs": [], "widgets_values": ["fake"]},
              {"id": 12, "type": "FakeMetric", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
               "outputs": [], "widgets_values": []},
          ]}
    wf = tmp_path / "ui.json"
    wf.write_text(json.dumps(ui))
    api_path = tmp_path / "api.json"
    code = cli_main([str(wf), "--server", srv.url, "--sweep", "Sampler.seed=0..2", "--out", str(tmp_path / "out"),
                     "--save-api", str(api_path), "--no-progress"])
    assert code == 0
    api = json.loads(api_path.read_text())
    assert api["3"]["inputs"] == {"seed": 5, "steps": 2, "explode": False, "sleep": 0.0}
    assert len(_done(tmp_path)) == 3


def test_two_servers_one_dies_every_job_exactly_once(fake, tmp_path):
    a = fake(step_time=0.01)
    b = fake(step_time=0.01, die_after=4)  # dies while starting its 5th prompt, with more queued
    messages = []
    res = _runner([a, b], tmp_path, max_in_flight=2, log=messages.append).run(_jobs("3.seed=0..19"))
    assert res.exit_code == 0, messages
    assert res.done == 20 and res.requeued >= 1
    assert any(f"server {b.url} is gone" in m for m in messages)
    recs = Manifest(tmp_path / "out" / "manifest.jsonl").job_records("done")
    assert len(recs) == 20 and len({r["job"] for r in recs}) == 20
    by_server = {}
    for r in recs:
        by_server.setdefault(r["server"], []).append(r["prompt_id"])
    assert set(by_server) == {a.url, b.url}
    # b ran 4 prompts; one that finished as it died may not have been collected: it was then rerun on a
    assert 1 <= len(by_server[b.url]) <= 4
    assert set(by_server[a.url]) <= set(a.executions) and set(by_server[b.url]) <= set(b.executions)
    for r in recs:
        assert (tmp_path / "out" / r["files"][0]["path"]).exists()


def test_progress_bar_moves_forward_and_does_not_flood_a_log(fake, tmp_path, capsys):
    """Found by the soak: the bar was redrawn on every websocket message (thousands of lines in a log file)."""
    srv = fake(step_time=0.03)
    res = _runner([srv], tmp_path, progress=True).run(_jobs("3.seed=0..9"))
    assert res.exit_code == 0 and res.done == 10
    shown = [float(x) for x in re.findall(r"\| *([\d.]+)/10 \[", capsys.readouterr().err)]
    assert shown and shown[-1] == 10
    assert shown == sorted(shown)  # never backwards
    assert len(shown) <= 2 * 10 + 4  # about one redraw per finished prompt on a non-terminal


def test_progress_share_never_goes_back_with_several_progress_nodes(tmp_path):
    """Found by the soak: each sampler and metric node reports its own steps, so value/max jumped back."""
    runner = BatchRunner(["http://127.0.0.1:9"], tmp_path / "out", progress=False, log=lambda s: None)
    srv = runner.servers[0]
    job = _jobs("3.seed=0..0")[0]  # 3 nodes, none cached
    fl = srv.inflight["p1"] = InFlight(job, "p1", srv, queued_at=time.time())
    counts, todo, seen = collections.Counter(), collections.deque(), []
    for typ, data in [("execution_start", {}), ("execution_cached", {"nodes": []}), ("executing", {"node": "3"}),
                      ("progress", {"value": 1, "max": 3}), ("progress", {"value": 3, "max": 3}),
                      ("executing", {"node": "12"}), ("progress", {"value": 1, "max": 4}),
                      ("executing", {"node": "9"})]:
        runner._handle("ws", srv, {"type": typ, "data": {"prompt_id": "p1", **data}}, counts, todo)
        seen.append(fl.frac)
    assert seen == sorted(seen) and 0 < seen[-1] < 1
    assert seen[3] == pytest.approx(1 / 9) and seen[4] == pytest.approx(1 / 3)  # node 3 done: one node of three
    assert seen[-1] == pytest.approx(2 / 3) and not counts and not todo


def test_cli_sigint_cancels_only_own_prompts(fake, tmp_path):
    """A real SIGINT to the console command: exit 130, manifest kept, our pending prompts deleted."""
    # slow enough prompts (30 x 3 steps x 0.5 s) that the signal lands mid-run even on a loaded machine: with 0.05 s
    # and later 0.2 s the whole sweep once finished before the poll below saw two prompts done (the command's own
    # start-up, importing torch, can take longer than the poll's patience at a load of 15); the test itself
    # interrupts after two prompts, so slower prompts cost only ~3 s
    srv = fake(step_time=0.5)
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(GRAPH))
    srv.pending.append(("foreign", GRAPH, "other"))
    code = (
        "import sys; from antithetic_sampling.nodes.api_client.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    boot = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('antithetic_sampling', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}]); m = importlib.util.module_from_spec(spec); "
        "sys.modules['antithetic_sampling'] = m; spec.loader.exec_module(m); "
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", boot + code, str(wf), "--server", srv.url, "--sweep", "3.seed=0..29",
         "--out", str(out), "--no-progress"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        # a suite started in the background of a non-interactive shell (`pytest ... &`) inherits SIGINT ignored,
        # and a Python started with SIGINT ignored never installs its KeyboardInterrupt handler: the command then
        # ran all 30 prompts and exited 0. Give the command the terminal's default, as a user's shell would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 300  # start-up included; never reached unless the command hangs
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and len(Manifest(manifest).done()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the command finished before two prompts were seen done: make the prompts slower"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cancelling" in err
    m = Manifest(manifest)
    n_done = len(m.done())
    assert 2 <= n_done < 30
    assert "foreign" not in srv.deleted and None not in srv.interrupts
    queued = {r["prompt_id"] for r in m.job_records("queued")}
    assert set(srv.deleted) <= queued
    # nothing of ours is left on the server
    time.sleep(0.3)
    assert not any(p[0] in queued for p in srv.pending)
