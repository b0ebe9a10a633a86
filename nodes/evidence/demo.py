"""``antithetic-sampling demo``: the first command of the README (`make demo`), on the embedded digits model.

Generates iid, antithetic-pair, K-group (K = 4) and Sobol RQMC batches from the shipped digits denoiser
(DPM++ 2M, Karras schedule), then writes to ``--out``:

* ``pairs.png``: "are the two images of a pair different?" (independent pairs left, antithetic pairs right, each
  pair framed with its centered correlation) and ``grid_<design>.png``: every image of a design, its pairs, groups
  or RQMC replicates framed;
* pair correlations, standard and centered (Jia et al., Table 1; centre = mean image of a separate iid reference
  batch), pairwise diversity (1 - SSIM, RMSE, Vendi score; ``nodes.methods.diversity``);
* the brightness estimate with each design's own 95 % CI (``nodes.methods.confidence``) and ``ci.png``: "how much
  narrower is the interval?" (each interval, its width relative to iid, the reference value of a large iid batch);
* the correlation of the two members of the antithetic pairs along the sampling trajectory (``trajectory.png``):
  of the x0-estimate, centered as in the table (its last point is the table's value), and raw for x0 and x_t;
* when Noise Awareness Guidance is available (``nodes.methods.noise_awareness``), the noise-shift curve
  sigma_hat / sigma per step with and without guidance (``noise_shift.png``, "does my sampler drift?": the line
  at 1 and the guidance band drawn);
* ``numbers.json`` (every number) and ``report.md``; a summary table is printed.

``--quick`` is the CI setting (smaller batches, fewer steps). Needs no ComfyUI, no download, no scikit-learn.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time

import numpy as np
import torch

from .. import cli_args
from ..methods import plots
from . import common, harness
from .designs import interval, make_designs

DEMO_DESIGNS = ("iid", "antithetic", "k4", "rqmc")
# The pictures the docs show (``--images docs/images``): file -> what it shows (recorded in the manifest).
PUBLISHED = {
    "pairs.png": "the first 8 independent pairs beside the first 8 antithetic pairs, each with its centered r",
    "ci.png": "each design's brightness estimate with its 95 % interval and its width relative to iid",
    "trajectory.png": "the correlation within the antithetic pairs along the sampling trajectory",
    "noise_shift.png": "sigma-hat / sigma per step with and without Noise Awareness Guidance",
    "grid_rqmc.png": "the Sobol RQMC batch, one replicate per row",
    "icon.png": "the pack's icon: the first two antithetic pairs (z, -z) of the demo",
}


# --------------------------------------------------------------------------- pictures
UNIT_NAMES = {1: "image", 2: "pair"}


def _unit_word(d) -> str:
    if d.ci_design == "replicates":
        return "RQMC replicate"
    return "group" if d.unit_size > 2 else UNIT_NAMES.get(d.unit_size, "unit")


def grid_figure(d, images: torch.Tensor, n: int):
    """Every image of one design; its units (pairs, groups, replicates) framed, replicates one per row."""
    unit = max(1, d.unit_size)
    if d.name == "iid":
        return plots.image_grid(images, 8, f"{d.label}: {n} digits from independent noise",
                                caption="every image has its own noise; no pairs")
    if d.ci_design == "replicates":
        cols = unit if unit <= 16 else 16
        rows = [f"replicate {r + 1}" for r in range(math.ceil(n / cols))]
        return plots.image_grid(images, cols, f"{d.label}: {n} digits, one RQMC replicate per row",
                                unit=unit, row_labels=rows,
                                caption=f"each framed row: {unit} scrambled Sobol' points; rows are independent")
    cols = 8 if unit <= 8 else unit
    what = "pair (z, −z)" if unit == 2 else f"group of {unit} (noises sum to zero)"
    return plots.image_grid(images, cols, f"{d.label}: {n} digits, each framed {what}", unit=unit,
                            caption=f"images of one {_unit_word(d)} are dependent by design")


def pairs_figure(iid: torch.Tensor, anti: torch.Tensor, iid_r: np.ndarray, anti_r: np.ndarray, pairs: int = 8):
    """First ``pairs`` pairs of each batch side by side, each labelled with its centered correlation."""
    k = 2 * pairs

    def panel(images, r, title):
        # the mean is the table's (over every pair of the batch), so the label says so
        return {"images": images[:k], "cols": 4, "unit": 2,
                "title": f"{title}\nmean r, all {len(r)} pairs: {np.nanmean(r):+.2f}",
                "unit_labels": [f"r = {v:+.2f}" for v in r[:pairs]]}

    return plots.image_grids(
        [panel(iid, iid_r, "independent noise (core RandomNoise)"),
         panel(anti, anti_r, "antithetic noise: pairs (z, −z)")],
        f"Are the two images of a pair different? The first {pairs} pairs of each batch (r: centered correlation; "
        "−1 = opposite, 0 = unrelated)", size=(900, 560))


def icon_image(anti: torch.Tensor) -> np.ndarray:
    """The pack's icon (registry, ``pyproject.toml``): the demo's first two antithetic pairs, one pair per row."""
    gray = anti[:4, ..., 0].numpy()
    return plots.icon([(gray[0], gray[1]), (gray[2], gray[3])])


def publish(out: pathlib.Path, folder: pathlib.Path, numbers: dict) -> dict | None:
    """Copy the pictures the docs show into ``folder`` and record there what drew them (``provenance``): the
    command, the code fingerprint, each picture's sha256 and the digest of the numbers they draw (the weights'
    location and the run time left out: a rerun elsewhere must give the same digest)."""
    import shutil

    from . import provenance

    folder.mkdir(parents=True, exist_ok=True)
    shown = {name: what for name, what in PUBLISHED.items() if (out / name).is_file()}
    for name in shown:
        shutil.copyfile(out / name, folder / name)
    drawn = {k: v for k, v in numbers.items() if k not in ("seconds", "weights")}
    drawn["weights_sha256"] = (numbers.get("weights") or {}).get("sha256")
    # what a reader sees in ci.png and pairs.png, in clear
    seen = {f"{e['label']}: {k}": round(float(v), 4) for e in numbers["designs"].values()
            for k, v in (("CI width vs iid", e["brightness"]["ci_width_vs_iid"]),
                         ("centered pair r", e["pair_correlation_centered"]))}
    return provenance.write_image_manifest(folder, shown, json.loads(json.dumps(drawn)), shown=seen)


def ci_figure(numbers: dict, ref_mean: float, ref_half: float):
    rows, notes = [], []
    for e in numbers["designs"].values():
        b = e["brightness"]
        rows.append((e["label"], b["estimate"], b["low"], b["high"]))
        notes.append(f"{b['ci_width_vs_iid']:.2f}× iid width")
    n, n_ref = numbers["n_images"], numbers["reference"]["n_images"]
    return plots.forest_plot(
        rows, title=f"How much narrower is the interval? Mean brightness, 95 % interval from N = {n} images each",
        xlabel="mean brightness of the digits (0 = black, 1 = white)", reference=ref_mean,
        reference_band=(ref_mean - ref_half, ref_mean + ref_half),
        reference_label=f"mean of {n_ref} iid images", notes=notes)


def trajectory_figure(traj: dict, table_value: float):
    steps = traj["step"]
    series = {
        "x₀-estimate, centered (as in the table)": (steps, traj["denoised_centered"]),
        "x₀-estimate, raw Pearson": (steps, traj["denoised"]),
        "state x_t, raw Pearson": (steps, traj["state"]),
    }
    styles = {"x₀-estimate, raw Pearson": {"linestyle": "--", "linewidth": 1.5},
              "state x_t, raw Pearson": {"linestyle": ":", "linewidth": 1.5}}
    return plots.line_plot(
        series, title="Does an antithetic pair stay opposite while sampling?\nmean correlation of the two images, per step",
        xlabel=f"sampling step (σ from {traj['sigma'][0]:.3g} down to {traj['sigma'][-1]:.3g})",
        ylabel="correlation within a pair", ylim=(-1.05, 1.05), styles=styles, legend_loc="upper right",
        size=(760, 500), hlines=[(table_value, f"final images, centered (table): {table_value:+.2f}")])


def noise_shift_figure(shift: dict, sampler: str, steps: int):
    curves = {}
    band_steps: list[int] = []
    for label, c in shift["curves"].items():
        if not c["step"]:
            continue
        curves[label] = {"step": c["step"], "ratio": c["ratio"], "sigma": c["sigma"]}
        if c.get("active") and not band_steps:
            band_steps = [st for st, a in zip(c["step"], c["active"], strict=False) if a]
    lo, hi = (shift.get("band") or [None, None])[:2]
    band_label = f"guidance band (σ {lo:g}–{hi:g})" if lo is not None else "guidance band"
    return plots.noise_shift_plot(
        curves, f"Does my sampler drift? σ̂/σ per step, digits model, {sampler} {steps} steps",
        band_steps=band_steps, band_label=band_label, sigmas=next(iter(curves.values()))["sigma"])


# --------------------------------------------------------------------------- measurements
def trajectory_correlation(model, noise: torch.Tensor, sigmas: torch.Tensor, sampler: str,
                           center: torch.Tensor | None = None) -> dict:
    """Mean Pearson correlation between the members of each (interleaved) pair, per step: raw for the state x_t
    and the x0-estimate (model space); with ``center`` (the population-mean image [C, H, W] of the view) also the
    centered correlation of the x0-estimate in the view the statistics use (``common.to_view``), which at the
    last step is the centered pair correlation of the final images."""
    rows = {"step": [], "sigma": [], "state": [], "denoised": [], "denoised_centered": []}
    pairs = common.unit_pairs(noise.shape[0], 2)

    def corr(t):
        f = t.reshape(t.shape[0], -1).to(torch.float64)
        a, b = f[0::2], f[1::2]
        a = a - a.mean(1, keepdim=True)
        b = b - b.mean(1, keepdim=True)
        return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)).mean())

    def cb(i, x, s, den):
        rows["step"].append(i)
        rows["sigma"].append(float(s[0]))
        rows["state"].append(corr(x))
        rows["denoised"].append(corr(den))
        if center is not None:
            _, cen = common.pair_correlations(common.to_view(model, den), pairs, center)
            rows["denoised_centered"].append(float(np.nanmean(cen)))

    harness.sample(model.denoise, noise, sigmas, sampler, callback=cb)
    return rows


def noise_shift(model, noise: torch.Tensor, sigmas: torch.Tensor, sampler: str, seed: int) -> dict | None:
    """sigma_hat / sigma per step (batch mean) without guidance (w = 0, measured only) and with it (w = 1).

    Uses ``noise_shift_curve`` when the Noise Awareness Guidance code provides one, else its harness guide
    ``NoiseAwarenessGuide``. Returns None when that code is absent.
    """
    try:
        from ..methods import noise_awareness as na
    except ImportError:
        return None
    fn = getattr(na, "noise_shift_curve", None)
    if fn is None:
        try:
            from . import noise_shift

            fn = getattr(noise_shift, "noise_shift_curve", None)
        except ImportError:
            fn = None
    if fn is not None:
        try:
            return {"source": f"{fn.__module__}.noise_shift_curve", **fn(model, noise, sigmas, sampler=sampler, seed=seed)}
        except TypeError:
            pass  # different signature: fall back to the guide below
    guide_cls = getattr(na, "NoiseAwarenessGuide", None)
    if guide_cls is None:
        return None
    out = {"source": "nodes.methods.noise_awareness.NoiseAwarenessGuide", "curves": {}}
    for label, w in (("without guidance", 0.0), ("with guidance (w=1)", 1.0)):
        guide = guide_cls(w=w, seed=seed, measure=True)
        harness.sample(model.denoise, noise, sigmas, sampler, guide=guide)
        steps, ratio, sig = [], [], []
        for rec in guide.log:
            if rec.get("ratio") is None:
                continue
            steps.append(int(rec["step"]))
            sig.append(float(rec["sigma"]))
            ratio.append(float(np.mean(rec["ratio"])))
        out["curves"][label] = {"step": steps, "sigma": sig, "ratio": ratio}
    return out


def _mean(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.nanmean(a)) if a.size and np.isfinite(a).any() else float("nan")


# --------------------------------------------------------------------------- main
def run(out: pathlib.Path, quick: bool = False, seed: int = 0, n: int | None = None, steps: int | None = None,
        sampler: str = "dpmpp_2m", model_name: str = "digits", weights: pathlib.Path | None = None,
        images: pathlib.Path | None = None) -> dict:
    from ..methods.diversity import pair_diversity

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    n = n or (16 if quick else 64)
    steps = steps or (6 if quick else 12)
    n_ref = 128 if quick else 1024
    out.mkdir(parents=True, exist_ok=True)
    model = common.load_model(model_name, weights)
    weights_info = describe_weights(model)
    if weights_info:
        print(weights_info["line"], flush=True)
    designs = make_designs(model.shape, points=8, spectral=(), include=DEMO_DESIGNS)
    sigmas = harness.get_sigmas(model, steps, "karras")
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(designs) + 3, desc="demo", unit="task")
    except ImportError:  # pragma: no cover
        bar = None

    def tick(msg: str):
        if bar:
            bar.set_postfix_str(msg)
            bar.update()

    # reference batch: the population mean image (centre of the centered correlation) and the brightness truth
    ref_design = designs[0]
    ref_x0 = common.generate(model, ref_design, n_ref, seed + 99991, steps, sampler)
    ref_view = common.to_display(model, ref_x0)
    ref_bright = common.statistics(model, ref_x0)["brightness"]
    center = ref_view.mean(0)
    tick("reference batch")

    numbers = {"model": model_name, "shape": list(model.shape), "n_images": n, "steps": steps, "sampler": sampler,
               "schedule": "karras", "seed": seed, "quick": quick,
               "reference": {"n_images": n_ref, "brightness_mean": float(ref_bright.mean()),
                             "brightness_se": float(ref_bright.std(ddof=1) / math.sqrt(n_ref))},
               "designs": {}}
    shown = {}
    noises = {}
    for i, d in enumerate(designs):
        noises[d.name] = seed + 1000 * i
        x0 = common.generate(model, d, n, noises[d.name], steps, sampler)
        disp = common.to_display(model, x0)
        unit = max(2, d.unit_size)
        pairing = "interleaved" if unit == 2 else "groups of K"
        div = pair_diversity(disp, pairing, group_size=unit, center=center)
        head = div.headline()
        bright = common.statistics(model, x0)["brightness"]
        ci = interval(bright, d)
        grid_figure(d, disp, n).savefig(out / f"grid_{d.name}.png", dpi=plots.DPI)
        shown[d.name] = (disp, div.centered_correlation)
        numbers["designs"][d.name] = {
            "label": d.label,
            "pairing": f"{pairing} (K={unit})" if pairing != "interleaved" else pairing,
            "pair_correlation": head["correlation"],
            "pair_correlation_centered": head["centered_correlation"],
            "one_minus_ssim": head["one_minus_ssim"],
            "rmse": head["rmse"],
            "vendi": head["vendi"],
            "brightness_pair_correlation": common.stat_correlation(bright, common.unit_pairs(n, d.unit_size)),
            "brightness": {"estimate": ci.estimate, "low": ci.low, "high": ci.high, "half_width": ci.half_width,
                           "units": ci.units, "dof": ci.dof, "estimator": ci.design},
        }
        tick(d.name)
    iid_hw = numbers["designs"]["iid"]["brightness"]["half_width"]
    for e in numbers["designs"].values():
        e["brightness"]["ci_width_vs_iid"] = e["brightness"]["half_width"] / iid_hw if iid_hw > 0 else float("nan")

    # pairs picture: the first 8 iid "pairs" (consecutive images) next to the first 8 antithetic pairs
    plots.save_png(pairs_figure(shown["iid"][0], shown["antithetic"][0], shown["iid"][1], shown["antithetic"][1]),
                   out / "pairs.png")
    from matplotlib.image import imsave

    imsave(out / "icon.png", icon_image(shown["antithetic"][0]))
    ref = numbers["reference"]
    plots.save_png(ci_figure(numbers, ref["brightness_mean"], 1.96 * ref["brightness_se"]), out / "ci.png")

    # trajectory correlation of the antithetic pairs of the table (same noise), paper Fig. 3
    anti_d = next(d for d in designs if d.name == "antithetic")
    anti = anti_d.noise((n, *model.shape), noises["antithetic"])
    traj = trajectory_correlation(model, anti, sigmas, sampler, center=common.to_view(model, ref_x0).mean(0))
    numbers["trajectory"] = traj
    table_value = numbers["designs"]["antithetic"]["pair_correlation_centered"]
    plots.save_png(trajectory_figure(traj, table_value), out / "trajectory.png")
    tick("trajectory")

    shift = noise_shift(model, designs[0].noise((min(n, 32), *model.shape), seed + 6), sigmas, sampler, seed)
    if shift is not None and shift.get("curves"):
        numbers["noise_shift"] = shift
        if any(v["step"] for v in shift["curves"].values()):
            plots.save_png(noise_shift_figure(shift, sampler, steps), out / "noise_shift.png")
    else:
        numbers["noise_shift"] = None
    tick("noise shift")
    if bar:
        bar.close()
    numbers["weights"] = weights_info
    numbers["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "numbers.json").write_text(json.dumps(numbers, indent=2), encoding="utf-8")
    table = summary_table(numbers)
    (out / "report.md").write_text(report(numbers, table), encoding="utf-8")
    print(table)
    print(f"\nwrote {out}/ (report.md, numbers.json, PNGs) in {numbers['seconds']} s")
    if images is not None:
        manifest = publish(out, images, numbers)
        print(f"copied {len(PUBLISHED)} pictures to {images}/"
              + (f" (provenance in {images}/manifest.json)" if manifest else ""))
    return numbers


def summary_table(numbers: dict) -> str:
    lines = ["| design | pair corr. | centered | brightness corr. | 1-SSIM | Vendi | brightness (95% CI) | CI width vs iid |",
             "|---|---|---|---|---|---|---|---|"]
    for e in numbers["designs"].values():
        b = e["brightness"]
        lines.append(
            f"| {e['label']} | {e['pair_correlation']:+.2f} | {e['pair_correlation_centered']:+.2f} | "
            f"{e['brightness_pair_correlation']:+.2f} | {e['one_minus_ssim']:.3f} | {e['vendi']:.1f} | "
            f"{b['estimate']:.4f} [{b['low']:.4f}, {b['high']:.4f}] | {b['ci_width_vs_iid']:.2f} |"
        )
    return "\n".join(lines)


def report(numbers: dict, table: str) -> str:
    ref = numbers["reference"]
    parts = [
        "# antithetic-sampling demo",
        "",
        f"Model: {numbers['model']} (item shape {'x'.join(map(str, numbers['shape']))}), {numbers['sampler']} "
        f"{numbers['steps']} steps, Karras schedule, N = {numbers['n_images']} images per design, seed "
        f"{numbers['seed']}{' (--quick)' if numbers['quick'] else ''}; {numbers['seconds']} s.",
        "",
        table,
        "",
        "* pair corr. / centered: Pearson correlation of the two images of each pair (all pairs inside a group or "
        "RQMC replicate), raw and after subtracting the population-mean image "
        f"(mean of {ref['n_images']} iid samples). iid rows pair consecutive images.",
        "* brightness corr.: correlation of the brightness statistic between pair/group members; for pairs, "
        "Var(antithetic mean) / Var(iid mean) = 1 + this.",
        "* brightness CI: each design's own Student-t interval (image, pair/group or replicate means). Reference: "
        f"{ref['brightness_mean']:.4f} ± {1.96 * ref['brightness_se']:.4f} from the iid reference batch.",
        "",
        "Pictures: `pairs.png` (iid vs antithetic pairs), `grid_*.png`, `ci.png`, `trajectory.png`"
        + (", `noise_shift.png`" if numbers.get("noise_shift") else "") + ".",
    ]
    ns = numbers.get("noise_shift")
    if ns:
        parts += ["", f"Noise shift (source: `{ns['source']}`): mean sigma_hat/sigma over the measured steps: "
                  + ", ".join(f"{k} {_mean(v['ratio']):.3f}" for k, v in ns["curves"].items() if v["ratio"]) + "."]
    return "\n".join(parts) + "\n"


def describe_weights(model) -> dict | None:
    """Which weights a learned model was loaded from (path, sha256 checked against its config, shipped or not)."""
    cfg = getattr(model, "config", None) or {}
    if "weights_path" not in cfg:
        return None
    from .digits import WEIGHTS_DIR

    path = pathlib.Path(cfg["weights_path"])
    shipped = path.parent.resolve() == WEIGHTS_DIR.resolve()
    val = (cfg.get("validation") or {}).get("loss")
    line = (f"weights: {path} ({'shipped' if shipped else 'NOT the shipped weights'}; sha256 "
            f"{cfg['weights_sha256'][:16]}… matches its config; {cfg.get('training', {}).get('steps', '?')} training "
            f"steps; validation loss {val:.5f})" if val is not None else f"weights: {path}")
    return {"path": str(path), "sha256": cfg["weights_sha256"], "shipped": shipped, "validation_loss": val,
            "line": line}


def main(argv: list[str] | None = None) -> int:
    ap = cli_args.parser("demo")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from .digits import WeightsIntegrityError

    try:  # what the argument check cannot foresee (a read-only or special file system): one line, not a traceback
        args.out.mkdir(parents=True, exist_ok=True)
        probe = args.out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        ap.error(f"argument --out: cannot write to {args.out} ({exc.strerror or exc}); accepted: a folder you can "
                 "write to")
    try:
        run(args.out, quick=args.quick, seed=args.seed, n=args.n, steps=args.steps, sampler=args.sampler,
            weights=args.weights, images=args.images)
    except WeightsIntegrityError as exc:
        print(f"demo: refusing to run: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
