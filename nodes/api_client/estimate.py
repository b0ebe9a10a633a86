"""``antithetic-queue estimate WORKFLOW``: estimate a per-image statistic to a target half-width, for the least images.

The workflow holds one noise node, Antithetic Latent Noise (pairs or K-groups), Sobol RQMC Latent Batch
(replicates) or core RandomNoise (iid), and produces images. Every prompt is the workflow with a fresh
``noise_seed``, so it adds whole independent design units (pairs, groups, replicates or images). After a pilot (never
the final sample) the Stein two-stage rule of ``nodes.methods.sequential_estimation`` projects from the pilot alone
how many units the target needs, queues them on the servers (``BatchRunner``, so several servers, requeue on a dead
server and the manifest all work as for a batch), recomputes the interval the way the interval node computes it,
and adds top-up stages only while the half-width is still above ``--target`` (or ``--target-rel`` × |estimate|)
and ``--max-images`` are not spent.

``--interval`` (``methods.sequential_estimation.SequentialInterval``, the driver the benches run too): ``t`` is
the rule above; ``betting`` the betting confidence sequence on the unit means (values within ``--range``, default
[0, 1]), valid at every stage, so it stops at the first stage within the target; ``asymptotic`` the asymptotic
confidence sequence for unbounded values; ``auto`` (default) the t rule (stopping only once Cochran's rule for
skewed means holds), switching to the betting sequence when the values repeat or have no spread and to the
asymptotic sequence when the unit means are skewed (``estimate-battery`` measures all of them).

Statistics are computed here, from the downloaded images (mean brightness, per-channel mean, fraction above a
threshold: ``nodes.methods.confidence.image_statistic``; numpy + Pillow, no torch), or read from a node's per-image
values (``--value NODE.KEY``: a list with one number per image in that node's UI output).

Control variates (``nodes.methods.noise_control_variates``): when the workflow's Confidence Interval (noise design)
node gets the NOISE and the latent, it reports the lowest DCT coefficients of every image's initial noise; the
estimate then fits a surrogate of the statistic on them (a linear part plus one principal quadratic direction,
fitted on the images of the other prompts: cross-fitted) and uses it as one control with β re-estimated (one more
dof); the surrogate's mean is exactly 0 under the noise law, so the estimate stays unbiased. Without
``--control-variates`` it is on only for the designs where ``estimate-bench`` measured a gain on held-out
repetitions with coverage in 0.93-0.97 (``CV_DEFAULT``); ``--control-variates auto`` decides per run, after the
pilot, from the images the pilot projects (:func:`auto_control_variate`).

Output in ``--out``: the images and ``manifest.jsonl`` (as for a batch, plus ``estimate`` records per stage and a
final ``estimate_result``), ``estimate.json`` and ``estimate_halfwidth.png`` (half-width against images, the
design against the iid projection). Rerun the same command to resume: prompts already done are not queued again.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..methods import confidence as ci
from ..methods import noise_control_variates as ncv
from ..methods.control_variate_switch import auto_control_variate
from ..methods.sequential_estimation import INTERVALS, SequentialInterval, StoppingRule, iid_images_for
from .client import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, BatchRunner, normalize_url
from .jobs import Job, SpecError, check_value, parse_set, resolve_node

NOISE_CLASSES = ("AntitheticLatentNoise", "SobolRQMCLatentBatch", "RandomNoise")
LATENT_CLASSES = ("EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo")
IMAGE_STATISTICS = ("mean brightness", "per-channel mean", "fraction above threshold")
COEF_KEY = "noise_coefficients"
# Where the cross-fitted noise control variate is on by default: set from `antithetic-sampling estimate-bench`
# (tuning half of the repetitions; the held-out half is what its table reports). Keys: confidence design names.
CV_DEFAULT = {"iid": False, "pairs": False, "groups": False, "replicates": False}
# The stopping rule's defaults (Stein two-stage), chosen per design and estimator (design alone / with the control
# variate) by estimate-bench on its tuning half (the cheapest setting with coverage >= 0.93 at every target; when
# none has, the one with the highest lowest coverage): (pilot units, aim of the second stage as a fraction of the
# target), keyed by (design, control variate on).
RULE_DEFAULTS = {
    ("iid", False): (16, 1.0), ("iid", True): (8, 1.0),
    ("pairs", False): (8, 1.0), ("pairs", True): (16, 0.9),
    ("groups", False): (8, 1.0), ("groups", True): (16, 1.0),
    ("replicates", False): (8, 1.0), ("replicates", True): (16, 1.0),
}
CV_MAX_GROWTH = 1.3  # with the control variate a stage grows the units at most 1.3x (its surrogate keeps learning)


class EstimateError(SpecError):
    """A workflow or option the estimate cannot work with; the message says why."""


@dataclass(frozen=True)
class DesignSpec:
    design: str  # iid | pairs | groups | replicates
    unit_size: int
    layout: str
    noise_node: str
    batch: int  # images per prompt

    @property
    def units_per_prompt(self) -> int:
        return self.batch // self.unit_size

    def label(self) -> str:
        return {"iid": "iid (RandomNoise)", "pairs": "antithetic pairs", "groups": f"K-groups K={self.unit_size}",
                "replicates": f"Sobol RQMC replicates of n={self.unit_size}"}[self.design]


def _literal(prompt: dict, nid: str, name: str, default=None):
    val = prompt[nid].get("inputs", {}).get(name, default)
    if isinstance(val, list):
        raise EstimateError(f"node {nid} ({prompt[nid]['class_type']}): input {name!r} is linked; estimate needs a "
                            "literal value there (it decides the noise design)")
    return val


def detect_design(prompt: dict, noise_ref: str | None = None, batch: int | None = None) -> DesignSpec:
    """The noise design of a workflow: its noise node and the images per prompt (the latent's batch_size)."""
    if noise_ref:
        nid = resolve_node(prompt, noise_ref)
    else:
        found = [n for n, node in prompt.items() if node.get("class_type") in NOISE_CLASSES]
        if len(found) != 1:
            what = "no" if not found else f"{len(found)}"
            raise EstimateError(f"the workflow has {what} noise node(s) of {', '.join(NOISE_CLASSES)}; estimate needs "
                                "exactly one (or name it with --noise-node)")
        nid = found[0]
    cls = prompt[nid].get("class_type")
    if cls not in NOISE_CLASSES:
        raise EstimateError(f"--noise-node {noise_ref}: node {nid} is a {cls}, not one of {', '.join(NOISE_CLASSES)}")
    if batch is None:
        lat = [n for n, node in prompt.items() if node.get("class_type") in LATENT_CLASSES]
        if len(lat) != 1:
            raise EstimateError("cannot tell the images per prompt (no single empty-latent node); give --batch")
        batch = int(_literal(prompt, lat[0], "batch_size", 1))
    if cls == "RandomNoise":
        design, k, layout = "iid", 1, "interleaved"
    elif cls == "AntitheticLatentNoise":
        k = int(_literal(prompt, nid, "group_size", 2))
        layout = str(_literal(prompt, nid, "layout", "interleaved"))
        design = "pairs" if k == 2 else "groups"
        if prompt[nid].get("inputs", {}).get("mask") is not None:
            raise EstimateError("a masked (partial) antithetic noise node: its units are not exchangeable estimates "
                                "of the whole image; remove the mask for an estimate")
    else:
        k = int(_literal(prompt, nid, "points_per_replicate", 8))
        design, layout = "replicates", "interleaved"
    if batch % k or batch < k:
        raise EstimateError(f"images per prompt {batch} must be a positive multiple of the design unit ({k} images): "
                            "every prompt adds whole units")
    return DesignSpec(design, k, layout, nid, int(batch))


def prompt_graph(prompt: dict, spec: DesignSpec, seed: int) -> dict:
    g = copy.deepcopy(prompt)
    g[spec.noise_node].setdefault("inputs", {})["noise_seed"] = int(seed)
    return g


def make_jobs(prompt: dict, spec: DesignSpec, seed_start: int, count: int) -> list[Job]:
    jobs = []
    for i in range(count):
        seed = seed_start + i
        jobs.append(Job(index=i, prompt=prompt_graph(prompt, spec, seed), params={"noise_seed": seed}, repeat=0))
    return jobs


# ------------------------------------------------------------------------------------------ per-prompt data

def load_image(path: Path) -> np.ndarray:
    """A saved image as float [H, W, C] in 0..1 (8-bit or 16-bit PNG; alpha dropped)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - the client extra installs Pillow
        raise EstimateError("reading images needs Pillow: pip install 'antithetic-sampling[client]'") from None
    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I"):
            arr = np.asarray(im, dtype=np.float64) / 65535.0
        else:
            arr = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr


def record_images(rec: dict, out_dir: Path, image_node: str | None) -> list[Path]:
    files = [f for f in rec.get("files") or [] if f.get("type", "output") == "output"]
    nodes = sorted({f["node"] for f in files})
    if image_node is None:
        if len(nodes) != 1:
            raise EstimateError(f"prompt {rec.get('index')}: images from {len(nodes)} nodes ({', '.join(nodes)}); "
                                "name the one to measure with --image-node")
        image_node = nodes[0]
    return [out_dir / f["path"] for f in files if f["node"] == image_node]


def _ui_list(rec: dict, node: str | None, key: str) -> tuple[str, list] | None:
    ui = rec.get("ui") or {}
    for nid, outs in ui.items():
        if node is not None and nid != node:
            continue
        if key in (outs or {}):
            return nid, outs[key]
    return None


def prompt_data(rec: dict, out_dir: Path, spec: DesignSpec, statistic: str, channel: int, threshold: float,
                value_ref: tuple[str, str] | None, image_node: str | None, want_coefficients: bool):
    """(per-image values [B], noise coefficients [B, M] or None) of one finished prompt, in design order."""
    if value_ref is not None:
        hit = _ui_list(rec, value_ref[0], value_ref[1])
        if hit is None:
            raise EstimateError(f"prompt {rec.get('index')}: no UI output {value_ref[1]!r} on node {value_ref[0]}")
        vals = np.asarray(hit[1], dtype=np.float64).reshape(-1)
    else:
        paths = record_images(rec, out_dir, image_node)
        imgs = np.stack([load_image(p) for p in paths])
        vals = ci.image_statistic(imgs, statistic, channel, threshold)
    if vals.shape[0] != spec.batch:
        raise EstimateError(f"prompt {rec.get('index')}: {vals.shape[0]} values for {spec.batch} images per prompt")
    coefs = None
    if want_coefficients:
        hit = _ui_list(rec, None, COEF_KEY)
        if hit is None:
            raise EstimateError("control variates need the noise coefficients: connect the NOISE and the latent to "
                                "Confidence Interval (noise design) in the workflow, or use --control-variates off")
        coefs = np.asarray(hit[1], dtype=np.float64)
        if coefs.ndim != 2 or coefs.shape[0] != spec.batch:
            raise EstimateError(f"prompt {rec.get('index')}: noise coefficients of shape {coefs.shape}, expected "
                                f"[{spec.batch}, M]")
    return vals, coefs


def design_order(spec: DesignSpec) -> np.ndarray:
    """Permutation of one prompt's images that puts every unit's members next to each other (unit g = positions
    gK..gK+K-1): interleaved and replicates are already so; halves puts image g + jN/K at gK + j."""
    i = np.arange(spec.batch)
    unit = i % spec.units_per_prompt if spec.layout == "halves" and spec.design in ("pairs", "groups") \
        else i // spec.unit_size
    return np.argsort(unit, kind="stable")


def to_units(values: np.ndarray, coefs: np.ndarray | None, spec: DesignSpec):
    """Per prompt: unit means [U], the coefficients of every unit's images [U, K, M] and their values [U, K]
    (design layout)."""
    order = design_order(spec)
    k = spec.unit_size
    items = values[order].reshape(-1, k)
    c = None if coefs is None else coefs[order].reshape(-1, k, coefs.shape[1])
    return items.mean(axis=1), c, items


# ------------------------------------------------------------------------------------------ the estimate

def interval_of(values: list[np.ndarray], coefs: list[np.ndarray] | None, spec: DesignSpec, confidence: float,
                use_cv: bool) -> dict:
    """The interval of everything so far: the interval node's (unit means, t on G-1 dof) or the cross-fitted
    control-variate interval (t on G-2 dof). Also the per-image variance and the iid comparison."""
    units, ucoef, uitems, prompts = [], [], [], []
    for p, v in enumerate(values):
        m, c, it = to_units(v, coefs[p] if coefs is not None else None, spec)
        units.append(m)
        uitems.append(it)
        prompts.append(np.full(m.shape[0], p))
        if c is not None:
            ucoef.append(c)
    y = np.concatenate(units)
    pr = np.concatenate(prompts)
    # the interval node's computation on the whole run: every prompt in unit order, prompts concatenated
    ordered = np.concatenate([v[design_order(spec)] for v in values])
    design_k = spec.unit_size if spec.design in ("groups", "replicates") else 2
    r = ci.design_interval(ordered, spec.design, design_k, "interleaved", confidence)
    eff = ci.efficiency_vs_iid(ordered, spec.design, design_k, "interleaved")
    out = {"estimate": float(r.estimate), "low": float(r.low), "high": float(r.high),
           "half_width": float(r.half_width), "std_error": float(r.std_error), "dof": int(r.dof),
           "t_quantile": float(r.t_quantile), "units": int(y.shape[0]), "images": int(ordered.shape[0]),
           "design_interval": {"estimate": float(r.estimate), "low": float(r.low), "high": float(r.high),
                               "half_width": float(r.half_width)},
           "item_variance": float(eff.item_variance), "efficiency_same_n": float(eff.efficiency),
           "control_variate": None}
    if use_cv:
        cv, info = ncv.cross_fitted_interval(y, np.concatenate(ucoef), pr, confidence,
                                             item_values=np.concatenate(uitems))
        out.update({"estimate": cv.estimate, "low": cv.low, "high": cv.high, "half_width": cv.half_width,
                    "std_error": cv.std_error, "dof": cv.dof, "t_quantile": cv.t_quantile,
                    "control_variate": {"beta": cv.beta, "r2": cv.r2, **info}})
    n = out["images"]
    iid_n = iid_images_for(out["item_variance"], out["half_width"], confidence)
    from scipy import stats

    iid_hw_same_n = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * math.sqrt(out["item_variance"] / n))
    out.update({"iid_images_same_width": int(iid_n), "fewer_images_than_iid": iid_n / n if n else float("nan"),
                "iid_half_width_same_n": iid_hw_same_n,
                "width_ratio_vs_iid": iid_hw_same_n / out["half_width"] if out["half_width"] > 0 else float("inf")})
    return out


def parse_range(spec: list[str] | None) -> tuple[float, float] | None:
    """``--range``: None -> (0, 1); ["none"] -> None (unbounded); [LO, HI] -> (LO, HI) with LO < HI."""
    if spec is None:
        return (0.0, 1.0)
    if len(spec) == 1 and spec[0].strip().lower() in ("none", "unbounded"):
        return None
    if len(spec) != 2:
        raise EstimateError(f"--range: expected LO HI (two numbers) or none, got {' '.join(spec)!r}")
    try:
        lo, hi = float(spec[0]), float(spec[1])
    except ValueError:
        raise EstimateError(f"--range: expected two numbers LO HI, got {' '.join(spec)!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise EstimateError(f"--range: needs finite LO < HI, got {lo:g} {hi:g}")
    return lo, hi


def check_values(values: np.ndarray, value_range: tuple[float, float] | None, prompt_index: int,
                 value_opt: str | None) -> None:
    """A per-image value outside --range is an error naming the option and the value (never clipped: it would
    void the interval's guarantee)."""
    if value_range is None:
        return
    lo, hi = value_range
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        what = f"--value {value_opt}" if value_opt else "the statistic"
        raise EstimateError(f"{what}: value {float(values[bad[0]])!r} (prompt {prompt_index}, image {int(bad[0])}) is "
                            f"outside --range {lo:g} {hi:g}; give the value's true bounds with --range LO HI, or "
                            "--range none for an unbounded value (t or asymptotic interval only)")


def apply_interval(cur: dict, iv: dict, value_range: tuple[float, float] | None) -> None:
    """Put the driver's interval into the stage/result record (the t fields stay as the design's diagnostics)."""
    cur["interval_method"] = {"t": "t (design unit means)" if not cur.get("control_variate") else
                              "t (control variate)", "betting": "betting confidence sequence",
                              "asymptotic": "asymptotic confidence sequence"}[iv["method"]]
    cur["interval_switch"] = iv.get("switch_reason")
    cur["value_range"] = list(value_range) if value_range is not None else None
    if iv["method"] != "t":
        cur.update({"estimate": float(iv["estimate"]), "low": float(iv["low"]), "high": float(iv["high"]),
                    "half_width": float(iv["half_width"])})


def halfwidth_plot(path: Path, stages: list[dict], final: dict, spec: DesignSpec, goal: float, confidence: float,
                   stat_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    imgs = [s["images"] for s in stages]
    ax.plot(imgs, [s["half_width"] for s in stages], "o-", color="tab:blue", label=f"{spec.label()} (measured)")
    n_max = max(max(imgs), final["iid_images_same_width"]) * 1.2
    n = np.unique(np.geomspace(2, max(3, n_max), 200).astype(int))
    iid = stats.t.ppf(0.5 + confidence / 2, n - 1) * np.sqrt(final["item_variance"] / n)
    ax.plot(n, iid, "--", color="tab:red", label="iid projection (same per-image variance)")
    # the design's own projection from its final unit spread: h(G) = t_{G-d} s_unit / sqrt(G), G = images / K
    g = np.unique(np.maximum(3, n // spec.unit_size))
    d = final["units"] - final["dof"]
    s_unit = final["std_error"] * math.sqrt(final["units"])
    ax.plot(g * spec.unit_size, stats.t.ppf(0.5 + confidence / 2, np.maximum(1, g - d)) * s_unit / np.sqrt(g), ":",
            color="tab:blue", label="design projection (final unit spread)")
    ax.axhline(goal, color="k", lw=0.8, ls=":", label=f"target ±{goal:.3g}")
    ax.scatter([final["iid_images_same_width"]], [final["half_width"]], color="tab:red", zorder=3,
               label=f"iid needs {final['iid_images_same_width']} images")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("images")
    ax.set_ylabel(f"{100 * confidence:.3g}% half-width")
    ax.set_title(f"{stat_label}: {final['images']} images vs {final['iid_images_same_width']} iid for the same width")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="antithetic-queue estimate",
        description="Estimate the mean of a per-image statistic to a target confidence-interval half-width, queueing "
        "as few images as the workflow's noise design allows (a pilot, a second stage sized from it, top-ups only if still too wide).",
        epilog="Example: antithetic-queue estimate workflow_api.json --target 0.002 --server http://gpu1:8188 "
        "--server http://gpu2:8188 --out runs/brightness",
    )
    p.add_argument("workflow", help="API-format workflow with one noise node (AntitheticLatentNoise, "
                   "SobolRQMCLatentBatch or RandomNoise) and an image output")
    p.add_argument("--server", action="append", default=[], metavar="URL", help="ComfyUI server (repeat for several)")
    p.add_argument("--target", type=float, default=None, help="absolute half-width to reach (e.g. 0.002)")
    p.add_argument("--target-rel", type=float, default=None, help="half-width relative to |estimate| (e.g. 0.01)")
    p.add_argument("--max-images", type=int, default=4096, help="image budget (default 4096)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--statistic", default="mean brightness", choices=IMAGE_STATISTICS,
                   help="per-image statistic computed from the downloaded images (default mean brightness)")
    p.add_argument("--channel", type=int, default=0, help="channel for 'per-channel mean'")
    p.add_argument("--threshold", type=float, default=0.5, help="luma threshold for 'fraction above threshold'")
    p.add_argument("--value", default=None, metavar="NODE.KEY",
                   help="use the per-image numbers a node reports in its UI output KEY instead of an image statistic")
    p.add_argument("--image-node", default=None, help="the image-saving node to measure (when there are several)")
    p.add_argument("--noise-node", default=None, help="the noise node (id, title or class) when there are several")
    p.add_argument("--batch", type=int, default=None, help="images per prompt (default: the empty latent's batch_size)")
    p.add_argument("--range", nargs="+", default=None, metavar="LO HI",
                   help="bounds every per-image value lies in (default 0 1: every built-in statistic is in [0, 1]; "
                        "for --value give the statistic's own bounds, e.g. --range 1 10, or --range none for an "
                        "unbounded value). A value outside is an error, never clipped")
    p.add_argument("--interval", choices=INTERVALS, default="auto",
                   help="auto (default): the t rule (stopping once Cochran's rule for skewed means holds), switching "
                        "to the betting sequence when the values are few distinct ones (a flag, a rare outcome) or "
                        "without spread, to the asymptotic sequence when strongly skewed; t: the design's "
                        "t interval (Stein two-stage); betting: the betting confidence sequence, guaranteed for "
                        "bounded values at every stage; asymptotic: the asymptotic confidence sequence (unbounded)")
    p.add_argument("--control-variates", choices=("auto", "on", "off"), default=None,
                   help="noise control variate: on, off, or auto = decided per run after the pilot: on when the "
                        "pilot projects more images than the control variate's own pilot and one prompt (docs/"
                        "estimate.md; default: on for the designs where estimate-bench measured a gain, today none)")
    p.add_argument("--pilot-units", type=int, default=None,
                   help="independent units in the pilot, never the final sample (default: per design and control "
                        "variate, chosen by estimate-bench; see docs/estimate.md)")
    p.add_argument("--aim", type=float, default=None,
                   help="size projected stages for aim x target (default: per design and control variate, chosen "
                        "by estimate-bench)")
    p.add_argument("--seed-start", type=int, default=0, help="noise_seed of prompt 0 (prompt i uses seed-start + i)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input of the workflow (as for a batch)")
    p.add_argument("--out", default="antithetic_estimate_out", help="output folder")
    p.add_argument("--max-in-flight", type=int, default=2, help="prompts queued per server at a time")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds without progress before a prompt fails")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plot", action="store_true", help="skip the half-width plot")
    return p


def _load_prompt(path: str) -> dict:
    from .convert import is_api_prompt

    p = Path(path)
    if not p.exists():
        raise EstimateError(f"workflow file not found: {path}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EstimateError(f"{path} is not valid JSON ({exc}); expected an API-format workflow") from None
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]
    if not is_api_prompt(data):
        raise EstimateError(f"{path}: estimate needs an API-format workflow (export it with 'Save (API)')")
    return data


def main(argv: list[str] | None = None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    if not 0 < args.confidence < 1:  # before a prompt is queued (the interval would be undefined only at the end)
        print(f"error: --confidence {args.confidence:g}: accepted: a level strictly between 0 and 1 (e.g. 0.95)",
              file=sys.stderr, flush=True)
        return EXIT_USAGE

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    try:  # `kill` (SIGTERM) cancels as cleanly as Ctrl-C, as for a batch
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread (a test or another program)
        previous = None
    try:
        return run_estimate(args)
    except (EstimateError, SpecError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted; rerun the same command to resume", file=sys.stderr, flush=True)
        return EXIT_CANCELLED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_estimate(args: argparse.Namespace) -> int:
    StoppingRule(args.target, args.target_rel, 8, args.max_images, args.confidence)  # usage errors before any I/O
    value_range = parse_range(args.range)
    prompt = _load_prompt(args.workflow)
    definitions = None
    for target, value in (parse_set(s) for s in args.sets):
        nid = resolve_node(prompt, target.node)
        if definitions is None:
            from .cli import input_definitions

            definitions = input_definitions(None)
        value = check_value(prompt, nid, target.input, value, definitions, f"--set {target.node}.{target.input}")
        prompt[nid].setdefault("inputs", {})[target.input] = value
    spec = detect_design(prompt, args.noise_node, args.batch)
    value_ref = None
    if args.value:
        if "." not in args.value:
            raise EstimateError(f"--value {args.value!r}: expected NODE.KEY")
        node, key = args.value.rsplit(".", 1)
        value_ref = (resolve_node(prompt, node), key)
    image_node = resolve_node(prompt, args.image_node) if args.image_node else None
    mode = args.control_variates or "default"
    auto = mode == "auto"  # decided after the pilot, which runs with the design alone's rule
    use_cv = {"on": True, "off": False, "auto": False, "default": CV_DEFAULT.get(spec.design, False)}[mode]

    def rule_for(cv: bool) -> StoppingRule:
        default_pilot, default_aim = RULE_DEFAULTS.get((spec.design, cv), (8, 1.0))
        pilot_units = args.pilot_units if args.pilot_units is not None else default_pilot
        aim = args.aim if args.aim is not None else default_aim
        # with the control variate a stage grows at most CV_MAX_GROWTH x (its surrogate keeps learning)
        return StoppingRule(args.target, args.target_rel, pilot_units, args.max_images, args.confidence, aim,
                            CV_MAX_GROWTH if cv else None)

    rule = rule_for(use_cv)
    if (use_cv or auto) and args.interval in ("betting", "asymptotic"):
        raise EstimateError(f"--interval {args.interval}: the control-variate interval is a t interval (its adjusted "
                            "values are not bounded); use --control-variates off or --interval t/auto")
    if args.interval == "betting" and value_range is None:
        raise EstimateError("--interval betting needs bounded values: give --range LO HI (not none)")
    stat_label = f"value {args.value}" if args.value else args.statistic
    servers = [normalize_url(s) for s in (args.server or ["http://127.0.0.1:8188"])]
    out = Path(args.out)
    upp = spec.units_per_prompt
    print(f"design: {spec.label()}, {spec.batch} images = {upp} unit(s) per prompt; control variate "
          f"{'decided after the pilot (auto)' if auto else 'on' if use_cv else 'off'}", file=sys.stderr, flush=True)
    dof_loss = 2 if use_cv else 1
    # the control-variate estimate stays on its t interval: auto does not switch there
    driver = SequentialInterval(rule, "t" if use_cv else args.interval, None if use_cv else value_range,
                                spec.unit_size, upp, dof_loss)
    seen_prompts = 0
    stages: list[dict] = []
    runner = None
    while True:
        n_prompts = driver.units_wanted // upp
        jobs = make_jobs(prompt, spec, args.seed_start, n_prompts)
        runner = BatchRunner(servers, out, max_in_flight=args.max_in_flight, timeout=args.timeout,
                             progress=not args.no_progress,
                             run_info={"argv": list(argv_of(args)), "workflow": args.workflow, "estimate": True})
        res = runner.run(jobs)
        if res.exit_code in (EXIT_UNREACHABLE, EXIT_CANCELLED):
            return res.exit_code
        done = runner.manifest.done()
        missing = [j.index for j in jobs if j.key not in done]
        if missing:
            print(f"error: {len(missing)} prompt(s) did not finish (first: {missing[:5]}); see {runner.manifest.path}",
                  file=sys.stderr, flush=True)
            return EXIT_FAILED
        vals, coefs = [], []
        # auto reads the noise coefficients where the workflow reports them (without them it stays off)
        has_coefs = auto and all(_ui_list(done[j.key], None, COEF_KEY) is not None for j in jobs)
        for j in jobs:
            v, c = prompt_data(done[j.key], out, spec, args.statistic, args.channel, args.threshold, value_ref,
                               image_node, use_cv or has_coefs)
            check_values(v, value_range, j.index, args.value)
            vals.append(v)
            coefs.append(c)
        cur = interval_of(vals, coefs if use_cv else None, spec, args.confidence, use_cv)
        new = [to_units(v, None, spec) for v in vals[seen_prompts:]]
        seen_prompts = len(vals)
        iv, dec = driver.look(np.concatenate([m for m, _, _ in new]),
                              np.concatenate([it.reshape(-1) for _, _, it in new]),
                              t_interval=(cur["estimate"], cur["half_width"]))
        if auto and not stages and driver.method == "t":
            projected = dec.units_wanted * spec.unit_size
            # the pilot so far counts as (part of) the control variate's pilot, never its final sample
            cv_rule = replace(rule_for(True), min_units=max(rule_for(True).min_units, cur["units"]))
            use_cv = has_coefs and not dec.stop and auto_control_variate(projected, spec.unit_size, upp,
                                                                         cv_rule.min_units)
            print(f"control variate {'on' if use_cv else 'off'} (auto: the pilot projects {projected} images"
                  + ("" if has_coefs else "; the workflow reports no noise coefficients") + ")",
                  file=sys.stderr, flush=True)
            if use_cv:
                # from here on the control-variate t interval and its rule (the driver never switches there)
                rule, dof_loss = cv_rule, 2
                cur = interval_of(vals, coefs, spec, args.confidence, True)
                driver = SequentialInterval(rule, "t", None, spec.unit_size, upp, dof_loss)
                iv, dec = driver.look(np.concatenate([to_units(v, None, spec)[0] for v in vals]),
                                      t_interval=(cur["estimate"], cur["half_width"]))
        apply_interval(cur, iv, value_range)
        stage = {"stage": len(stages), "prompts": n_prompts, "images": cur["images"], "units": cur["units"],
                 "estimate": cur["estimate"], "half_width": cur["half_width"], "goal": dec.goal,
                 "decision": dec.reason, "units_wanted": dec.units_wanted, "control_variate": bool(use_cv),
                 "interval": cur["interval_method"]}
        stages.append(stage)
        runner.manifest.append({"type": "estimate", **stage})
        print(f"stage {stage['stage']}: {cur['images']} images, {stat_label} {cur['estimate']:.6g} "
              f"± {cur['half_width']:.3g} (goal ±{dec.goal:.3g}) -> {dec.reason}", file=sys.stderr, flush=True)
        if dec.stop:
            break
    result = {"statistic": stat_label, "design": spec.design, "unit_size": spec.unit_size, "layout": spec.layout,
              "design_label": spec.label(), "images_per_prompt": spec.batch, "prompts": n_prompts,
              "confidence": args.confidence, "target": args.target, "target_rel": args.target_rel,
              "goal_half_width": dec.goal, "reason": dec.reason, "seed_start": args.seed_start,
              "control_variates": use_cv, "stages": stages, "interval_requested": args.interval,
              "prompt_seeds": [args.seed_start + i for i in range(n_prompts)], **cur}
    if not args.no_plot:
        plot = out / "estimate_halfwidth.png"
        try:
            halfwidth_plot(plot, stages, cur, spec, dec.goal, args.confidence, stat_label)
            result["plot"] = str(plot.relative_to(out))
        except ImportError:
            print("warning: no plot (matplotlib missing: pip install 'antithetic-sampling[client]')", file=sys.stderr)
    (out / "estimate.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    runner.manifest.append({"type": "estimate_result", **result})
    print(summary_text(result))
    return EXIT_OK


def argv_of(args: argparse.Namespace) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(vars(args).items()) if v not in (None, [], False)]


def interval_phrase(r: dict) -> str:
    m = r.get("interval_method", "t")
    why = f" (auto: {r['interval_switch']})" if r.get("interval_switch") else ""
    if m.startswith("t"):
        return f"t on {r['dof']} dof"
    rng = r.get("value_range")
    where = f" for values in [{rng[0]:g}, {rng[1]:g}]" if rng else ""
    return f"interval: {m}{why}{where}, valid at every stage"


def summary_text(r: dict) -> str:
    pct = f"{100 * r['confidence']:.3g}%"
    lines = [
        f"{r['statistic']}: {r['estimate']:.6g} ± {r['half_width']:.3g}  ({pct} CI [{r['low']:.6g}, {r['high']:.6g}], "
        f"{r['reason']}; goal ±{r['goal_half_width']:.3g})",
        f"design: {r['design_label']}; {r['images']} images = {r['units']} independent units in {r['prompts']} "
        f"prompts; " + interval_phrase(r),
        f"iid would need {r['iid_images_same_width']} images for the same width: {r['fewer_images_than_iid']:.2f}x "
        f"fewer (efficiency at the same N {r['efficiency_same_n']:.2f}; width ratio vs iid at the same N "
        f"{r['width_ratio_vs_iid']:.2f})",
    ]
    cv = r.get("control_variate")
    if cv:
        lines.append(f"control variate: R² {cv['r2']:.2f}, β {cv['beta']:.3g}, surrogate linear in "
                     f"{cv['linear_coefficients']} + one quadratic direction in {cv['quadratic_coefficients']} noise "
                     f"coefficients, {cv['folds']} folds over prompts; design alone "
                     f"±{r['design_interval']['half_width']:.3g}")
    return "\n".join(lines)
