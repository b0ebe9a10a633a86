"""``antithetic-queue``: queue a workflow many times on ComfyUI servers and collect what it makes.

Examples (the pack's example workflows; NODE is a node id, title or class)::

    antithetic-queue workflows/api/antithetic_vs_independent.json --sweep AntitheticKSampler.seed=0..99 --out runs/seeds
    antithetic-queue workflows/k_antithetic_gallery.json --set BasicScheduler.steps=4 --sweep 8.group_size=2,4 --repeat 2 --repeat-seed-stride 1000
    antithetic-queue workflows/api/sobol_rqmc_estimate.json --server http://gpu1:8188 --server http://gpu2:8188 --sweep "Sobol RQMC Latent Batch.noise_seed=0..999"
    antithetic-queue workflows/k_antithetic_gallery.json --sweep AntitheticLatentNoise.layout=interleaved,halves --dry-run
    antithetic-queue workflows/api/antithetic_vs_independent.json --ray auto --comfyui /opt/ComfyUI --sweep AntitheticKSampler.seed=0..9999

To estimate a statistic to a target half-width instead (queues prompts until the interval is narrow enough):
`antithetic-queue estimate WORKFLOW --target 0.002 --out runs/brightness`; see `antithetic-queue estimate --help`.

--server: ComfyUI servers you already run. --ray: one ComfyUI per GPU of a Ray cluster, started (and restarted when
it dies) by Ray; the same scheduling, manifest and resume as --server (pip install 'antithetic-sampling[ray]').

Input names are checked against the node (its inputs in the workflow, or its definition from /object_info);
an unknown name is refused with the node's real inputs. Values are checked against the input's type (INT, FLOAT,
BOOLEAN, STRING, a combo's choices) before anything is queued. --dry-run lists the jobs without a server: a UI-format
workflow is then converted with --object-info FILE, else with the node definitions the pack ships in
workflows/object_info/object_info.json (they cover the example workflows' nodes).
Rerun the same command to resume: jobs already done in the manifest are skipped.
Exit status: 0 all done, 1 some job failed, 2 bad arguments or workflow, 3 no server reachable, 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from .client import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    BatchRunner,
    ClientError,
    Server,
    ServerUnreachable,
    normalize_url,
)
from .convert import ConversionError, convert_ui_to_api, is_api_prompt, is_ui_workflow
from .jobs import SpecError, build_jobs, parse_set, parse_sweep, resolve_node

DEFAULT_SERVER = "http://127.0.0.1:8188"
SHIPPED_OBJECT_INFO_HINT = "workflows/object_info/object_info.json"


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("antithetic-sampling")
    except PackageNotFoundError:  # a checkout used without installing
        return "unknown (not installed)"


def shipped_object_info() -> Path | None:
    """The node definitions saved with the pack (a checkout's workflows/object_info), if present."""
    from .sync_workflows import SNAPSHOT_NAME, WORKFLOWS

    path = WORKFLOWS / SNAPSHOT_NAME
    return path if path.is_file() else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="antithetic-queue",
        description="Queue a ComfyUI workflow many times (sweeps, repeats) on one or more ComfyUI servers, "
        "follow progress, download the outputs and write a resumable JSON-lines manifest.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + __doc__.split("::", 1)[1] if __doc__ else None,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    p.add_argument("workflow", help="workflow JSON: API format, or UI format (converted through the server's /object_info)")
    p.add_argument("--server", action="append", default=[], metavar="URL",
                   help=f"ComfyUI server (repeat for several; default {DEFAULT_SERVER})")
    ray = p.add_argument_group("Ray cluster (instead of --server)")
    ray.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="run one ComfyUI per GPU of a Ray cluster as Ray actors: 'auto' joins the cluster this "
                     "machine belongs to (after `ray start`), an address (ray://head:10001) joins that one, no "
                     "ADDRESS starts a local cluster for this run")
    ray.add_argument("--comfyui", default=None, metavar="PATH",
                     help="ComfyUI checkout on every node, with this pack in its custom_nodes (default: each node's "
                     "COMFYUI_PATH, as set for its `ray start`, else ~/comfy/ComfyUI)")
    ray.add_argument("--comfyui-python", default=None, metavar="PYTHON",
                     help="Python that runs ComfyUI on every node (default: each node's COMFYUI_PYTHON, else the "
                     "Ray worker's Python)")
    ray.add_argument("--comfyui-arg", dest="comfyui_args", action="append", default=[], metavar="ARG",
                     help="extra argument for ComfyUI's main.py, repeatable (--comfyui-arg=--highvram)")
    ray.add_argument("--ray-cpu-workers", type=int, default=0, metavar="N",
                     help="N CPU-only ComfyUI servers (--cpu) instead of one per GPU: CPU clusters and tests")
    ray.add_argument("--ray-max-restarts", type=int, default=3, metavar="N",
                     help="times Ray restarts an actor whose ComfyUI died (default 3)")
    ray.add_argument("--ray-test-checkpoint", action="store_true",
                     help="tests and soak: each actor gets its own base directory with the pack and the random tiny "
                     "SD1.5 checkpoint (tiny_sd15.safetensors) instead of the checkout's models")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input; NODE is a node id, title or unique class; VALUE is JSON or text")
    p.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="NODE.INPUT=SPEC",
                   help="sweep an input over A..B (inclusive, A..B:STEP), a list a,b,c or [json]; several sweeps "
                   "form the cartesian product")
    p.add_argument("--repeat", type=int, default=1, help="run every sweep point N times (default 1)")
    p.add_argument("--repeat-seed-stride", type=int, default=0, metavar="S",
                   help="add r*S to every seed / noise_seed input in repeat r (identical prompts are cached by "
                   "ComfyUI, so plain repeats of a seeded graph give the same images)")
    p.add_argument("--out", default="antithetic_queue_out", help="output folder (default ./antithetic_queue_out)")
    p.add_argument("--manifest", default=None, help="manifest path (default OUT/manifest.jsonl)")
    p.add_argument("--max-in-flight", type=int, default=2, help="prompts queued per server at a time (default 2)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds a prompt may show no progress before it counts as failed (default 600)")
    p.add_argument("--keep-going", action="store_true", help="keep queueing after a failed job")
    p.add_argument("--download-temp", action="store_true", help="also download temp outputs (previews)")
    p.add_argument("--object-info", default=None, metavar="FILE",
                   help="saved /object_info JSON: converts a UI workflow and checks input names instead of asking "
                   f"the server (the pack ships {SHIPPED_OBJECT_INFO_HINT})")
    p.add_argument("--save-api", default=None, metavar="FILE", help="write the API-format base graph here")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and exit without queueing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _err(text: str) -> None:
    print(f"error: {text}", file=sys.stderr, flush=True)


def load_workflow(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise SpecError(f"workflow file not found: {path}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and is_api_prompt(data["prompt"]):
        data = data["prompt"]
    return data


def _first_live(urls: list[str | Server]) -> Server:
    errors = []
    if not urls:
        raise ServerUnreachable("no server to ask for /object_info (with --dry-run and --ray: give --object-info)")
    for u in urls:
        srv = u if isinstance(u, Server) else Server(u)
        try:
            srv.probe()
            return srv
        except ClientError as exc:
            errors.append(str(exc))
    raise ServerUnreachable("; ".join(errors) + ". Is ComfyUI running there (python main.py --listen ... --port ...)?")


def prepare(args: argparse.Namespace, servers: list[str | Server]):
    data = load_workflow(args.workflow)
    sets = [parse_set(s) for s in args.sets]
    sweeps = [parse_sweep(s) for s in args.sweeps]
    object_info = None
    if args.object_info:
        try:
            object_info = json.loads(Path(args.object_info).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SpecError(f"--object-info {args.object_info} is not valid JSON ({exc})") from None
    if is_ui_workflow(data):
        if object_info is None and args.dry_run and not args.server:
            object_info = _offline_object_info(data)
        elif object_info is None:
            try:
                object_info = _first_live(servers).request("GET", "/object_info", timeout=120)
            except ServerUnreachable as exc:
                raise ServerUnreachable(f"{exc} A UI-format workflow is converted through the node definitions: "
                                        f"start ComfyUI, or pass --object-info FILE (the pack ships "
                                        f"{SHIPPED_OBJECT_INFO_HINT}).") from None
        prompt = convert_ui_to_api(data, object_info)
    elif is_api_prompt(data):
        prompt = data
        targets = [t for t, _ in sets] + [s.target for s in sweeps]
        classes = set()
        for t in targets:
            nid = resolve_node(prompt, t.node)
            if t.input not in prompt[nid].get("inputs", {}):
                classes.add(prompt[nid]["class_type"])
        if classes and object_info is None and (args.server or not args.dry_run):  # a dry run asks only a given server
            srv = _first_live(servers)
            object_info = {}
            for cls in sorted(classes):
                object_info.update(srv.request("GET", f"/object_info/{cls}") or {})
    else:
        raise SpecError(f"{args.workflow} is neither an API-format prompt nor a UI-format workflow")
    if args.save_api:
        Path(args.save_api).write_text(json.dumps(prompt, indent=2), encoding="utf-8")
    jobs = build_jobs(prompt, sets, sweeps, args.repeat, args.repeat_seed_stride, object_info,
                      definitions=input_definitions(object_info) if sets or sweeps else None)
    return prompt, jobs


def input_definitions(object_info: dict | None) -> dict:
    """Node definitions for checking --set/--sweep values: the server's (or --object-info's) where given, the
    shipped snapshot's for the other classes it covers (an API workflow's dry run asks no server)."""
    path = shipped_object_info()
    shipped = json.loads(path.read_text(encoding="utf-8")) if path is not None else {}
    return {**shipped, **(object_info or {})}


def _offline_object_info(ui: dict) -> dict:
    """The shipped node definitions for an offline dry run of a UI workflow, or a SpecError that says what to pass."""
    path = shipped_object_info()
    if path is None:
        raise SpecError("a UI-format workflow needs node definitions to be converted: pass --object-info FILE "
                        "(a saved /object_info) or a running --server")
    info = json.loads(path.read_text(encoding="utf-8"))
    frontend = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
    missing = sorted({n.get("type") for n in ui.get("nodes", [])} - set(info) - frontend - {None})
    if missing:
        raise SpecError(f"the shipped node definitions ({path}) do not cover {', '.join(missing)}: pass "
                        "--object-info FILE saved from your server's /object_info, or a running --server")
    print(f"converting with the shipped node definitions {path} (no server asked)", file=sys.stderr)
    return info


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["estimate"]:  # `antithetic-queue estimate WORKFLOW --target ...` (see estimate.py)
        from .estimate import main as estimate_main

        return estimate_main(argv[1:])
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.ray is not None and args.server:
        _err("--ray and --server exclude each other (Ray starts its own ComfyUI servers)")
        return EXIT_USAGE
    if args.ray is None and (args.ray_cpu_workers or args.comfyui or args.comfyui_python or args.comfyui_args
                             or args.ray_test_checkpoint):
        _err("--comfyui, --comfyui-python, --comfyui-arg, --ray-cpu-workers and --ray-test-checkpoint need --ray")
        return EXIT_USAGE
    if args.ray_cpu_workers < 0 or args.ray_max_restarts < 0:
        _err("--ray-cpu-workers and --ray-max-restarts must be >= 0")
        return EXIT_USAGE
    servers = [normalize_url(s) for s in (args.server or [DEFAULT_SERVER])]
    # `kill` (SIGTERM) cancels as cleanly as Ctrl-C
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (called from a test or another program)
        previous = None
    try:
        return _main(args, servers)
    except KeyboardInterrupt:
        _err("interrupted before anything was queued")
        return EXIT_CANCELLED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _outputs_note(out_dir: Path, manifest: Path) -> str:
    """Where the downloaded files are, or that there are none (never names a folder that was not created)."""
    out_dir = Path(out_dir)
    files = [f for f in out_dir.rglob("*") if f.is_file() and f.resolve() != Path(manifest).resolve()] \
        if out_dir.is_dir() else []
    return f"{len(files)} output file(s) in {out_dir}" if files else "no output files downloaded"


def _main(args: argparse.Namespace, servers: list[str]) -> int:
    if args.ray is None:
        return _run(args, servers)
    from .ray_cluster import RayCluster

    sigterm_is_ours = signal.getsignal(signal.SIGTERM) is _raise_interrupt

    cluster = RayCluster(args.ray, cpu_workers=args.ray_cpu_workers, comfyui=args.comfyui,
                         python=args.comfyui_python, comfyui_args=args.comfyui_args,
                         test_checkpoint=args.ray_test_checkpoint, max_restarts=args.ray_max_restarts,
                         log=lambda text: print(text, file=sys.stderr, flush=True))
    if args.dry_run:
        return _run(args, [])
    try:
        try:
            ray_servers = cluster.start()
            # ray.init installs its own SIGTERM handler: `kill` cancels like Ctrl-C again
            if signal.getsignal(signal.SIGTERM) is not _raise_interrupt and sigterm_is_ours:
                signal.signal(signal.SIGTERM, _raise_interrupt)
        except ServerUnreachable as exc:
            _err(str(exc))
            return EXIT_UNREACHABLE
        except ClientError as exc:
            _err(str(exc))
            return EXIT_USAGE
        return _run(args, ray_servers, {"ray": {"address": args.ray, "actors": cluster.describe()}})
    finally:
        cluster.shutdown(log_dir=Path(args.out) / "ray_logs")


def _run(args: argparse.Namespace, servers: list, run_info: dict | None = None) -> int:
    try:
        _, jobs = prepare(args, servers)
    except ServerUnreachable as exc:
        _err(str(exc))
        return EXIT_UNREACHABLE
    except (SpecError, ConversionError, ClientError, OSError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    if args.dry_run:
        for job in jobs:
            print(json.dumps({"index": job.index, "job": job.key, "repeat": job.repeat, "params": job.params}))
        print(f"{len(jobs)} job(s)", file=sys.stderr)
        return EXIT_OK
    runner = BatchRunner(
        servers,
        args.out,
        manifest=args.manifest,
        max_in_flight=args.max_in_flight,
        timeout=args.timeout,
        keep_going=args.keep_going,
        progress=not args.no_progress,
        download_types=("output", "temp") if args.download_temp else ("output",),
        run_info={"argv": args.argv, "workflow": args.workflow, **(run_info or {})},
    )
    res = runner.run(jobs)
    summary = (f"{res.done} done, {res.failed} failed, {res.skipped} already done, {res.cancelled} cancelled, "
               f"{res.requeued} requeued after a server died; {res.wall_s:.1f} s; "
               f"manifest {runner.manifest.path}; {_outputs_note(runner.out_dir, runner.manifest.path)}")
    print(summary, file=sys.stderr, flush=True)
    if res.exit_code == EXIT_OK and res.failed:
        return EXIT_FAILED
    return res.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
