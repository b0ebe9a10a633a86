"""``antithetic-sampling guidance-h2h``: Noise Awareness Guidance, the paper's method against training-free stand-ins.

Zhong et al., "Mitigating the Noise Shift for Denoising Generative Models via Noise Awareness Guidance" (arXiv
2510.12497, ICLR 2026) guide along the noise-level condition with a noise-*unconditional* branch that a model only
has after training with noise-condition dropout, or with a trained noise-level regressor g(sigma | x). The embedded
digits model ships both (``digits_denoiser_level_dropout`` and ``digits_level_regressor``, ``antithetic-sampling
train --model nag``), so here the paper's method is measured next to what a training-free node can do on the same
network (its level-conditional branch is "the model" for every method):

* ``none``: the plain sampler (1 evaluation per step);
* ``paper NAG, classifier-free``: D~ = D_c + w (D_c - D_u), D_u with the "no level" token (2 per step);
* ``paper NAG, classifier``: D~ = D_c + w s^2 grad_x log g(s | x) (1 per step + one regressor forward/backward);
* ``training-free (equation 1)``: the shipped approximation s(x) ~= s(x | s_hat), s_hat by the SURE probe, at the
  shipped band / clamp and a w sweep (1 + 1 probe + 1 where it corrects);
* ``time shift``: the model evaluated at the probe's s_hat instead of s (after Li et al. 2024, "Alleviating exposure
  bias in diffusion models through sampling with shifted time steps", ICLR 2024), same probe, band and clamp;
* ``perturbed level``: equation 1 with the fixed stand-in s' = s (1 + delta) for the unconditional branch (guidance
  by a weaker self, as autoguidance / Self-Guidance do; 2 per step in the band);
* ``Epsilon Scaling``: ComfyUI core's node at its default factor 1.005 (1 per step): what users already have.

Metrics per seed (a batch of ``n`` images from one initial-noise seed, the same noise for every method): Frechet
distance (FD) and unbiased MMD^2 to the held-out digits (never seen in training), and digit-likeness = the mean
top-class probability of a logistic-regression digit classifier fitted on the training digits.

Statistics: seeds are split in two halves. Each method's parameter (w, or delta) is chosen on the *tuning* half
(lowest mean relative change of FD and MMD^2 over all settings); every reported number and verdict comes from the
*held-out* half. A verdict compares a method with ``none`` per setting by an exact paired sign-flip permutation test
over the held-out seeds, one-sided at alpha = 0.025 per metric and direction: "better" = FD or MMD^2 lower at
p <= 0.025 and neither higher at p <= 0.025, so under no effect a "better" verdict has a false-positive rate
<= 2 x 0.025 = 5 % (per cell); "worse" symmetrically. Intervals are 95 % t-intervals of the paired seed means.

The node default follows the rule of the issue: the training-free candidate that is "better" on at least one
setting of the held-out half and "worse" on none; among several, the most settings better, then the largest mean
FD gain; if none qualifies, the default is off (w = 0). The share of the paper-NAG gain that the default recovers
is its mean held-out FD change divided by the best paper form's.

Noise shift the paper's way: on the unguided runs, the regressor's sigma_hat / sigma per step next to the
training-free estimators (SURE, calibrated and naive residual), and each estimator's reading on exact states
(held-out digits + sigma noise) at the same levels, which is what "no shift" reads as.

Writes ``guidance_h2h.json`` and ``guidance_h2h.md`` to ``--out``; ``--readme FILE`` rewrites the block between
``<!-- BEGIN:guidance-h2h -->`` and ``<!-- END:guidance-h2h -->``, ``--summary FILE`` the two result sentences between
``<!-- BEGIN:guidance-h2h-summary -->`` and its END marker. Needs scikit-learn.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import pathlib
import platform
import sys
import time

import numpy as np
import torch

from .. import cli_args
from ..methods import noise_awareness as na
from . import common, harness
from . import digits as dg
from .digit_reference import DigitReference

BLOCK = "guidance-h2h"
SUMMARY_BLOCK = "guidance-h2h-summary"
ALPHA = 0.025  # one-sided, per metric and direction: P(false "better") <= 2 * ALPHA = 5 %
SHIPPED_BAND = (na.DEFAULT_SIGMA_START, na.DEFAULT_SIGMA_END)

FULL = {
    "n": 256, "seeds": 16,
    "settings": [(s, k) for s in ("euler", "euler_ancestral", "dpmpp_2m") for k in (6, 10, 20)],
    "grid": {
        "cf": (0.1, 0.25, 0.5, 1.0),
        "cls": (0.1, 0.25, 0.5, 1.0),
        "tf": (0.5, 1.0, 2.0, 4.0),
        "ts": (0.1, 0.3, 1.0),
        "pl": (0.25, 0.5, 1.0),
    },
    "shift_n": 256,
    "floor_images": 180,
}
QUICK = {
    "n": 24, "seeds": 4,
    "settings": [("euler", 4), ("euler_ancestral", 4)],
    "grid": {"cf": (1.0,), "cls": (1.0,), "tf": (1.0,), "ts": (0.3,), "pl": (1.0,)},
    "shift_n": 16,
    "floor_images": 16,
}
FORMER_DEFAULT_W = 1.0  # the node default before this head-to-head (kept in every run for comparison)
PL_DELTA = 0.2  # perturbed level s' = s (1 + delta)
FAMILIES = {
    "cf": "paper NAG, classifier-free",
    "cls": "paper NAG, classifier",
    "tf": "training-free (equation 1)",
    "ts": "time shift",
    "pl": "perturbed level",
    "eps": "Epsilon Scaling (core default)",
}
TRAINING_FREE = ("tf", "ts", "pl")
PAPER = ("cf", "cls")


# --------------------------------------------------------------------------------------------- guides


class CountingGuide:
    """Harness guide for one method; counts model and regressor evaluations (batch units) per run."""

    def __init__(self, family: str, param: float, model: dg.DigitsDenoiser, regressor=None, seed: int = 0) -> None:
        self.family, self.param, self.model, self.regressor, self.seed = family, float(param), model, regressor, seed
        self.model_evals = 0
        self.regressor_evals = 0

    def _den(self, x, s):
        self.model_evals += 1
        return self.model.denoise(x, s)

    def __call__(self, denoiser, x, sigma, step_index):
        f, p = self.family, self.param
        s_v = sigma.reshape(-1).to(torch.float64)
        if f == "cf":
            d_c = self._den(x, sigma)
            self.model_evals += 1
            d_u = self.model.denoise_unconditional(x, sigma)
            return na.classifier_free_guidance(d_c, d_c, d_u, p)
        if f == "cls":
            d_c = self._den(x, sigma)
            self.regressor_evals += 1
            return na.classifier_guidance(d_c, self.regressor.grad_log_prob(x, sigma), sigma, p)
        if f == "eps":
            return na.epsilon_scaling(x, self._den(x, sigma), p)
        active = step_index > 0 and bool(torch.all(na.in_band(s_v, *SHIPPED_BAND)))
        if f == "pl":
            d_c = self._den(x, sigma)
            if not active:
                return d_c
            s_pert = sigma * (1.0 + PL_DELTA)
            d_p = self._den(x, s_pert)
            return na.awareness_correction(d_c, d_c, d_p, x, sigma.to(x.dtype), s_pert.to(x.dtype), p)
        # tf / ts: the shipped guide; ts replaces D_c by the model at the clamped s_hat
        d_c = self._den(x, sigma)
        if not active:
            return d_c
        noise = na.reference_noise(x.shape, self.seed, step_index).to(x)
        out, info = na.guidance_step(x, s_v, d_c, d_c, self._den, self.param if f == "tf" else 0.0,
                                     na.DEFAULT_MAX_SHIFT if f == "tf" else self.param, na.DEFAULT_ESTIMATOR,
                                     noise, apply=True)
        if f == "tf":
            return out
        s_used = info["s_used"].to(x.dtype)
        if bool(torch.all(s_used == sigma.to(x.dtype))):
            return d_c
        return self._den(x, s_used)


def method_list(cfg: dict) -> list[tuple[str, float]]:
    out = [("none", 0.0)]
    for fam, grid in cfg["grid"].items():
        out += [(fam, float(p)) for p in grid]
    for w in {na.DEFAULT_SCALE, FORMER_DEFAULT_W} - {0.0} - set(cfg["grid"]["tf"]):
        out.append(("tf", float(w)))
    out.append(("eps", 1.005))
    return out


def method_name(fam: str, p: float) -> str:
    if fam == "none":
        return "none"
    if fam == "eps":
        return f"eps {p:g}"
    if fam == "ts":
        return f"ts max_shift={p:g}"
    return f"{fam} w={p:g}"


# --------------------------------------------------------------------------------------------- metrics


class DigitLikeness:
    """Mean top-class probability of a multinomial logistic regression fitted on the training digits."""

    def __init__(self, train: torch.Tensor, seed: int = 0) -> None:
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression

        from .train import DATA_SEED, VAL_FRACTION

        labels = torch.tensor(load_digits().target)
        perm = torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(DATA_SEED))
        n_val = int(round(labels.shape[0] * VAL_FRACTION))
        y = labels[perm[n_val:]].numpy()
        self.clf = LogisticRegression(max_iter=2000, C=0.5, random_state=seed)
        self.clf.fit(train.reshape(train.shape[0], -1).numpy(), y)

    def __call__(self, x: torch.Tensor) -> float:
        p = self.clf.predict_proba(x.clamp(-1, 1).reshape(x.shape[0], -1).double().numpy())
        return float(p.max(1).mean())


def sign_flip_p(d: np.ndarray) -> tuple[float, float]:
    """Exact one-sided paired sign-flip p-values (P(mean <= observed), P(mean >= observed)) under H0: no effect
    (differences symmetric about 0). Enumerates all 2^k patterns (k <= 16), else 20000 seeded draws."""
    d = np.asarray(d, dtype=np.float64)
    k = d.size
    if k <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=k)))
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(20000, k))
    means = signs @ d / k
    obs = d.mean()
    tol = 1e-12 * max(1.0, abs(obs))
    return float(np.mean(means <= obs + tol)), float(np.mean(means >= obs - tol))


def t_interval(d: np.ndarray) -> tuple[float, float, float]:
    """(mean, lo, hi): 95 % t-interval of a mean of paired differences."""
    from scipy.stats import t as student_t

    d = np.asarray(d, dtype=np.float64)
    m = float(d.mean())
    if d.size < 2:
        return m, float("nan"), float("nan")
    half = float(student_t.ppf(0.975, d.size - 1)) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return m, m - half, m + half


def compare(base: dict, other: dict, idx: list[int]) -> dict:
    """Paired comparison of ``other`` with ``base`` on the seeds ``idx``: per metric mean change, 95 % interval,
    relative change, sign-flip p-values; and the verdict (see the module docstring)."""
    out = {}
    for key in ("fd", "mmd2", "likeness"):
        b = np.asarray(base[key])[idx]
        d = np.asarray(other[key])[idx] - b
        m, lo, hi = t_interval(d)
        p_lower, p_higher = sign_flip_p(d)
        out[key] = {"change": m, "lo": lo, "hi": hi, "relative": m / abs(float(b.mean())) if b.mean() else float("nan"),
                    "p_lower": p_lower, "p_higher": p_higher}
    lower = any(out[k]["p_lower"] <= ALPHA for k in ("fd", "mmd2"))
    higher = any(out[k]["p_higher"] <= ALPHA for k in ("fd", "mmd2"))
    out["verdict"] = ("mixed" if lower and higher else "better" if lower else "worse" if higher
                      else "no significant change")
    return out


# --------------------------------------------------------------------------------------------- runs


def initial_noise(shape, n: int, seed: int) -> torch.Tensor:
    return torch.randn((int(n), *shape), generator=torch.Generator().manual_seed(int(seed)))


def run_quality(model, regressor, ref: DigitReference, like: DigitLikeness, cfg: dict, seed: int, bar) -> dict:
    methods = method_list(cfg)
    res = {}
    for sampler, steps in cfg["settings"]:
        sigmas = harness.get_sigmas(model, steps, "karras")
        per = {method_name(f, p): {"family": f, "param": p, "fd": [], "mmd2": [], "likeness": [], "model_evals": [],
                                   "regressor_evals": []} for f, p in methods}
        for k in range(cfg["seeds"]):
            s = seed + 1000 * k
            noise = initial_noise(model.shape, cfg["n"], s)
            for f, p in methods:
                guide = None if f == "none" else CountingGuide(f, p, model, regressor, seed=s)
                x = harness.sample(model.denoise, noise, sigmas, sampler, guide=guide, seed=s + 7919)
                m = ref.measure(x)
                e = per[method_name(f, p)]
                e["fd"].append(m["fd"])
                e["mmd2"].append(m["mmd2"])
                e["likeness"].append(like(x))
                e["model_evals"].append((guide.model_evals if guide else steps) / steps)
                e["regressor_evals"].append((guide.regressor_evals if guide else 0) / steps)
                if bar is not None:
                    bar.update()
        res[f"{sampler} {steps}"] = {"sampler": sampler, "steps": steps, "methods": per}
    return res


def select_and_report(quality: dict, cfg: dict) -> dict:
    """Pick each family's parameter on the tuning half, then compare every method with ``none`` on the held-out
    half; apply the default rule."""
    seeds = cfg["seeds"]
    tune, held = list(range(seeds // 2)), list(range(seeds // 2, seeds))
    settings = list(quality)
    families: dict[str, list[str]] = {}
    for name, e in next(iter(quality.values()))["methods"].items():
        families.setdefault(e["family"], []).append(name)

    def score(name: str, idx: list[int]) -> float:
        vals = []
        for st in settings:
            ms = quality[st]["methods"]
            c = compare(ms["none"], ms[name], idx)
            vals.append(0.5 * (c["fd"]["relative"] + c["mmd2"]["relative"]))
        return float(np.mean(vals))

    picks, tuning_scores = {}, {}
    for fam, names in families.items():
        if fam == "none":
            continue
        tuning_scores[fam] = {n: score(n, tune) for n in names}
        picks[fam] = min(names, key=tuning_scores[fam].get)
    shipped_name = method_name("tf", na.DEFAULT_SCALE) if na.DEFAULT_SCALE != 0 else None
    report = {}
    for st in settings:
        ms = quality[st]["methods"]
        report[st] = {}
        for name, e in ms.items():
            entry = {"family": e["family"], "param": e["param"],
                     "fd": float(np.mean(np.asarray(e["fd"])[held])), "mmd2": float(np.mean(np.asarray(e["mmd2"])[held])),
                     "likeness": float(np.mean(np.asarray(e["likeness"])[held])),
                     "model_evals_per_step": float(np.mean(e["model_evals"])),
                     "regressor_evals_per_step": float(np.mean(e["regressor_evals"]))}
            if name != "none":
                entry["vs_none"] = compare(ms["none"], e, held)
            report[st][name] = entry
    # the default rule, over the training-free families at their tuned parameters
    cands = []
    for fam in TRAINING_FREE:
        if fam not in picks:
            continue
        name = picks[fam]
        verdicts = [report[st][name]["vs_none"]["verdict"] for st in settings]
        better, worse = verdicts.count("better"), sum(v in ("worse", "mixed") for v in verdicts)
        fd_gain = float(np.mean([report[st][name]["vs_none"]["fd"]["relative"] for st in settings]))
        cands.append({"family": fam, "name": name, "better": better, "worse": worse, "fd_rel_mean": fd_gain,
                      "qualifies": better >= 1 and worse == 0})
    winners = sorted((c for c in cands if c["qualifies"]), key=lambda c: (-c["better"], c["fd_rel_mean"]))
    rule = {"candidates": cands, "winner": winners[0] if winners else None}
    # the better of the two paper forms, also decided on the tuning half
    paper_best = min((picks[f] for f in PAPER if f in picks), key=lambda n: min(tuning_scores[f][n] for f in PAPER
                                                                                if n in tuning_scores.get(f, {})))

    def share(name: str | None, paper: str) -> float:
        """Share of the paper form's FD gain that ``name`` recovers, over the settings where the paper form is
        "better" on the held-out half: sum of name's FD changes / sum of the paper form's there."""
        sts = [st for st in settings if report[st][paper]["vs_none"]["verdict"] == "better"]
        if not sts:
            return float("nan")
        if name is None:
            return 0.0
        den = sum(report[st][paper]["vs_none"]["fd"]["change"] for st in sts)
        num = sum(report[st][name]["vs_none"]["fd"]["change"] for st in sts)
        return float(num / den) if den < 0 else float("nan")

    former = method_name("tf", FORMER_DEFAULT_W)
    former = former if former in report[settings[0]] else None
    shares = {"paper_best": paper_best, "shipped": shipped_name, "former_default": former, "by_paper_form": {}}
    for f in PAPER:
        if f not in picks:
            continue
        paper = picks[f]
        shares["by_paper_form"][paper] = {
            "settings": [st for st in settings if report[st][paper]["vs_none"]["verdict"] == "better"],
            "shipped": share(shipped_name, paper),
            "former_default": share(former, paper) if former else float("nan"),
            "candidates": {picks[g]: share(picks[g], paper) for g in TRAINING_FREE if g in picks},
        }
    return {"tuning_seeds": tune, "held_out_seeds": held, "picks": picks, "tuning_scores": tuning_scores,
            "report": report, "rule": rule, "gain_share": shares}


@torch.no_grad()
def run_shift(model, regressor, held_out: torch.Tensor, cfg: dict, seed: int, bar) -> dict:
    """sigma_hat / sigma per step on unguided runs: the regressor (the paper's way) and the training-free
    estimators, plus each one's reading on exact states at the same levels."""
    out = {}
    n = cfg["shift_n"]
    clean = held_out[: cfg["floor_images"]]
    for sampler, steps in cfg["settings"]:
        sigmas = harness.get_sigmas(model, steps, "karras")
        rows = {"sigma": [float(s) for s in sigmas[:-1]], "trajectory": {}, "exact": {}}
        traj = {k: [] for k in ("regressor", *na.LEVEL_ESTIMATORS)}

        def cb(i, x, s, den, traj=traj):
            sv = s.to(torch.float64)
            traj["regressor"].append(float((regressor.predict_level(x).double() / sv).mean()))
            ref = na.reference_noise(x.shape, seed, i, salt=3).to(x)
            for est in na.LEVEL_ESTIMATORS:
                _, info = na.guidance_step(x, sv, den, den, model.denoise, 0.0, 1e9, est, ref, apply=False)
                r = (info["s_hat"].double() / sv).numpy()
                r = r[np.isfinite(r)]
                traj[est].append(float(r.mean()) if r.size else float("nan"))

        harness.sample(model.denoise, initial_noise(model.shape, n, seed + 77), sigmas, sampler, callback=cb,
                       seed=seed + 7919)
        rows["trajectory"] = traj
        g = torch.Generator().manual_seed(seed + 4242)
        exact = {k: [] for k in traj}
        for i, s in enumerate(rows["sigma"]):
            x = clean + s * torch.randn(clean.shape, generator=g)
            sv = torch.full((clean.shape[0],), s, dtype=torch.float64)
            exact["regressor"].append(float((regressor.predict_level(x).double() / sv).mean()))
            d = model.denoise(x, sv.float())
            ref = na.reference_noise(x.shape, seed, i, salt=17)
            for est in na.LEVEL_ESTIMATORS:
                _, info = na.guidance_step(x, sv, d, d, model.denoise, 0.0, 1e9, est, ref, apply=False)
                r = (info["s_hat"].double() / sv).numpy()
                r = r[np.isfinite(r)]
                exact[est].append(float(r.mean()) if r.size else float("nan"))
        rows["exact"] = exact
        out[f"{sampler} {steps}"] = rows
        if bar is not None:
            bar.update()
    return out


def shipped_defaults() -> dict:
    return {"w": na.DEFAULT_SCALE, "sigma_start": na.DEFAULT_SIGMA_START, "sigma_end": na.DEFAULT_SIGMA_END,
            "max_shift": na.DEFAULT_MAX_SHIFT, "estimator": na.DEFAULT_ESTIMATOR}


def run(cfg: dict, seed: int = 0, progress: bool = True, weights_dir: pathlib.Path | None = None) -> dict:
    from .train import load_digit_images, split

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = dg.load_digits_denoiser(weights_dir, stem=dg.NAG_STEM)
    regressor = dg.load_level_regressor(weights_dir)
    train, held_out = split(load_digit_images())
    ref = DigitReference(held_out)
    like = DigitLikeness(train)
    methods = method_list(cfg)
    total = len(cfg["settings"]) * (cfg["seeds"] * len(methods) + 1)
    bar = common.progress_bar(total, "guidance-h2h", unit="run", enabled=progress)
    result = {
        "config": cfg, "seed": seed, "torch": torch.__version__, "platform": f"{platform.system()} {platform.machine()}",
        "model": {"weights_sha256": model.config["weights_sha256"], "dropout": model.config["training"]["dropout"],
                  "validation": model.config["validation"]},
        "regressor": {"weights_sha256": regressor.config["weights_sha256"], "validation": regressor.config["validation"]},
        "shipped": shipped_defaults(),
        "reference": {"held_out_images": int(held_out.shape[0]), "bandwidth": ref.bandwidth,
                      "training_digits_likeness": like(train), "held_out_likeness": like(held_out)},
        "alpha_per_metric": ALPHA, "pl_delta": PL_DELTA,
    }
    result["shift"] = run_shift(model, regressor, held_out, cfg, seed, bar)
    quality = run_quality(model, regressor, ref, like, cfg, seed, bar)
    result["quality_per_seed"] = quality
    result["selection"] = select_and_report(quality, cfg)
    if bar is not None:
        bar.close()
    result["seconds"] = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------------------------- report


def _ci(c: dict, fmt: str, scale: float = 1.0) -> str:
    mark = "▼" if c["p_lower"] <= ALPHA else "▲" if c["p_higher"] <= ALPHA else ""
    return (f"{scale * c['change']:+{fmt}} [{scale * c['lo']:+{fmt}}, {scale * c['hi']:+{fmt}}]{mark}")


def _form_sentence(rep: dict, name: str, label: str) -> str:
    settings = list(rep)
    rel = [100 * rep[st][name]["vs_none"]["fd"]["relative"] for st in settings]
    v = [rep[st][name]["vs_none"]["verdict"] for st in settings]
    return (f"by {min(rel):+.1f} % to {max(rel):+.1f} % in its {label} form (`{name}`; better on "
            f"{v.count('better')} of {len(settings)} sampler/step settings, worse or mixed on "
            f"{sum(x in ('worse', 'mixed') for x in v)})")


def summary_text(result: dict) -> str:
    """The two generated sentences that lead the guidance docs: the paper's gain and what the default recovers."""
    sel = result["selection"]
    rep, picks = sel["report"], sel["picks"]
    shipped = result["shipped"]
    gs = sel["gain_share"]
    win = sel["rule"]["winner"]
    forms = [_form_sentence(rep, picks[f], {"cf": "classifier-free", "cls": "classifier"}[f]) for f in PAPER
             if f in picks]
    first = ("On the embedded digits model, fine-tuned with the paper's noise-condition dropout, the paper's Noise "
             "Awareness Guidance (strength chosen on tuning seeds) changes the Fréchet distance to held-out digits, "
             "on held-out seeds, " + " and ".join(forms) + ".")

    def shares(key: str) -> str:
        parts = [f"{100 * v[key]:.0f} % of the {'classifier-free' if n.startswith('cf') else 'classifier'} "
                 f"form's FD gain" for n, v in gs["by_paper_form"].items() if math.isfinite(v[key])]
        return " and ".join(parts) + " on the settings where that form helps" if parts else "nothing measurable"

    if shipped["w"] == 0:
        second = ("No training-free stand-in (this approximation at any w, time shift, perturbed level) was better "
                  "somewhere without being worse elsewhere"
                  + (f" (`{win['name']}` qualified, but it is not what the node computes)" if win else "")
                  + ", so NAG Guided KSampler ships **off** (`awareness_scale` 0: identical to core KSampler, no extra "
                  "cost) and recovers none of that gain by default"
                  + (f"; the former default w = {FORMER_DEFAULT_W:g} recovered " + shares("former_default")
                     if gs.get("former_default") else "") + ".")
    else:
        second = (f"The shipped training-free default (`{shipped['estimator']}`, w = {shipped['w']:g}) recovers "
                  + shares("shipped")
                  + (f"; by the held-out rule the best training-free candidate is `{win['name']}`." if win else
                     "; no training-free candidate was better somewhere without being worse elsewhere."))
    return f"**Result.** {first} {second}"


def markdown(result: dict) -> str:
    sel = result["selection"]
    rep, picks = sel["report"], sel["picks"]
    cfg = result["config"]
    settings = list(rep)
    shipped = result["shipped"]
    rule = sel["rule"]
    gs = sel["gain_share"]
    lines = [summary_text(result), ""]
    lines += [
        f"Model: the digits denoiser fine-tuned with noise-condition dropout ({100 * result['model']['dropout']:.0f} % "
        f"'no level' token; validation loss {result['model']['validation']['loss']:.4f} with the level, "
        f"{result['model']['validation']['loss_unconditional']:.4f} without), its conditional branch is the model of "
        f"every method; noise-level regressor g(σ|x): validation mean |ln σ error| "
        f"{result['regressor']['validation']['mean_abs_log_error']:.3f}. {cfg['n']} images per seed, "
        f"{cfg['seeds']} seeds: parameters chosen on seeds {sel['tuning_seeds'][0]}–{sel['tuning_seeds'][-1]}, "
        f"everything below on held-out seeds {sel['held_out_seeds'][0]}–{sel['held_out_seeds'][-1]}. Changes vs "
        f"`none`: mean [95 % t-interval] over held-out seeds; ▼/▲ = lower/higher by an exact paired sign-flip test at "
        f"one-sided α = {ALPHA:g} per metric (a 'better' verdict has a false-positive rate ≤ 5 %). FD and MMD² to the "
        f"{result['reference']['held_out_images']} held-out digits (lower is better); digit-likeness = mean top-class "
        f"probability of a logistic-regression classifier fitted on the training digits (training digits "
        f"{result['reference']['training_digits_likeness']:.3f}, held-out {result['reference']['held_out_likeness']:.3f}). "
        "Cost = model evaluations per step (+ regressor forward/backward passes).",
        "",
        "Tuned on the tuning half: " + ", ".join(f"{FAMILIES[f]} → `{n}`" for f, n in picks.items()) + ".",
        "",
        "| setting | method | FD | ΔFD | MMD² ×10³ | ΔMMD² ×10³ | digit-likeness Δ | cost/step | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    shown = ["none", *picks.values()]
    sn = method_name("tf", shipped["w"]) if shipped["w"] != 0 else None
    fn = gs.get("former_default")
    for extra in (sn, fn):
        if extra and extra not in shown and extra in rep[settings[0]]:
            shown.append(extra)
    for st in settings:
        for i, name in enumerate(shown):
            e = rep[st][name]
            cost = f"{e['model_evals_per_step']:.2f}" + (f" + {e['regressor_evals_per_step']:.2f} g"
                                                         if e["regressor_evals_per_step"] else "")
            label = name + (" (shipped)" if name == sn else " (former default)" if name == fn else "")
            if name == "none":
                lines.append(f"| {st if i == 0 else ''} | {label} | {e['fd']:.2f} | — | {1e3 * e['mmd2']:.3f} | — | "
                             f"({e['likeness']:.3f}) | {cost} | — |")
                continue
            c = e["vs_none"]
            lines.append(f"| {st if i == 0 else ''} | {label} | {e['fd']:.2f} | {_ci(c['fd'], '.2f')} | "
                         f"{1e3 * e['mmd2']:.3f} | {_ci(c['mmd2'], '.3f', 1e3)} | {_ci(c['likeness'], '.3f')} | "
                         f"{cost} | {c['verdict']} |")
    lines += ["", "*Default rule* (training-free candidates at their tuned parameter; better / worse-or-mixed "
              "settings of the held-out half, mean relative FD change): "
              + "; ".join(f"`{c['name']}` {c['better']} / {c['worse']}, FD {100 * c['fd_rel_mean']:+.1f} %"
                          + (" — qualifies" if c["qualifies"] else "") for c in rule["candidates"]) + "."]
    share_parts = []
    for paper, v in gs["by_paper_form"].items():
        cells = ", ".join(f"`{n}` {100 * x:.0f} %" for n, x in v["candidates"].items() if math.isfinite(x))
        share_parts.append(f"`{paper}` helps on {', '.join(v['settings']) or 'no setting'}"
                           + (f": the shipped default recovers {100 * v['shipped']:.0f} %, the former default "
                              f"(w = {FORMER_DEFAULT_W:g}) {100 * v['former_default']:.0f} %, the tuned candidates "
                              f"{cells}" if v["settings"] else ""))
    lines += ["", "*Share of the paper-NAG FD gain* (sum of the FD changes over the held-out settings where the paper "
              "form is better, divided by the paper form's there): " + "; ".join(share_parts) + "."]
    # noise shift
    sh = result["shift"]
    lines += ["", "*Noise shift the paper's way* — batch-mean σ̂/σ per step on unguided runs, the trained regressor "
              "next to the training-free estimators; in brackets the same estimator on exact states (held-out digits "
              "+ σ·noise), i.e. what 'no shift' reads as. Steps listed from σ_max down.", "",
              "| setting | estimator | σ̂/σ per step (exact states) |", "|---|---|---|"]
    for st, rows in sh.items():
        for j, est in enumerate(("regressor", *na.LEVEL_ESTIMATORS)):
            cells = " ".join(f"{a:.3f}({b:.3f})" for a, b in zip(rows["trajectory"][est], rows["exact"][est],
                                                                 strict=True))
            lines.append(f"| {st if j == 0 else ''} | {est} | {cells} |")
    lines += ["", f"Generated by `antithetic-sampling guidance-h2h` in {result['seconds'] / 60:.1f} min "
              f"(torch {result['torch']}, 1 thread)."]
    return "\n".join(lines) + "\n"



def main(argv: list[str] | None = None) -> int:
    ap = cli_args.parser("guidance-h2h")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.from_json:
        result = json.loads(args.from_json.read_text(encoding="utf-8"))
        result["shipped"] = shipped_defaults()
        result["selection"] = select_and_report(result["quality_per_seed"], result["config"])
        return publish(result, args.out, args.readme, args.summary)
    cfg = dict(QUICK if args.quick else FULL)
    if args.n:
        cfg["n"] = args.n
    if args.seeds:
        if args.seeds < 4 or args.seeds % 2:
            raise SystemExit("--seeds must be an even number >= 4 (two halves)")
        cfg["seeds"] = args.seeds
    result = run(cfg, args.seed, progress=not args.no_progress, weights_dir=args.weights)
    return publish(result, args.out, args.readme, args.summary)


def publish(result: dict, out: pathlib.Path, readmes: list[pathlib.Path],
            summaries: list[pathlib.Path] = ()) -> int:
    text = markdown(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "guidance_h2h.json").write_text(json.dumps(result, indent=1, default=common.json_default), encoding="utf-8")
    (out / "guidance_h2h.md").write_text(text, encoding="utf-8")
    print(text)
    from .provenance import replace_block

    for path in readmes:
        if not replace_block(path, BLOCK, text):
            print(f"warning: no <!-- BEGIN:{BLOCK} --> block in {path}; left unchanged", file=sys.stderr)
    for path in summaries:
        if not replace_block(path, SUMMARY_BLOCK, summary_text(result) + "\n"):
            print(f"warning: no <!-- BEGIN:{SUMMARY_BLOCK} --> block in {path}; left unchanged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
