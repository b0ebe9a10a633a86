"""UI-format workflow -> API-format prompt, using a server's ``/object_info``.

ComfyUI's server only accepts the API format (``{node_id: {"class_type", "inputs"}}``); the frontend's
``graphToPrompt`` converts what it saves (the UI format: ``nodes``, ``links``, ``widgets_values``). This module
does the same conversion offline from the node definitions a live server reports, following the frontend's rules:

- widget values are matched to widget inputs in the node definition's order (``input_order``: required, then
  optional); inputs that are sockets only (non-widget types, ``forceInput``) take no value;
- seed-like INT widgets (``control_after_generate`` or named ``seed``/``noise_seed``) are followed by an extra
  value (``"fixed"``/``"increment"``/``"decrement"``/``"randomize"``, or a boolean in some old saves): skipped;
- links (``[id, origin, origin_slot, target, target_slot, type]``) become ``[origin_id, slot]``; a linked
  widget (a "converted widget") takes the link, not its stored value;
- ``Reroute`` nodes are followed to their source; ``PrimitiveNode`` values are written into their targets;
- muted nodes (mode 2) are dropped together with the inputs they fed; bypassed nodes (mode 4) pass an input of
  the same type straight through, as the frontend does;
- ``Note``/``MarkdownNote`` are ignored. Subgraphs and group nodes are refused with a clear message.
"""

from __future__ import annotations

from typing import Any

MODE_MUTED = 2
MODE_BYPASS = 4
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
VIRTUAL_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
SEED_NAMES = {"seed", "noise_seed"}


class ConversionError(ValueError):
    """The UI workflow cannot be converted; the message says which node and why."""


def is_ui_workflow(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def is_api_prompt(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(v, dict) and "class_type" in v for v in data.values())
    )


def _input_specs(info: dict) -> list[tuple[str, Any, dict]]:
    """(name, type, options) for every input of a node definition, in the frontend's order."""
    inputs = info.get("input", {}) or {}
    order = info.get("input_order") or {}
    out = []
    for section in ("required", "optional"):
        spec = inputs.get(section) or {}
        names = order.get(section) or list(spec.keys())
        for name in names:
            if name not in spec:
                continue
            entry = spec[name]
            if isinstance(entry, (list, tuple)):
                typ = entry[0] if entry else None
                opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            else:
                typ, opts = entry, {}
            out.append((name, typ, opts))
    return out


def _is_widget(typ: Any, opts: dict) -> bool:
    if opts.get("forceInput"):
        return False
    if isinstance(typ, list):  # V1 combo: the list of options
        return True
    if opts.get("widgetType") or opts.get("socketless"):
        return True
    return isinstance(typ, str) and typ in WIDGET_TYPES


def _has_control_value(name: str, typ: Any, opts: dict) -> bool:
    flag = opts.get("control_after_generate")
    if flag is not None:
        return bool(flag)
    return typ == "INT" and name in SEED_NAMES


def widget_names(info: dict) -> list[tuple[str, bool]]:
    """(widget name, followed by a control value) in widgets_values order."""
    return [
        (name, _has_control_value(name, typ, opts))
        for name, typ, opts in _input_specs(info)
        if _is_widget(typ, opts)
    ]


def _map_widget_values(node: dict, info: dict) -> dict[str, Any]:
    values = node.get("widgets_values")
    if values is None:
        return {}
    names = widget_names(info)
    if isinstance(values, dict):  # some packs save widgets by name
        return {name: values[name] for name, _ in names if name in values}
    out: dict[str, Any] = {}
    i = 0
    for name, control in names:
        if i >= len(values):
            break
        out[name] = values[i]
        i += 1
        if control and i < len(values):
            nxt = values[i]
            if nxt in CONTROL_VALUES or isinstance(nxt, bool):
                i += 1
    return out


def _title(node: dict, info: dict | None) -> str:
    if node.get("title"):
        return str(node["title"])
    if info and info.get("display_name"):
        return str(info["display_name"])
    return str(node.get("type"))


def convert_ui_to_api(ui: dict, object_info: dict) -> dict[str, dict]:
    """Convert a UI-format workflow into the API prompt the frontend would queue.

    ``object_info`` is the JSON of ``GET /object_info`` (or any dict with the used classes).
    Raises ConversionError naming the node when a class is unknown or the graph uses subgraphs.
    """
    if not is_ui_workflow(ui):
        raise ConversionError("not a UI-format workflow (expected top-level 'nodes' and 'links')")
    nodes = {str(n["id"]): n for n in ui["nodes"]}
    subgraphs = {str(s.get("id")) for s in (ui.get("definitions") or {}).get("subgraphs", []) or []}

    # link id -> (origin node id, origin slot, type)
    links: dict[int, tuple[str, int, Any]] = {}
    for link in ui.get("links") or []:
        if isinstance(link, dict):  # newer serialisation
            lid, origin, slot, typ = link["id"], link["origin_id"], link["origin_slot"], link.get("type")
        else:
            lid, origin, slot, typ = link[0], link[1], link[2], link[5] if len(link) > 5 else None
        links[int(lid)] = (str(origin), int(slot), typ)

    for nid, node in nodes.items():
        typ = node.get("type")
        if typ in subgraphs:
            raise ConversionError(
                f"node {nid} ({_title(node, None)}) is a subgraph; subgraphs are not converted here: unpack it "
                "in the ComfyUI frontend or export with 'Export (API)'"
            )
        if str(typ).startswith("workflow>") or str(typ).startswith("workflow/"):
            raise ConversionError(f"node {nid} ({typ}) is a group node; convert it back to nodes in the frontend")
        if typ not in VIRTUAL_TYPES and typ not in object_info and node.get("mode", 0) not in (MODE_MUTED, MODE_BYPASS):
            raise ConversionError(
                f"node {nid} ({_title(node, None)}): class {typ!r} is not installed on the server "
                "(missing custom node pack?)"
            )

    def resolve(link_id: int | None, seen: frozenset = frozenset()) -> tuple[str, Any] | None:
        """Follow a link to a real source: ('link', [id, slot]), ('value', v) or None (dropped)."""
        if link_id is None or int(link_id) not in links:
            return None
        origin, slot, typ = links[int(link_id)]
        if origin in seen:
            raise ConversionError(f"link cycle through node {origin}")
        seen = seen | {origin}
        src = nodes.get(origin)
        if src is None:
            return None
        stype = src.get("type")
        if stype == "Reroute":
            ins = src.get("inputs") or []
            return resolve(ins[0].get("link") if ins else None, seen)
        if stype == "PrimitiveNode":
            vals = src.get("widgets_values") or []
            return ("value", vals[0]) if vals else None
        mode = src.get("mode", 0)
        if mode == MODE_MUTED:
            return None
        if mode == MODE_BYPASS:
            ins = src.get("inputs") or []
            out_type = typ
            outs = src.get("outputs") or []
            if slot < len(outs) and outs[slot].get("type"):
                out_type = outs[slot]["type"]
            # the frontend prefers the input at the same slot, then the first input of the same type
            candidates = []
            if slot < len(ins):
                candidates.append(ins[slot])
            candidates += ins
            for cand in candidates:
                if cand.get("link") is None:
                    continue
                ctype = cand.get("type")
                if ctype == out_type or ctype == "*" or out_type == "*":
                    return resolve(cand.get("link"), seen)
            return None
        if stype in ("Note", "MarkdownNote"):
            return None
        return ("link", [origin, slot])

    prompt: dict[str, dict] = {}
    for nid, node in nodes.items():
        typ = node.get("type")
        if typ in VIRTUAL_TYPES or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
            continue
        info = object_info[typ]
        inputs = _map_widget_values(node, info)
        known = {name for name, _, _ in _input_specs(info)}
        for inp in node.get("inputs") or []:
            name = inp.get("name")
            if (inp.get("widget") or {}).get("name"):
                name = inp["widget"]["name"]
            if name not in known:
                continue
            if inp.get("link") is None:
                continue
            found = resolve(inp.get("link"))
            if found is None:
                # a dropped source (muted/bypassed chain): a converted widget keeps its stored value
                if not inp.get("widget"):
                    inputs.pop(name, None)
                continue
            inputs[name] = found[1]
        prompt[nid] = {"class_type": typ, "inputs": inputs, "_meta": {"title": _title(node, info)}}
    if not prompt:
        raise ConversionError("the workflow has no runnable nodes")
    return prompt
