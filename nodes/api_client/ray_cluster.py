"""``antithetic-queue --ray``: one ComfyUI per GPU as a Ray actor, started and restarted by Ray.

Division of labour:

- **Ray** places one actor per GPU of the cluster (``num_gpus=1``: Ray sets ``CUDA_VISIBLE_DEVICES``; or
  ``--ray-cpu-workers N`` CPU actors), starts it on its node, restarts it when it dies (``max_restarts``) and
  carries every request and every result (images as bytes) between the driver and the node. Each actor's
  ComfyUI listens on 127.0.0.1 of its own node: no port is opened to the cluster.
- **The driver** (``antithetic-queue``) schedules exactly as with ``--server URL``: ``client.BatchRunner`` gets
  one :class:`RayServer` per actor instead of one URL per server, and keeps the jobs, the manifest, resume,
  Ctrl-C, the error messages and the failover (at most ``--max-in-flight`` prompts per server, the least loaded
  live one first, the prompts of a dead server requeued on the others). A prompt is never retried by Ray itself
  (``max_task_retries=0``): the driver requeues it, on another actor, and writes that in the manifest.
- **An actor** (:class:`ComfyActor`) starts ComfyUI with the pack's launcher (``nodes/local_comfy/server.py``),
  relays HTTP requests and websocket messages to it, and exits when its ComfyUI process dies, so that Ray
  restarts it with a fresh ComfyUI (empty queue: nothing it held can run twice). The driver gives the restarted
  actor prompts again once it answers (``RayServer.comeback``).

Where ComfyUI comes from on each node: ``--comfyui PATH`` (the same path on every node) or, without it, the
``COMFYUI_PATH`` that node's ``ray start`` was run with (default ``~/comfy/ComfyUI``); its Python likewise
(``--comfyui-python`` / ``COMFYUI_PYTHON``, default the Ray worker's Python). The checkout's own ``models/`` and
``custom_nodes/`` are used (install the pack there); every actor writes into a private output/temp folder.
The pack (this package) must be importable by the Ray workers on every node (``pip install
'antithetic-sampling[ray]'`` into the Ray environment). ``test_checkpoint=True`` (tests, soak) instead gives
each actor its own base directory with the pack symlinked and the random tiny SD1.5 checkpoint, as the e2e tests.

A design unit (an antithetic pair, a K-group, an RQMC replicate) lives inside one prompt: the batch of one
sampler call. The driver schedules whole prompts, so a unit is never split across actors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import ClientError, PromptRejected, Server, ServerUnreachable, _ws_reader

PACK_PROBE_CLASS = "AntitheticLatentNoise"
RAY_HINT = "--ray needs Ray: pip install 'antithetic-sampling[ray]' (or pip install 'ray>=2.34')"


def _ray():
    try:
        import ray
    except ImportError:
        raise ClientError(RAY_HINT) from None
    return ray


# --------------------------------------------------------------------------------------------- the actor


def _remove_orphans(keep: Path) -> None:
    """Folders of actors that died without ``stop`` (driver killed, no restart left): their owner is gone.

    ``keep``: this actor's own folder (after a restart its previous incarnation's owner is dead too)."""
    for home in Path(tempfile.gettempdir()).glob("antithetic-ray-*"):
        if home == keep:
            continue
        try:
            pid = int((home / "owner.pid").read_text(encoding="ascii"))
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(home, ignore_errors=True)
        except (OSError, ValueError):
            continue  # no pid file yet (being created), or another user's process


class ComfyActor:
    """One ComfyUI server, inside a Ray actor (wrapped with ``ray.remote`` by :class:`RayCluster`).

    ``spec``: ``comfyui`` / ``python`` (None: the node's COMFYUI_PATH / COMFYUI_PYTHON), ``gpu`` (False: --cpu),
    ``test_checkpoint``, ``extra_args`` (more ``main.py`` arguments), ``start_timeout``, and for tests
    ``attach_url`` (relay to a server that already runs instead of starting one).
    """

    def __init__(self, spec: dict, client_id: str, label: str) -> None:
        self.label = label
        self.client_id = client_id
        self.spec = spec
        self.server = None  # ComfyServer we started
        self.warnings: list[str] = []
        self.started = time.time()
        # one folder per actor, one subfolder per incarnation (Ray restarts run __init__ again)
        self.home = Path(tempfile.gettempdir()) / f"antithetic-ray-{label}-{client_id[:8]}"
        if not spec.get("attach_url"):
            _remove_orphans(keep=self.home)
            self.home.mkdir(parents=True, exist_ok=True)
            (self.home / "owner.pid").write_text(str(os.getpid()), encoding="ascii")
        incarnations = sorted(p for p in self.home.iterdir() if p.is_dir()) if self.home.is_dir() else []
        for old in incarnations:  # a dead incarnation's images are not needed: keep only its log
            for sub in ("output", "temp", "input", "models", "custom_nodes", "user"):
                shutil.rmtree(old / sub, ignore_errors=True)
        self.base = self.home / f"i{len(incarnations)}"
        url = spec.get("attach_url") or self._start()
        self.local = Server(url, client_id=client_id)
        self.events_q: queue.Queue = queue.Queue()
        self.stop_ev = threading.Event()
        threading.Thread(target=_ws_reader, args=(self.local, self.events_q, self.stop_ev), daemon=True,
                         name="comfy-ws").start()
        self.local.ws_connected.wait(30)
        threading.Thread(target=self._watchdog, daemon=True, name="comfy-watchdog").start()

    def _start(self) -> str:
        from ..local_comfy.checkout import discover
        from ..local_comfy.errors import ComfyUnavailable
        from ..local_comfy.server import ComfyServer
        from ..local_comfy.tiny_checkpoint import ensure_checkpoint

        spec = self.spec
        # --comfyui / --comfyui-python win; without them each node's own environment decides
        if spec.get("comfyui"):
            os.environ["COMFYUI_PATH"] = str(spec["comfyui"])
        if spec.get("python"):
            os.environ["COMFYUI_PYTHON"] = str(spec["python"])
        try:
            cenv = discover()
        except ComfyUnavailable as exc:
            raise RuntimeError(f"{self.label}: {exc}") from None
        extra = list(spec.get("extra_args") or [])
        if spec.get("test_checkpoint"):
            ckpt, _ = ensure_checkpoint(cenv)
            srv = ComfyServer(cenv, self.base, ckpt, extra_args=extra, cpu=not spec.get("gpu"))
        else:
            srv = ComfyServer(cenv, self.base, None, extra_args=extra, cpu=not spec.get("gpu"), checkout_folders=True)
        srv.start(timeout=spec.get("start_timeout"))
        bad = srv.pack_import_problems()
        if bad:
            srv.stop()
            raise RuntimeError(f"{self.label}: the pack failed to load in ComfyUI:\n" + "\n".join(bad)[:3000])
        self.server = srv
        try:
            if PACK_PROBE_CLASS not in (srv.get_json(f"/object_info/{PACK_PROBE_CLASS}", timeout=30) or {}):
                self.warnings.append(f"the antithetic-sampling pack is not installed in {cenv.comfy_path}/custom_nodes "
                                     "on this node (its nodes are unknown to this ComfyUI)")
        except OSError:
            pass
        return srv.url

    def _watchdog(self) -> None:
        """ComfyUI died -> this actor dies too, so Ray restarts it with a fresh ComfyUI (max_restarts)."""
        misses = 0
        while not self.stop_ev.wait(0.5):
            if self.server is not None:
                proc = self.server.proc
                if proc is None:  # stopped on purpose
                    return
                if proc.poll() is not None and not self.stop_ev.is_set():
                    print(f"{self.label}: ComfyUI (pid {proc.pid}) exited with {proc.returncode}; "
                          "ending the actor so that Ray restarts it", flush=True)
                    os._exit(1)
            else:
                try:
                    self.local.probe(timeout=2)
                    misses = 0
                except ClientError:
                    misses += 1
                    if misses >= 2 and not self.stop_ev.is_set():
                        os._exit(1)

    # ---------------------------------------------------------------- called by the driver
    def info(self) -> dict:
        import ray

        ctx = ray.get_runtime_context()
        proc = self.server.proc if self.server is not None else None
        return {
            "label": self.label, "url": self.local.url, "node_ip": ray.util.get_node_ip_address(),
            "node_id": ctx.get_node_id(), "actor_pid": os.getpid(), "comfy_pid": proc.pid if proc else None,
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "restarted": bool(ctx.was_current_actor_reconstructed),
            "incarnation": f"{self.base.name}:{os.getpid()}:{proc.pid if proc else ''}",
            "start_s": round(self.server.start_seconds, 1) if self.server is not None else 0.0,
            "comfyui": str(self.server.env.comfy_path) if self.server is not None else None,
            "comfyui_version": self.server.env.version if self.server is not None else None,
            "log": str(self.server.log_path) if self.server is not None else None,
            "warnings": list(self.warnings),
        }

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None,
                raw: bool = False) -> dict:
        """The HTTP request on the local ComfyUI; errors come back as data (exception classes stay ours)."""
        try:
            return {"ok": self.local.request(method, path, body, timeout=timeout, raw=raw)}
        except PromptRejected as exc:
            return {"error": "rejected", "text": str(exc), "body": exc.body}
        except ServerUnreachable as exc:
            return {"error": "unreachable", "text": str(exc)}
        except ClientError as exc:
            return {"error": "client", "text": str(exc)}

    def events(self, timeout: float = 0.5, limit: int = 1000) -> list[dict]:
        """Websocket messages of our client id since the last call (waits up to ``timeout`` for the first)."""
        out = []
        try:
            item = self.events_q.get(timeout=timeout)
        except queue.Empty:
            return out
        while True:
            kind, _, msg = item
            if kind == "ws":
                out.append(msg)
            if len(out) >= limit:
                break
            try:
                item = self.events_q.get_nowait()
            except queue.Empty:
                break
        return out

    def stop(self) -> str:
        """Stop ComfyUI, return the logs of every incarnation, remove the actor's folders."""
        self.stop_ev.set()
        if self.server is not None:
            self.server.stop()
        logs = []
        for inc in sorted(p for p in self.home.iterdir() if p.is_dir()) if self.home.is_dir() else []:
            with contextlib.suppress(OSError):
                logs.append(f"===== {self.label} {inc.name} =====\n"
                            + (inc / "comfyui.log").read_text(encoding="utf-8", errors="replace"))
        shutil.rmtree(self.home, ignore_errors=True)
        return "\n".join(logs)


# --------------------------------------------------------------------------------------------- driver side


@dataclass(eq=False)
class RayServer(Server):
    """A :class:`client.Server` whose requests and websocket messages go through a :class:`ComfyActor`."""

    actor: Any = None
    label: str = ""
    info: dict = field(default_factory=dict)
    max_restarts: int = 0
    restarts: int = 0
    gone: bool = False  # Ray says the actor is dead for good (no restarts left)
    generation: int = 0
    _revive_ref: Any = None

    @staticmethod
    def url_of(label: str, info: dict) -> str:
        port = str(info.get("url", "")).rsplit(":", 1)[-1]
        return f"ray://{label}@{info.get('node_ip', '?')}:{port}"

    def _unreachable(self, exc: BaseException) -> ServerUnreachable:
        ray = _ray()
        unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())
        if isinstance(exc, ray.exceptions.RayActorError) and not isinstance(exc, unavailable):
            self.gone = True  # ActorDiedError: no restart left (or killed for good)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ServerUnreachable(f"Ray actor {self.label} ({self.url}) is unavailable: {type(exc).__name__}"
                                 + (f": {reason[:200]}" if reason else ""))

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None, raw: bool = False):
        ray = _ray()
        t = float(timeout or self.http_timeout)
        try:
            res = ray.get(self.actor.request.remote(method, path, body, t, raw), timeout=t + 30)
        except Exception as exc:  # noqa: BLE001 - any Ray failure (actor died / restarting / timeout) = unreachable
            raise self._unreachable(exc) from None
        if "ok" in res:
            return res["ok"]
        text = f"{self.label}: {res['text']}"
        if res["error"] == "rejected":
            raise PromptRejected(res["text"], res["body"])
        if res["error"] == "unreachable":
            raise ServerUnreachable(text)
        raise ClientError(text)

    def read_events(self, events: queue.Queue, stop: threading.Event) -> None:
        ray = _ray()
        gen = self.generation
        while not stop.is_set() and self.alive and gen == self.generation:
            try:
                msgs = ray.get(self.actor.events.remote(0.5), timeout=60)
            except Exception as exc:  # noqa: BLE001 - the main loop probes and decides
                self.ws_connected.clear()
                events.put(("ws_closed", self, f"Ray actor {self.label}: {type(exc).__name__}"))
                if stop.wait(1.0):
                    return
                continue
            if not self.ws_connected.is_set():
                self.ws_connected.set()
                events.put(("ws_open", self, None))
            for msg in msgs:
                events.put(("ws", self, msg))

    def may_return(self) -> bool:
        return not self.gone and self.restarts < self.max_restarts

    def comeback(self) -> bool:
        ray = _ray()
        if self._revive_ref is None:
            self._revive_ref = self.actor.info.remote()
        ready, _ = ray.wait([self._revive_ref], timeout=0)
        if not ready:
            return False
        ref, self._revive_ref = self._revive_ref, None
        try:
            info = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - still restarting, or dead for good
            self._unreachable(exc)
            return False
        if info.get("incarnation") == self.info.get("incarnation"):
            # the same ComfyUI we gave up on (it stopped answering but did not die): it may still hold prompts
            # that were requeued elsewhere, so it does not get new ones; Ray restarts it with a fresh one
            ray.kill(self.actor, no_restart=False)
            return False
        self.info = info
        self.url = self.url_of(self.label, info)
        self.restarts += 1
        self.generation += 1
        return True


def _short_reason(exc: BaseException) -> str:
    """The useful line(s) of a Ray error: the exception raised in the actor, not Ray's traceback frames."""
    lines = [ln.rstrip() for ln in str(exc).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith(("RuntimeError:", "ComfyUnavailable:", "ClientError:", "TimeoutError:")):
            return "\n".join(lines[i:i + 12])
    return "\n".join(lines[-6:])


class RayCluster:
    """Connect to (or start) a Ray cluster and run one :class:`ComfyActor` per GPU (or N CPU actors).

    ``address``: None or ``"local"`` starts a local cluster (ended with the run), ``"auto"`` joins the cluster
    this machine belongs to, anything else is passed to ``ray.init(address=...)`` (``ray://head:10001``).
    """

    def __init__(self, address: str | None = None, cpu_workers: int = 0, comfyui: str | None = None,
                 python: str | None = None, comfyui_args: list[str] | None = None, test_checkpoint: bool = False,
                 max_restarts: int = 3, start_timeout: float = 600.0, attach_urls: list[str] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.address = address
        self.cpu_workers = int(cpu_workers or 0)
        self.spec = {"comfyui": comfyui, "python": python, "gpu": not self.cpu_workers and not attach_urls,
                     "test_checkpoint": test_checkpoint, "extra_args": list(comfyui_args or []),
                     "start_timeout": start_timeout}
        self.max_restarts = int(max_restarts)
        self.start_timeout = float(start_timeout)
        self.attach_urls = list(attach_urls or [])
        self.log = log or (lambda text: print(text, flush=True))
        self.actors: list[Any] = []
        self.servers: list[RayServer] = []
        self.dashboard_url: str | None = None
        self._owns_ray = False

    def start(self) -> list[RayServer]:
        ray = _ray()
        if not ray.is_initialized():
            kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
            if self.address in (None, "", "local"):
                ctx = ray.init(address="local", **kw)  # a new cluster even when one runs on this machine
            else:
                try:
                    ctx = ray.init(address=self.address, **kw)
                except ConnectionError as exc:
                    hint = " (is `ray start` running on this machine?)" if self.address == "auto" else ""
                    raise ServerUnreachable(f"cannot join the Ray cluster at {self.address}{hint}: {exc}") from None
            self._owns_ray = True
            self.dashboard_url = getattr(ctx, "dashboard_url", None) or None
        if self.dashboard_url:
            url = self.dashboard_url if "://" in self.dashboard_url else f"http://{self.dashboard_url}"
            self.log(f"Ray dashboard: {url}")
        if self.attach_urls:
            n, gpus = len(self.attach_urls), 0
        elif self.cpu_workers:
            n, gpus = self.cpu_workers, 0
        else:
            n, gpus = int(ray.cluster_resources().get("GPU", 0)), 1
            if n == 0:
                raise ClientError("the Ray cluster has no GPU: --ray-cpu-workers N runs N CPU-only ComfyUI servers")
        remote_cls = ray.remote(ComfyActor).options(
            num_gpus=gpus, num_cpus=1, max_restarts=self.max_restarts, max_task_retries=0, max_concurrency=8)
        labels = [f"comfy-{i}" for i in range(n)]
        ids = [uuid.uuid4().hex for _ in range(n)]
        for i, label in enumerate(labels):
            spec = dict(self.spec, attach_url=self.attach_urls[i] if self.attach_urls else None)
            self.actors.append(remote_cls.remote(spec, ids[i], label))
        kind = f"{n} ComfyUI server(s), one per GPU" if gpus else f"{n} CPU-only ComfyUI server(s)"
        self.log(f"Ray: starting {kind} ...")
        t0 = time.time()
        pending = {actor.info.remote(): i for i, actor in enumerate(self.actors)}
        errors: list[str] = []
        up: dict[int, dict] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=10)
            if not ready:
                if time.time() - t0 > self.start_timeout + 60:
                    waiting = ", ".join(labels[i] for i in pending.values())
                    errors.append(f"{waiting}: not started after {time.time() - t0:.0f} s (is there a free GPU/CPU "
                                  "for each actor? see `ray status`)")
                    for i in pending.values():
                        ray.kill(self.actors[i], no_restart=True)
                    break
                continue
            i = pending.pop(ready[0])
            try:
                info = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - the actor could not start its ComfyUI
                errors.append(f"{labels[i]}: {_short_reason(exc)}")
                self.log(f"error: Ray actor {labels[i]} could not start ComfyUI: {_short_reason(exc)}")
                ray.kill(self.actors[i], no_restart=True)
                continue
            up[i] = info
            gpu = f", GPU {','.join(info['gpu_ids'])}" if info["gpu_ids"] else ""
            self.log(f"Ray: {labels[i]} up on {info['node_ip']}{gpu} (ComfyUI {info.get('comfyui_version') or '?'}, "
                     f"{time.time() - t0:.0f} s)")
            for w in info.get("warnings") or []:
                self.log(f"warning: {labels[i]} on {info['node_ip']}: {w}")
        if not up:
            raise ServerUnreachable("no ComfyUI server could be started on the Ray cluster: " + "; ".join(errors))
        for i, info in sorted(up.items()):
            self.servers.append(RayServer(RayServer.url_of(labels[i], info), client_id=ids[i], actor=self.actors[i],
                                          label=labels[i], info=info, max_restarts=self.max_restarts))
        return self.servers

    def describe(self) -> list[dict]:
        """What the manifest's run record says about the actors."""
        keys = ("node_ip", "comfy_pid", "actor_pid", "gpu_ids", "comfyui", "comfyui_version")
        return [{"label": s.label, "server": s.url, **{k: s.info.get(k) for k in keys}} for s in self.servers]

    def shutdown(self, log_dir: str | os.PathLike | None = None) -> None:
        """Stop every ComfyUI (their logs go to ``log_dir``), end the actors, and a cluster we started."""
        if not self.actors:
            return
        ray = _ray()
        stops = {actor.stop.remote(): i for i, actor in enumerate(self.actors)}
        with contextlib.suppress(Exception):
            ray.wait(list(stops), num_returns=len(stops), timeout=30)
        for ref, i in stops.items():
            try:
                text = ray.get(ref, timeout=0.1)
            except Exception:  # noqa: BLE001 - dead or slow actor: no log
                continue
            if log_dir is not None and text:
                Path(log_dir).mkdir(parents=True, exist_ok=True)
                (Path(log_dir) / f"comfy-{i}.log").write_text(text, encoding="utf-8")
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.actors = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
