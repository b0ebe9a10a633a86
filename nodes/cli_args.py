"""Argument parsers of the ``antithetic-sampling`` commands that need torch (argparse and the standard library only).

They live apart from the commands so that ``--help``, ``--version`` and usage errors answer before torch, numpy,
scipy or matplotlib are imported: each command module's ``main`` parses with ``parser(name)`` first and imports its
heavy code afterwards (``nodes/cli.py`` parses once more up front for the same reason).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re

SAMPLERS = ["euler", "ddim", "dpmpp_2m"]


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("antithetic-sampling")
    except PackageNotFoundError:  # a checkout used without installing
        return "unknown (not installed)"


def plain(text: str) -> str:
    """A docstring as terminal text: reStructuredText/markdown markup (``code``, **bold**, :mod:`x`) removed."""
    text = re.sub(r":[a-z]+:`([^`]*)`", r"\1", text)
    return text.replace("``", "").replace("**", "").replace("::\n", ":\n")


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one plain line (``prog: error: argument --n: ...``, exit 2): the option and what it accepts;
    ``--help`` has the rest."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def demo_images(text: str) -> int:
    """--n of demo: the designs' units must tile the batch (pairs, groups of 4, RQMC replicates of 8 points) and
    every interval needs at least two independent units, so a multiple of 8, at least 16."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; accepted: 16, 24, 32, … "
                                         "(a multiple of 8, at least 16; default 64)") from None
    if n < 16 or n % 8:
        raise argparse.ArgumentTypeError(f"{n} images; accepted: 16, 24, 32, … (a multiple of 8, at least 16, so "
                                         "that every design has two or more RQMC replicates of 8; default 64)")
    return n


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; accepted: 1, 2, 3, …") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}; accepted: a whole number of at least 1")
    return n


def non_negative_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; accepted: 0, 1, 2, …") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n}; accepted: a whole number of at least 0")
    return n


def output_folder(text: str) -> pathlib.Path:
    """A folder that exists and is writable, or can be created: refused up front when it is a file or its nearest
    existing parent is not a writable folder (what the OS refuses later, the command reports in one line too)."""
    path = pathlib.Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is an existing file; accepted: a folder (new or existing)")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {text}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write to {text}: {probe} is not writable; accepted: a folder "
                                         "you can write to")
    return path


# weights stems and the command that reads them (mirrors nodes/evidence/digits.py, which needs torch)
WEIGHTS_USERS = {
    "digits_denoiser": "demo --weights",
    "digits_denoiser_level_dropout": "guidance-h2h --weights",
}


def weights_folder(stems: tuple[str, ...], hint: str):
    """A folder holding ``<stem>.safetensors`` and ``<stem>.json`` of every stem (their hash is checked when they
    are loaded)."""

    def check(text: str) -> pathlib.Path:
        path = pathlib.Path(text)
        need = f"a folder with {', '.join(f'{s}.safetensors and {s}.json' for s in stems)} ({hint})"
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is not a folder; accepted: {need}")
        missing = [f"{s}{x}" for s in stems for x in (".safetensors", ".json") if not (path / f"{s}{x}").is_file()]
        if missing:
            other = [f"{s} weights, for {use}" for s, use in WEIGHTS_USERS.items()
                     if s not in stems and (path / f"{s}.safetensors").is_file()]
            raise argparse.ArgumentTypeError(f"{text} has no {' or '.join(missing)}"
                                             + (f" (it holds {'; '.join(other)})" if other else "")
                                             + f"; accepted: {need}")
        return path

    return check


def _new(command: str, description: str) -> argparse.ArgumentParser:
    ap = OneLineParser(prog=f"antithetic-sampling {command}", description=description)
    ap.add_argument("--version", action="version", version=f"antithetic-sampling {package_version()}")
    return ap


def _demo() -> argparse.ArgumentParser:
    ap = _new("demo", "Generate iid, antithetic-pair, K-group and Sobol RQMC batches from the embedded digits model "
                      "and write image grids, plots, a report and the measured numbers (no ComfyUI needed).")
    ap.add_argument("--out", type=output_folder, default=pathlib.Path("demo_out"),
                    help="output folder, created if needed (default demo_out)")
    ap.add_argument("--quick", action="store_true", help="CI setting: 16 images per design, 6 steps")
    ap.add_argument("--seed", type=int, default=0, help="base seed of every noise design (default 0)")
    ap.add_argument("--n", type=demo_images, default=None,
                    help="images per design: a multiple of 8, at least 16 (pairs, groups of 4 and RQMC replicates of "
                         "8 points tile it, two replicates or more; default 64; --quick 16)")
    ap.add_argument("--steps", type=positive_int, default=None, help="sampler steps, at least 1 (default 12; --quick 6)")
    ap.add_argument("--sampler", default="dpmpp_2m", choices=SAMPLERS, help="sampler (default dpmpp_2m)")
    ap.add_argument("--weights", type=weights_folder(("digits_denoiser",), "e.g. from train --model denoiser"),
                    default=None,
                    help="folder with digits_denoiser.{safetensors,json} (default: the shipped weights), e.g. from "
                         "`train --model denoiser`; refused when the weights' sha256 differs from the one in their "
                         "config")
    ap.add_argument("--images", type=pathlib.Path, default=None,
                    help="also copy the pictures the docs show, and the pack's icon, into this folder (docs/images) "
                         "with a manifest.json recording the command and the code that drew them")
    return ap


def _bench() -> argparse.ArgumentParser:
    ap = _new("bench", "Measured claims for every noise design, side by side: efficiency, confidence-interval width, "
                       "coverage, correlations and noise timings, written as JSON and markdown tables.")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"),
                    help="output folder for bench.json and bench.md (default bench_out)")
    ap.add_argument("--quick", action="store_true", help="CI setting: fewer repetitions and steps, learned model only")
    ap.add_argument("--readme", type=pathlib.Path, action="append", default=[],
                    help="markdown file whose bench-results / bench-headline / noise-timing blocks are rewritten "
                         "(repeatable)")
    ap.add_argument("--models", default=None, help="comma list of digits, analytic (default both; --quick: digits)")
    ap.add_argument("--n", type=int, default=64, help="images per estimate (default 64)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 200; --quick 30)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default 10; --quick 6)")
    ap.add_argument("--sampler", default="dpmpp_2m", choices=SAMPLERS, help="sampler (default dpmpp_2m)")
    ap.add_argument("--seed", type=int, default=0, help="base seed of every design's noise (default 0)")
    ap.add_argument("--no-timing", action="store_true", help="skip the noise generation timing")
    return ap


def _train() -> argparse.ArgumentParser:
    ap = _new("train", "Retrain the embedded digits denoiser (seeded, CPU, single thread) on scikit-learn's bundled "
                       "handwritten digits, or its noise-awareness variant (noise-condition dropout) and the "
                       "noise-level regressor g(sigma|x).")
    ap.epilog = ("Writes to a new folder under ./trained_weights unless --out is given; the shipped weights are "
                 "replaced only with --install.")
    ap.add_argument("--model", choices=["denoiser", "nag"], default="denoiser",
                    help="denoiser: the embedded digits denoiser (from scratch); nag: its noise-condition-dropout "
                         "variant (fine-tuned from the shipped denoiser) and the noise-level regressor g(sigma|x)")
    ap.add_argument("--out", default=None,
                    help="output folder (default: a new folder trained_weights/<model>-<UTC time>)")
    ap.add_argument("--install", action="store_true",
                    help="after training, replace the shipped weights (and their recorded hash and validation loss)")
    ap.add_argument("--steps", type=int, default=None,
                    help="optimizer steps (default: denoiser 20000 as shipped; nag: as shipped for the dropout "
                         "fine-tune and for the regressor, see the weights' json)")
    ap.add_argument("--batch", type=int, default=256, help="images per optimizer step (default 256)")
    ap.add_argument("--lr", type=float, default=None,
                    help="peak Adam learning rate, cosine-decayed (default 0.002; nag fine-tune 0.001)")
    ap.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and noise (default 0)")
    ap.add_argument("--dropout", type=float, default=0.15,
                    help="nag: share of items trained with the 'no level' token (default 0.15; the paper: 10-20 %%)")
    return ap


def _noise_bench() -> argparse.ArgumentParser:
    ap = _new("noise-bench", "Generation time of each NOISE design against the torch.randn that core RandomNoise "
                             "uses, on SD1.5, SDXL and Flux latent shapes (one CPU thread).")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved repeats; the best is reported (default 7)")
    ap.add_argument("--quick", action="store_true", help="SD1.5 shapes only, 3 repeats")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"),
                    help="output folder for noise_timing.json and .md (default bench_out)")
    ap.add_argument("--readme", type=pathlib.Path,
                    help="rewrite the noise-timing block (with --sobol-scaling: the sobol-scaling block) of this "
                         "markdown file")
    ap.add_argument("--sobol-scaling", action="store_true",
                    help="instead: time and peak memory of Sobol RQMC (SD1.5, full mode) at 8, 64, 1024 and 4096 "
                         "points per replicate, each in a fresh process")
    return ap


def _guidance_bench() -> argparse.ArgumentParser:
    ap = _new("guidance-bench", "Does the training-free Noise Awareness Guidance help, and what does it cost? Noise "
                                "shift, sample quality and time on the embedded digits model, and side by side in "
                                "ComfyUI when a checkout is found.")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"),
                    help="output folder for guidance.json and .md (default bench_out)")
    ap.add_argument("--quick", action="store_true", help="CI setting: small batches, 2 settings, 4 steps")
    ap.add_argument("--readme", type=pathlib.Path, help="rewrite the guidance-results block of this markdown file")
    ap.add_argument("--n", type=int, default=None, help="images per run (default 1000; --quick 48)")
    ap.add_argument("--seeds", type=int, default=None, help="paired seeds per setting (default 4; --quick 2)")
    ap.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    ap.add_argument("--no-comfy", action="store_true", help="skip the ComfyUI side-by-side run")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def _metric_bench() -> argparse.ArgumentParser:
    ap = _new("metric-bench", "CPU cost of the Pair Diversity Metric and of the design confidence interval on "
                              "synthetic image-like batches.")
    ap.add_argument("--n", type=int, default=64, help="images in the batch (even; default 64)")
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    ap.add_argument("--all-pairs", default="8,16,32,64", help="batch sizes for the all-pairs scaling (comma list)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is reported (default 3)")
    ap.add_argument("--quick", action="store_true", help="16 images of 128x128, all pairs up to 16 (smoke test)")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"),
                    help="output folder for metric_bench.json and .md (default bench_out)")
    ap.add_argument("--readme", type=pathlib.Path, help="rewrite the metric-results block of this markdown file")
    return ap


def _guidance_h2h() -> argparse.ArgumentParser:
    ap = _new("guidance-h2h", "Noise Awareness Guidance head-to-head on the embedded digits model: the paper's method "
                              "(noise-condition dropout and the level regressor) against training-free stand-ins and "
                              "core Epsilon Scaling, defaults chosen on one half of the seeds and judged on the other.")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"), help="output folder")
    ap.add_argument("--quick", action="store_true", help="CI setting: 2 settings, 4 seeds, 24 images")
    ap.add_argument("--readme", type=pathlib.Path, action="append", default=[],
                    help="rewrite the guidance-h2h block of this markdown file (repeatable)")
    ap.add_argument("--summary", type=pathlib.Path, action="append", default=[],
                    help="rewrite the guidance-h2h-summary block (the two result sentences) of this file (repeatable)")
    ap.add_argument("--n", type=int, default=None, help="images per seed (default 256; --quick 24)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds, split in halves (default 16; --quick 4)")
    ap.add_argument("--seed", type=int, default=0, help="base seed of the initial and step noise")
    ap.add_argument("--weights", type=weights_folder(("digits_denoiser_level_dropout", "digits_level_regressor"),
                                                "from train --model nag"),
                    default=None,
                    help="folder with the level-dropout denoiser and the regressor, e.g. from `train --model nag` "
                         "(default: the shipped ones)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--from-json", type=pathlib.Path, default=None,
                    help="re-derive the selection and the table from a guidance_h2h.json of an earlier run (no sampling; "
                         "the shipped defaults are read from the code now)")
    return ap


def _estimate_bench() -> argparse.ArgumentParser:
    ap = _new("estimate-bench", "Images the estimate procedure needs to reach a target confidence-interval half-width, "
                                "per noise design and estimator, with the coverage of its final interval (in-process, "
                                "embedded digits model).")
    ap.add_argument("--pool", type=int, default=131072, help="images per design pool (default 131072)")
    ap.add_argument("--reps", type=int, default=600, help="reported repetitions per control-variate row (default 600)")
    ap.add_argument("--design-reps", type=int, default=1000, help="reported repetitions per design-alone row")
    ap.add_argument("--tune-reps", type=int, default=300, help="tuning repetitions per row and rule setting")
    ap.add_argument("--max-images", type=int, default=20000, help="image budget of one estimate")
    ap.add_argument("--seed", type=int, default=0, help="base seed of the pools' noise (default 0)")
    ap.add_argument("--quick", action="store_true", help="smoke setting: pools of 8192 images, 20 repetitions")
    ap.add_argument("--workers", type=non_negative_int, default=0,
                    help="processes for the repetitions (default 0: one per CPU core); every repetition has its own "
                         "seeded generator, so the numbers do not depend on it")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"),
                    help="output folder for the pools, JSON and markdown (default bench_out)")
    ap.add_argument("--readme", type=pathlib.Path, help="rewrite the estimate-results block of this README")
    ap.add_argument("--summary", type=pathlib.Path, action="append", default=[],
                    help="rewrite the estimate-headline block (the tightest brightness target) of this file; repeatable")
    ap.add_argument("--render-only", action="store_true",
                    help="rerun nothing: rewrite the markdown (and --readme block) from OUT/estimate_bench.json")
    ap.add_argument("--fresh", type=int, default=0, metavar="N",
                    help="instead of the pool bench: replicate the tightest brightness rows with N estimates on "
                         "freshly sampled images each (and N on the pool), flag disagreement; writes the "
                         "estimate-fresh block (with --render-only: from OUT/estimate_fresh.json)")
    ap.add_argument("--fresh-rows", default="k4,k4+cv",
                    help="rows for --fresh: DESIGN or DESIGN+cv, comma-separated (designs iid, antithetic, k4, "
                         "rqmc), or 'headline' (every headline row but iid alone); default k4,k4+cv")
    ap.add_argument("--fresh-truth", type=int, default=131072,
                    help="images of the separate fresh sample whose mean is the truth for --fresh (default 131072)")
    ap.add_argument("--fresh-fixed", type=int, default=0, metavar="M",
                    help="with --fresh: also the row's interval at a fixed size on M fresh and M pool samples")
    return ap


def _estimate_battery() -> argparse.ArgumentParser:
    ap = _new("estimate-battery", "Coverage and images of the estimate's stopping rules (t, betting sequence, the "
                                  "default) on laws of per-image values it was never tuned on: rare flags, skewed, "
                                  "bimodal, heavy-tailed; plus digits brightness.")
    ap.add_argument("--reps", type=int, default=500, help="reported repetitions per cell (default 500)")
    ap.add_argument("--tune-reps", type=int, default=100,
                    help="repetitions per tuning cell for the auto switch (default 100)")
    ap.add_argument("--max-images", type=int, default=4096, help="image budget of one estimate (default 4096, "
                                                                 "the client's)")
    ap.add_argument("--digits-max-images", type=int, default=20000, help="budget of the digits rows (default 20000)")
    ap.add_argument("--pool", type=int, default=32768, help="images per digits design pool (default 32768)")
    ap.add_argument("--no-digits", action="store_true", help="skip the digits rows (no model sampling)")
    ap.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    ap.add_argument("--quick", action="store_true", help="smoke setting: 20 repetitions, pools of 8192 images")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"),
                    help="output folder for the pools, JSON and markdown (default bench_out)")
    ap.add_argument("--readme", type=pathlib.Path, help="rewrite the estimate-battery block of this markdown file")
    ap.add_argument("--summary", type=pathlib.Path, action="append", default=[],
                    help="rewrite the estimate-battery-headline block of this file; repeatable")
    ap.add_argument("--render-only", action="store_true",
                    help="rerun nothing: rewrite the markdown from OUT/estimate_battery.json")
    return ap


PARSERS = {
    "demo": _demo,
    "bench": _bench,
    "train": _train,
    "noise-bench": _noise_bench,
    "guidance-bench": _guidance_bench,
    "metric-bench": _metric_bench,
    "guidance-h2h": _guidance_h2h,
    "estimate-bench": _estimate_bench,
    "estimate-battery": _estimate_battery,
}


def parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of ``antithetic-sampling <command>``."""
    return PARSERS[command]()
