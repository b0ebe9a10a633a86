"""``antithetic-sampling demo``: the first command of the README (`make demo`), on the embedded digits model.

Generates iid, antithetic-pair, K-group (K = 4) and Sobol RQMC batches from the shipped digits denoiser
(DPM++ 2M, Karras schedule), then writes to ``--out``:

* ``grid_<design>.png`` image grids (pairs/groups side by side) and ``pairs.png`` (iid pairs vs antithetic pairs);
* pair correlations, standard and centered (Jia et al., Table 1; centre = mean image of a separate iid reference
  batch), pairwise diversity (1 - SSIM, RMSE, Vendi score; ``nodes.methods.diversity``);
* the brightness estimate with each design's own 95 % CI (``nodes.methods.confidence``) and ``ci.png``;
* the correlation of the two pair members along the sampling trajectory (``trajectory.png``);
* when Noise Awareness Guidance is available (``nodes.methods.noise_awareness``), the noise-shift curve
  sigma_hat / sigma per step with and without guidance (``noise_shift.png``);
* ``numbers.json`` (every number) and ``report.md``; a summary table is printed.

``--quick`` is the CI setting (smaller batches, fewer steps). Needs no ComfyUI, no download, no scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import common, harness
from .designs import interval, make_designs

DEMO_DESIGNS = ("iid", "antithetic", "k4", "rqmc")


# --------------------------------------------------------------------------- pictures
def grid_image(images: torch.Tensor, cols: int, title: str, scale: int = 3, unit: int = 1) -> Image.Image:
    """IMAGE [N, H, W, 3] 0..1 -> labelled PIL grid; a thin gap separates units (pairs/groups) in a row."""
    n, h, w, _ = images.shape
    rows = math.ceil(n / cols)
    gap = 2
    unit_gap = 6 if unit > 1 else gap
    cell_w, cell_h = w * scale, h * scale
    col_x = []
    x = 4
    for c in range(cols):
        col_x.append(x)
        x += cell_w + (unit_gap if unit > 1 and (c + 1) % unit == 0 else gap)
    width = x + 2
    height = 22 + rows * (cell_h + gap) + 4
    img = Image.new("RGB", (width, height), (255, 255, 255))
    ImageDraw.Draw(img).text((4, 4), title, fill=(30, 30, 30))
    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        tile = Image.fromarray(arr[i]).resize((cell_w, cell_h), Image.NEAREST)
        img.paste(tile, (col_x[c], 22 + r * (cell_h + gap)))
    return img


def forest_plot(rows: list[tuple[str, float, float, float]], reference: float | None, title: str) -> Image.Image:
    """Estimate with its CI per design (horizontal), dashed reference line."""
    w, row_h, left = 560, 26, 190
    h = 40 + row_h * len(rows) + 30
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((8, 6), title, fill=(30, 30, 30))
    lo = min(r[2] for r in rows)
    hi = max(r[3] for r in rows)
    if reference is not None:
        lo, hi = min(lo, reference), max(hi, reference)
    pad = (hi - lo) * 0.1 or 1e-3
    lo, hi = lo - pad, hi + pad

    def px(v):
        return left + (v - lo) / (hi - lo) * (w - left - 20)

    top = 34
    for i, (label, est, a, b) in enumerate(rows):
        y = top + i * row_h + row_h // 2
        d.text((8, y - 6), label, fill=(30, 30, 30))
        d.line([(px(a), y), (px(b), y)], fill=(31, 119, 180), width=3)
        d.line([(px(a), y - 5), (px(a), y + 5)], fill=(31, 119, 180), width=2)
        d.line([(px(b), y - 5), (px(b), y + 5)], fill=(31, 119, 180), width=2)
        d.ellipse([px(est) - 4, y - 4, px(est) + 4, y + 4], fill=(214, 39, 40))
    y_axis = top + row_h * len(rows) + 4
    d.line([(left, y_axis), (w - 20, y_axis)], fill=(120, 120, 120))
    for t in range(5):
        v = lo + (hi - lo) * t / 4
        d.text((px(v) - 18, y_axis + 4), f"{v:.4f}", fill=(80, 80, 80))
    if reference is not None:
        x = px(reference)
        for y in range(top, y_axis, 6):
            d.line([(x, y), (x, y + 3)], fill=(44, 160, 44), width=1)
    return img


# --------------------------------------------------------------------------- measurements
def trajectory_correlation(model, noise: torch.Tensor, sigmas: torch.Tensor, sampler: str) -> dict:
    """Mean Pearson correlation between the members of each (interleaved) pair, per step, for x_t and x0-hat."""
    rows = {"step": [], "sigma": [], "state": [], "denoised": []}

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
            from . import guidance_bench

            fn = getattr(guidance_bench, "noise_shift_curve", None)
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
        sampler: str = "dpmpp_2m", model_name: str = "digits") -> dict:
    from ..methods.diversity import pair_diversity
    from ..methods.plots import line_plot

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    n = n or (16 if quick else 64)
    steps = steps or (6 if quick else 12)
    n_ref = 128 if quick else 1024
    out.mkdir(parents=True, exist_ok=True)
    model = common.load_model(model_name)
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
    ref = common.generate(model, ref_design, n_ref, seed + 99991, steps, sampler)
    ref_view = common.to_display(model, ref)
    ref_bright = common.statistics(model, ref)["brightness"]
    center = ref_view.mean(0)
    tick("reference batch")

    numbers = {"model": model_name, "shape": list(model.shape), "n_images": n, "steps": steps, "sampler": sampler,
               "schedule": "karras", "seed": seed, "quick": quick,
               "reference": {"n_images": n_ref, "brightness_mean": float(ref_bright.mean()),
                             "brightness_se": float(ref_bright.std(ddof=1) / math.sqrt(n_ref))},
               "designs": {}}
    forest = []
    grids = {}
    for i, d in enumerate(designs):
        x0 = common.generate(model, d, n, seed + 1000 * i, steps, sampler)
        disp = common.to_display(model, x0)
        unit = max(2, d.unit_size)
        pairing = "interleaved" if unit == 2 else "groups of K"
        div = pair_diversity(disp, pairing, group_size=unit, center=center)
        head = div.headline()
        bright = common.statistics(model, x0)["brightness"]
        ci = interval(bright, d)
        cols = 8 if unit <= 8 else unit
        grids[d.name] = grid_image(disp, cols, f"{d.label}: {n} digits", unit=unit if d.name != "iid" else 1)
        grids[d.name].save(out / f"grid_{d.name}.png")
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
        forest.append((d.label, ci.estimate, ci.low, ci.high))
        tick(d.name)
    iid_hw = numbers["designs"]["iid"]["brightness"]["half_width"]
    for e in numbers["designs"].values():
        e["brightness"]["ci_width_vs_iid"] = e["brightness"]["half_width"] / iid_hw if iid_hw > 0 else float("nan")

    # pairs picture: first 8 iid "pairs" next to the first 8 antithetic pairs
    a = grids["iid"]
    b = grids["antithetic"]
    both = Image.new("RGB", (max(a.width, b.width), a.height + b.height + 6), (255, 255, 255))
    both.paste(a, (0, 0))
    both.paste(b, (0, a.height + 6))
    both.save(out / "pairs.png")
    forest_plot(forest, float(ref_bright.mean()),
                f"brightness, 95% CI per design (N={n}); green: {n_ref}-image iid reference").save(out / "ci.png")

    # trajectory correlation of antithetic pairs (paper Fig. 3)
    anti = designs[1].noise((min(n, 32), *model.shape), seed + 5)
    traj = trajectory_correlation(model, anti, sigmas, sampler)
    numbers["trajectory"] = traj
    line_plot({"x_t": (traj["step"], traj["state"]), "x0-hat": (traj["step"], traj["denoised"])},
              title="antithetic pair correlation along the trajectory", xlabel="step",
              size=(420, 240)).save(out / "trajectory.png")
    tick("trajectory")

    shift = noise_shift(model, designs[0].noise((min(n, 32), *model.shape), seed + 6), sigmas, sampler, seed)
    if shift is not None and shift.get("curves"):
        numbers["noise_shift"] = shift
        series = {k: (v["step"], v["ratio"]) for k, v in shift["curves"].items() if v["step"]}
        if series:
            line_plot(series, title="noise shift: sigma_hat / sigma per step", xlabel="step",
                      size=(420, 240)).save(out / "noise_shift.png")
    else:
        numbers["noise_shift"] = None
    tick("noise shift")
    if bar:
        bar.close()
    numbers["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "numbers.json").write_text(json.dumps(numbers, indent=2), encoding="utf-8")
    table = summary_table(numbers)
    (out / "report.md").write_text(report(numbers, table), encoding="utf-8")
    print(table)
    print(f"\nwrote {out}/ (report.md, numbers.json, PNGs) in {numbers['seconds']} s")
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="antithetic-sampling demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo_out"), help="output folder (default demo_out)")
    ap.add_argument("--quick", action="store_true", help="CI setting: 16 images per design, 6 steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=None, help="images per design (default 64; --quick 16)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default 12; --quick 6)")
    ap.add_argument("--sampler", default="dpmpp_2m", choices=["euler", "ddim", "dpmpp_2m"])
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run(args.out, quick=args.quick, seed=args.seed, n=args.n, steps=args.steps, sampler=args.sampler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
