"""Argument parsers of the ``antithetic-sampling`` commands that need torch (argparse and the standard library only).

They live apart from the commands so that ``--help``, ``--version`` and usage errors answer before torch, numpy,
scipy or matplotlib are imported: each command module's ``main`` parses with ``parser(name)`` first and imports its
heavy code afterwards (``nodes/cli.py`` parses once more up front for the same reason).
"""

from __future__ import annotations

import argparse
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


def _new(command: str, description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"antithetic-sampling {command}", description=description)
    ap.add_argument("--version", action="version", version=f"antithetic-sampling {package_version()}")
    return ap


def _demo() -> argparse.ArgumentParser:
    ap = _new("demo", "Generate iid, antithetic-pair, K-group and Sobol RQMC batches from the embedded digits model "
                      "and write image grids, plots, a report and the measured numbers (no ComfyUI needed).")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo_out"), help="output folder (default demo_out)")
    ap.add_argument("--quick", action="store_true", help="CI setting: 16 images per design, 6 steps")
    ap.add_argument("--seed", type=int, default=0, help="base seed of every noise design (default 0)")
    ap.add_argument("--n", type=int, default=None, help="images per design (default 64; --quick 16)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default 12; --quick 6)")
    ap.add_argument("--sampler", default="dpmpp_2m", choices=SAMPLERS, help="sampler (default dpmpp_2m)")
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
                       "handwritten digits.")
    ap.add_argument("--out", default=None, help="output folder (default: the shipped weights folder)")
    ap.add_argument("--steps", type=int, default=20000, help="optimizer steps (default 20000, as shipped)")
    ap.add_argument("--batch", type=int, default=256, help="images per optimizer step (default 256)")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate, cosine-decayed (default 0.002)")
    ap.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and noise (default 0)")
    return ap


def _noise_bench() -> argparse.ArgumentParser:
    ap = _new("noise-bench", "Generation time of each NOISE design against the torch.randn that core RandomNoise "
                             "uses, on SD1.5, SDXL and Flux latent shapes (one CPU thread).")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved repeats; the best is reported (default 7)")
    ap.add_argument("--quick", action="store_true", help="SD1.5 shapes only, 3 repeats")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"),
                    help="output folder for noise_timing.json and .md (default bench_out)")
    ap.add_argument("--readme", type=pathlib.Path, help="rewrite the noise-timing block of this markdown file")
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


PARSERS = {
    "demo": _demo,
    "bench": _bench,
    "train": _train,
    "noise-bench": _noise_bench,
    "guidance-bench": _guidance_bench,
    "metric-bench": _metric_bench,
}


def parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of ``antithetic-sampling <command>``."""
    return PARSERS[command]()
