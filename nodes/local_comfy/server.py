"""A running ComfyUI with this pack, spoken to over HTTP: :class:`ComfyServer`.

``ComfyServer(discover(), base_dir, ensure_checkpoint(cenv)[0]).start()`` starts ``main.py --cpu`` on a free
127.0.0.1 port with its own ``--base-directory`` (the pack symlinked as ``custom_nodes/antithetic-sampling``, the
checkpoint linked into ``models/checkpoints``), ``OMP_NUM_THREADS=1``, log in ``<base>/comfyui.log``; HTTP via
stdlib ``urllib`` (``queue``, ``wait``, ``run``, ``object_info``, ``images``). ``cpu=False`` runs on the GPU(s) the
process sees; ``checkout_folders=True`` uses the checkout's own models and custom nodes (the Ray actors of
``antithetic-queue --ray``) with a private output/temp folder.

Used by the test suite's e2e fixture ``comfy_server``, ``antithetic-sampling soak``, ``guidance-bench`` and the
Ray engine of ``antithetic-queue``. Only the standard library is imported (PIL lazily in
:meth:`ComfyServer.fetch_image`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from .checkout import ComfyEnv
from .errors import ComfyError, format_execution_error, format_prompt_error
from .paths import CHECKPOINT_NAME, PACK_FOLDER, ROOT


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the server when the test process dies, even if it is killed before teardown."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except Exception:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A running ComfyUI (``--cpu``) on 127.0.0.1 with its own base directory, spoken to over HTTP.

    Attributes: ``url`` (``http://127.0.0.1:PORT``), ``base_dir`` (pathlib), ``log_path``, ``env`` (the
    :class:`ComfyEnv`), ``client_id``, ``start_seconds`` (spawn to ready), ``checkpoint_seconds`` (0 if
    cached), ``checkpoint_path``.
    """

    def __init__(
        self,
        cenv: ComfyEnv,
        base_dir: str | os.PathLike,
        checkpoint: str | os.PathLike | None,
        extra_args: list[str] | None = None,
        cpu: bool = True,
        checkout_folders: bool = False,
    ) -> None:
        self.env = cenv
        self.base_dir = pathlib.Path(base_dir)
        self.checkpoint_path = pathlib.Path(checkpoint) if checkpoint is not None else None
        self.extra_args = list(extra_args or [])
        # cpu=False: the GPU(s) the process may see (CUDA_VISIBLE_DEVICES, set by Ray for a num_gpus=1 actor).
        self.cpu = cpu
        # checkout_folders=True: the checkout's own models/, custom_nodes/ (the pack installed there) and input/;
        # only output/ and temp/ live in base_dir, so that servers sharing a checkout never overwrite each other's
        # images. False (tests, soak): base_dir is the whole base directory, the pack symlinked, the checkpoint linked.
        self.checkout_folders = checkout_folders
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base_dir / "comfyui.log"
        self.client_id = uuid.uuid4().hex
        self.start_seconds = 0.0
        self.checkpoint_seconds = 0.0
        self.setup_seconds = 0.0
        self._log_file = None

    # -- lifecycle
    def _prepare_base(self) -> None:
        if self.checkout_folders:
            for sub in ("output", "temp"):
                (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
            return
        for sub in ("custom_nodes", "models/checkpoints", "input", "output", "temp", "user"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        link = self.base_dir / "custom_nodes" / PACK_FOLDER
        if not link.exists():
            link.symlink_to(ROOT, target_is_directory=True)
        ckpt = self.base_dir / "models" / "checkpoints" / CHECKPOINT_NAME
        if self.checkpoint_path is not None and not ckpt.exists():
            try:
                ckpt.symlink_to(self.checkpoint_path)
            except OSError:
                shutil.copyfile(self.checkpoint_path, ckpt)

    def start(self, timeout: float | None = None) -> ComfyServer:
        timeout = float(timeout or os.environ.get("COMFYUI_START_TIMEOUT", 300))
        self._prepare_base()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if self.checkout_folders:
            folders = ["--output-directory", str(self.base_dir / "output"), "--temp-directory", str(self.base_dir / "temp")]
        else:
            folders = ["--base-directory", str(self.base_dir)]
        cmd = [
            self.env.python,
            "main.py",
            *(["--cpu"] if self.cpu else []),
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            *folders,
            # what the checkout supports of: API nodes off, database in memory (see launch_flags)
            *self.env.launch_flags,
            *self.extra_args,
        ]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file.write(f"$ {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(self.env.comfy_path),
            env=self.env.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_text()[-4000:]
                self.stop()
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode} while starting. Log tail:\n{tail}")
            try:
                self._request("GET", "/system_stats", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.perf_counter() > deadline:
                tail = self.log_text()[-4000:]
                self.stop()
                raise RuntimeError(f"ComfyUI not ready after {timeout:.0f} s. Log tail:\n{tail}")
            time.sleep(0.2)
        self.start_seconds = time.perf_counter() - t0
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 15)  # SIGTERM to the server's own session (it was started with one)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, 9)
                proc.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> ComfyServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP
    def _request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> bytes:
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - 127.0.0.1 only
            return resp.read()

    def get_json(self, path: str, timeout: float = 60) -> Any:
        return json.loads(self._request("GET", path, timeout=timeout))

    def post_json(self, path: str, body: Any, timeout: float = 60) -> Any:
        raw = self._request("POST", path, body, timeout=timeout)
        return json.loads(raw) if raw.strip() else None

    def object_info(self, cls: str | None = None) -> dict:
        """``/object_info`` (all classes) or the entry of one class (``KeyError`` if the server lacks it)."""
        if cls is None:
            return self.get_json("/object_info")
        info = self.get_json(f"/object_info/{urllib.parse.quote(cls)}")
        if cls not in info:
            raise KeyError(f"{cls} not in /object_info")
        return info[cls]

    def queue(self, prompt_graph: dict, client_id: str | None = None, extra_data: dict | None = None) -> str:
        """POST /prompt; return the prompt_id. HTTP 400 raises :class:`ComfyError` with the node_errors text."""
        body: dict[str, Any] = {"prompt": prompt_graph, "client_id": client_id or self.client_id}
        if extra_data:
            body["extra_data"] = extra_data
        try:
            answer = self.post_json("/prompt", body)
        except urllib.error.HTTPError as e:
            raw = e.read().decode(errors="replace")
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw
            raise ComfyError(f"POST /prompt rejected (HTTP {e.code}): {format_prompt_error(payload)}", payload) from e
        if answer.get("node_errors"):
            raise ComfyError(f"POST /prompt node_errors: {format_prompt_error(answer)}", answer)
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600, poll: float = 0.1) -> dict:
        """Poll /history/{id} until the prompt finished; return its history entry.

        Raises :class:`ComfyError` (message = the execution error: node, type, exception message) when the
        status is ``error``, ``TimeoutError`` after ``timeout`` seconds (generous; no test should rely on it).
        """
        deadline = time.perf_counter() + timeout
        while True:
            hist = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}")
            entry = hist.get(prompt_id)
            if entry is not None:
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    raise ComfyError(f"prompt {prompt_id} failed: {format_execution_error(entry)}", entry)
                if status.get("completed", status.get("status_str") == "success"):
                    return entry
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}. Log tail:\n{self.log_text()[-4000:]}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout} s")
            time.sleep(poll)
            poll = min(poll * 1.5, 0.25)

    def run(self, prompt_graph: dict, timeout: float = 600) -> dict:
        """``queue`` + ``wait``: return the history entry."""
        return self.wait(self.queue(prompt_graph), timeout=timeout)

    @staticmethod
    def outputs(history: dict) -> dict:
        """``{node_id: {"images": [...], "text": [...], ...}}`` of a history entry."""
        return history.get("outputs", {})

    def images(self, history: dict, node_id: str | None = None) -> list:
        """All images (PIL) of a history entry, or of one output node, in order."""
        infos = []
        for nid, out in self.outputs(history).items():
            if node_id is None or nid == node_id:
                infos.extend(out.get("images", []))
        return [self.fetch_image(i) for i in infos]

    def fetch_image(self, info: dict):
        """GET /view for one ``{"filename", "subfolder", "type"}`` entry; return a loaded ``PIL.Image``."""
        from PIL import Image

        q = urllib.parse.urlencode(
            {"filename": info["filename"], "subfolder": info.get("subfolder", ""), "type": info.get("type", "output")}
        )
        img = Image.open(io.BytesIO(self._request("GET", f"/view?{q}")))
        img.load()
        return img

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def pack_import_problems(self) -> list[str]:
        """What the log says went wrong while our pack loaded (empty: it loaded cleanly); see comfy_log."""
        from .comfy_log import pack_import_problems

        return pack_import_problems(self.log_text(), PACK_FOLDER)

