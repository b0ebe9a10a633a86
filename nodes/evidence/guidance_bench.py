"""``antithetic-sampling guidance-bench``: does the training-free Noise Awareness Guidance help, and what does it cost?

Noise Awareness Guidance after Zhong et al., "Mitigating the Noise Shift for Denoising Generative Models via Noise
Awareness Guidance" (arXiv 2510.12497, ICLR 2026), training-free form of ``nodes/methods/noise_awareness.py``:
D~ = D_cfg + w [ (D_c - x_v) - (s_v / s_hat)^2 (D_hat_c - x_v) ]. Unrelated to Normalized Attention Guidance.

Measured on the embedded learned digits model (``digits.py``; no ComfyUI), Karras schedule, for several samplers
(deterministic and ancestral) and step counts:

* **noise shift**: the batch-mean ratio s_hat / s of the level each state carries to its step's nominal level, per
  step, without guidance (w = 0, measured only) and with it; |s_hat/s - 1| summarised inside the guidance band and
  below it. The estimator's own reading on *exact* states (held-out real digits + s * noise, built at exactly the
  nominal level) at the same levels is the floor: a trajectory reading equal to it is no shift.
* **estimator accuracy** on those exact states (mean and per-image spread of s_hat / s) for every estimator.
* **sample quality** across w and estimators: distance of the final samples to the training digits, paired over
  seeds (the same initial and step noise with and without guidance): Frechet distance (FD) in pixel space
  between Gaussian fits, and the unbiased squared maximum mean discrepancy (MMD^2) with a Gaussian kernel whose
  bandwidth is the median pairwise distance of the training digits; plus the RMS of the samples outside the
  training digits' principal subspace (residue that no digit has). Noise floor: a change counts only when it
  exceeds 2 standard errors of the seed-to-seed paired differences and 1 % of the unguided value; the distances
  of the held-out real digits are shown beside.
* **controls** (on one setting per sampler): other bands, a dead band that ignores estimates within the
  estimator's own per-image noise (``min_excess``), other clamps.
* **cost**: extra model evaluations per step, relative to CFG (2 evaluations per step) and to one evaluation.
* **ComfyUI** (when a checkout is found, like the e2e tests: ``$COMFYUI_PATH`` or ``~/comfy/ComfyUI``, python
  ``$COMFYUI_PYTHON``): NAG Guided KSampler against core KSampler on the tiny random SD1.5 checkpoint in one
  process, side by side: wall time (median of repeats, interleaved) and model evaluations counted at the UNet.

Writes ``guidance.json`` and ``guidance.md`` to ``--out``; ``--readme`` rewrites the block between
``<!-- BEGIN:guidance-results -->`` and ``<!-- END:guidance-results -->``. No number is typed by hand.
``noise_shift_curve`` is also what ``demo`` plots. Needs scikit-learn (the digits data) for the quality part.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np
import torch

from .. import cli_args
from ..local_comfy.checkout import discover
from ..local_comfy.errors import ComfyUnavailable
from ..local_comfy.tiny_checkpoint import ensure_checkpoint
from ..methods import noise_awareness as na
from . import common, harness
from .digit_reference import DigitReference, load_reference  # noqa: F401  (tests reach them here)
from .noise_shift import MEASURE_W, SHIPPED, _curve, _variant, estimator_floor, noise_shift_curve, sample_variant  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[2]
README_BLOCK = "guidance-results"
CFG_EVALS = 2  # model evaluations per step of classifier-free guidance (cond + uncond)
CHANGE_ALPHA = 0.025  # a paired change counts when a one-sided paired t-test rejects at this level per metric and
CHANGE_REL = 0.01  # direction, and it exceeds 1 % of the unguided value; FD and MMD^2 OR-ed: P(false "better") <= 5 %

FULL = {
    "n": 1000, "seeds": 4, "curve_n": 256,
    "settings": [("euler", 6), ("euler", 10), ("dpmpp_2m", 6), ("dpmpp_2m", 10), ("euler_ancestral", 6),
                 ("euler_ancestral", 10)],
    "w_grid": {"sure_residual": (0.25, 0.5, 1.0, 2.0), "calibrated_residual": (0.5, 1.0, 2.0),
               "naive_residual": (0.5, 1.0)},
    "control_settings": [("euler", 10), ("dpmpp_2m", 10), ("euler_ancestral", 10)],
    "floor_sigmas": (10.0, 3.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02),
    "comfy": {"steps": 20, "cfg": 8.0, "sampler": "euler", "scheduler": "normal", "size": 64, "batch": 2,
              "repeats": 3},
}
QUICK = {
    "n": 48, "seeds": 2, "curve_n": 16,
    "settings": [("dpmpp_2m", 4), ("euler_ancestral", 4)],
    "w_grid": {"sure_residual": (1.0,), "calibrated_residual": (1.0,), "naive_residual": (1.0,)},
    "control_settings": [("dpmpp_2m", 4)],
    "floor_sigmas": (3.0, 0.5, 0.1),
    "comfy": {"steps": 4, "cfg": 8.0, "sampler": "euler", "scheduler": "normal", "size": 64, "batch": 1,
              "repeats": 1},
}


# --------------------------------------------------------------------------------------------- helpers


def initial_noise(model, n: int, seed: int) -> torch.Tensor:
    """N(0, I) initial noise for ``n`` items from a private generator."""
    return torch.randn((int(n), *model.shape), generator=torch.Generator().manual_seed(int(seed)))


def estimator_noise(model) -> float:
    """Per-image relative spread of a residual-norm level estimate, ~ 1 / sqrt(2 d) (chi distribution, d pixels)."""
    d = int(np.prod(model.shape))
    return 1.0 / math.sqrt(2.0 * d)


def guide_cost(guide: na.NoiseAwarenessGuide | None, steps: int) -> dict:
    """Extra evaluations per step (batch units) and the share of in-band items that were corrected."""
    if guide is None:
        return {"extra_per_step": 0.0, "corrected_share": 0.0, "active_steps": 0}
    extra = sum(e["evaluations"] for e in guide.log)
    act = [e for e in guide.log if e.get("active")]
    share = float(np.mean([e["corrected"] for e in act])) if act else 0.0
    return {"extra_per_step": extra / steps, "corrected_share": share, "active_steps": len(act)}


def critical_t(n: int) -> float:
    """One-sided critical value of the paired t-test on ``n`` seeds at CHANGE_ALPHA (t quantile, n - 1 df): with
    4 seeds 3.18 standard errors, not 2 (which is a 14 % two-sided false-positive rate at 3 df)."""
    from scipy.stats import t as student_t

    return float(student_t.ppf(1.0 - CHANGE_ALPHA, max(int(n) - 1, 1)))


def paired_change(base: list[float], guided: list[float]) -> dict:
    """Mean paired change guided - base over seeds, its standard error and whether it is beyond the floor
    (t-test at CHANGE_ALPHA one-sided, and more than CHANGE_REL of the unguided value; needs >= 2 seeds)."""
    d = np.asarray(guided, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
    ref = abs(float(np.mean(base)))
    beyond = (math.isfinite(se) and abs(mean) > CHANGE_REL * ref and abs(mean) > critical_t(d.size) * se)
    return {"change": mean, "se": se, "relative": mean / ref if ref > 0 else float("nan"),
            "sign": (int(np.sign(mean)) if beyond else 0)}


def verdict(changes: dict) -> str:
    """Combine the FD and MMD^2 paired changes (lower is better) into one word."""
    signs = {changes["fd"]["sign"], changes["mmd2"]["sign"]}
    if signs == {0}:
        return "no measurable change"
    if signs <= {0, -1}:
        return "better"
    if signs <= {0, 1}:
        return "worse"
    return "mixed"


# --------------------------------------------------------------------------------------------- noise shift


@torch.no_grad()
def shift_summary(curve: dict, band: list[float], floor: dict | None = None) -> dict:
    """Batch-mean s_hat/s - 1 over the in-band steps (after the first; signed and absolute) and the largest
    s_hat/s below the band (the last steps)."""
    lo, hi = band
    steps = list(zip(curve["step"], curve["sigma"], curve["ratio"], strict=True))
    inband = [r - 1 for st, s, r in steps if st > 0 and lo <= s <= hi]
    below = [(r, s) for st, s, r in steps if s < lo]
    out = {"in_band_dev": float(np.mean(inband)) if inband else float("nan"),
           "in_band_abs_dev": float(np.mean(np.abs(inband))) if inband else float("nan"),
           "below_band_max_ratio": max(below)[0] if below else float("nan"),
           "below_band_max_sigma": max(below)[1] if below else float("nan"),
           "max_ratio": max(r for _, _, r in steps) if steps else float("nan")}
    if floor:
        fl = [r - 1 for s, r in zip(floor["sigma"], floor["ratio"], strict=True) if lo <= s <= hi]
        out["floor_in_band_dev"] = float(np.mean(fl)) if fl else float("nan")
        out["floor_in_band_abs_dev"] = float(np.mean(np.abs(fl))) if fl else float("nan")
    return out


# --------------------------------------------------------------------------------------------- the digits part


def quality_variants(cfg: dict) -> list[dict]:
    out = [_variant("w=0", 0.0)]
    for est, ws in cfg["w_grid"].items():
        out += [_variant(f"{est} w={w:g}", w, est) for w in ws]
    return out


CONTROL_BANDS = ((1e9, 0.0), (5.0, 0.1), (2.0, 0.1), (5.0, 0.5), (0.5, 0.01))


def _band_label(band: tuple[float, float]) -> str:
    if band[0] >= 1e8:
        text = "band: whole schedule"
    else:
        text = f"band: sigma {band[1]:g}-{band[0]:g}"
    if band == (SHIPPED["sigma_start"], SHIPPED["sigma_end"]):
        text += " (default)"
    return text


def control_variants(model, cfg: dict) -> list[dict]:
    """Other bands, a dead band at twice the estimator's per-image noise, other clamps (default w and estimator)."""
    w, est = MEASURE_W, SHIPPED["estimator"]
    noise = estimator_noise(model)
    out = [_variant(_band_label(b), w, est, band=b) for b in CONTROL_BANDS]
    out += [
        _variant(f"dead band: |s_hat/s-1| <= {2 * noise:.3f} ignored", w, est, min_excess=2 * noise),
        *[_variant(f"max_level_shift {m:g}" + (" (default)" if m == SHIPPED["max_shift"] else ""), w, est,
                   max_shift=m) for m in (0.1, 1.0) if m != SHIPPED["max_shift"]],
    ]
    return out


def run_setting(model, ref: DigitReference, sampler: str, steps: int, variants: list[dict], n: int, seeds: int,
                seed: int, bar=None) -> dict:
    """All variants on one (sampler, steps) setting; paired over seeds (same initial and step noise)."""
    sigmas = harness.get_sigmas(model, steps, "karras")
    per: dict[str, dict] = {v["name"]: {"variant": v, "fd": [], "mmd2": [], "off_rms": [], "cost": []} for v in variants}
    base_name = variants[0]["name"]
    for k in range(seeds):
        s = seed + 1000 * k
        noise = initial_noise(model, n, s)
        for v in variants:
            x, guide = sample_variant(model, noise, sigmas, sampler, s, v)
            m = ref.measure(x)
            for key in ("fd", "mmd2", "off_rms"):
                per[v["name"]][key].append(m[key])
            per[v["name"]]["cost"].append(guide_cost(guide, steps))
            if bar:
                bar.update()
    out = {"sampler": sampler, "steps": steps, "variants": {}}
    base = per[base_name]
    for name, p in per.items():
        v = p["variant"]
        entry = {**v, "fd": float(np.mean(p["fd"])), "mmd2": float(np.mean(p["mmd2"])),
                 "off_rms": float(np.mean(p["off_rms"])),
                 "fd_seed_sd": float(np.std(p["fd"], ddof=1)) if len(p["fd"]) > 1 else float("nan"),
                 "mmd2_seed_sd": float(np.std(p["mmd2"], ddof=1)) if len(p["mmd2"]) > 1 else float("nan"),
                 "extra_per_step": float(np.mean([c["extra_per_step"] for c in p["cost"]])),
                 "corrected_share": float(np.mean([c["corrected_share"] for c in p["cost"]]))}
        entry["evals_vs_cfg"] = (CFG_EVALS + entry["extra_per_step"]) / CFG_EVALS
        entry["evals_vs_one"] = 1.0 + entry["extra_per_step"]
        if name != base_name:
            ch = {key: paired_change(base[key], p[key]) for key in ("fd", "mmd2", "off_rms")}
            entry["changes"] = ch
            entry["verdict"] = verdict(ch)
        out["variants"][name] = entry
    return out


def run_digits(cfg: dict, seed: int = 0, progress: bool = True) -> dict:
    from .common import load_model

    torch.set_num_threads(1)
    model = load_model("digits")
    ref, held_out = load_reference()
    qv = quality_variants(cfg)
    cv = control_variants(model, cfg)
    total = len(cfg["settings"]) * (cfg["seeds"] * len(qv) + 2) + len(cfg["control_settings"]) * cfg["seeds"] * (1 + len(cv))
    bar = common.progress_bar(total, "guidance-bench digits", unit="run", enabled=progress)
    res = {"model": "digits", "shape": list(model.shape), "dimension": int(np.prod(model.shape)),
           "schedule": "karras", "n_images": cfg["n"], "seeds": cfg["seeds"], "seed": seed,
           "estimator_noise": estimator_noise(model), "reference": {}, "estimators": {}, "settings": [],
           "controls": []}
    # the real-data floor of the distances (held-out digits; FD is biased upward at small N, so the model's own
    # samples are measured at the same N beside it)
    res["reference"] = {"train_images": int(ref.train.shape[0]), "held_out_images": int(held_out.shape[0]),
                        "bandwidth": ref.bandwidth, "subspace_rank": ref.subspace_rank,
                        "held_out": ref.measure(held_out)}
    # estimator accuracy on exact states
    for est in na.LEVEL_ESTIMATORS:
        res["estimators"][est] = estimator_floor(model, held_out, cfg["floor_sigmas"], est, seed)
    # noise shift curves + quality per setting
    for sampler, steps in cfg["settings"]:
        sigmas = harness.get_sigmas(model, steps, "karras")
        curve = noise_shift_curve(model, initial_noise(model, cfg["curve_n"], seed + 77), sigmas, sampler, seed,
                                  clean=held_out)
        if bar:
            bar.update(2)
        band = curve["band"]
        summ = {label: shift_summary(c, band, curve.get("floor")) for label, c in curve["curves"].items()}
        q = run_setting(model, ref, sampler, steps, qv, cfg["n"], cfg["seeds"], seed, bar)
        base_x, _ = sample_variant(model, initial_noise(model, held_out.shape[0], seed), sigmas, sampler, seed, qv[0])
        q["unguided_at_held_out_n"] = ref.measure(base_x)
        q["shift"] = {"curve": curve, "summary": summ}
        res["settings"].append(q)
    for sampler, steps in cfg["control_settings"]:
        res["controls"].append(run_setting(model, ref, sampler, steps, [qv[0], *cv], cfg["n"], cfg["seeds"], seed, bar))
    if bar:
        bar.close()
    res["curve_n"] = cfg["curve_n"]
    res["choice"] = choose(res)
    res["recommendation"] = recommend(res, SHIPPED)
    return res


def choose(res: dict) -> dict:
    """Per (estimator, w): mean relative FD and MMD^2 change over the settings and the verdict counts."""
    table: dict[str, dict] = {}
    for st in res["settings"]:
        for name, v in st["variants"].items():
            if "changes" not in v:
                continue
            t = table.setdefault(name, {"estimator": v["estimator"], "w": v["w"], "fd_rel": [], "mmd2_rel": [],
                                        "verdicts": {}, "evals_vs_cfg": []})
            t["fd_rel"].append(v["changes"]["fd"]["relative"])
            t["mmd2_rel"].append(v["changes"]["mmd2"]["relative"])
            t["evals_vs_cfg"].append(v["evals_vs_cfg"])
            key = f"{st['sampler']} {st['steps']}"
            t["verdicts"][key] = v["verdict"]
    out = {}
    for name, t in table.items():
        vs = list(t["verdicts"].values())
        out[name] = {"estimator": t["estimator"], "w": t["w"], "fd_rel_mean": float(np.mean(t["fd_rel"])),
                     "mmd2_rel_mean": float(np.mean(t["mmd2_rel"])), "better": vs.count("better"),
                     "worse": vs.count("worse"), "mixed": vs.count("mixed"),
                     "unchanged": vs.count("no measurable change"), "verdicts": t["verdicts"],
                     "evals_vs_cfg_mean": float(np.mean(t["evals_vs_cfg"]))}
    return out


# --------------------------------------------------------------------------------------------- ComfyUI part

_WORKER = r"""
import importlib.util, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
import comfy.cli_args
comfy.cli_args.args.cpu = True  # before comfy.model_management is imported
spec = importlib.util.spec_from_file_location("antithetic_sampling", root / "__init__.py",
                                              submodule_search_locations=[str(root)])
mod = importlib.util.module_from_spec(spec)
sys.modules["antithetic_sampling"] = mod
spec.loader.exec_module(mod)
from antithetic_sampling.nodes.evidence import guidance_bench
print("@@RESULT@@" + json.dumps(guidance_bench.comfy_worker(json.loads(sys.argv[2]))), flush=True)
"""


def comfy_configs(cfg: float) -> list[dict]:
    """(label, sampler kind, cfg, guidance settings) of the side-by-side ComfyUI run; the first is the baseline."""
    d = dict(SHIPPED)
    rows = [{"label": "core KSampler", "node": "KSampler", "cfg": cfg},
            {"label": "NAG Guided KSampler, w=0", "node": "guided", "cfg": cfg, **d, "w": 0.0}]
    for est in na.LEVEL_ESTIMATORS:
        rows.append({"label": f"NAG Guided KSampler, w={d['w']:g}, {est}", "node": "guided", "cfg": cfg,
                     **d, "estimator": est})
    rows.append({"label": "core KSampler, cfg 1", "node": "KSampler", "cfg": 1.0, "baseline_of": "cfg1"})
    rows.append({"label": f"NAG Guided KSampler, cfg 1, w={d['w']:g}, sure_residual (probe batched)",
                 "node": "guided", "cfg": 1.0, **d, "estimator": "sure_residual", "vs": "cfg1"})
    return rows


def comfy_worker(spec: dict) -> dict:  # pragma: no cover - runs inside the ComfyUI python (e2e territory)
    """Inside a ComfyUI python: core KSampler vs NAG Guided KSampler on the tiny checkpoint, interleaved repeats."""
    torch.set_num_threads(1)
    import comfy.samplers
    import comfy.sd
    import comfy.utils

    import nodes as comfy_nodes  # ComfyUI's nodes.py (common_ksampler)

    from ..guidance_nodes import run_guided

    comfy.utils.PROGRESS_BAR_ENABLED = False
    model, clip = comfy.sd.load_checkpoint_guess_config(spec["checkpoint"], output_vae=False, output_clip=True,
                                                       embedding_directory=None)[:2]
    counter = {"items": 0}

    def count(apply_model, args):
        counter["items"] += int(args["input"].shape[0])
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = model.clone()
    model.set_model_unet_function_wrapper(count)
    positive = clip.encode_from_tokens_scheduled(clip.tokenize("a photo of a cat"))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize("blurry"))
    size, batch, steps = int(spec["size"]), int(spec["batch"]), int(spec["steps"])
    latent = {"samples": torch.zeros([batch, 4, size // 8, size // 8])}

    def run(c):
        if c["node"] == "KSampler":
            return comfy_nodes.common_ksampler(model, 1, steps, c["cfg"], spec["sampler"], spec["scheduler"],
                                               positive, negative, latent, denoise=1.0)[0]["samples"]
        out, _ = run_guided(model, 1, steps, c["cfg"], spec["sampler"], spec["scheduler"], positive, negative, latent,
                            1.0, c["w"], c["sigma_start"], c["sigma_end"], c["max_shift"], c["estimator"])
        return out["samples"]

    configs = spec["configs"]
    times = [[] for _ in configs]
    evals = [0] * len(configs)
    outputs = [None] * len(configs)
    for i, c in enumerate(configs):  # warm-up (first model load), evaluation count, outputs
        counter["items"] = 0
        outputs[i] = run(c)
        evals[i] = counter["items"]
    for _ in range(int(spec["repeats"])):
        for i, c in enumerate(configs):
            t0 = time.perf_counter()
            run(c)
            times[i].append(time.perf_counter() - t0)
    rows = []
    for i, c in enumerate(configs):
        rows.append({**c, "seconds": times[i], "median_s": float(np.median(times[i])),
                     "model_evaluations": evals[i] / batch, "evaluations_per_step": evals[i] / batch / steps})
    # the batched SURE probe (cfg 1) against the same probe in its own call (ComfyUI's cfg-1 optimisation off)
    def probe_log(m):
        _, guider = run_guided(m, 1, steps, 1.0, spec["sampler"], spec["scheduler"], positive, negative, latent, 1.0,
                               0.0, SHIPPED["sigma_start"], SHIPPED["sigma_end"], SHIPPED["max_shift"],
                               "sure_residual", measure=True)
        return [e for e in guider.shift_log if e.get("noise_fraction") is not None]

    separate = model.clone()
    separate.model_options["disable_cfg1_optimization"] = True
    log_b, log_s = probe_log(model), probe_log(separate)
    diffs = [abs(a - b) for ea, eb in zip(log_b, log_s, strict=True)
             for a, b in zip(ea["noise_fraction"], eb["noise_fraction"], strict=True)]
    batched_check = {"steps": len(log_b), "batched": sum(1 for e in log_b if e.get("batched_probe")),
                     "separate_batched": sum(1 for e in log_s if e.get("batched_probe")),
                     "max_abs_difference": max(diffs) if diffs else float("nan"), "compared": len(diffs),
                     "noise_fraction_range": [min(min(e["noise_fraction"]) for e in log_b),
                                              max(max(e["noise_fraction"]) for e in log_b)] if log_b else None,
                     "identifiable_readings": sum(1 for e in log_b for r in e["ratio"] if r is not None)}
    # worst case of the shipped band on this model's (SD1.5, eps: VE level = sigma) schedules
    ms = model.get_model_object("model_sampling")
    schedules = []
    for name in ("normal", "karras", "exponential", "sgm_uniform", "simple", "beta"):
        if name not in comfy.samplers.SCHEDULER_NAMES:
            continue
        for n in (10, 20, 30):
            sig = comfy.samplers.calculate_sigmas(ms, name, n).tolist()
            inb = sum(1 for i, v in enumerate(sig[:-1]) if i > 0 and SHIPPED["sigma_end"] <= v <= SHIPPED["sigma_start"])
            schedules.append({"scheduler": name, "steps": n, "in_band_steps": inb,
                              "worst_vs_cfg": (CFG_EVALS * n + 2 * inb) / (CFG_EVALS * n),
                              "worst_vs_one": (n + 2 * inb) / n})
    import comfyui_version

    return {"rows": rows, "identical_w0": bool(torch.equal(outputs[0], outputs[1])), "schedules": schedules,
            "batched_check": batched_check,
            "comfyui": getattr(comfyui_version, "__version__", "unknown"), "torch": torch.__version__}


def run_comfy(cfg: dict, timeout: float = 1800.0) -> dict:
    """Run :func:`comfy_worker` in the ComfyUI python; {"skipped": reason} when ComfyUI is not available."""
    try:
        cenv = discover()
    except ComfyUnavailable as e:
        return {"skipped": str(e)}
    try:
        ckpt, _ = ensure_checkpoint(cenv)
    except Exception as e:  # noqa: BLE001 - any failure here is a reason to skip this part, not the bench
        return {"skipped": f"could not build the tiny checkpoint: {e}"}
    spec = {**cfg["comfy"], "checkpoint": str(ckpt), "configs": comfy_configs(cfg["comfy"]["cfg"])}
    env = dict(cenv.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(cenv.comfy_path), env.get("PYTHONPATH", "")) if p)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([cenv.python, "-c", _WORKER, str(ROOT), json.dumps(spec)], cwd=str(cenv.comfy_path),
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"the ComfyUI run took longer than {timeout:.0f} s"}
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")), None)
    if proc.returncode != 0 or line is None:
        return {"error": f"ComfyUI worker failed (rc={proc.returncode}): {proc.stderr.strip()[-3000:]}"}
    out = json.loads(line[len("@@RESULT@@"):])
    out.update({"spec": {k: v for k, v in spec.items() if k != "configs"}, "seconds": time.perf_counter() - t0,
                "cores": os.cpu_count()})
    base = {None: out["rows"][0]}
    for r in out["rows"]:
        if r.get("baseline_of"):
            base[r["baseline_of"]] = r
    for r in out["rows"]:
        b = base.get(r.get("vs"), base[None])
        r["time_ratio"] = r["median_s"] / b["median_s"] if b["median_s"] > 0 else float("nan")
        r["evaluation_ratio"] = r["model_evaluations"] / b["model_evaluations"] if b["model_evaluations"] else float("nan")
    return out


# --------------------------------------------------------------------------------------------- markdown


def _f(v: float, fmt: str = ".3f") -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _chg(c: dict, fmt: str) -> str:
    mark = {1: " ▲", -1: " ▼", 0: ""}[c["sign"]]
    return f"{c['change']:+{fmt}} ± {_f(c['se'], fmt)}{mark}"


def markdown(result: dict) -> str:
    dg = result["digits"]
    shipped = result["shipped"]
    parts = [
        f"Generated by `antithetic-sampling guidance-bench{' --quick' if result['quick'] else ''}` "
        f"({result['platform']}, torch {result['torch']}, 1 thread, {result['seconds']:.0f} s). Shipped defaults: "
        f"w = {shipped['w']:g}, band σ {shipped['sigma_end']:g}–{shipped['sigma_start']:g}, max_level_shift "
        f"{shipped['max_shift']:g}, level_estimator `{shipped['estimator']}`.",
        "",
        f"**Embedded digits model** ({'x'.join(map(str, dg['shape']))}, d = {dg['dimension']}), Karras schedule, "
        f"N = {dg['n_images']} images per run, {dg['seeds']} seeds, paired (same initial and step noise with and "
        "without guidance).",
        "",
        f"*Noise shift* — batch-mean σ̂/σ per step ({shipped['estimator']}, {dg['curve_n']} images); in band: the "
        "mean of σ̂/σ − 1 over the in-band steps after the first (> 0: noisier than nominal); last steps: the largest "
        "σ̂/σ below the band. Floor: the same estimator on exact states (held-out real digits + σ·noise).",
        "",
        "| sampler, steps | in band: without / with guidance / floor | below band: max without / with (σ) | "
        "σ̂/σ per step without guidance | with guidance |",
        "|---|---|---|---|---|",
    ]
    for st in dg["settings"]:
        sh = st["shift"]
        labels = list(sh["curve"]["curves"])
        a, b = (sh["summary"][k] for k in labels)
        per = [" ".join(f"{r:.2f}" for r in sh["curve"]["curves"][k]["ratio"]) for k in labels]
        parts.append(
            f"| {st['sampler']} {st['steps']} | {a['in_band_dev']:+.3f} / {b['in_band_dev']:+.3f} / "
            f"{a.get('floor_in_band_dev', float('nan')):+.3f} | {_f(a['below_band_max_ratio'], '.2f')} / "
            f"{_f(b['below_band_max_ratio'], '.2f')} ({_f(a['below_band_max_sigma'], '.2g')}) | {per[0]} | {per[1]} |"
        )
    parts += ["", "*Level estimators on exact states* (held-out digits + σ·noise): mean σ̂/σ (per-image spread); "
              f"a residual-norm estimate has a per-image spread of about 1/√(2d) = {dg['estimator_noise']:.3f} here.",
              ""]
    sig = dg["estimators"][shipped["estimator"]]["sigma"]
    parts.append("| estimator | extra evaluations per in-band step | " + " | ".join(f"σ={s:g}" for s in sig) + " |")
    parts.append("|---|---|" + "---|" * len(sig))
    extra = {"sure_residual": "1", "calibrated_residual": "1", "naive_residual": "0"}
    for est, fl in dg["estimators"].items():
        cells = [f"{r:.3f} ({sd:.3f})" for r, sd in zip(fl["ratio"], fl["item_sd"], strict=True)]
        parts.append(f"| `{est}` | {extra[est]} (+1 where it corrects) | " + " | ".join(cells) + " |")
    ref = dg["reference"]
    parts += [
        "",
        "*Sample quality* — distance of the final samples to the training digits (lower is better): Fréchet "
        "distance in pixel space (FD), MMD² (Gaussian kernel, bandwidth = median distance of the training digits, "
        f"{ref['bandwidth']:.2f}) and the RMS outside the digits' principal subspace (rank {ref['subspace_rank']}: "
        "leftover noise). Changes are paired, guided − unguided, mean ± standard error over seeds; ▼/▲ = beyond "
        f"the noise floor (a one-sided paired t-test at α = {CHANGE_ALPHA:g} per metric, i.e. > "
        f"{critical_t(dg['seeds']):.2f} SE with {dg['seeds']} seeds, and > {100 * CHANGE_REL:g} % of the unguided "
        "value); the verdict combines FD and MMD², so a 'better' has a false-positive rate ≤ 5 %. These runs are "
        "descriptive: the defaults are chosen and verified on separate seeds by `guidance-h2h`. Real held-out digits (N = {ref['held_out_images']}): FD {ref['held_out']['fd']:.2f}, "
        f"MMD² {ref['held_out']['mmd2']:+.5f}, off-subspace RMS {ref['held_out']['off_rms']:.4f}; unguided samples "
        "at the same N in brackets (FD is biased upward at small N).",
        "",
        "| sampler, steps | unguided FD / MMD² / off RMS (FD at held-out N) | variant | ΔFD | ΔMMD² | Δoff RMS | "
        "extra eval./step | evaluations vs CFG | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for st in dg["settings"]:
        head = (f"{st['variants']['w=0']['fd']:.2f} / {st['variants']['w=0']['mmd2']:.5f} / "
                f"{st['variants']['w=0']['off_rms']:.4f} ({st['unguided_at_held_out_n']['fd']:.2f})")
        parts += _variant_rows(st, head, with_cost=True)
    if dg["controls"]:
        parts += ["", f"*Controls* at w = {MEASURE_W:g}, `{shipped['estimator']}` (corrected: share of in-band "
                  "images whose estimate exceeded σ, per step):", "",
                  "| sampler, steps | variant | ΔFD | ΔMMD² | Δoff RMS | corrected | extra eval./step | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for st in dg["controls"]:
            parts += _variant_rows(st, None, with_cost=False)
    parts += ["", *summary_lines(result)]
    parts += ["", *comfy_lines(result.get("comfyui"))]
    return "\n".join(parts).strip() + "\n"


def _variant_rows(st: dict, head: str | None, with_cost: bool) -> list[str]:
    rows, first = [], True
    for name, v in st["variants"].items():
        if "changes" not in v:
            continue
        c = v["changes"]
        label = f"{st['sampler']} {st['steps']}" if first else ""
        cells = [label] + ([head if first else ""] if head is not None else []) + [
            name.replace("|", "\\|"), _chg(c["fd"], ".3f"), _chg(c["mmd2"], ".5f"), _chg(c["off_rms"], ".4f")]
        if with_cost:
            cells += [f"{v['extra_per_step']:.2f}", f"{v['evals_vs_cfg']:.2f}×"]
        else:
            cells += [f"{v['corrected_share']:.2f}", f"{v['extra_per_step']:.2f}"]
        cells.append(v["verdict"])
        rows.append("| " + " | ".join(cells) + " |")
        first = False
    return rows


def recommend(dg: dict, shipped: dict) -> dict:
    """The estimator rule, evaluated on the estimator-accuracy measurement (exact states of held-out digits, not the
    quality runs this bench reports): the smallest worst in-band bias |mean s_hat/s - 1|; "good enough" = within half
    the per-image spread of a residual-norm estimate (1/sqrt(2d)/2).

    The scale w is *not* picked here: choosing it from the runs that are then reported would overstate its effect.
    ``antithetic-sampling guidance-h2h`` chooses it on one half of its seeds and reports on the other."""
    lo, hi = shipped["sigma_end"], shipped["sigma_start"]
    bias = {}
    for est, fl in dg["estimators"].items():
        vals = [abs(r - 1) for s, r in zip(fl["sigma"], fl["ratio"], strict=True) if lo <= s <= hi and math.isfinite(r)]
        bias[est] = max(vals) if vals else float("nan")
    tol = 0.5 * dg["estimator_noise"]
    finite = {k: v for k, v in bias.items() if math.isfinite(v)}
    est_pick = min(finite, key=finite.get) if finite else None
    return {"estimator_bias_in_band": bias, "good_enough_tolerance": tol,
            "good_enough": sorted(k for k, v in finite.items() if v <= tol), "estimator": est_pick}


def summary_lines(result: dict) -> list[str]:
    """Plain-language, generated: where the default helps / does not help, and the rules behind the defaults."""
    dg, shipped = result["digits"], result["shipped"]
    ch = dg["choice"]
    rec = dg.get("recommendation") or recommend(dg, shipped)
    default_name = f"{shipped['estimator']} w={shipped['w']:g}"
    lines = ["**Summary (generated from the numbers above).**", ""]
    d = ch.get(default_name)
    if d:
        groups = {k: [s for s, v in d["verdicts"].items() if v == k]
                  for k in ("better", "worse", "mixed", "no measurable change")}
        lines.append(
            f"- Default (`{shipped['estimator']}`, w = {shipped['w']:g}): better on "
            f"{', '.join(groups['better']) or 'no setting'}; **not better on "
            f"{', '.join(groups['worse'] + groups['mixed'] + groups['no measurable change']) or 'no setting'}** "
            f"(worse: {', '.join(groups['worse']) or 'none'}; mixed: {', '.join(groups['mixed']) or 'none'}). Mean "
            f"relative change over the settings: FD {100 * d['fd_rel_mean']:+.1f} %, MMD² "
            f"{100 * d['mmd2_rel_mean']:+.1f} %; model evaluations {d['evals_vs_cfg_mean']:.2f}× CFG.")
    by_est: dict[str, list] = {}
    for v in ch.values():
        by_est.setdefault(v["estimator"], []).append(v)
    for est, rows in by_est.items():
        rows.sort(key=lambda v: v["w"])
        cells = ", ".join(f"w={v['w']:g}: {v['better']} better / {v['worse']} worse / {v['mixed']} mixed, FD "
                          f"{100 * v['fd_rel_mean']:+.1f} %, MMD² {100 * v['mmd2_rel_mean']:+.1f} %" for v in rows)
        lines.append(f"- `{est}`: {cells}.")
    sh = []
    for st in dg["settings"]:
        labels = list(st["shift"]["summary"])
        a, b = (st["shift"]["summary"][k] for k in labels)
        sh.append((a, b, f"{st['sampler']} {st['steps']}"))
    within = sum(1 for a, _, _ in sh if abs(a["in_band_dev"]) <= max(2 * abs(a.get("floor_in_band_dev", 0.0)), 0.01))
    lower = sum(1 for a, b, _ in sh if b["in_band_dev"] < a["in_band_dev"])
    lines.append(
        f"- Noise shift in the band, unguided: within max(2 × floor, 0.01) of the exact-state reading on {within} of "
        f"{len(sh)} settings; with guidance the in-band states read *less* noisy than unguided on {lower} of {len(sh)}. "
        "Largest σ̂/σ in the last steps (below the band), unguided → guided: "
        + ", ".join(f"{k} {a['below_band_max_ratio']:.2f} → {b['below_band_max_ratio']:.2f}" for a, b, k in sh
                    if math.isfinite(a["below_band_max_ratio"])) + ".")
    bias = ", ".join(f"`{k}` {v:.3f}" for k, v in rec["estimator_bias_in_band"].items())
    lines.append(
        f"- Rules behind the defaults, on these numbers: estimator with the smallest worst in-band bias on exact "
        f"states ({bias}; good enough = ≤ {rec['good_enough_tolerance']:.3f}: "
        f"{', '.join(f'`{k}`' for k in rec['good_enough']) or 'none'}) → `{rec['estimator']}`"
        f"{' (= shipped)' if rec['estimator'] == shipped['estimator'] else ' (shipped: ' + shipped['estimator'] + ')'}; "
        f"the scale w = {shipped['w']:g} is chosen on separate tuning seeds and verified on held-out seeds by "
        "`antithetic-sampling guidance-h2h`, not from these runs.")
    return lines


def comfy_lines(cm: dict | None) -> list[str]:
    if not cm:
        return ["ComfyUI comparison: not run."]
    if "skipped" in cm or "error" in cm:
        return [f"ComfyUI comparison skipped: {cm.get('skipped') or cm.get('error')}"]
    sp = cm["spec"]
    lines = [
        f"**ComfyUI {cm['comfyui']}**, tiny random SD1.5 checkpoint (`nodes/local_comfy/tiny_checkpoint_builder.py`), `--cpu`, 1 thread "
        f"({cm['cores']} cores on the machine, shared: wall times are indicative), {sp['size']}×{sp['size']} px, "
        f"batch {sp['batch']}, {sp['steps']} steps `{sp['sampler']}`/`{sp['scheduler']}`, cfg {sp['cfg']:g}, "
        f"median of {sp['repeats']} interleaved runs in one process. Model evaluations are counted at the UNet "
        f"(per image). w = 0 output identical to core KSampler: {'yes' if cm['identical_w0'] else 'NO'}.",
        "",
        "| node | model evaluations | per step | vs baseline | wall s (median) | wall time vs baseline |",
        "|---|---|---|---|---|---|",
    ]
    for r in cm["rows"]:
        if r.get("baseline_of") or r is cm["rows"][0]:
            lines.append(f"| {r['label']} (baseline) | {r['model_evaluations']:.0f} | "
                         f"{r['evaluations_per_step']:.2f} | — | {r['median_s']:.2f} | — |")
            continue
        lines.append(f"| {r['label']} | {r['model_evaluations']:.0f} | {r['evaluations_per_step']:.2f} | "
                     f"{r['evaluation_ratio']:.2f}× | {r['median_s']:.2f} | {r['time_ratio']:.2f}× |")
    lines += ["", "cfg 1 rows are compared with core KSampler at cfg 1 (ComfyUI skips the uncond pass; the SURE probe "
              "then rides in the regular model call as extra batch items)."]
    bc = cm.get("batched_check")
    if bc:
        lo, hi = bc["noise_fraction_range"] or (float("nan"), float("nan"))
        lines[-1] += (f" Batched probe vs the same probe in its own call (cfg-1 optimisation off), w = 0: "
                      f"{bc['batched']}/{bc['steps']} steps batched vs {bc['separate_batched']}; the SURE noise "
                      f"fraction 1 − tr J/d (what the probe measures) differs by at most "
                      f"{bc['max_abs_difference']:.1e} over {bc['compared']} readings. On this random-weight "
                      f"checkpoint it lies in {lo:.2f}…{hi:.2f}, so the level is identifiable in "
                      f"{bc['identifiable_readings']} of {bc['compared']} readings (below "
                      f"{na.MIN_NOISE_FRACTION:g} the estimate falls back to the nominal level and no correction is "
                      "made). Random weights: these rows measure cost and plumbing, not image quality.")
    sch = cm.get("schedules")
    if sch:
        by: dict[str, list] = {}
        for r in sch:
            by.setdefault(r["scheduler"], []).append(r)
        lines += ["", "Worst case of the default band on SD1.5's sigmas (every in-band step after the first corrects: "
                  "+2 evaluations), model evaluations vs CFG at 10 / 20 / 30 steps: "
                  + "; ".join(f"{k} " + " / ".join(f"{r['worst_vs_cfg']:.2f}" for r in v) for k, v in by.items())
                  + "."]
    return lines


# --------------------------------------------------------------------------------------------- main


def run(cfg: dict, quick: bool, seed: int = 0, comfy: bool = True, progress: bool = True) -> dict:
    t0 = time.perf_counter()
    result = {"quick": quick, "torch": torch.__version__, "platform": f"{platform.system()} {platform.machine()}",
              "shipped": dict(SHIPPED), "config": {k: v for k, v in cfg.items()}}
    result["digits"] = run_digits(cfg, seed, progress)
    if comfy:
        if progress:
            print("guidance-bench: ComfyUI side-by-side run ...", file=sys.stderr, flush=True)
        result["comfyui"] = run_comfy(cfg)
    else:
        result["comfyui"] = {"skipped": "--no-comfy"}
    if "skipped" in result["comfyui"] or "error" in result["comfyui"]:
        print(f"guidance-bench: ComfyUI part skipped: {result['comfyui'].get('skipped') or result['comfyui'].get('error')}",
              file=sys.stderr)
    result["seconds"] = time.perf_counter() - t0
    return result



def main(argv: list[str] | None = None) -> int:
    ap = cli_args.parser("guidance-bench")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    cfg = dict(QUICK if args.quick else FULL)
    if args.n:
        cfg["n"] = args.n
    if args.seeds:
        if args.seeds < 2:
            raise SystemExit("--seeds must be >= 2 (the noise floor is the seed-to-seed spread)")
        cfg["seeds"] = args.seeds
    result = run(cfg, args.quick, args.seed, comfy=not args.no_comfy, progress=not args.no_progress)
    text = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "guidance.json").write_text(json.dumps(result, indent=1, default=common.json_default), encoding="utf-8")
    (args.out / "guidance.md").write_text(text, encoding="utf-8")
    print(text)
    if args.readme:
        from .provenance import replace_block

        if not replace_block(args.readme, README_BLOCK, text):
            print(f"warning: no <!-- BEGIN:{README_BLOCK} --> block in {args.readme}; README left unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
