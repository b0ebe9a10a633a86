"""Read a ComfyUI server log for what happened while this pack loaded, whatever the core's log format.

ComfyUI imports custom nodes before it starts serving. What it logs about one pack while doing so:

* a failed import: the traceback, then ``Cannot import <path>/custom_nodes/<pack> module for custom nodes: <error>``
  (V1 and V3 loaders), and ``... seconds (IMPORT FAILED): <path>/custom_nodes/<pack>`` in the
  "Import times for custom nodes:" summary;
* a V3 entry point (``comfy_entrypoint``) that raises: ``Error while calling comfy_entrypoint in <path>: <error>``
  (0.33, at WARNING level, without a traceback), and the same "IMPORT FAILED" summary line.

Everything after "Starting server" is the server at work: tracebacks of prompts that fail on purpose (a test's
bad input -> ``ValueError`` in one of our nodes) mention the pack's files too, and ComfyUI 0.33 logs them at
ERROR level, but they are not import problems. So only the load section counts.

Formats handled: 0.3.x writes bare messages; 0.33 prefixes each record with its level (``[INFO] ``,
``[ERROR] ``, coloured with ANSI escapes when the terminal or file takes them); either way only a record's first
line carries the prefix, its continuation lines (traceback frames) do not.
"""

from __future__ import annotations

import re

# ANSI colour escapes, then an optional "[LEVEL] " record prefix (ComfyUI >= 0.3.6x log formatter).
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVEL = re.compile(r"^\[(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\] ?")
# The first line ComfyUI logs once every custom node is imported and the HTTP server is being started.
_SERVING = re.compile(r"^(Starting server|To see the GUI go to:)")
IMPORT_FAILURE_PATTERNS = ("IMPORT FAILED", "Cannot import", "Error while calling comfy_entrypoint")
# A record at one of these levels that names the pack's folder while nodes load is a problem whatever it says.
_PROBLEM_LEVELS = ("WARNING", "WARN", "ERROR", "CRITICAL")


def plain(line: str) -> str:
    """A log line without colour escapes and without the record's level prefix."""
    return _LEVEL.sub("", _ANSI.sub("", line))


def level(line: str) -> str | None:
    """The level prefix of a record's first line (0.33 format), ``None`` for bare lines."""
    m = _LEVEL.match(_ANSI.sub("", line))
    return m.group(1) if m else None


def load_section(text: str) -> list[str] | None:
    """The plain lines ComfyUI logged before it started serving (custom nodes import there), or ``None`` when
    the log never reached that point (the server has not finished starting, or died while starting)."""
    lines = [plain(ln) for ln in text.splitlines()]
    end = next((i for i, ln in enumerate(lines) if _SERVING.match(ln)), None)
    return None if end is None else lines[:end]


def pack_import_problems(text: str, pack_folder: str) -> list[str]:
    """What the log says went wrong while ``custom_nodes/<pack_folder>`` loaded (empty: it loaded cleanly).

    Lines naming the pack with "IMPORT FAILED" / "Cannot import" / "Error while calling comfy_entrypoint", any
    WARNING or ERROR record (0.33 format) that names the pack's folder, and every traceback block whose frames or
    message mention the pack's folder, read from the load section only (see the module docstring). A log that
    never reached "Starting server" is read whole: a pack that breaks start-up must still show up.
    """
    raw = text.splitlines()
    section = load_section(text)
    n = len(raw) if section is None else len(section)
    lines = [plain(ln) for ln in raw[:n]]
    levels = [level(ln) for ln in raw[:n]]
    needles = (f"custom_nodes/{pack_folder}", f"custom_nodes\\{pack_folder}")
    bad = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        if "Traceback (most recent call last)" in ln:
            # The block runs to its first unindented line after the frames: the exception line.
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith(" ")),
                       len(lines) - 1)
            block = "\n".join(lines[i : end + 1])
            if any(nd in block for nd in needles):
                bad.append(block)
            i = end + 1
            continue
        if (any(p in ln for p in IMPORT_FAILURE_PATTERNS) and pack_folder in ln) or (
            levels[i] in _PROBLEM_LEVELS and any(nd in ln for nd in needles)
        ):
            bad.append(ln)
        i += 1
    return bad
