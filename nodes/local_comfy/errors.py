"""The launcher's two exceptions and the readable text of a server's error answers.

:class:`ComfyUnavailable` means "no usable ComfyUI here" (a reason to skip a test, never to fail it);
:class:`ComfyError` means the server refused a prompt or the prompt failed, with the server's answer attached.
:func:`format_prompt_error` / :func:`format_execution_error` turn those answers into one line each;
:func:`execution_error` digs the structured ``execution_error`` message out of a failed prompt.
"""

from __future__ import annotations

import json
from typing import Any


class ComfyUnavailable(RuntimeError):
    """ComfyUI (or a dependency of it) is not there: a reason to skip, not to fail."""


class ComfyError(RuntimeError):
    """The server rejected a prompt (HTTP 400 with node_errors) or the prompt failed while executing."""

    def __init__(self, message: str, payload: Any = None) -> None:
        super().__init__(message)
        self.payload = payload



def format_prompt_error(payload: Any) -> str:
    """Readable text of a /prompt rejection: the error message plus every node error."""
    if not isinstance(payload, dict):
        return str(payload)[:2000]
    parts = []
    err = payload.get("error")
    if isinstance(err, dict):
        parts.append(f"{err.get('type')}: {err.get('message')} {err.get('details') or ''}".strip())
    for nid, ne in (payload.get("node_errors") or {}).items():
        for e in ne.get("errors", []):
            parts.append(f"node {nid} ({ne.get('class_type')}): {e.get('type')}: {e.get('message')} {e.get('details')}")
    return " | ".join(parts) or json.dumps(payload)[:2000]


def format_execution_error(entry: dict) -> str:
    """Readable text of a failed prompt's ``execution_error`` / ``execution_interrupted`` messages."""
    parts = []
    for msg in (entry.get("status") or {}).get("messages", []):
        if not isinstance(msg, (list, tuple)) or len(msg) != 2:
            continue
        kind, data = msg
        if kind == "execution_error":
            parts.append(
                f"node {data.get('node_id')} ({data.get('node_type')}): "
                f"{data.get('exception_type')}: {data.get('exception_message')}"
            )
        elif kind == "execution_interrupted":
            parts.append(f"interrupted at node {data.get('node_id')} ({data.get('node_type')})")
    return " | ".join(parts) or json.dumps(entry.get("status"))[:2000]


def execution_error(entry_or_exc: Any) -> dict:
    """The ``execution_error`` data dict of a failed history entry (or of a :class:`ComfyError`), or {}."""
    entry = entry_or_exc.payload if isinstance(entry_or_exc, ComfyError) else entry_or_exc
    for msg in ((entry or {}).get("status") or {}).get("messages", []):
        if isinstance(msg, (list, tuple)) and len(msg) == 2 and msg[0] == "execution_error":
            return msg[1]
    return {}

