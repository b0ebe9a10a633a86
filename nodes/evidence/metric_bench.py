"""``antithetic-sampling metric-bench``: CPU cost of the Pair Diversity Metric and the design confidence interval.

Measures, on one CPU thread (the cost a CPU-only ComfyUI pays; on a GPU the heavy parts run on the device):

* Pair Diversity Metric in ``interleaved`` pairs mode on 64 images of 512x512 (target <= 5 s), alone and with a
  64-image reference batch (what the node does when a reference is connected);
* ``all pairs`` scaling with the batch size (N(N-1)/2 pairs);
* the Confidence Interval (noise design) math: a scalar statistic and the per-pixel interval map.

Images are synthetic but image-like: smooth random fields around a shared mean image, in antithetic pairs m +- d
(the batch) and independent m + d (the reference), seeded. The measured metric values are reported too, as a sanity
check (antithetic pairs: centered correlation near -1, exactly -1 around the true mean before clipping to 0..1).
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch

from .. import cli_args
from ..methods import confidence as ci
from ..methods import diversity as dv
from .noise_timing import publish


def synthetic_batches(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(antithetic batch [n, size, size, 3] in interleaved pairs, independent reference batch), float32 0..1."""
    g = torch.Generator().manual_seed(seed)

    def field(count: int, amp: float) -> torch.Tensor:
        low = torch.randn(count, 3, 12, 12, generator=g)
        up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        return (amp * up).permute(0, 2, 3, 1)

    mean = 0.5 + field(1, 0.15)
    d = field(n // 2, 0.12)
    anti = torch.stack([mean + d, mean - d], 1).reshape(n, size, size, 3).clamp(0, 1).contiguous()
    ref = (mean + field(n, 0.12)).clamp(0, 1).contiguous()
    return anti, ref


def _timed(fn, repeats: int = 1):
    """(result, best wall s, CPU s of that run)."""
    best, cpu, out = float("inf"), 0.0, None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        w, c = time.perf_counter() - w0, time.process_time() - c0
        if w < best:
            best, cpu = w, c
    return out, best, cpu


def measure(n: int = 64, size: int = 512, all_pairs_n: tuple[int, ...] = (8, 16, 32, 64), repeats: int = 3,
            log=print) -> dict:
    torch.set_num_threads(1)
    anti, ref = synthetic_batches(n, size)
    log(f"pairs mode: {n} images of {size}x{size} ...")
    res, wall, cpu = _timed(lambda: dv.pair_diversity(anti, "interleaved"), repeats)
    pairs_row = {"n": n, "size": size, "pairs": len(res.pairs), "wall_s": wall, "cpu_s": cpu}

    def with_reference():
        center = dv.batch_mean_image(ref).float()
        a = dv.pair_diversity(anti, "interleaved", center=center)
        b = dv.pair_diversity(ref, "interleaved", center=center)
        return a, b

    (a, b), wall_r, cpu_r = _timed(with_reference, 1)
    ref_row = {"n": n, "reference_n": n, "size": size, "wall_s": wall_r, "cpu_s": cpu_r}
    values = {"antithetic": a.headline(), "independent": b.headline()}

    scaling = []
    for k in all_pairs_n:
        if k > n:
            continue
        log(f"all pairs: N={k} ...")
        r, w, c = _timed(lambda k=k: dv.pair_diversity(anti[:k], "all pairs"), 1)
        scaling.append({"n": k, "pairs": len(r.pairs), "wall_s": w, "cpu_s": c, "ms_per_pair": 1e3 * w / len(r.pairs)})

    log("confidence interval ...")
    arr = anti.numpy()
    (_, _), wall_s, cpu_s = _timed(
        lambda: (ci.design_interval(ci.image_statistic(arr, "mean brightness"), "pairs"), None), repeats)
    (_, _), wall_m, cpu_m = _timed(lambda: (ci.design_interval(arr, "pairs"), None), 1)
    interval = ci.design_interval(ci.image_statistic(arr, "mean brightness"), "pairs")
    eff = ci.efficiency_vs_iid(ci.image_statistic(arr, "mean brightness"), "pairs")
    return {
        "pairs_mode": pairs_row,
        "pairs_mode_with_reference": ref_row,
        "all_pairs": scaling,
        "confidence_interval": {"n": n, "size": size, "scalar_wall_s": wall_s, "scalar_cpu_s": cpu_s,
                                "per_pixel_map_wall_s": wall_m, "per_pixel_map_cpu_s": cpu_m,
                                "brightness_half_width": interval.half_width, "brightness_efficiency": eff.efficiency},
        "metric_values": values,
        "target_pairs_mode_s": 5.0,
        "threads": 1, "repeats": repeats, "torch": torch.__version__, "numpy": np.__version__,
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
    }


def markdown(r: dict) -> str:
    p, pr, c = r["pairs_mode"], r["pairs_mode_with_reference"], r["confidence_interval"]
    ok = "meets" if p["wall_s"] <= r["target_pairs_mode_s"] else "misses"
    lines = [
        f"Pair Diversity Metric, 1 CPU thread, {p['n']} images of {p['size']}x{p['size']} (synthetic, seeded):",
        "",
        "| run | pairs | wall s | CPU s |",
        "|---|---|---|---|",
        f"| interleaved pairs | {p['pairs']} | {p['wall_s']:.2f} | {p['cpu_s']:.2f} |",
        f"| interleaved pairs + {pr['reference_n']}-image reference | {2 * p['pairs']} | {pr['wall_s']:.2f} | {pr['cpu_s']:.2f} |",
    ]
    for s in r["all_pairs"]:
        lines.append(f"| all pairs, N={s['n']} | {s['pairs']} | {s['wall_s']:.2f} | {s['cpu_s']:.2f} |")
    lines += [
        "",
        f"Pairs mode {ok} the {r['target_pairs_mode_s']:.0f} s target (best of {r['repeats']}). All pairs grows as "
        "N(N-1)/2: " + ", ".join(f"{s['ms_per_pair']:.0f} ms/pair at N={s['n']}" for s in r["all_pairs"]) + ". "
        "Everything runs on ComfyUI's torch device when it has a GPU.",
        "",
        f"Confidence Interval (noise design) math on the same batch: brightness interval {c['scalar_wall_s'] * 1e3:.0f} ms "
        f"(mostly the luma), per-pixel interval map {c['per_pixel_map_wall_s']:.2f} s.",
        "",
        "Sanity values (antithetic pairs m +- d vs independent m + d, centred on the independent batch's mean):",
        "",
        "| batch | correlation | centered | 1 - SSIM | RMSE | Vendi (pixels) |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in r["metric_values"].items():
        lines.append(f"| {name} | {v['correlation']:.3f} | {v['centered_correlation']:.3f} | {v['one_minus_ssim']:.3f} | "
                     f"{v['rmse']:.4f} | {v['vendi']:.3f} |")
    lines.append("")
    lines.append(f"torch {r['torch']}, {r['processor']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = cli_args.parser("metric-bench")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.size, args.all_pairs, args.repeats = 16, 128, "8,16", 1
    if args.n < 2 or args.n % 2:
        ap.error("--n must be an even number >= 2")
    sizes = tuple(int(s) for s in str(args.all_pairs).split(",") if s.strip())
    result = measure(args.n, args.size, sizes, args.repeats)
    publish(args.out, "metric_bench", result, markdown(result), args.readme, "metric-results")
    return 0
