"""Build UI-format ComfyUI workflows in code, from a server's ``/object_info``.

The example workflows in ``workflows/`` are generated here rather than typed by hand: ``widgets_values`` must
follow the node definitions' widget order exactly (with the control value the frontend stores after every
seed widget, ``"fixed"`` here), which is easy to get wrong by hand and silently breaks when a node gains an
input. The builder reads the order from ``/object_info`` (through the UI -> API converter's ``widget_names``, so
building and converting agree by construction), lays out nodes, links, groups and notes, and writes what the frontend
itself saves (``version`` 0.4, ``properties.cnr_id``/``ver`` per node).

Usage::

    g = UIGraph(object_info)
    ckpt = g.add("CheckpointLoaderSimple", (0, 0), ckpt_name="v1-5-pruned-emaonly.safetensors")
    pos = g.add("CLIPTextEncode", (0, 200), clip=ckpt["CLIP"], text="a fox")
    g.note("What to look at ...", (0, -200))
    g.group("Model", [ckpt, pos])
    ui = g.to_json()
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .convert import widget_names

PACK_CNR_ID = "antithetic-sampling"
CORE_CNR_ID = "comfy-core"
FRONTEND_ONLY = {"Note", "MarkdownNote"}
MODEL_FILE_INPUTS = {"ckpt_name", "unet_name", "vae_name", "lora_name", "control_net_name", "model_name",
                     "style_model_name", "clip_vision_name", "gligen_name"}

# LiteGraph metrics used by the frontend to size nodes (measured on saved templates: a KSampler with 4 input
# rows and 7 widgets is 262 px high, a one-widget one-socket node 58 px).
SLOT_H = 20
WIDGET_H = 24
PAD_H = 14
MULTILINE_H = 90
GROUP_PAD = 20
# From a group's top edge to its top node's body: the group title band (font 24: 34 px), a row for node badges
# (LiteGraph draws them 22-52 px above a node's body, over anything there) and the node's 30 px title bar.
GROUP_TITLE_H = 80


@dataclass(frozen=True)
class Out:
    """An output socket of a node in the graph: ``node[name_or_index]``."""

    node: Node
    slot: int

    @property
    def type(self) -> str:
        return self.node.output_types[self.slot]


@dataclass(eq=False)
class Node:
    id: int
    type: str
    pos: tuple[float, float]
    size: tuple[float, float]
    title: str | None
    widgets: list[Any]
    inputs: list[dict]  # {"name", "type", "link"}
    output_names: list[str]
    output_types: list[str]
    properties: dict
    color: str | None = None
    bgcolor: str | None = None
    out_links: dict[int, list[int]] = field(default_factory=dict)

    def __getitem__(self, key: int | str) -> Out:
        if isinstance(key, int):
            if not 0 <= key < len(self.output_types):
                raise KeyError(f"{self.type} has no output {key}")
            return Out(self, key)
        for i, name in enumerate(self.output_names):
            if name == key:
                return Out(self, i)
        for i, typ in enumerate(self.output_types):
            if typ == key:
                return Out(self, i)
        raise KeyError(f"{self.type} has no output {key!r} (outputs: {self.output_names})")


def _input_specs(info: dict) -> list[tuple[str, Any, dict, bool]]:
    """(name, type, options, optional) for each input in the frontend's order."""
    inputs = info.get("input", {}) or {}
    order = info.get("input_order") or {}
    specs = []
    for section in ("required", "optional"):
        spec = inputs.get(section) or {}
        for name in order.get(section) or list(spec):
            if name not in spec:
                continue
            entry = spec[name]
            typ = entry[0] if isinstance(entry, (list, tuple)) and entry else entry
            opts = entry[1] if isinstance(entry, (list, tuple)) and len(entry) > 1 and isinstance(entry[1], dict) else {}
            specs.append((name, typ, opts, section == "optional"))
    return specs


def _default_value(typ: Any, opts: dict) -> Any:
    if "default" in opts:
        return opts["default"]
    if isinstance(typ, list):
        return typ[0] if typ else ""
    if typ == "COMBO":
        options = opts.get("options") or []
        return options[0] if options else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(typ)


def _type_name(typ: Any) -> str:
    return "COMBO" if isinstance(typ, list) else str(typ)


def _cnr_id(info: dict) -> str:
    module = str(info.get("python_module", ""))
    if module.startswith("custom_nodes."):
        return PACK_CNR_ID if "antithetic" in module else module.split(".", 1)[1]
    return CORE_CNR_ID


class UIGraph:
    """A UI-format workflow under construction (see the module docstring)."""

    def __init__(self, object_info: dict, *, name: str = "workflow", core_version: str = "0.3.64",
                 pack_version: str = "0.1.0", frontend_version: str = "1.27.10"):
        self.object_info = object_info
        self.name = name
        self.core_version = core_version
        self.pack_version = pack_version
        self.frontend_version = frontend_version
        self.nodes: list[Node] = []
        self.links: list[list] = []
        self.groups: list[dict] = []
        self._deps: dict[int, set[int]] = {}

    # ----------------------------------------------------------------------------------------------- nodes
    def add(self, class_type: str, pos: tuple[float, float], *, title: str | None = None,
            size: tuple[float, float] | None = None, color: str | None = None, bgcolor: str | None = None,
            **values: Any) -> Node:
        """Add a node; keyword arguments are widget values or ``Out`` links, by input name."""
        if class_type not in self.object_info:
            raise KeyError(f"{class_type!r} is not in object_info (is the pack installed on that server?)")
        info = self.object_info[class_type]
        specs = {name: (typ, opts, optional) for name, typ, opts, optional in _input_specs(info)}
        unknown = set(values) - set(specs)
        if unknown:
            raise KeyError(f"{class_type} has no input(s) {sorted(unknown)}; inputs: {list(specs)}")

        widget_order = widget_names(info)
        widget_set = {name for name, _ in widget_order}
        widgets: list[Any] = []
        multiline = 0
        for name, control in widget_order:
            typ, opts, _ = specs[name]
            value = values.get(name)
            if value is None or isinstance(value, Out):
                value = _default_value(typ, opts)
            if isinstance(typ, list) or typ == "COMBO":
                options = typ if isinstance(typ, list) else (opts.get("options") or [])
                if options and value not in options and not _is_model_list(name):
                    raise ValueError(f"{class_type}.{name}: {value!r} is not one of {options}")
            widgets.append(value)
            if control:
                widgets.append("fixed")
            if typ == "STRING" and opts.get("multiline"):
                multiline += 1

        node_id = (max((n.id for n in self.nodes), default=0)) + 1
        sockets: list[dict] = []
        for name, (typ, _opts, optional) in specs.items():
            if name in widget_set and not isinstance(values.get(name), Out):
                continue
            entry = {"name": name, "type": _type_name(typ), "link": None}
            if name in widget_set:
                entry["widget"] = {"name": name}
            if optional and name not in widget_set:
                entry["shape"] = 7  # the frontend draws optional sockets hollow
            sockets.append(entry)

        out_types = [_type_name(t) for t in info.get("output", [])]
        out_names = list(info.get("output_name") or out_types)
        n_widgets = len(widgets)
        rows = max(len([s for s in sockets if "widget" not in s]), len(out_types))
        if size is None:
            height = rows * SLOT_H + n_widgets * WIDGET_H + multiline * MULTILINE_H + PAD_H
            label = title or info.get("display_name") or class_type
            width = max(300, 9 * len(label) + 60)
            size = (width, max(height, 46))
        props = {"Node name for S&R": class_type, "cnr_id": _cnr_id(info),
                 "ver": self.pack_version if _cnr_id(info) == PACK_CNR_ID else self.core_version}
        node = Node(node_id, class_type, pos, size, title, widgets, sockets, out_names, out_types, props,
                    color, bgcolor)
        self.nodes.append(node)
        self._deps[node_id] = set()
        for name, value in values.items():
            if isinstance(value, Out):
                self.connect(value, node, name)
        return node

    def connect(self, src: Out, dst: Node, input_name: str) -> int:
        slot = next((i for i, s in enumerate(dst.inputs) if s["name"] == input_name), None)
        if slot is None:
            raise KeyError(f"{dst.type} has no socket {input_name!r}")
        want = dst.inputs[slot]["type"]
        if not _types_match(src.type, want):
            raise TypeError(f"cannot link {src.node.type}.{src.type} to {dst.type}.{input_name} ({want})")
        link_id = len(self.links) + 1
        self.links.append([link_id, src.node.id, src.slot, dst.id, slot, src.type])
        dst.inputs[slot]["link"] = link_id
        src.node.out_links.setdefault(src.slot, []).append(link_id)
        self._deps[dst.id].add(src.node.id)
        return link_id

    def note(self, text: str, pos: tuple[float, float], size: tuple[float, float] = (420, 220), *,
             markdown: bool = True, color: str = "#432", bgcolor: str = "#653") -> Node:
        """A Note / MarkdownNote (frontend-only nodes: never sent to the server)."""
        node_type = "MarkdownNote" if markdown else "Note"
        node_id = (max((n.id for n in self.nodes), default=0)) + 1
        node = Node(node_id, node_type, pos, size, None, [text], [], [], [], {}, color, bgcolor)
        self.nodes.append(node)
        self._deps[node_id] = set()
        return node

    def group(self, title: str, members: list[Node], color: str = "#3f789e",
              bounding: tuple[float, float, float, float] | None = None) -> dict:
        if bounding is None:
            x0 = min(n.pos[0] for n in members) - GROUP_PAD
            y0 = min(n.pos[1] for n in members) - GROUP_TITLE_H - 10
            x1 = max(n.pos[0] + n.size[0] for n in members) + GROUP_PAD
            y1 = max(n.pos[1] + n.size[1] for n in members) + GROUP_PAD
            bounding = (x0, y0, x1 - x0, y1 - y0)
        grp = {"id": len(self.groups) + 1, "title": title, "bounding": [round(float(v), 1) for v in bounding],
               "color": color, "font_size": 24, "flags": {}}
        self.groups.append(grp)
        return grp

    # ----------------------------------------------------------------------------------------------- output
    def _order(self) -> dict[int, int]:
        """Execution order the frontend stores (a topological order, notes first)."""
        done: dict[int, int] = {}
        remaining = [n.id for n in self.nodes]
        while remaining:
            ready = [i for i in remaining if self._deps[i] <= set(done)]
            if not ready:
                raise ValueError("the graph has a cycle")
            for i in ready:
                done[i] = len(done)
            remaining = [i for i in remaining if i not in done]
        return done

    def to_json(self) -> dict:
        order = self._order()
        nodes = []
        for n in self.nodes:
            entry: dict[str, Any] = {
                "id": n.id, "type": n.type, "pos": [round(float(n.pos[0]), 1), round(float(n.pos[1]), 1)],
                "size": [round(float(n.size[0]), 1), round(float(n.size[1]), 1)], "flags": {},
                "order": order[n.id], "mode": 0, "inputs": [dict(s) for s in n.inputs],
                "outputs": [
                    {"name": name, "type": typ, "links": list(n.out_links.get(i, [])), "slot_index": i}
                    for i, (name, typ) in enumerate(zip(n.output_names, n.output_types, strict=True))
                ],
                "properties": dict(n.properties), "widgets_values": list(n.widgets),
            }
            if n.title:
                entry["title"] = n.title
            if n.color:
                entry["color"] = n.color
            if n.bgcolor:
                entry["bgcolor"] = n.bgcolor
            nodes.append(entry)
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"antithetic-sampling/workflows/{self.name}")),
            "revision": 0,
            "last_node_id": max((n.id for n in self.nodes), default=0),
            "last_link_id": len(self.links),
            "nodes": nodes,
            "links": [list(link) for link in self.links],
            "groups": [dict(g) for g in self.groups],
            "config": {},
            "extra": {"ds": {"scale": 0.55, "offset": [60, 120]}, "frontendVersion": self.frontend_version},
            "version": 0.4,
        }


def _is_model_list(name: str) -> bool:
    """Model-file combos: the builder's server may not have the user's model files."""
    return name in MODEL_FILE_INPUTS or name.startswith("clip_name")


def _types_match(out_type: str, in_type: str) -> bool:
    if out_type == in_type or "*" in (out_type, in_type):
        return True
    outs = set(out_type.split(","))
    ins = set(in_type.split(","))
    return bool(outs & ins)


def link_type_errors(ui: dict, object_info: dict) -> list[str]:
    """Check every link of a UI workflow against the node definitions; returns readable problems (empty = ok)."""
    problems: list[str] = []
    nodes = {n["id"]: n for n in ui["nodes"]}
    for link in ui.get("links") or []:
        lid, src_id, src_slot, dst_id, dst_slot, typ = link[:6]
        src, dst = nodes.get(src_id), nodes.get(dst_id)
        if src is None or dst is None:
            problems.append(f"link {lid}: missing node {src_id if src is None else dst_id}")
            continue
        src_info, dst_info = object_info.get(src["type"]), object_info.get(dst["type"])
        if src_info is None or dst_info is None:
            problems.append(f"link {lid}: unknown class {src['type'] if src_info is None else dst['type']}")
            continue
        outputs = src_info.get("output") or []
        if src_slot >= len(outputs):
            problems.append(f"link {lid}: {src['type']} has no output slot {src_slot}")
            continue
        out_type = _type_name(outputs[src_slot])
        if dst_slot >= len(dst.get("inputs") or []):
            problems.append(f"link {lid}: {dst['type']} has no input slot {dst_slot}")
            continue
        inp = dst["inputs"][dst_slot]
        if inp.get("link") != lid:
            problems.append(f"link {lid}: {dst['type']}.{inp.get('name')} does not point back to it")
        name = (inp.get("widget") or {}).get("name") or inp.get("name")
        spec = {n: t for n, t, _, _ in _input_specs(dst_info)}
        if name not in spec:
            problems.append(f"link {lid}: {dst['type']} has no input {name!r}")
            continue
        in_type = _type_name(spec[name])
        for label, declared in (("link", typ), ("output", out_type)):
            if not _types_match(declared, in_type):
                problems.append(
                    f"link {lid}: {src['type']}[{src_slot}] ({label} type {declared}) -> {dst['type']}.{name} ({in_type})"
                )
        if typ != out_type and not _types_match(typ, out_type):
            problems.append(f"link {lid}: stored type {typ} but {src['type']}[{src_slot}] is {out_type}")
    return problems
