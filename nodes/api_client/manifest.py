"""The batch manifest: JSON lines, appended and flushed one record at a time.

Record types:
- ``{"type": "run", ...}``: one per client run (arguments, servers, start time).
- ``{"type": "job", "status": ..., "job": KEY, ...}``: ``queued`` (prompt id and server known),
  ``done`` (files, ui values, numbers), ``error`` (message), ``cancelled`` (Ctrl-C), ``requeued`` (its server died).

The last record of a job decides its state. A rerun skips every job whose state is ``done`` and looks up jobs
left ``queued`` on their server (finished there -> collected without running again; still queued -> waited for).
A torn last line (the process was killed while writing) is ignored.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any


class Manifest:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.records: list[dict] = []
        self.latest: dict[str, dict] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn write at the end of an interrupted run
                self._remember(rec)

    def _remember(self, rec: dict) -> None:
        self.records.append(rec)
        if rec.get("type") == "job" and rec.get("job"):
            self.latest[rec["job"]] = rec

    def append(self, rec: dict[str, Any]) -> dict:
        rec = {"time": round(time.time(), 3), **rec}
        line = json.dumps(rec, sort_keys=False, default=str)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # a previous run killed mid-line leaves no newline: start on a fresh line
            needs_nl = self.path.exists() and self.path.stat().st_size > 0 and not self._ends_with_newline()
            with open(self.path, "a", encoding="utf-8") as fh:
                if needs_nl:
                    fh.write("\n")
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._remember(rec)
        return rec

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def state(self, key: str) -> str | None:
        rec = self.latest.get(key)
        return rec.get("status") if rec else None

    def done(self) -> dict[str, dict]:
        return {k: r for k, r in self.latest.items() if r.get("status") == "done"}

    def job_records(self, status: str | None = None) -> list[dict]:
        return [r for r in self.records if r.get("type") == "job" and (status is None or r.get("status") == status)]
