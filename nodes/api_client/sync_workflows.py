"""``antithetic-sampling sync-workflows``: keep ``workflows/api/*.json`` in step with the UI workflows.

The UI-format files in ``workflows/`` are the source of truth (the templates browser loads them; a user edits
them in the frontend). Their API-format copies in ``workflows/api/`` (for the batch client, ``/prompt`` and the
tests) are regenerated from them with the UI -> API converter in ``convert.py``, using either a live server's
``/object_info`` (``--server``) or the saved node definitions in ``workflows/object_info/object_info.json``
(offline; refreshed by ``--server URL --save-object-info``).

``--build`` first regenerates the UI workflows themselves from ``example_workflows.py`` and the subgraph blueprints
in ``subgraphs/`` from ``blueprints.py`` (widget order taken from ``/object_info``, so they always match the node
definitions); ``--check`` writes nothing and exits 1 when a copy is out of date. The API-only workflows of
``example_workflows.API_ONLY_BUILDERS`` (no template; e.g. ``brightness_pairs``, ready for
``antithetic-queue estimate``) are built and converted on every run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import urllib.request

from ..cli_args import plain
from .convert import convert_ui_to_api

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
SNAPSHOT_NAME = "object_info/object_info.json"
SUBGRAPHS = "subgraphs"  # subgraph blueprints, beside workflows/ (the folder name newer cores look for)
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


def fetch_object_info(server: str, timeout: float = 30.0) -> dict:
    url = server.rstrip("/") + "/object_info"
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - a URL the user gave us
        return json.loads(resp.read().decode("utf-8"))


def ui_workflow_paths(workflows: pathlib.Path = WORKFLOWS) -> list[pathlib.Path]:
    """The UI workflows ComfyUI lists as templates: ``workflows/*.json`` (subfolders are not listed)."""
    return sorted(p for p in workflows.glob("*.json") if p.is_file())


def api_path(ui_path: pathlib.Path) -> pathlib.Path:
    return ui_path.parent / "api" / ui_path.name


def used_classes(workflows: list[dict]) -> set[str]:
    return {n["type"] for wf in workflows for n in wf.get("nodes", []) if n.get("type") not in FRONTEND_ONLY}


def pack_classes(object_info: dict) -> set[str]:
    """Every node of this pack in a server's /object_info (saved too, so every node's sockets are checked offline)."""
    return {cls for cls, info in object_info.items() if "antithetic" in str(info.get("python_module", "")).lower()}


def trim_object_info(object_info: dict, classes: set[str]) -> dict:
    """The node definitions the workflows use, without model-file lists (those are per server)."""
    out = {}
    for cls in sorted(classes):
        if cls not in object_info:
            continue
        info = json.loads(json.dumps(object_info[cls]))
        for section in ("required", "optional"):
            for name, spec in (info.get("input", {}).get(section) or {}).items():
                if isinstance(spec, list) and spec and _is_file_list(name):
                    if isinstance(spec[0], list):
                        spec[0] = []
                    elif spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
                        spec[1]["options"] = []
        out[cls] = info
    return out


def _is_file_list(name: str) -> bool:
    return name in {"ckpt_name", "unet_name", "vae_name", "lora_name", "image"} or name.startswith("clip_name")


def dumps(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_api(ui: dict, object_info: dict) -> dict:
    return convert_ui_to_api(ui, object_info)


def build_ui_workflows(object_info: dict, names: list[str] | None = None) -> dict[str, dict]:
    from .example_workflows import BUILDERS

    selected = names or list(BUILDERS)
    unknown = [n for n in selected if n not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown workflow(s) {unknown}; known: {list(BUILDERS)}")
    return {name: BUILDERS[name](object_info) for name in selected}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="antithetic-sampling sync-workflows", description=plain(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help="ComfyUI URL whose /object_info to use (e.g. http://127.0.0.1:8188)")
    parser.add_argument("--object-info", type=pathlib.Path,
                        help=f"saved /object_info JSON (default: workflows/{SNAPSHOT_NAME})")
    parser.add_argument("--workflows", type=pathlib.Path, default=WORKFLOWS, help="workflows folder")
    parser.add_argument("--build", action="store_true",
                        help="regenerate the UI workflows from example_workflows.py first (needs the pack's nodes)")
    parser.add_argument("--only", nargs="*", help="with --build: only these workflow names")
    parser.add_argument("--save-object-info", action="store_true",
                        help="with --server: save the definitions of the classes the workflows use and of every "
                             "node of this pack")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any copy is out of date")
    args = parser.parse_args(argv)

    wf_dir: pathlib.Path = args.workflows
    snapshot = args.object_info or wf_dir / SNAPSHOT_NAME
    if args.server:
        try:
            object_info = fetch_object_info(args.server)
        except OSError as exc:
            print(f"cannot read {args.server}/object_info: {exc}", file=sys.stderr)
            return 2
    elif snapshot.exists():
        object_info = json.loads(snapshot.read_text(encoding="utf-8"))
    else:
        print(f"no --server given and no saved object_info at {snapshot}", file=sys.stderr)
        return 2

    stale: list[str] = []

    def write(path: pathlib.Path, text: str) -> None:
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            return
        stale.append(str(path.relative_to(wf_dir.parent) if wf_dir.parent in path.parents else path))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    if args.build:
        for name, ui in build_ui_workflows(object_info, args.only).items():
            write(wf_dir / f"{name}.json", dumps(ui))
        if not args.only:
            from .blueprints import build_blueprints

            for name, bp in build_blueprints(object_info).items():
                write(wf_dir.parent / SUBGRAPHS / f"{name}.json", dumps(bp))

    paths = ui_workflow_paths(wf_dir)
    workflows = {p: json.loads(p.read_text(encoding="utf-8")) for p in paths}
    if args.build and args.check:  # the rebuilt UI files were not written: convert what would have been
        workflows.update({wf_dir / f"{n}.json": ui for n, ui in build_ui_workflows(object_info, args.only).items()})
    for path, ui in sorted(workflows.items()):
        write(api_path(path), dumps(to_api(ui, object_info)))
    # API-only workflows (no template in workflows/): built and converted in one go, always from the code
    from .example_workflows import API_ONLY_BUILDERS

    for name, build in API_ONLY_BUILDERS.items():
        write(wf_dir / "api" / f"{name}.json", dumps(to_api(build(object_info), object_info)))

    if args.server and args.save_object_info:
        classes = used_classes(list(workflows.values())) | pack_classes(object_info)
        write(snapshot, dumps(trim_object_info(object_info, classes)))

    verb = "out of date" if args.check else "written"
    for item in stale:
        print(f"{verb}: {item}")
    if not stale:
        print(f"{len(workflows)} workflow(s): API copies up to date")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())
