"""``antithetic-sampling soak``: many prompts through the batch-queue client against real ComfyUI servers.

Phase 1 (one server): N prompts (default 100) of the pack's own workflow ``workflows/api/antithetic_vs_independent.json``
(core KSampler and Antithetic KSampler, Pair Diversity Metric), shrunk to the e2e tests'
random tiny SD1.5 checkpoint (64 px, 2 steps), go through the real console command ``antithetic-queue`` (``--repeat N
--repeat-seed-stride 1``: every prompt gets new seeds). Checked: every prompt done exactly once, 0 failures, every image
downloaded (sha256 as recorded), the metric numbers collected, the server still up with nothing of ours left on its
queue. Measured: the server's RSS (``/proc/<pid>/status``) idle before, after the first prompt, after all of them and
its peak; ``/system_stats`` before/after; wall time per prompt (throughput, and per-prompt latency and execution
time from the manifest: mean, median, p95).

Phase 2 (two servers on loopback): the same N prompts with ``--server A --server B``; when half of them are done,
server B is killed with SIGKILL while it runs one of our prompts. Checked: the client exits 0, every job has exactly
one ``done`` record, the prompts B had in flight were requeued and finished on A, nothing was collected from B after
its death, A's own ``/history`` ran no job twice and only our prompts, A is still up, and every job's images are
byte-identical to the single-server run. Reported: which server made what, how many were requeued.

Phase 3 (Ray, where Ray is installed): the same N prompts with ``antithetic-queue --ray --ray-cpu-workers 2``: a
local Ray cluster, two actors each starting its own ComfyUI; when half are done, the ComfyUI process of actor
``comfy-1`` is SIGKILLed (its pid is in the manifest's run record) while it runs one of our prompts. Checked as in
phase 2 (exit 0, every job exactly once, the prompts it held requeued and finished on another actor, nothing
collected from the dead ComfyUI, images identical to phase 1); reported with the wall time per prompt for the whole
command (it includes starting the cluster and the servers) and from the first prompt queued to the last collected.

Writes ``OUT/soak.json``, ``OUT/soak.md``, the manifests and downloaded images (``OUT/phase1-single``,
``OUT/phase2-failover``, ``OUT/phase3-ray``) and the server logs (``OUT/logs``, ``OUT/phase3-ray/ray_logs``);
``--readme docs/evidence.md`` rewrites the block
``soak-results``. ``--quick``: 6 prompts (the e2e test). Exit status 0 when every check passed, 1 when one failed,
2 when ComfyUI is not available or the arguments are wrong.

It starts its own servers with the pack's local launcher ``nodes/local_comfy/`` (ComfyUI at
``$COMFYUI_PATH`` or ``~/comfy/ComfyUI``, its python at ``$COMFYUI_PYTHON``). Only those servers are contacted.
"""

from __future__ import annotations

import _thread
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

from ..cli_args import plain
from ..local_comfy import tiny_workflow as wt
from ..local_comfy.checkout import discover
from ..local_comfy.errors import ComfyUnavailable
from ..local_comfy.server import ComfyServer
from ..local_comfy.tiny_checkpoint import ensure_checkpoint
from .cli import main as queue_main
from .manifest import Manifest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = "workflows/api/antithetic_vs_independent.json"
METRIC_NODE_CLASS = "PairDiversityMetric"
METRIC_KEY = "text.Pearson correlation"  # numbers key (after "<node id>.") of the metric's summary line
QUICK_PROMPTS = 6
MiB = 1024 * 1024


class SoakError(RuntimeError):
    """Set-up problem (ComfyUI missing, checkout incomplete): one line for the user, exit status 2."""


def _say(text: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm comes with the client extra
        print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ the workflow


def soak_workflow(workflow_tiny: ModuleType = wt) -> dict:
    """The shipped antithetic-vs-independent workflow, shrunk for the tiny checkpoint (API format)."""
    path = ROOT / WORKFLOW
    if not path.is_file():
        raise SoakError(f"{path} not found (the soak runs the pack's own example workflow)")
    return workflow_tiny.shrink_for_tiny(json.loads(path.read_text(encoding="utf-8")))


def expected_images(graph: dict, batch: int) -> int:
    """Images one prompt saves: batch size times the number of SaveImage nodes."""
    return batch * sum(1 for n in graph.values() if n.get("class_type") == "SaveImage")


# ------------------------------------------------------------------------------------------ measurements


def proc_memory(pid: int) -> dict[str, int] | None:
    """``{"rss": bytes, "peak": bytes}`` of a live process (VmRSS / VmHWM), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        try:
            import psutil  # not a dependency; used where /proc is missing

            info = psutil.Process(pid).memory_info()
            return {"rss": int(info.rss), "peak": int(getattr(info, "peak_wset", 0) or info.rss)}
        except Exception:  # noqa: BLE001 - psutil missing or the process gone: no reading
            return None
    out = {}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss" if key == "VmRSS" else "peak"] = int(val.split()[0]) * 1024
    return out if "rss" in out else None


def _get_json(url: str, path: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url + path, timeout=timeout) as resp:  # noqa: S310 - our own loopback server
        return json.loads(resp.read() or b"null")


def system_stats(url: str) -> dict | None:
    try:
        data = _get_json(url, "/system_stats")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    s = data.get("system") or {}
    return {k: s.get(k) for k in ("comfyui_version", "python_version", "pytorch_version", "ram_total", "ram_free")}


def our_queue(url: str) -> tuple[list[str], list[str]] | None:
    """(running, pending) prompt ids on a server, None when it does not answer."""
    try:
        q = _get_json(url, "/queue", timeout=5)
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return ([str(i[1]) for i in q.get("queue_running", [])], [str(i[1]) for i in q.get("queue_pending", [])])


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float | int]:
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "mean": round(sum(xs) / len(xs), 3), "median": round(percentile(xs, 50), 3),
            "p95": round(percentile(xs, 95), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)}


class Monitor(threading.Thread):
    """Watches one client run from outside: the manifest file, the servers' memory, a planned kill, a hang.

    Every ``interval`` s it reads the manifest (a torn last line is ignored) and each live server's RSS. With ``kill``
    = (server, after_done) it SIGKILLs that server once ``after_done`` jobs are done, at a moment when one of our
    prompts is running on it (or ``kill_wait`` s later whatever it does). When the manifest gets no new record for
    ``stall_s`` while jobs remain, the client is declared hung and interrupted like Ctrl-C.
    """

    def __init__(self, manifest: Path, servers: dict[str, Any], total: int, kill: tuple[str, int] | None = None,
                 stall_s: float = 300.0, interval: float = 0.25, kill_wait: float = 60.0) -> None:
        super().__init__(daemon=True, name="soak-monitor")
        self.manifest_path = manifest
        self.servers = servers  # name -> ComfyServer
        self.total = total
        self.kill_plan = kill
        self.stall_s = stall_s
        self.interval = interval
        self.kill_wait = kill_wait
        self.stop_event = threading.Event()
        self.samples: list[dict] = []  # one per change of the done count
        self.peak: dict[str, int] = {}
        self.killed: dict | None = None
        self.stalled = False
        self.done = 0
        self._kill_due: float | None = None

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)

    def run(self) -> None:
        n_records, last_change = -1, time.time()
        while not self.stop_event.wait(self.interval):
            m = Manifest(self.manifest_path) if self.manifest_path.exists() else None
            if m is not None:
                self.discover(m)
            records = len(m.records) if m else 0
            done = len(m.done()) if m else 0
            now = time.time()
            if records != n_records:
                n_records, last_change = records, now
            mem = {}
            for name, srv in self.servers.items():
                if srv.proc is not None and srv.proc.poll() is None:
                    reading = proc_memory(srv.proc.pid)
                    if reading:
                        mem[name] = reading["rss"]
                        self.peak[name] = max(self.peak.get(name, 0), reading.get("peak", reading["rss"]))
            if done != self.done or not self.samples:
                self.samples.append({"t": round(now, 3), "done": done, "rss": mem})
                self.done = done
            if self.kill_plan and self.killed is None and done >= self.kill_plan[1]:
                self._maybe_kill(done, now)
            if done < self.total and now - last_change > self.stall_s:
                self.stalled = True
                _say(f"soak: no manifest record for {self.stall_s:.0f} s with {self.total - done} job(s) left: "
                     "the client hangs; interrupting it")
                _thread.interrupt_main()
                return

    def discover(self, manifest: Manifest) -> None:
        """Hook: servers that appear during the run (the Ray phase reads them from the run record)."""

    def _maybe_kill(self, done: int, now: float) -> None:
        name = self.kill_plan[0]
        srv = self.servers.get(name)
        if srv is None:
            return
        if self._kill_due is None:
            self._kill_due = now + self.kill_wait
        q = our_queue(srv.url)
        if q is not None and not q[0] and now < self._kill_due:
            return  # wait until one of our prompts is running there: the interesting moment
        reading = proc_memory(srv.proc.pid) or {}
        os.kill(srv.proc.pid, signal.SIGKILL)
        t_kill = time.time()
        try:
            rc = srv.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - reported as "still running" below
            rc = None
        self.killed = {"server": name, "url": srv.url, "pid": srv.proc.pid, "time": round(t_kill, 3),
                       "done_at_kill": done, "running": q[0] if q else [], "pending": q[1] if q else [],
                       "returncode": rc, "rss_at_kill": reading.get("rss")}
        _say(f"soak: killed server {name} ({srv.url}, pid {srv.proc.pid}) with SIGKILL after {done}/{self.total} "
             f"prompts were done; it was running {len(self.killed['running'])} and holding "
             f"{len(self.killed['pending'])} more")

    def rss_at(self, done: int, name: str) -> int | None:
        """RSS of a server at the first sample with at least ``done`` jobs done."""
        for s in self.samples:
            if s["done"] >= done and name in s["rss"]:
                return s["rss"][name]
        return None


# ------------------------------------------------------------------------------------------ verification


class ForeignProcess:
    """A process that is not our child (a Ray actor's ComfyUI): pid, poll() and wait() like ``subprocess.Popen``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
                gone = "\nState:\tZ" in Path(f"/proc/{self.pid}/status").read_text(encoding="ascii", errors="replace")
            except ProcessLookupError:
                gone = True
            except OSError:
                gone = False
            if gone:
                self.returncode = -9  # only we kill it, with SIGKILL (the actor reaps it, not us)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.time() + (timeout or 1e9)
        while self.poll() is None:
            if time.time() > deadline:
                raise TimeoutError(f"pid {self.pid} still running")
            time.sleep(0.05)
        return self.returncode


class ActorComfy:
    """What the monitor needs of a Ray actor's ComfyUI on this machine: its loopback URL and process."""

    def __init__(self, actor: dict) -> None:
        self.label = actor["label"]
        self.server = actor["server"]  # ray://comfy-N@NODE:PORT, as in the manifest
        self.url = "http://127.0.0.1:" + actor["server"].rsplit(":", 1)[-1]
        self.proc = ForeignProcess(int(actor["comfy_pid"]))


class RayMonitor(Monitor):
    """The monitor of the Ray phase: the actors' ComfyUI processes are read from the manifest's run record."""

    def discover(self, manifest: Manifest) -> None:
        if self.servers:
            return
        run = next((r for r in manifest.records if r.get("type") == "run" and r.get("ray")), None)
        if run is not None:
            self.servers.update({a["label"]: ActorComfy(a) for a in run["ray"]["actors"] if a.get("comfy_pid")})


def check(checks: list[dict], name: str, ok: bool, detail: str = "") -> bool:
    checks.append({"check": name, "ok": bool(ok), "detail": detail})
    if not ok:
        _say(f"soak: FAILED: {name}{': ' + detail if detail else ''}")
    return bool(ok)


def verify_manifest(path: Path, out_dir: Path, n_jobs: int, images_per_job: int, metric_node: str | None,
                    checks: list[dict]) -> dict:
    """Every job of the last run exactly once ``done``, no failure, every image on disk as recorded."""
    m = Manifest(path)
    runs = [r for r in m.records if r.get("type") == "run"]
    run_id = runs[-1]["run"] if runs else None
    recs = [r for r in m.job_records() if r.get("run") == run_id]
    jobs = {r["job"] for r in recs}
    done_recs = [r for r in recs if r["status"] == "done"]
    errors = [r for r in recs if r["status"] == "error"]
    per_job: dict[str, int] = {}
    for r in done_recs:
        per_job[r["job"]] = per_job.get(r["job"], 0) + 1
    dupes = sorted(k for k, c in per_job.items() if c > 1)
    missing = sorted(jobs - set(per_job))
    check(checks, f"{n_jobs} jobs in the manifest", len(jobs) == n_jobs, f"found {len(jobs)}")
    check(checks, "every job done exactly once", not dupes and not missing and len(per_job) == n_jobs,
          f"{len(per_job)} done, duplicated {dupes[:5]}, missing {missing[:5]}")
    check(checks, "0 failures", not errors,
          "; ".join(str((r.get("error") or {}).get("message", ""))[:200] for r in errors[:3]))
    pids = [r.get("prompt_id") for r in done_recs]
    check(checks, "one prompt id per result", len(set(pids)) == len(pids) and all(pids))
    bad_files, n_files, metric_missing = [], 0, []
    for r in done_recs:
        files = [f for f in r.get("files") or [] if f.get("type") == "output"]
        if len(files) != images_per_job:
            bad_files.append(f"job {r['index']}: {len(files)} images, expected {images_per_job}")
        for f in files:
            p = out_dir / f["path"]
            n_files += 1
            if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != f.get("sha256"):
                bad_files.append(f"job {r['index']}: {f['path']} missing or not as recorded")
        if metric_node is not None and not isinstance((r.get("numbers") or {}).get(f"{metric_node}.{METRIC_KEY}"),
                                                      float):
            metric_missing.append(r["index"])
    check(checks, "every image downloaded and intact", not bad_files, "; ".join(bad_files[:5]))
    if metric_node is not None:
        check(checks, "metric numbers collected for every prompt", not metric_missing,
              f"missing for jobs {metric_missing[:10]}")
    latency = [r.get("wall_s") for r in done_recs]
    first = min(done_recs, key=lambda r: r.get("queued_at") or math.inf, default=None)
    execution = [r["finished_at"] - r["started_at"] for r in done_recs if r.get("started_at") and r.get("finished_at")]
    by_server: dict[str, int] = {}
    for r in done_recs:
        by_server[r["server"]] = by_server.get(r["server"], 0) + 1
    metric = [r["numbers"][f"{metric_node}.{METRIC_KEY}"] for r in done_recs
              if metric_node is not None and isinstance((r.get("numbers") or {}).get(f"{metric_node}.{METRIC_KEY}"), float)]
    ref = [r["numbers"][f"{metric_node}.{METRIC_KEY}.reference"] for r in done_recs if metric_node is not None
           and isinstance((r.get("numbers") or {}).get(f"{metric_node}.{METRIC_KEY}.reference"), float)]
    return {
        "run": run_id, "jobs": len(jobs), "done": len(per_job), "done_records": len(done_recs),
        "failed": len({r["job"] for r in errors}), "duplicates": len(dupes), "missing": len(missing),
        "images": n_files, "images_per_job": images_per_job, "done_by_server": by_server,
        "requeued": len([r for r in recs if r["status"] == "requeued"]),
        "latency_s": summary(latency), "execution_s": summary(execution),
        "first_prompt_latency_s": first.get("wall_s") if first else None,
        "metric_pearson_mean": round(sum(metric) / len(metric), 4) if metric else None,
        "metric_pearson_reference_mean": round(sum(ref) / len(ref), 4) if ref else None,
        "_done": {r["job"]: r for r in done_recs}, "_records": recs,
    }


def requeue_analysis(recs: list[dict], done: dict, killed: dict | None):
    """After a server was killed: (prompt id -> job of every prompt we queued, the requeue records, the prompts of
    ours the killed server held (running or pending), those of them neither requeued nor finished under that id)."""
    by_pid = {r["prompt_id"]: r["job"] for r in recs if r["status"] == "queued" and r.get("prompt_id")}
    requeued = [r for r in recs if r["status"] == "requeued"]
    lost = [pid for pid in (killed or {}).get("running", []) + (killed or {}).get("pending", []) if pid in by_pid]
    requeued_ids = {r.get("prompt_id") for r in requeued}
    not_requeued = [pid for pid in lost if pid not in requeued_ids and done.get(by_pid[pid], {}).get("prompt_id") != pid]
    return by_pid, requeued, lost, not_requeued


def server_alive(srv: Any, ours: set[str]) -> tuple[bool, str]:
    """The process runs, answers /system_stats, and holds none of our prompts."""
    if srv.proc is None or srv.proc.poll() is not None:
        return False, f"process exited with {None if srv.proc is None else srv.proc.returncode}"
    if system_stats(srv.url) is None:
        return False, "does not answer /system_stats"
    q = our_queue(srv.url)
    if q is None:
        return False, "does not answer /queue"
    left = (set(q[0]) | set(q[1])) & ours
    if left:
        return False, f"{len(left)} of our prompts still on its queue"
    return True, ""


# ------------------------------------------------------------------------------------------------ phases


def _queue_argv(workflow: Path, servers: list[Any], out: Path, n: int, batch: int, steps: int,
                progress: bool, target: list[str] | None = None) -> list[str]:
    argv = [str(workflow)]
    for srv in servers:
        argv += ["--server", srv.url]
    argv += list(target or [])
    graph = json.loads(Path(workflow).read_text(encoding="utf-8"))
    for nid, node in sorted(graph.items()):  # every sampler's steps widget (KSampler, Antithetic KSampler, ...)
        if isinstance(node.get("inputs", {}).get("steps"), int):
            argv += ["--set", f"{nid}.steps={steps}"]
    argv += ["--set", f"EmptyLatentImage.batch_size={batch}",
             "--repeat", str(n), "--repeat-seed-stride", "1", "--max-in-flight", "2", "--out", str(out)]
    if not progress:
        argv.append("--no-progress")
    return argv


def _run_client(argv: list[str], monitor: Monitor) -> tuple[int, float]:
    _say("soak: antithetic-queue " + " ".join(shlex.quote(a) for a in argv))
    monitor.start()
    t0 = time.perf_counter()
    try:
        rc = queue_main(argv)
    except KeyboardInterrupt:  # the monitor's hang interrupt arriving outside the client's own handler
        rc = 130
    finally:
        wall = time.perf_counter() - t0
        monitor.stop()
    return rc, wall


def _mib(x: int | None) -> float | None:
    return None if x is None else round(x / MiB, 1)


def phase_single(ctx: dict, checks: list[dict]) -> dict:
    n = ctx["n"]
    out = ctx["out"] / "phase1-single"
    shutil.rmtree(out, ignore_errors=True)  # a fresh manifest: a rerun must not resume the previous soak
    srv = ctx["start_server"]("single")
    try:
        stats_before = system_stats(srv.url)
        mem_before = proc_memory(srv.proc.pid) or {}
        monitor = Monitor(out / "manifest.jsonl", {"single": srv}, n, stall_s=ctx["stall_s"])
        rc, wall = _run_client(_queue_argv(ctx["workflow_path"], [srv], out, n, ctx["batch"], ctx["steps"],
                                           ctx["progress"]), monitor)
        check(checks, "phase 1: client exit status 0", rc == 0, f"exit status {rc}")
        check(checks, "phase 1: client did not hang", not monitor.stalled)
        res = verify_manifest(out / "manifest.jsonl", out, n, ctx["images_per_job"], ctx["metric_node"], checks)
        ours = {r["prompt_id"] for r in res["_records"] if r.get("prompt_id")}
        time.sleep(1.0)
        alive, why = server_alive(srv, ours)
        check(checks, "phase 1: server still up, nothing of ours left on it", alive, why)
        mem_after = proc_memory(srv.proc.pid) or {}
        stats_after = system_stats(srv.url)
        after_first = monitor.rss_at(1, "single")
        after_tenth = monitor.rss_at(max(1, n // 10), "single")
        res.update({
            "server": srv.url, "exit_code": rc, "wall_s": round(wall, 2),
            "throughput_s_per_prompt": round(wall / n, 3), "alive_after": alive,
            "rss_mib": {"idle_before": _mib(mem_before.get("rss")), "after_first_prompt": _mib(after_first),
                        "after_10pct": _mib(after_tenth), "after_all": _mib(mem_after.get("rss")),
                        "peak": _mib(max(mem_after.get("peak", 0), monitor.peak.get("single", 0)) or None)},
            "system_stats_before": stats_before, "system_stats_after": stats_after,
            "rss_by_done_mib": [[s["done"], _mib(s["rss"].get("single"))] for s in monitor.samples],
        })
        return res
    finally:
        ctx["stop_server"](srv, "single")


def phase_failover(ctx: dict, checks: list[dict], single: dict | None) -> dict:
    n = ctx["n"]
    out = ctx["out"] / "phase2-failover"
    shutil.rmtree(out, ignore_errors=True)
    a = ctx["start_server"]("survivor")
    b = None
    try:
        b = ctx["start_server"]("killed")
        kill_after = max(1, n // 2)
        monitor = Monitor(out / "manifest.jsonl", {"survivor": a, "killed": b}, n, kill=("killed", kill_after),
                          stall_s=ctx["stall_s"])
        mem_a_before = proc_memory(a.proc.pid) or {}
        rc, wall = _run_client(_queue_argv(ctx["workflow_path"], [a, b], out, n, ctx["batch"], ctx["steps"],
                                           ctx["progress"]), monitor)
        killed = monitor.killed
        check(checks, "phase 2: client exit status 0", rc == 0, f"exit status {rc}")
        check(checks, "phase 2: client did not hang", not monitor.stalled)
        check(checks, "phase 2: server B killed mid-run", killed is not None and killed["done_at_kill"] < n
              and killed["returncode"] is not None,
              "not killed" if killed is None else f"killed after {killed['done_at_kill']}/{n}, rc {killed['returncode']}")
        res = verify_manifest(out / "manifest.jsonl", out, n, ctx["images_per_job"], ctx["metric_node"], checks)
        recs, done = res.pop("_records"), res["_done"]
        by_pid, requeued, lost, not_requeued = requeue_analysis(recs, done, killed)
        check(checks, "phase 2: the prompts on the killed server were requeued", not not_requeued,
              f"{len(not_requeued)} of {len(lost)} not requeued")
        wrong = [r["index"] for r in requeued if done.get(r["job"], {}).get("server") != a.url]
        check(checks, "phase 2: every requeued job finished on the surviving server", not wrong,
              f"jobs {wrong[:10]}")
        late = [r["index"] for r in done.values() if killed and r["server"] == b.url and r["finished_at"] > killed["time"]]
        check(checks, "phase 2: nothing collected from the killed server after its death", not late,
              f"jobs {late[:10]}")
        # the survivor's own record of what it ran: each job at most once, only prompts we queued
        try:
            history = _get_json(a.url, "/history", timeout=60)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            history = None
            check(checks, "phase 2: survivor /history readable", False, str(exc))
        runs_per_job: dict[str, int] = {}
        foreign = []
        for pid, entry in (history or {}).items():
            if pid not in by_pid:
                foreign.append(pid)
                continue
            if (entry.get("status") or {}).get("status_str") == "success":
                runs_per_job[by_pid[pid]] = runs_per_job.get(by_pid[pid], 0) + 1
        twice = [k for k, c in runs_per_job.items() if c > 1]
        if history is not None:
            check(checks, "phase 2: the survivor ran no job twice and nothing but our prompts",
                  not twice and not foreign, f"{len(twice)} jobs twice, {len(foreign)} unknown prompts")
        ours = set(by_pid)
        alive, why = server_alive(a, ours)
        check(checks, "phase 2: surviving server still up, nothing of ours left on it", alive, why)
        same = None
        if single is not None:
            same = sum(1 for k, r in done.items() if k in single["_done"]
                       and sorted(f["sha256"] for f in r["files"] if f["type"] == "output")
                       == sorted(f["sha256"] for f in single["_done"][k]["files"] if f["type"] == "output"))
            check(checks, "phase 2: every job's images identical to the single-server run", same == n,
                  f"{same} of {n} identical")
        mem_a_after = proc_memory(a.proc.pid) or {}
        res.update({
            "servers": {"survivor": a.url, "killed": b.url}, "exit_code": rc, "wall_s": round(wall, 2),
            "throughput_s_per_prompt": round(wall / n, 3), "killed": killed,
            "done_by_role": {"survivor": res["done_by_server"].get(a.url, 0),
                             "killed": res["done_by_server"].get(b.url, 0)},
            "requeued_jobs": sorted(r["index"] for r in requeued),
            "requeued_done_on_survivor": len(requeued) - len(wrong),
            "survivor_history_prompts": len(history or {}), "survivor_jobs_run_twice": len(twice),
            "identical_to_single": same, "survivor_alive_after": alive,
            "survivor_rss_mib": {"idle_before": _mib(mem_a_before.get("rss")), "after_all": _mib(mem_a_after.get("rss")),
                                 "peak": _mib(max(mem_a_after.get("peak", 0), monitor.peak.get("survivor", 0)) or None)},
        })
        return res
    finally:
        ctx["stop_server"](a, "survivor")
        if b is not None:
            ctx["stop_server"](b, "killed")


RAY_ACTORS = 2
RAY_VICTIM = "comfy-1"


def phase_ray(ctx: dict, checks: list[dict], single: dict | None) -> dict:
    """The same N prompts through ``antithetic-queue --ray`` (a local Ray cluster, two CPU actors, each with its
    own ComfyUI); the ComfyUI process of one actor is SIGKILLed when half are done. Ray restarts that actor."""
    n = ctx["n"]
    out = ctx["out"] / "phase3-ray"
    shutil.rmtree(out, ignore_errors=True)
    cenv = ctx["cenv"]
    target = ["--ray", "--ray-cpu-workers", str(RAY_ACTORS), "--ray-test-checkpoint", "--comfyui",
              str(cenv.comfy_path), "--comfyui-python", str(cenv.python)]
    monitor = RayMonitor(out / "manifest.jsonl", {}, n, kill=(RAY_VICTIM, max(1, n // 2)), stall_s=ctx["stall_s"])
    t_cmd = time.time()
    rc, wall = _run_client(_queue_argv(ctx["workflow_path"], [], out, n, ctx["batch"], ctx["steps"],
                                       ctx["progress"], target), monitor)
    killed = monitor.killed
    check(checks, "phase 3 (Ray): client exit status 0", rc == 0, f"exit status {rc}")
    check(checks, "phase 3 (Ray): client did not hang", not monitor.stalled)
    check(checks, "phase 3 (Ray): one actor's ComfyUI killed mid-run", killed is not None and killed["done_at_kill"] < n,
          "not killed" if killed is None else f"killed after {killed['done_at_kill']}/{n}")
    res = verify_manifest(out / "manifest.jsonl", out, n, ctx["images_per_job"], ctx["metric_node"], checks)
    recs, done = res.pop("_records"), res["_done"]
    m = Manifest(out / "manifest.jsonl")
    run = next((r for r in reversed(m.records) if r.get("type") == "run" and r.get("ray")), {})
    actors = {a["label"]: a for a in (run.get("ray") or {}).get("actors", [])}
    victim = (actors.get(RAY_VICTIM) or {}).get("server")
    _, requeued, lost, not_requeued = requeue_analysis(recs, done, killed)
    check(checks, "phase 3 (Ray): the prompts of the killed ComfyUI were requeued", not not_requeued,
          f"{len(not_requeued)} of {len(lost)} not requeued")
    wrong = [r["index"] for r in requeued if done.get(r["job"], {}).get("server") == victim]
    check(checks, "phase 3 (Ray): every requeued job finished on another actor (or the restarted one)", not wrong,
          f"jobs {wrong[:10]}")
    late = [r["index"] for r in done.values() if killed and r["server"] == victim and r["finished_at"] > killed["time"]]
    check(checks, "phase 3 (Ray): nothing collected from the killed ComfyUI after its death", not late,
          f"jobs {late[:10]}")
    same = None
    if single is not None:
        same = sum(1 for k, r in done.items() if k in single["_done"]
                   and sorted(f["sha256"] for f in r["files"] if f["type"] == "output")
                   == sorted(f["sha256"] for f in single["_done"][k]["files"] if f["type"] == "output"))
        check(checks, "phase 3 (Ray): every job's images identical to the single-server run", same == n,
              f"{same} of {n} identical")
    # who made what: the first incarnation of each actor, and the victim after Ray restarted it (a new port)
    by_role = {"survivor": 0, "killed": 0, "restarted": 0}
    for r in done.values():
        if r["server"] == victim:
            by_role["killed"] += 1
        elif r["server"].startswith(f"ray://{RAY_VICTIM}@"):
            by_role["restarted"] += 1
        else:
            by_role["survivor"] += 1
    finished = [r["finished_at"] for r in done.values() if r.get("finished_at")]
    batch_wall = (max(finished) - run["time"]) if finished and run.get("time") else None
    res.update({
        "exit_code": rc, "wall_s": round(wall, 2), "throughput_s_per_prompt": round(wall / n, 3),
        "startup_s": round(run["time"] - t_cmd, 1) if run.get("time") else None,
        "batch_wall_s": round(batch_wall, 2) if batch_wall else None,
        "batch_s_per_prompt": round(batch_wall / n, 3) if batch_wall else None,
        "actors": list(actors.values()), "killed": killed, "killed_server": victim, "done_by_role": by_role,
        "requeued_jobs": sorted(r["index"] for r in requeued), "requeued_done_elsewhere": len(requeued) - len(wrong),
        "identical_to_single": same,
    })
    return res


# ---------------------------------------------------------------------------------------------- reports


def _fmt_s(s: dict) -> str:
    if not s.get("n"):
        return "n/a"
    return f"{s['mean']:.2f} / {s['median']:.2f} / {s['p95']:.2f}"


def markdown(result: dict) -> str:
    p1, p2, p3 = result.get("phase1"), result.get("phase2"), result.get("phase3")
    env = result["environment"]
    lines = [
        f"`{result['command']}` — {result['prompts']} prompts per phase, {result['finished']}, "
        f"ComfyUI {env.get('comfyui_version')} `--cpu` on {env['platform']}, {env['cpus']} CPU core(s), load average "
        f"{env['load_average_at_start']} at the start (timings depend on the machine), total {result['seconds']:.0f} s. "
        f"Workflow: `{WORKFLOW}` (core KSampler and Antithetic KSampler, "
        f"Pair Diversity Metric) on the random tiny SD1.5 test checkpoint, {result['px']} px, batch {result['batch']}, "
        f"{result['steps']} steps, queued by `antithetic-queue --repeat {result['prompts']} --repeat-seed-stride 1` "
        f"(2 prompts in flight per server). **{result['passed']}/{len(result['checks'])} checks passed.**",
        "",
    ]
    if p1:
        r = p1["rss_mib"]
        lines += [
            "| one server | |",
            "|---|---|",
            f"| prompts done / failed / done twice | {p1['done']} / {p1['failed']} / {p1['duplicates']} |",
            f"| images downloaded and verified (sha256) | {p1['images']} |",
            f"| server still up afterwards | {'yes' if p1['alive_after'] else '**no**'} |",
            f"| server RSS idle before → after 1st prompt → after all (peak), MiB | {r['idle_before']} → "
            f"{r['after_first_prompt']} → {r['after_all']} ({r['peak']}) |",
            f"| wall time, whole batch | {p1['wall_s']:.1f} s = {p1['throughput_s_per_prompt']:.2f} s per prompt |",
            f"| per prompt, queued → collected: mean / median / p95 | {_fmt_s(p1['latency_s'])} s |",
            f"| first prompt (loads the checkpoint), queued → collected | {p1['first_prompt_latency_s']} s |",
            f"| per prompt, started → collected: mean / median / p95 | {_fmt_s(p1['execution_s'])} s |",
            "",
        ]
    if p2:
        k = p2.get("killed") or {}
        lines += [
            "| two servers, one killed (SIGKILL) halfway | |",
            "|---|---|",
            f"| killed after | {k.get('done_at_kill', 'n/a')} of {result['prompts']} prompts done, while running "
            f"{len(k.get('running', []))} and holding {len(k.get('pending', []))} more of ours |",
            f"| prompts done / failed / done twice | {p2['done']} / {p2['failed']} / {p2['duplicates']} |",
            f"| made by the survivor / by the killed server | {p2['done_by_role']['survivor']} / "
            f"{p2['done_by_role']['killed']} |",
            f"| requeued after the kill, then done on the survivor | {len(p2['requeued_jobs'])}, "
            f"{p2['requeued_done_on_survivor']} |",
            f"| jobs the survivor ran twice (its /history) | {p2['survivor_jobs_run_twice']} |",
            f"| images identical to the one-server run | {p2['identical_to_single']} of {result['prompts']} jobs |",
            f"| survivor still up afterwards | {'yes' if p2['survivor_alive_after'] else '**no**'} |",
            f"| wall time, whole batch | {p2['wall_s']:.1f} s = {p2['throughput_s_per_prompt']:.2f} s per prompt |",
            "",
        ]
    if p3:
        k = p3.get("killed") or {}
        one = f"; one server: {p1['throughput_s_per_prompt']:.2f} s" if p1 else ""
        lines += [
            f"| Ray: `antithetic-queue --ray --ray-cpu-workers {RAY_ACTORS}` (local cluster, {RAY_ACTORS} actors), "
            "one actor's ComfyUI killed (SIGKILL) halfway | |",
            "|---|---|",
            f"| killed after | {k.get('done_at_kill', 'n/a')} of {result['prompts']} prompts done, while running "
            f"{len(k.get('running', []))} and holding {len(k.get('pending', []))} more of ours |",
            f"| prompts done / failed / done twice | {p3['done']} / {p3['failed']} / {p3['duplicates']} |",
            f"| made by the other actor / the killed one before / after Ray restarted it | "
            f"{p3['done_by_role']['survivor']} / {p3['done_by_role']['killed']} / {p3['done_by_role']['restarted']} |",
            f"| requeued after the kill, then done on another actor | {len(p3['requeued_jobs'])}, "
            f"{p3['requeued_done_elsewhere']} |",
            f"| images identical to the one-server run | {p3['identical_to_single']} of {result['prompts']} jobs |",
            f"| wall time per prompt, whole command (cluster and {RAY_ACTORS} ComfyUI start {p3['startup_s']} s) | "
            f"{p3['throughput_s_per_prompt']:.2f} s{one} |",
            "| wall time per prompt, first queued → last collected | "
            + (f"{p3['batch_s_per_prompt']:.2f} s |" if p3.get("batch_s_per_prompt") else "n/a |"),
            "",
        ]
    elif result.get("ray_skipped"):
        lines += [f"Ray phase not run: {result['ray_skipped']}", ""]
    failed = [c for c in result["checks"] if not c["ok"]]
    if failed:
        lines.append("Failed checks: " + "; ".join(f"{c['check']} ({c['detail']})" for c in failed))
    return "\n".join(lines).strip()


def _cpus() -> int | None:
    """CPU cores this process may use (affinity / container limit), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _public(d: dict | None) -> dict | None:
    return None if d is None else {k: v for k, v in d.items() if not k.startswith("_")}


# --------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="antithetic-sampling soak", description=plain(__doc__.split("\n\n")[0]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=plain(__doc__.split("\n\n", 1)[1]))
    ap.add_argument("--prompts", type=int, default=None, help=f"prompts per phase (default 100; --quick {QUICK_PROMPTS})")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_PROMPTS} prompts per phase (the e2e test)")
    ap.add_argument("--batch", type=int, default=4, help="images per prompt and noise branch (default 4)")
    ap.add_argument("--steps", type=int, default=2, help="sampler steps (default 2)")
    ap.add_argument("--out", type=Path, default=Path("bench_out/soak"), help="output folder (default bench_out/soak)")
    ap.add_argument("--readme", type=Path, help="rewrite the soak-results block of this README")
    ap.add_argument("--phase", choices=["all", "both", "single", "failover", "ray"], default="all",
                    help="which phase(s) to run: all (default; the Ray phase only where Ray is installed), both "
                    "(single and failover), or one")
    ap.add_argument("--stall", type=float, default=300.0,
                    help="seconds without a new manifest record after which the client counts as hung (default 300)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    n = args.prompts or (QUICK_PROMPTS if args.quick else 100)
    if n < 2 or args.batch < 2 or args.batch % 2 or args.steps < 1:
        print("error: --prompts must be at least 2, --batch an even number >= 2 (antithetic pairs), --steps >= 1",
              file=sys.stderr)
        return 2
    if args.readme is not None:
        try:
            text = args.readme.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"error: --readme {args.readme}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if "<!-- BEGIN:soak-results -->" not in text or "<!-- END:soak-results -->" not in text:
            print(f"error: --readme {args.readme} has no <!-- BEGIN:soak-results --> ... <!-- END:soak-results --> "
                  "block to rewrite", file=sys.stderr)
            return 2
    ray_missing = None
    if args.phase in ("all", "ray"):
        try:
            import ray  # noqa: F401
        except ImportError:
            ray_missing = "Ray is not installed (pip install 'antithetic-sampling[ray]')"
            if args.phase == "ray":
                print(f"error: --phase ray: {ray_missing}", file=sys.stderr)
                return 2
    t_start = time.perf_counter()
    try:
        load_at_start = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load_at_start = None
    try:
        graph = soak_workflow(wt)
        try:
            cenv = discover()
        except ComfyUnavailable as exc:
            raise SoakError(f"ComfyUI is not available: {exc}") from None
        ckpt, ckpt_s = ensure_checkpoint(cenv)
    except SoakError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    workflow_path = args.out / "workflow_api.json"
    workflow_path.write_text(json.dumps(graph, indent=2), encoding="utf-8")
    metric_node = next((nid for nid, node in graph.items() if node["class_type"] == METRIC_NODE_CLASS), None)
    bases = Path(tempfile.mkdtemp(prefix="antithetic-soak-"))
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)

    def start_server(name: str):
        _say(f"soak: starting ComfyUI '{name}' ({cenv.comfy_path}, {cenv.python}) ...")
        srv = ComfyServer(cenv, bases / name, ckpt)
        srv.start()
        bad = srv.pack_import_problems()
        if bad:
            srv.stop()
            raise SoakError(f"the pack failed to load in ComfyUI '{name}':\n" + "\n".join(bad)[:3000])
        _say(f"soak: ComfyUI '{name}' up at {srv.url} (pid {srv.proc.pid}) in {srv.start_seconds:.1f} s")
        return srv

    def stop_server(srv, name: str) -> None:
        srv.stop()
        if srv.log_path.exists():
            shutil.copyfile(srv.log_path, logs / f"{name}.log")

    ctx = {"n": n, "out": args.out, "workflow_path": workflow_path, "batch": args.batch, "cenv": cenv,
           "steps": args.steps, "progress": not args.no_progress, "images_per_job": expected_images(graph, args.batch),
           "metric_node": metric_node, "stall_s": args.stall, "start_server": start_server, "stop_server": stop_server}
    checks: list[dict] = []
    single = failover = on_ray = None
    try:
        if args.phase in ("all", "both", "single"):
            _say(f"soak: phase 1: {n} prompts on one server")
            single = phase_single(ctx, checks)
        if args.phase in ("all", "both", "failover"):
            _say(f"soak: phase 2: {n} prompts on two servers, one killed halfway")
            failover = phase_failover(ctx, checks, single)
        if args.phase in ("all", "ray"):
            if ray_missing is None:
                _say(f"soak: phase 3: {n} prompts on a local Ray cluster, {RAY_ACTORS} actors, one killed halfway")
                on_ray = phase_ray(ctx, checks, single)
            else:
                _say(f"soak: Ray phase not run: {ray_missing}")
    except SoakError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(bases, ignore_errors=True)
    shown = ["antithetic-sampling", "soak"] + list(sys.argv[1:] if argv is None else argv)
    sys_stats = (single or failover or {}).get("system_stats_before") or {}
    result = {
        "command": " ".join(shlex.quote(a) for a in shown),
        "quick": args.quick, "prompts": n, "batch": args.batch, "steps": args.steps,
        "px": next((nd["inputs"].get("width") for nd in graph.values() if nd["class_type"] == "EmptyLatentImage"), None),
        "workflow": WORKFLOW, "images_per_prompt": ctx["images_per_job"],
        "finished": datetime.date.today().isoformat(),
        "environment": {"platform": f"{platform.system()} {platform.machine()}", "cpus": _cpus(),
                        "comfyui_version": sys_stats.get("comfyui_version") or cenv.version,
                        "pytorch_version": sys_stats.get("pytorch_version"),
                        "checkpoint_generated_s": round(ckpt_s, 1), "load_average_at_start": load_at_start},
        "phase1": _public(single), "phase2": _public(failover), "phase3": _public(on_ray),
        "ray_skipped": ray_missing if args.phase in ("all", "ray") else None,
        "checks": checks, "passed": sum(c["ok"] for c in checks),
        "ok": bool(checks) and all(c["ok"] for c in checks),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    text = markdown(result)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (args.out / "soak.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    if args.readme:
        from ..evidence.provenance import replace_block

        if not replace_block(args.readme, "soak-results", text):
            print(f"warning: no <!-- BEGIN:soak-results --> block in {args.readme}; README left unchanged",
                  file=sys.stderr)
    _say(f"soak: {result['passed']}/{len(checks)} checks passed in {result['seconds']:.0f} s; "
         f"{args.out / 'soak.json'}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
