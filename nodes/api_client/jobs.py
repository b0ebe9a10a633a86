"""Overrides, sweeps and the list of jobs a batch is made of.

Grammar (``antithetic-queue --help`` repeats it):

- ``--set NODE.INPUT=VALUE``: NODE is a node id, a node title (``_meta.title``) or a class_type that occurs once;
  VALUE is parsed as JSON when it can be (``7``, ``1.5``, ``true``, ``"text"``, ``["4", 0]``), else taken as text.
- ``--sweep NODE.INPUT=SPEC``: SPEC is an inclusive range ``A..B`` (integers; ``A..B:STEP`` for a step, floats
  allowed), a comma list ``a,b,c`` (each item JSON or text; a JSON list ``[1, 2]`` also works) or one value.
  Several sweeps form the cartesian product, the first one varying slowest.
- ``--repeat N`` runs every point N times; ``--repeat-seed-stride S`` adds ``r*S`` to every seed-like input
  (``seed``, ``noise_seed``) of repeat ``r`` (ComfyUI serves an identical prompt from its cache, so plain repeats
  of a deterministic graph give the same images).

A job is identified by a stable hash of its final graph (titles and other ``_meta`` left out) and its repeat
index, so reruns with the same manifest recognise what is already done.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

SEED_INPUTS = ("seed", "noise_seed")
_RANGE = re.compile(r"^\s*(-?[\d.eE+]+)\s*\.\.\s*(-?[\d.eE+]+)\s*(?::\s*(-?[\d.eE+]+)\s*)?$")


class SpecError(ValueError):
    """A --set/--sweep argument or a node reference that cannot be used; the message says why."""


@dataclass(frozen=True)
class Target:
    node: str  # as written by the user (id, title or class)
    input: str


@dataclass
class Sweep:
    target: Target
    values: list[Any]
    text: str = ""


@dataclass
class Job:
    index: int
    prompt: dict
    params: dict[str, Any]
    repeat: int
    key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.key:
            self.key = job_key(self.prompt, self.repeat)


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text


def _split_target(arg: str, flag: str) -> tuple[Target, str]:
    if "=" not in arg:
        raise SpecError(f"{flag} {arg!r}: expected NODE.INPUT=VALUE")
    left, right = arg.split("=", 1)
    if "." not in left:
        raise SpecError(f"{flag} {arg!r}: expected NODE.INPUT before '=' (for example 3.seed or KSampler.steps)")
    node, inp = left.rsplit(".", 1)
    node, inp = node.strip(), inp.strip()
    if not node or not inp:
        raise SpecError(f"{flag} {arg!r}: empty node or input name")
    return Target(node, inp), right


def parse_set(arg: str) -> tuple[Target, Any]:
    target, right = _split_target(arg, "--set")
    return target, parse_value(right)


def _number(text: str) -> int | Decimal:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise SpecError(f"not a number: {text!r}") from exc


def parse_range(spec: str) -> list[Any] | None:
    m = _RANGE.match(spec)
    if not m:
        return None
    a, b = _number(m.group(1)), _number(m.group(2))
    step = _number(m.group(3)) if m.group(3) else (1 if b >= a else -1)
    if step == 0:
        raise SpecError(f"range {spec!r}: step must not be 0")
    if (b - a) * step < 0:
        raise SpecError(f"range {spec!r}: step {step} never reaches {b}")
    count = int((b - a) / step) + 1
    if count > 1_000_000:
        raise SpecError(f"range {spec!r} has {count} values; that is too many")
    is_int = all(isinstance(x, int) for x in (a, b, step))
    vals = [a + i * step for i in range(count)]
    return [int(v) if is_int else float(v) for v in vals]


def _split_commas(spec: str) -> list[str]:
    """Split at commas outside quotes and brackets."""
    parts, buf, depth, quote = [], [], 0, None
    for ch in spec:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return parts


def parse_sweep_values(spec: str) -> list[Any]:
    vals = parse_range(spec)
    if vals is not None:
        return vals
    stripped = spec.strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
            if isinstance(data, list) and data:
                return data
        except json.JSONDecodeError:
            pass
    items = [p.strip() for p in _split_commas(spec)]
    if any(p == "" for p in items):
        raise SpecError(f"sweep values {spec!r}: empty item in the list")
    return [parse_value(p) for p in items]


def parse_sweep(arg: str) -> Sweep:
    target, right = _split_target(arg, "--sweep")
    if not right.strip():
        raise SpecError(f"--sweep {arg!r}: no values after '='")
    return Sweep(target, parse_sweep_values(right), arg)


def resolve_node(prompt: dict, ref: str) -> str:
    """Node id for a reference by id, title or (unique) class_type."""
    if ref in prompt:
        return ref
    by_title = [nid for nid, n in prompt.items() if (n.get("_meta") or {}).get("title") == ref]
    if len(by_title) == 1:
        return by_title[0]
    if len(by_title) > 1:
        raise SpecError(f"node title {ref!r} is used by nodes {', '.join(sorted(by_title))}; use the node id")
    by_class = [nid for nid, n in prompt.items() if n.get("class_type") == ref]
    if len(by_class) == 1:
        return by_class[0]
    if len(by_class) > 1:
        raise SpecError(f"there are several {ref} nodes ({', '.join(sorted(by_class))}); use the node id or title")
    known = ", ".join(f"{nid} ({(n.get('_meta') or {}).get('title') or n.get('class_type')})" for nid, n in prompt.items())
    raise SpecError(f"no node {ref!r} in the workflow; nodes: {known}")


def check_input(prompt: dict, nid: str, name: str, object_info: dict | None) -> None:
    node = prompt[nid]
    if name in node.get("inputs", {}):
        return
    info = (object_info or {}).get(node.get("class_type"))
    if info is not None:
        spec = info.get("input", {}) or {}
        valid = [n for sec in ("required", "optional") for n in (spec.get(sec) or {})]
        if name in valid:
            return
        raise SpecError(f"node {nid} ({node.get('class_type')}) has no input {name!r}; its inputs: {', '.join(valid)}")
    present = ", ".join(node.get("inputs", {}))
    if object_info is not None:
        raise SpecError(f"node {nid} ({node.get('class_type')}) has no input {name!r}; it has: {present}")
    # No node definition to consult: refuse rather than add an input the node may not have (a no-op sweep).
    raise SpecError(f"node {nid} ({node.get('class_type')}) has no input {name!r} in the workflow; it has: {present}. "
                    "An optional input the workflow leaves out can be set once the node's definition is known: "
                    "give a running --server or --object-info FILE")


def input_type(prompt: dict, nid: str, name: str, definitions: dict | None) -> tuple[str, dict]:
    """(type, options) of an input: from the node's definition (/object_info: ``["INT", {"min": 0, ...}]``, a combo
    ``[[...], {...}]`` or ``["COMBO", {"options": [...]}]``) when known, else from the value the workflow gives it
    (``NUMBER`` for a number: an API workflow cannot tell INT from FLOAT); ``ANY`` when neither says."""
    info = (definitions or {}).get(prompt[nid].get("class_type")) or {}
    spec = info.get("input") or {}
    for section in ("required", "optional"):
        entry = (spec.get(section) or {}).get(name)
        if entry is None:
            continue
        entry = entry if isinstance(entry, (list, tuple)) else [entry]
        kind = entry[0] if entry else None
        opts = dict(entry[1]) if len(entry) > 1 and isinstance(entry[1], dict) else {}
        if isinstance(kind, (list, tuple)):
            return "COMBO", {**opts, "options": list(kind)}
        if isinstance(kind, str):
            return kind.upper(), opts
    current = (prompt[nid].get("inputs") or {}).get(name)
    if isinstance(current, bool):
        return "BOOLEAN", {}
    if isinstance(current, (int, float)):
        return "NUMBER", {}
    if isinstance(current, str):
        return "STRING", {}
    return "ANY", {}


def _is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)
            and not isinstance(value[1], bool))


def _range_text(opts: dict) -> str:
    lo, hi = opts.get("min"), opts.get("max")
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" of at least {lo}"
    if hi is not None:
        return f" of at most {hi}"
    return ""


def check_value(prompt: dict, nid: str, name: str, value: Any, definitions: dict | None, where: str) -> Any:
    """``value`` as the input ``name`` of node ``nid`` takes it, or a SpecError (one line: the option as given, the
    input's type and what it accepts). A link ``["node", slot]`` is passed through; a whole-number float becomes an
    int for an INT input, a number or true/false becomes its text for a STRING input."""
    if _is_link(value):
        return value
    kind, opts = input_type(prompt, nid, name, definitions)
    node = f"node {nid} ({prompt[nid].get('class_type')}) input {name!r}"

    def refuse(accepted: str):
        shown = json.dumps(value) if not isinstance(value, str) else repr(value)
        raise SpecError(f"{where}: {shown} does not fit {node}; accepted: {accepted}")

    def in_range(v, accepted):
        if (opts.get("min") is not None and v < opts["min"]) or (opts.get("max") is not None and v > opts["max"]):
            refuse(accepted)
        return v

    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "INT":
        accepted = f"a whole number{_range_text(opts)} (INT)"
        if number and float(value).is_integer():
            return in_range(int(value), accepted)
        refuse(accepted)
    if kind == "FLOAT":
        accepted = f"a number{_range_text(opts)} (FLOAT)"
        return in_range(value, accepted) if number else refuse(accepted)
    if kind == "NUMBER":
        return value if number else refuse("a number, as the workflow gives it")
    if kind == "BOOLEAN":
        return value if isinstance(value, bool) else refuse("true or false (BOOLEAN)")
    if kind == "COMBO":
        options = opts.get("options") or []
        if options:
            return value if value in options else refuse(", ".join(map(str, options)))
        return value if isinstance(value, str) else refuse("a name (text)")
    if kind == "STRING":
        if isinstance(value, str):
            return value
        return json.dumps(value) if number or isinstance(value, bool) else refuse("text (STRING)")
    if kind == "ANY":
        return value
    refuse(f"a link [\"node id\", output index] ({kind} is a socket, not a widget value)")


def apply(prompt: dict, nid: str, name: str, value: Any) -> None:
    prompt[nid].setdefault("inputs", {})[name] = value


def canonical_graph(prompt: dict) -> dict:
    return {nid: {"class_type": n.get("class_type"), "inputs": n.get("inputs", {})} for nid, n in prompt.items()}


def job_key(prompt: dict, repeat: int = 0) -> str:
    blob = json.dumps({"graph": canonical_graph(prompt), "repeat": repeat}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def build_jobs(
    prompt: dict,
    sets: list[tuple[Target, Any]] = (),
    sweeps: list[Sweep] = (),
    repeat: int = 1,
    repeat_seed_stride: int = 0,
    object_info: dict | None = None,
    definitions: dict | None = None,
) -> list[Job]:
    """All jobs of a batch: base graph + --set, then the product of the sweeps, each repeated.

    Every --set and --sweep value is checked against its input's type (``check_value``: the node definitions in
    ``definitions``, else ``object_info``, else the workflow's own value) before any job exists."""
    if repeat < 1:
        raise SpecError(f"--repeat must be at least 1 (got {repeat})")
    definitions = object_info if definitions is None else definitions
    base = copy.deepcopy(prompt)
    for target, value in sets:
        nid = resolve_node(base, target.node)
        check_input(base, nid, target.input, object_info)
        where = f"--set {target.node}.{target.input}"
        apply(base, nid, target.input, check_value(base, nid, target.input, value, definitions, where))
    resolved = []
    for sw in sweeps:
        nid = resolve_node(base, sw.target.node)
        check_input(base, nid, sw.target.input, object_info)
        where = f"--sweep {sw.text or f'{sw.target.node}.{sw.target.input}'}"
        values = [check_value(base, nid, sw.target.input, v, definitions, where) for v in sw.values]
        resolved.append((nid, sw.target.input, values))
    seed_targets = [
        (nid, name)
        for nid, n in base.items()
        for name in SEED_INPUTS
        if isinstance((n.get("inputs") or {}).get(name), int) and not isinstance(n["inputs"][name], bool)
    ]
    jobs: list[Job] = []
    points = itertools.product(*[vals for _, _, vals in resolved]) if resolved else [()]
    for point in points:
        graph = copy.deepcopy(base)
        params: dict[str, Any] = {}
        for (nid, name, _), value in zip(resolved, point, strict=True):
            apply(graph, nid, name, value)
            params[f"{nid}.{name}"] = value
        for r in range(repeat):
            g = copy.deepcopy(graph) if repeat > 1 else graph
            if r and repeat_seed_stride:
                for nid, name in seed_targets:
                    g[nid]["inputs"][name] = int(g[nid]["inputs"][name]) + r * repeat_seed_stride
            jobs.append(Job(index=len(jobs), prompt=g, params=dict(params), repeat=r))
    return jobs
