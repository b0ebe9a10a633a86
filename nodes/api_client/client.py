"""Batch-queue client for the ComfyUI HTTP API (stdlib + websocket-client + tqdm).

One ``BatchRunner`` takes a list of jobs (``jobs.build_jobs``) and one or more ComfyUI servers:

- each server gets its own ``client_id`` and websocket (``/ws?clientId=``); a reader thread per server turns
  messages into events for the single main loop, which does all HTTP and all bookkeeping;
- at most ``max_in_flight`` of our prompts sit on a server at a time (one running, one waiting, by default), so
  a dead server strands little work; prompts go to the live server with the fewest in flight;
- a prompt is finished when ``executing`` arrives with ``node: null`` for its id (the server's last websocket
  message for a prompt, sent after its outputs), or when ``/history/{id}`` shows it (polled as a safety net, and
  for prompts adopted from an earlier run);
- outputs are downloaded from ``/view`` into ``out_dir/<job key>/``, and a ``done`` record with the files, the
  non-file ui values and the numbers found in them is appended to the manifest before anything else happens;
- a server that stops answering is marked dead and its unfinished prompts go back to the queue for the others;
- Ctrl-C (KeyboardInterrupt, or ``request_stop()``) deletes our pending prompts (``POST /queue {"delete"}``) and
  interrupts the running one only when it is ours (``POST /interrupt {"prompt_id"}``), nothing else.

Only the servers given are contacted.
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import json
import os
import queue
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jobs import Job
from .manifest import Manifest

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CANCELLED = 130


class ClientError(RuntimeError):
    """A problem worth one clear line to the user (unreachable server, bad workflow, ...)."""


class ServerUnreachable(ClientError):
    pass


class PromptRejected(ClientError):
    """HTTP 400 from POST /prompt; ``str()`` is the plain-words explanation."""

    def __init__(self, text: str, body: dict) -> None:
        super().__init__(text)
        self.body = body


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://", url):
        url = "http://" + url
    return url


# --------------------------------------------------------------------------------------------- error text

def _input_label(prompt: dict | None, nid: str) -> str:
    node = (prompt or {}).get(nid) or {}
    title = (node.get("_meta") or {}).get("title")
    cls = node.get("class_type")
    if title and cls and title != cls:
        return f"node {nid} '{title}' ({cls})"
    return f"node {nid} ({title or cls or '?'})"


def _error_sentence(err: dict) -> str:
    typ = err.get("type", "")
    extra = err.get("extra_info") or {}
    name = extra.get("input_name")
    got = extra.get("received_value")
    details = err.get("details", "")
    msg = err.get("message", typ)
    if typ == "required_input_missing":
        return f"input '{name or details}' is required but not connected or set"
    if typ == "value_not_in_list":
        cfg = extra.get("input_config")
        options = ""
        if isinstance(cfg, list) and cfg and isinstance(cfg[0], list):
            options = "; allowed: " + ", ".join(map(str, cfg[0][:20]))
        elif "not in" in details:
            options = "; allowed: " + details.split(" not in ", 1)[1]
        return f"input '{name}': {got!r} is not one of the allowed values{options}"
    if typ == "value_bigger_than_max":
        return f"input '{name}': {got!r} is above the maximum ({msg.rsplit(' ', 1)[-1]})"
    if typ == "value_smaller_than_min":
        return f"input '{name}': {got!r} is below the minimum ({msg.rsplit(' ', 1)[-1]})"
    if typ == "return_type_mismatch":
        return f"input '{name}': the connected output has the wrong type ({details})"
    if typ == "bad_linked_input":
        return f"input '{name}': a link must be [node_id, output_index], got {got!r}"
    if typ == "invalid_input_type":
        return f"input '{name}': {got!r} cannot be converted ({extra.get('exception_message', details)})"
    if typ == "custom_validation_failed":
        return f"input '{name}': rejected by the node ({details})"
    if typ == "exception_during_inner_validation":
        return f"input '{name}': the node's validation raised an error ({extra.get('exception_message', details)})"
    return f"{msg}{': ' + details if details else ''}"


def format_rejection(body: dict, prompt: dict | None = None) -> str:
    """Plain words for an HTTP 400 from POST /prompt: the top error, then each node and input."""
    lines = []
    error = body.get("error")
    node_errors = body.get("node_errors") or {}
    if isinstance(error, dict):
        typ = error.get("type", "")
        if typ == "prompt_outputs_failed_validation" and node_errors:
            lines.append("ComfyUI rejected the workflow (it failed validation):")
        elif typ == "prompt_no_outputs":
            lines.append("ComfyUI rejected the workflow: it has no output node (add a Save Image or a metric node).")
        elif typ == "invalid_prompt":
            lines.append(f"ComfyUI rejected the workflow: {error.get('message', '')} {error.get('details', '')}".rstrip())
        else:
            lines.append(f"ComfyUI rejected the workflow: {error.get('message', typ)} {error.get('details', '')}".rstrip())
    elif error:
        lines.append(f"ComfyUI rejected the workflow: {error}")
    else:
        lines.append("ComfyUI rejected the workflow:")
    for nid in sorted(node_errors, key=lambda x: (len(str(x)), str(x))):
        info = node_errors[nid] or {}
        label = _input_label(prompt, nid)
        if label.endswith("(?)") and info.get("class_type"):
            label = f"node {nid} ({info['class_type']})"
        for err in info.get("errors") or []:
            lines.append(f"  - {label}: {_error_sentence(err)}")
    return "\n".join(lines)


def format_execution_error(msg: dict, prompt: dict | None = None) -> str:
    nid = str(msg.get("node_id", "?"))
    label = _input_label(prompt, nid) if prompt and nid in prompt else f"node {nid} ({msg.get('node_type', '?')})"
    etype = msg.get("exception_type", "error").rsplit(".", 1)[-1]
    text = str(msg.get("exception_message", "")).strip()
    return f"{label} failed while running: {etype}: {text}"


# --------------------------------------------------------------------------------------------- outputs

_NUM = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan"
_LABELLED = re.compile(rf"^\s*[-*]?\s*([A-Za-z][\w ()/%.,\-']*?)\s*[:=]\s*((?:{_NUM})(?:\s*(?:,|±|\+/-|to|–)?\s*(?:{_NUM}))*)\s*[%]?\s*$", re.I)
_NUMS = re.compile(_NUM, re.I)
# "label: value" followed only by an interval, a parenthesis, % or a factor x: prose such as
# "Reference: 2 pair(s) of 4 images, ..." is not a number of the node.
_LEADING = re.compile(rf"^\s*[-*]?\s*([A-Za-z][\w ()/%.,\-']*?)\s*[:=]\s*(({_NUM})(?![\d.])(?:\s*$|\s*[\[(%]|x\b|×).*)$", re.I)
_INTERVAL = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*\]", re.I)
_NAMED = re.compile(rf"\(\s*([A-Za-z]\w*)\s+({_NUM})(?![\w.])", re.I)


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def numbers_from_text(text: str) -> dict[str, Any]:
    """Numbers in a node's text output: ``label: value`` lines, markdown tables, or a JSON object."""
    out: dict[str, Any] = {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
            return _flatten_numbers(data)
        except json.JSONDecodeError:
            pass
    header: list[str] | None = None
    for raw in text.splitlines():
        line = raw.replace("**", "").replace("`", "").strip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                continue
            nums = [_num(c.rstrip("%")) for c in cells[1:]]
            if not any(v is not None for v in nums):
                header = cells
                continue
            label = cells[0]
            valid = [(i, v) for i, v in enumerate(nums) if v is not None]
            if len(valid) == 1:
                out[label] = valid[0][1]
            else:
                for i, v in valid:
                    col = header[i + 1] if header and i + 1 < len(header) else str(i + 1)
                    out[f"{label}.{col}"] = v
            continue
        header = None
        m = _LABELLED.match(line)
        if m:
            vals = [float(x) for x in _NUMS.findall(m.group(2))]
            out[m.group(1).strip()] = vals[0] if len(vals) == 1 else vals
            continue
        m = _LEADING.match(line)
        if m:  # "label: 0.51  [0.40, 0.62]  (reference 0.08, ...)" -> label, label.low/high, label.reference
            label, rest = m.group(1).strip(), m.group(2)
            out[label] = float(m.group(3))
            ci = _INTERVAL.search(rest)
            if ci:
                out[f"{label}.low"], out[f"{label}.high"] = float(ci.group(1)), float(ci.group(2))
            for name, val in _NAMED.findall(rest):
                out.setdefault(f"{label}.{name}", float(val))
    return out


def _flatten_numbers(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, bool):
        return out
    if isinstance(data, (int, float)):
        out[prefix or "value"] = data
    elif isinstance(data, str):
        for k, v in numbers_from_text(data).items():
            out[f"{prefix}.{k}" if prefix else k] = v
    elif isinstance(data, dict):
        for k, v in data.items():
            out.update(_flatten_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, list):
        if data and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data):
            out[prefix or "value"] = data[0] if len(data) == 1 else list(data)
        elif len(data) == 1:
            out.update(_flatten_numbers(data[0], prefix))
        else:
            for i, v in enumerate(data):
                out.update(_flatten_numbers(v, f"{prefix}[{i}]"))
    return out


def _is_file_list(val: Any) -> bool:
    return isinstance(val, list) and bool(val) and all(isinstance(x, dict) and "filename" in x for x in val)


def split_outputs(outputs: dict) -> tuple[list[dict], dict, dict]:
    """History outputs -> (file entries with node, ui values that are not files, numbers found in them)."""
    files, ui, numbers = [], {}, {}
    for nid, out in (outputs or {}).items():
        for key, val in (out or {}).items():
            if _is_file_list(val):
                for item in val:
                    files.append({"node": str(nid), "output": key, **item})
            else:
                ui.setdefault(str(nid), {})[key] = val
                if key in ("animated",):
                    continue
                for k, v in _flatten_numbers(val, key).items():
                    numbers[f"{nid}.{k}"] = v
    return files, ui, numbers


# --------------------------------------------------------------------------------------------- server

@dataclass
class InFlight:
    job: Job
    prompt_id: str
    server: Server
    queued_at: float
    started_at: float | None = None
    last_activity: float = 0.0
    frac: float = 0.0  # progress bar share: nodes run + the running node's step fraction, never decreasing
    cached: int = 0
    node: str | None = None  # the node running now (last ``executing``)
    nodes_run: int = 0  # nodes finished before it
    step: float = 0.0  # value / max of the running node's last ``progress``
    adopted: bool = False
    finishing: bool = False


@dataclass
class Server:
    url: str
    http_timeout: float = 60.0
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    alive: bool = True
    inflight: dict[str, InFlight] = field(default_factory=dict)
    done: int = 0
    ws_connected: threading.Event = field(default_factory=threading.Event)
    last_error: str = ""

    def __hash__(self) -> int:  # used as a key; identity is enough
        return id(self)

    @property
    def ws_url(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/ws", f"clientId={self.client_id}", ""))

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None, raw: bool = False):
        url = self.url + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.http_timeout) as resp:  # noqa: S310 - given URL
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                parsed = json.loads(payload)
            except (json.JSONDecodeError, ValueError):
                parsed = {"error": {"message": payload.decode(errors="replace")[:500]}}
            if exc.code == 400 and path.endswith("/prompt"):
                raise PromptRejected(format_rejection(parsed), parsed) from None
            raise ClientError(f"{method} {url} answered HTTP {exc.code}: {payload[:300]!r}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachable(f"cannot reach ComfyUI at {self.url} ({reason})") from None
        if raw:
            return payload
        if not payload:
            return None
        return json.loads(payload)

    def probe(self, timeout: float = 5.0) -> dict:
        return self.request("GET", "/prompt", timeout=timeout)

    def read_events(self, events: queue.Queue, stop: threading.Event) -> None:
        """Feed ``("ws" | "ws_open" | "ws_closed", self, message)`` into ``events`` until ``stop`` or death."""
        _ws_reader(self, events, stop)

    # A server given by URL that stops answering stays dead for the rest of the run (its prompts were requeued
    # elsewhere, and a server that only paused could still run them). A server whose restart is managed for us
    # (a Ray actor: ``ray_cluster.RayServer``) comes back as a fresh ComfyUI with an empty queue.
    def may_return(self) -> bool:
        """True while a dead server can still come back (restarts left)."""
        return False

    def comeback(self) -> bool:
        """Non-blocking: True once a dead server answers again (then it gets prompts again)."""
        return False


def _ws_reader(server: Server, events: queue.Queue, stop: threading.Event) -> None:
    import websocket  # websocket-client

    while not stop.is_set() and server.alive:
        ws = None
        try:
            ws = websocket.create_connection(server.ws_url, timeout=10, enable_multithread=True)
            ws.settimeout(0.25)
            server.ws_connected.set()
            events.put(("ws_open", server, None))
            while not stop.is_set() and server.alive:
                try:
                    msg = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if isinstance(msg, bytes) or not msg:
                    if msg == "" and not ws.connected:
                        raise websocket.WebSocketConnectionClosedException("closed")
                    continue  # binary preview frames
                try:
                    events.put(("ws", server, json.loads(msg)))
                except json.JSONDecodeError:
                    continue
        except Exception as exc:  # noqa: BLE001 - any socket failure means "closed"; the main loop decides
            server.ws_connected.clear()
            events.put(("ws_closed", server, f"{type(exc).__name__}: {exc}"))
        finally:
            if ws is not None:
                try:
                    ws.close(timeout=0.2)
                except Exception:  # noqa: BLE001
                    pass
        if stop.wait(1.0):
            return


# --------------------------------------------------------------------------------------------- runner

@dataclass
class RunResult:
    exit_code: int
    total: int
    skipped: int
    done: int
    failed: int
    cancelled: int
    requeued: int
    messages: list[str]
    wall_s: float


class BatchRunner:
    def __init__(
        self,
        servers: list[str | Server],
        out_dir: str | os.PathLike,
        manifest: str | os.PathLike | None = None,
        max_in_flight: int = 2,
        timeout: float = 600.0,
        keep_going: bool = False,
        progress: bool = True,
        poll_interval: float = 3.0,
        download_types: tuple[str, ...] = ("output",),
        dead_after: float = 3.0,
        on_event: Callable[[str, dict], None] | None = None,
        log: Callable[[str], None] | None = None,
        run_info: dict | None = None,
        return_wait: float = 900.0,
    ) -> None:
        if not servers:
            raise ClientError("no server given")
        self.servers: list[Server] = []
        for s in servers:
            # a URL, or a Server object (a Ray actor's ComfyUI: ray_cluster.RayServer)
            srv = s if isinstance(s, Server) else Server(normalize_url(s))
            if srv.url not in {x.url for x in self.servers}:
                self.servers.append(srv)
        self.out_dir = Path(out_dir)
        self.manifest = Manifest(manifest or self.out_dir / "manifest.jsonl")
        self.max_in_flight = max(1, int(max_in_flight))
        self.timeout = float(timeout)
        self.keep_going = keep_going
        self.progress = progress
        self.poll_interval = poll_interval
        self.download_types = download_types
        self.dead_after = dead_after
        # with every server dead but some able to come back (Ray restarting an actor): wait this long for one
        self.return_wait = float(return_wait)
        self._all_down_since: float | None = None
        self.on_event = on_event
        self._log = log
        self.run_info = run_info or {}
        self.run_id = uuid.uuid4().hex[:12]
        self.events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._stop_requested = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seen_messages: set[str] = set()
        self.messages: list[str] = []
        self._bar = None
        self._bar_postfix = ""
        self._bar_shown = 0.0
        # redraws between count changes: a terminal is redrawn in place, a log file gets a new line each time
        self._bar_interval = 0.5 if sys.stderr.isatty() else 10.0

    # ------------------------------------------------------------------ small helpers
    def log(self, text: str) -> None:
        self.messages.append(text)
        if self._log is not None:
            self._log(text)
        elif self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def log_once(self, text: str) -> None:
        if text not in self._seen_messages:
            self._seen_messages.add(text)
            self.log(text)

    def request_stop(self) -> None:
        """Cancel like Ctrl-C (from another thread or a callback)."""
        self._stop_requested.set()

    def _emit(self, kind: str, rec: dict) -> None:
        if self.on_event is not None:
            self.on_event(kind, rec)

    def _record(self, job: Job, status: str, **extra) -> dict:
        rec = {
            "type": "job",
            "status": status,
            "job": job.key,
            "index": job.index,
            "repeat": job.repeat,
            "params": job.params,
            "run": self.run_id,
            **extra,
        }
        rec = self.manifest.append(rec)
        self._emit(status, rec)
        return rec

    # ------------------------------------------------------------------ main entry
    def run(self, jobs: list[Job]) -> RunResult:
        t0 = time.time()
        done_before = self.manifest.done()
        todo: collections.deque[Job] = collections.deque()
        seen_keys: set[str] = set()
        skipped = 0
        for job in jobs:
            if job.key in seen_keys:
                self.log_once(f"note: job {job.index} repeats an earlier identical job; it is run once")
                continue
            seen_keys.add(job.key)
            if job.key in done_before:
                skipped += 1
            else:
                todo.append(job)
        counts = {"done": 0, "failed": 0, "cancelled": 0, "requeued": 0}
        result = lambda code: RunResult(  # noqa: E731
            code, len(seen_keys), skipped, counts["done"], counts["failed"], counts["cancelled"], counts["requeued"],
            self.messages, round(time.time() - t0, 3),
        )
        if skipped:
            self.log(f"resuming: {skipped} of {len(seen_keys)} jobs already done in {self.manifest.path}")
        if not todo:
            self.log("nothing to do: every job is already in the manifest as done")
            return result(EXIT_OK)

        live = []
        for srv in self.servers:
            try:
                srv.probe()
                live.append(srv)
            except ClientError as exc:
                srv.alive = False
                srv.last_error = str(exc)
                self.log(f"error: {exc}. Is ComfyUI running there (python main.py --listen ... --port ...)?")
        if not live:
            return result(EXIT_UNREACHABLE)

        self.manifest.append({
            "type": "run", "run": self.run_id, "servers": [s.url for s in self.servers],
            "live": [s.url for s in live], "jobs": len(seen_keys), "todo": len(todo), "skipped": skipped,
            **self.run_info,
        })
        for srv in live:
            self._start_reader(srv)
        for srv in live:
            srv.ws_connected.wait(10.0)

        self._adopt_previous(todo, counts)
        bar_total = len(todo) + sum(len(s.inflight) for s in self.servers)
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=bar_total, unit="prompt", disable=not self.progress, file=sys.stderr,
                             dynamic_ncols=True, smoothing=0.1)
        except ImportError:  # pragma: no cover - tqdm is a declared dependency
            self._bar = None
        code = EXIT_OK
        try:
            code = self._loop(todo, counts)
        except KeyboardInterrupt:
            code = self._cancel(counts, "interrupted (Ctrl-C)")
        finally:
            self._stop.set()
            if self._bar is not None:
                self._bar.n = counts["done"] + counts["failed"]
                self._bar.close()
                self._bar = None
            for t in self._threads:
                t.join(timeout=3)
        return result(code)

    # ------------------------------------------------------------------ resume of prompts left queued
    def _adopt_previous(self, todo: collections.deque, counts: dict) -> None:
        by_url = {s.url: s for s in self.servers if s.alive}
        queues: dict[str, set[str]] = {}
        for job in list(todo):
            rec = self.manifest.latest.get(job.key)
            if not rec or rec.get("status") != "queued":
                continue
            srv = by_url.get(rec.get("server"))
            pid = rec.get("prompt_id")
            if srv is None or not pid:
                continue
            try:
                hist = srv.request("GET", f"/history/{pid}")
                if hist and pid in hist:
                    fl = InFlight(job, pid, srv, queued_at=time.time(), adopted=True)
                    srv.inflight[pid] = fl
                    todo.remove(job)
                    continue
                if srv.url not in queues:
                    q = srv.request("GET", "/queue")
                    queues[srv.url] = {item[1] for k in ("queue_running", "queue_pending") for item in q.get(k, [])}
                if pid in queues[srv.url]:
                    srv.inflight[pid] = InFlight(job, pid, srv, queued_at=time.time(), last_activity=time.time(),
                                                 adopted=True)
                    todo.remove(job)
                    self.log(f"job {job.index}: still queued on {srv.url} from the previous run; waiting for it")
            except ClientError:
                continue
        # adopted prompts that already finished are collected at once
        for srv in self.servers:
            for fl in list(srv.inflight.values()):
                self._poll_one(fl, counts, todo)

    # ------------------------------------------------------------------ the loop
    def _live(self) -> list[Server]:
        return [s for s in self.servers if s.alive]

    def _start_reader(self, srv: Server) -> None:
        t = threading.Thread(target=srv.read_events, args=(self.events, self._stop), daemon=True,
                             name=f"events-{srv.url}")
        t.start()
        self._threads.append(t)

    def _revive(self) -> None:
        """Dead servers that came back (a Ray actor restarted with a fresh ComfyUI) get prompts again."""
        for srv in self.servers:
            if srv.alive or not srv.may_return() or not srv.comeback():
                continue
            srv.alive, srv.last_error = True, ""
            srv.ws_connected.clear()
            self._start_reader(srv)
            srv.ws_connected.wait(10.0)
            self.log(f"server {srv.url} is back (restarted); it gets prompts again")

    def _loop(self, todo: collections.deque, counts: dict) -> int:
        failed_stop = False
        last_poll = time.time()
        while True:
            if self._stop_requested.is_set():
                raise KeyboardInterrupt
            self._revive()
            live = self._live()
            inflight = sum(len(s.inflight) for s in self.servers)
            if live:
                self._all_down_since = None
            elif any(s.may_return() for s in self.servers):
                # every server is down, but a restart is under way: wait for it (bounded by return_wait)
                if self._all_down_since is None:
                    self._all_down_since = time.time()
                    self.log(f"every server is down; waiting up to {self.return_wait:.0f} s for one to be restarted")
                if time.time() - self._all_down_since < self.return_wait:
                    self._update_bar(counts)
                    self._drain_events(counts, todo)
                    continue
            if not live:
                n_left = len(todo) + inflight
                self.log(f"error: no ComfyUI server is reachable any more; {n_left} job(s) not finished "
                         f"(rerun with the same manifest to resume): "
                         + "; ".join(s.last_error for s in self.servers if s.last_error))
                for s in self.servers:
                    for fl in list(s.inflight.values()):
                        self._record(fl.job, "requeued", prompt_id=fl.prompt_id, server=s.url,
                                     reason="server unreachable")
                        s.inflight.pop(fl.prompt_id, None)
                return EXIT_UNREACHABLE
            if not todo and inflight == 0:
                break
            if failed_stop and inflight == 0:
                break
            if not failed_stop and counts["failed"] and not self.keep_going:
                failed_stop = True
                if todo:
                    self.log(f"stopping after the failure: {len(todo)} job(s) not queued "
                             "(--keep-going to continue past failures; rerun with the same manifest to resume)")
                continue
            if not failed_stop:
                self._fill(todo, counts)
            self._drain_events(counts, todo)
            now = time.time()
            if now - last_poll >= self.poll_interval:
                last_poll = now
                self._poll(counts, todo)
            self._update_bar(counts)
        return EXIT_FAILED if counts["failed"] else EXIT_OK

    def _drain_events(self, counts: dict, todo: collections.deque) -> None:
        try:
            kind, srv, payload = self.events.get(timeout=0.25)
            self._handle(kind, srv, payload, counts, todo)
        except queue.Empty:
            pass

    def _update_bar(self, counts: dict) -> None:
        if self._bar is None:
            return
        partial = sum(fl.frac for s in self.servers for fl in s.inflight.values())
        n = round(counts["done"] + counts["failed"] + min(partial, 0.99 * len(self.servers) * self.max_in_flight), 2)
        postfix = f"ok={counts['done']} failed={counts['failed']} servers={len(self._live())}/{len(self.servers)}"
        now = time.monotonic()
        # redraw when a count changes, otherwise at most every _bar_interval s (this runs several times a second)
        if postfix == self._bar_postfix and (n == self._bar.n or now - self._bar_shown < self._bar_interval):
            return
        self._bar.n = n
        if postfix != self._bar_postfix:
            self._bar_postfix = postfix
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.refresh()
        self._bar_shown = now

    def _fill(self, todo: collections.deque, counts: dict) -> None:
        while todo:
            live = [s for s in self._live() if len(s.inflight) < self.max_in_flight]
            if not live:
                return
            srv = min(live, key=lambda s: (len(s.inflight), s.done))
            job = todo.popleft()
            pid = str(uuid.uuid4())
            self._record(job, "queued", prompt_id=pid, server=srv.url, client_id=srv.client_id)
            body = {"prompt": job.prompt, "client_id": srv.client_id, "prompt_id": pid}
            try:
                resp = srv.request("POST", "/prompt", body)
            except PromptRejected as exc:
                text = format_rejection(exc.body, job.prompt)
                self.log_once(text)
                self._record(job, "error", prompt_id=pid, server=srv.url,
                             error={"kind": "validation", "message": text, "node_errors": exc.body.get("node_errors"),
                                    "detail": exc.body.get("error")})
                counts["failed"] += 1
                if not self.keep_going:
                    return
                continue
            except ServerUnreachable as exc:
                todo.appendleft(job)
                self._server_down(srv, str(exc), counts, todo)
                continue
            except ClientError as exc:
                self.log(f"error: job {job.index}: {exc}")
                self._record(job, "error", prompt_id=pid, server=srv.url, error={"kind": "http", "message": str(exc)})
                counts["failed"] += 1
                if not self.keep_going:
                    return
                continue
            got = str((resp or {}).get("prompt_id") or pid)
            if got != pid:  # a server that ignores a client-chosen prompt_id
                self._record(job, "queued", prompt_id=got, server=srv.url, client_id=srv.client_id)
            if (resp or {}).get("node_errors"):
                self.log_once("warning: some outputs of the workflow were rejected and will not run:\n"
                              + format_rejection({"node_errors": resp["node_errors"]}, job.prompt))
            now = time.time()
            srv.inflight[got] = InFlight(job, got, srv, queued_at=now, last_activity=now)

    def _find(self, srv: Server, pid: str | None) -> InFlight | None:
        return srv.inflight.get(pid) if pid else None

    def _handle(self, kind: str, srv: Server, msg: Any, counts: dict, todo: collections.deque) -> None:
        if kind == "ws_closed":
            if srv.alive:
                try:
                    srv.probe(timeout=self.dead_after)
                except ClientError as exc:
                    self._server_down(srv, f"{exc}; websocket: {msg}", counts, todo)
            return
        if kind == "ws_open":
            return
        if kind != "ws" or not isinstance(msg, dict):
            return
        typ, data = msg.get("type"), msg.get("data") or {}
        fl = self._find(srv, data.get("prompt_id"))
        if fl is None:
            return
        fl.last_activity = time.time()
        if typ == "execution_start":
            fl.started_at = fl.started_at or time.time()
        elif typ == "execution_cached":
            fl.cached = len(data.get("nodes") or [])
        elif typ == "progress":
            try:
                fl.step = max(0.0, min(1.0, float(data.get("value", 0)) / float(data.get("max") or 1)))
            except (TypeError, ValueError):
                pass
            self._progress(fl)
        elif typ == "executing":
            fl.started_at = fl.started_at or time.time()
            node = data.get("node")
            if node is None:
                self._finish(fl, counts, todo)
            elif node != fl.node:
                if fl.node is not None:
                    fl.nodes_run += 1
                fl.node, fl.step = node, 0.0
                self._progress(fl)
        elif typ in ("execution_error", "execution_interrupted"):
            fl.frac = 0.0

    @staticmethod
    def _progress(fl: InFlight) -> None:
        """Share of the prompt done: nodes run (plus the running node's steps) over the nodes not cached.

        Several nodes report ``progress`` (each sampler, a metric node, ...): the step fraction of one node alone
        would make the bar jump back and forth.
        """
        to_run = max(1, len(fl.job.prompt) - fl.cached)
        fl.frac = max(fl.frac, min(0.99, (fl.nodes_run + fl.step) / to_run))

    # ------------------------------------------------------------------ completion
    def _finish(self, fl: InFlight, counts: dict, todo: collections.deque, entry: dict | None = None) -> bool:
        """Collect a finished prompt from /history. False when history does not have it yet."""
        srv = fl.server
        if fl.prompt_id not in srv.inflight:
            return True
        if entry is None:
            try:
                hist = srv.request("GET", f"/history/{fl.prompt_id}")
            except ServerUnreachable as exc:
                self._server_down(srv, str(exc), counts, todo)
                return False
            entry = (hist or {}).get(fl.prompt_id)
            if entry is None:
                return False
        status = entry.get("status") or {}
        finished = time.time()
        base = {
            "prompt_id": fl.prompt_id, "server": srv.url, "queued_at": round(fl.queued_at, 3),
            "started_at": round(fl.started_at, 3) if fl.started_at else None, "finished_at": round(finished, 3),
            "wall_s": round(finished - fl.queued_at, 3),
        }
        if status.get("status_str") == "error" or status.get("completed") is False:
            err_msg = None
            for ev, data in status.get("messages") or []:
                if ev in ("execution_error", "execution_interrupted"):
                    err_msg = (ev, data)
            if err_msg and err_msg[0] == "execution_interrupted":
                text = (f"job {fl.job.index}: prompt {fl.prompt_id} on {srv.url} was interrupted on the server "
                        f"(not by this client) at node {err_msg[1].get('node_id')}")
                error = {"kind": "interrupted", "message": text}
            elif err_msg:
                text = f"job {fl.job.index} on {srv.url}: " + format_execution_error(err_msg[1], fl.job.prompt)
                error = {"kind": "execution", "message": text, "node_id": err_msg[1].get("node_id"),
                         "exception_type": err_msg[1].get("exception_type"),
                         "exception_message": err_msg[1].get("exception_message")}
            else:
                text = f"job {fl.job.index}: prompt {fl.prompt_id} on {srv.url} ended with status {status}"
                error = {"kind": "execution", "message": text}
            self.log(f"error: {text}")
            srv.inflight.pop(fl.prompt_id, None)
            self._record(fl.job, "error", error=error, **base)
            counts["failed"] += 1
            return True
        try:
            files, ui, numbers = self._collect(fl, entry)
        except ServerUnreachable as exc:
            self._server_down(srv, str(exc), counts, todo)
            return False
        srv.inflight.pop(fl.prompt_id, None)
        srv.done += 1
        self._record(fl.job, "done", files=files, ui=ui, numbers=numbers, cached_nodes=fl.cached,
                     adopted=fl.adopted or None, **base)
        counts["done"] += 1
        return True

    def _collect(self, fl: InFlight, entry: dict) -> tuple[list[dict], dict, dict]:
        files, ui, numbers = split_outputs(entry.get("outputs") or {})
        folder = self.out_dir / fl.job.key
        saved = []
        for item in files:
            kind = item.get("type", "output")
            if kind not in self.download_types:
                continue
            query = urllib.parse.urlencode(
                {"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": kind})
            data = fl.server.request("GET", f"/view?{query}", raw=True)
            folder.mkdir(parents=True, exist_ok=True)
            sub = item.get("subfolder", "").replace("/", "_").replace("\\", "_")
            name = f"{item['node']}_{sub + '_' if sub else ''}{Path(item['filename']).name}"
            dest = folder / name
            tmp = dest.with_name(dest.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            saved.append({
                "node": item["node"], "output": item.get("output"), "filename": item["filename"],
                "subfolder": item.get("subfolder", ""), "type": kind,
                "path": os.path.relpath(dest, self.out_dir), "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            })
        return saved, ui, numbers

    def _poll(self, counts: dict, todo: collections.deque) -> None:
        for srv in self._live():
            for fl in list(srv.inflight.values()):
                if not srv.alive:
                    break
                self._poll_one(fl, counts, todo)

    def _poll_one(self, fl: InFlight, counts: dict, todo: collections.deque) -> None:
        srv = fl.server
        if not srv.alive or fl.prompt_id not in srv.inflight:
            return
        if self._finish(fl, counts, todo):
            return
        if not srv.alive:
            return
        if time.time() - fl.last_activity > self.timeout:
            try:
                q = srv.request("GET", "/queue")
            except ServerUnreachable as exc:
                self._server_down(srv, str(exc), counts, todo)
                return
            running = {item[1] for item in q.get("queue_running", [])}
            pending = {item[1] for item in q.get("queue_pending", [])}
            if fl.prompt_id in pending:
                fl.last_activity = time.time()  # still waiting behind other prompts: not a stall
                return
            if fl.prompt_id in running:
                self._try(srv, "POST", "/interrupt", {"prompt_id": fl.prompt_id})
            text = (f"job {fl.job.index}: prompt {fl.prompt_id} on {srv.url} showed no progress for "
                    f"{self.timeout:.0f} s (--timeout); {'interrupted it' if fl.prompt_id in running else 'gave up on it'}")
            self.log(f"error: {text}")
            srv.inflight.pop(fl.prompt_id, None)
            self._record(fl.job, "error", prompt_id=fl.prompt_id, server=srv.url,
                         error={"kind": "timeout", "message": text})
            counts["failed"] += 1

    def _try(self, srv: Server, method: str, path: str, body: Any = None) -> Any:
        try:
            return srv.request(method, path, body, timeout=10)
        except ClientError:
            return None

    # ------------------------------------------------------------------ server death and cancel
    def _server_down(self, srv: Server, reason: str, counts: dict, todo: collections.deque) -> None:
        if not srv.alive:
            return
        srv.alive = False
        srv.last_error = reason
        stranded = list(srv.inflight.values())
        others = len(self._live())
        restarting = any(s.may_return() for s in self.servers)
        self.log(f"server {srv.url} is gone ({reason}); "
                 + (f"requeueing its {len(stranded)} unfinished prompt(s) on the {others} other server(s)"
                    if others else f"requeueing its {len(stranded)} unfinished prompt(s) for when it is restarted"
                    if restarting else "no other server left"))
        for fl in reversed(stranded):
            srv.inflight.pop(fl.prompt_id, None)
            if others or restarting:
                self._record(fl.job, "requeued", prompt_id=fl.prompt_id, server=srv.url, reason=reason)
                counts["requeued"] += 1
                todo.appendleft(fl.job)
            else:
                todo.appendleft(fl.job)

    def _cancel(self, counts: dict, why: str) -> int:
        ours = [(s, fl) for s in self.servers for fl in s.inflight.values()]
        self.log(f"{why}: cancelling {len(ours)} prompt(s) this client queued; nothing else is touched")
        for srv in self.servers:
            pids = list(srv.inflight)
            if not pids or not srv.alive:
                continue
            self._try(srv, "POST", "/queue", {"delete": pids})
            q = self._try(srv, "GET", "/queue") or {}
            running = {item[1] for item in q.get("queue_running", [])}
            interrupted = [pid for pid in pids if pid in running]
            for pid in interrupted:
                self._try(srv, "POST", "/interrupt", {"prompt_id": pid})
            # the interrupt lands at the next step or node boundary: wait (briefly) until it is off the queue
            deadline = time.time() + 10
            while interrupted and time.time() < deadline:
                time.sleep(0.1)
                q = self._try(srv, "GET", "/queue")
                if q is None:
                    break
                running = {item[1] for item in q.get("queue_running", [])}
                interrupted = [pid for pid in interrupted if pid in running]
        for srv, fl in ours:
            # a prompt that finished meanwhile is collected, not thrown away
            entry = None
            if srv.alive:
                hist = self._try(srv, "GET", f"/history/{fl.prompt_id}") or {}
                entry = hist.get(fl.prompt_id)
            if entry and (entry.get("status") or {}).get("status_str") == "success":
                try:
                    if self._finish(fl, counts, collections.deque(), entry=entry):
                        continue
                except ClientError:
                    pass
            srv.inflight.pop(fl.prompt_id, None)
            self._record(fl.job, "cancelled", prompt_id=fl.prompt_id, server=srv.url)
            counts["cancelled"] += 1
        return EXIT_CANCELLED
