"""``antithetic-sampling <command>``: one entry point for the pack's commands (no ComfyUI needed).

Each command lives in its own module and takes its own arguments (``antithetic-sampling <command> --help``).
"""

from __future__ import annotations

import importlib
import sys

from . import cli_args

# command -> (module relative to this package, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("evidence.demo", "main", "generate iid / antithetic / K-group / RQMC batches from the embedded model; plots + report"),
    "bench": ("evidence.bench", "main", "measured claims: efficiency, CI width, coverage, correlations, timings -> JSON + docs/evidence.md tables + README headline"),
    "train": ("evidence.train", "main", "retrain the embedded digits denoiser or its noise-awareness variant (seeded, CPU; new folder unless --install)"),
    "noise-bench": ("evidence.noise_timing", "main", "noise generation time of each NOISE design vs torch.randn"),
    "guidance-bench": ("evidence.guidance_bench", "main", "Noise Awareness Guidance: noise shift, sample quality, cost"),
    "guidance-h2h": ("evidence.guidance_h2h", "main",
                     "Noise Awareness Guidance: the paper's method vs training-free stand-ins, held-out verdicts"),
    "estimate-bench": ("evidence.estimate_bench", "main", "images needed to reach a target CI half-width per design (estimate procedure)"),
    "estimate-battery": ("evidence.estimate_battery", "main",
                         "coverage and images of the estimate's interval rules on laws it was never tuned on"),
    "metric-bench": ("evidence.metric_bench", "main", "Pair Diversity Metric / CI node timings"),
    "soak": ("api_client.soak", "main", "soak test of the batch-queue client against real ComfyUI servers"),
    "sync-workflows": ("api_client.sync_workflows", "main", "regenerate the API-format copies of workflows/"),
    "provenance": ("evidence.provenance", "main",
                   "which command wrote each generated block and picture of the docs; whether the code still matches"),
    "setup-bench": ("evidence.setup_cost", "main",
                    "time and size of `make demo`'s and `make test`'s set-up on a fresh clone -> docs/testing.md"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: antithetic-sampling <command> [options]   (antithetic-sampling <command> --help for its options;",
             "       --version for the version)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        print(f"antithetic-sampling {cli_args.package_version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if name in cli_args.PARSERS:
        # --help, --version and usage errors end here, before the command imports torch (seconds on a cold start).
        cli_args.parser(name).parse_args(rest)
    module_name, func, _ = COMMANDS[name]
    module = importlib.import_module(f"{__package__}.{module_name}")
    from .evidence import provenance

    # the blocks and pictures the command writes record it, with the fingerprint of the code behind them
    with provenance.command(name, rest):
        result = getattr(module, func)(rest)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
