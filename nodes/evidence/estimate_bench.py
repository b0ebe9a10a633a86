"""``antithetic-sampling estimate-bench``: images needed to estimate a mean to a target half-width, per noise design.

The procedure of ``antithetic-queue estimate`` (``methods.sequential_estimation``: pilot, a Stein second stage
sized from the pilot alone, measured top-ups only where the interval there is still too wide), run in-process on the embedded digits model (no server) for
iid, antithetic pairs, K = 4 groups and Sobol RQMC (8 points per replicate), each with and without the cross-fitted
noise control variate (``methods.noise_control_variates``), at targets ±0.005, ±0.002, ±0.001 on mean brightness
and ±0.002 on energy (mean square). Every prompt adds 8 images (8 iid images, 4 pairs, 2 groups or 1 replicate).

How 2 × ``reps`` repetitions stay affordable on a small CPU: one pool of ``pool`` images per design is sampled once
(``estimate_pool``, cached under ``--out``) and every repetition draws whole units from it with replacement. That
is exact iid sampling of units from the pool's empirical law, whose mean (the pool mean) is the truth the coverage
is measured against. Images used, final half-width and coverage are recorded per repetition.

Defaults are chosen on one half and reported on the other: repetitions 0..reps-1 (tuning half) decide where the
control variate is on by default (fewer median images than the design alone at every brightness target, coverage
in 0.93-0.97); the table reports repetitions reps..2 reps-1 only. Coverage has a binomial error of about ±0.015
(1 SE) at 200 repetitions; the 95 % Wilson interval is shown.

Writes ``estimate_bench.json`` / ``.md`` to ``--out``; ``--readme`` rewrites the ``estimate-results`` block.
"""

from __future__ import annotations

import math
import pathlib
import platform
import time

import numpy as np
from scipy import stats

from .. import cli_args
from ..methods import noise_control_variates as ncv
from ..methods.control_variate_switch import auto_control_variate
from ..methods.sequential_estimation import SequentialInterval, StoppingRule, iid_images_for
from .estimate_pool import POOL_DESIGNS, load_or_build

LABELS = {"iid": "iid (RandomNoise)", "antithetic": "antithetic pairs", "k4": "K-groups K=4",
          "rqmc": "Sobol RQMC (n=8)"}
TARGETS = (("brightness", 0.005), ("brightness", 0.002), ("brightness", 0.001), ("energy", 0.002))
PROMPT_IMAGES = 8
CONFIDENCE = 0.95
# the control-variate interval narrows as its surrogate learns: grow stages at most 1.3x (1.3 against 1.5, 2.0 and no
# cap, chosen on separate exploratory repetitions at ±0.001: fewer median images for every design, coverage alike)
CV_MAX_GROWTH = 1.3
# training sizes (images) of the surrogate-ceiling measurement: how much of the unit-mean variance a surrogate
# learned from that many images explains on held-out units of the same design
CEILING_IMAGES = (512, 4096, 32768)
CEILING_TEST_UNITS = 8192
# rule settings tried on the tuning half (pilot units, aim), all with the two-stage rule (the pilot is never the
# final sample), per design: the cheapest with coverage >= 0.93 at every target of that design wins (none: the one
# with the highest minimum)
RULE_GRID = ((8, 1.0), (16, 1.0), (8, 0.9), (16, 0.9))
CHAOS_COEFFICIENTS = 16
# the estimators of every design: alone, with the control variate, and --control-variates auto (decided per run
# from the pilot's projection)
ESTIMATORS = (False, True, "auto")
# the client's defaults for the design alone (antithetic-queue estimate --interval, --range): every built-in
# statistic lies in [0, 1] (tests/test_estimate_bench.py checks these against the client's parser)
INTERVAL = "auto"
VALUE_RANGE = (0.0, 1.0)


def suffix(cv) -> str:
    return {False: "", True: " + cv", "auto": " + cv auto"}[cv]


def units_of(pool: dict, stat: str) -> dict:
    k = int(pool["unit_size"])
    v = pool[stat]
    n = v.shape[0] - v.shape[0] % k
    items = v[:n].reshape(-1, k)
    means = items.mean(axis=1)
    ssw = ((items - means[:, None]) ** 2).sum(axis=1)
    coefs = pool["coefficients"][:n].reshape(-1, k, pool["coefficients"].shape[1]).astype(np.float32)
    # unit means of the chaos of the 16 lowest coefficients, once per pool (float32: 152 columns): the earlier
    # unit-mean ridge surrogate, kept for the surrogate comparison
    feats = np.concatenate([ncv.unit_chaos(coefs[i:i + 8192], CHAOS_COEFFICIENTS).astype(np.float32)
                            for i in range(0, coefs.shape[0], 8192)])
    return {"k": k, "y": means, "items": items, "coefs": coefs, "ssw": ssw, "feats": feats,
            "truth": float(means.mean())}


def item_variance(y: np.ndarray, ssw: np.ndarray, k: int) -> float:
    """Per-image variance from one-way ANOVA (``confidence.efficiency_vs_iid``): (MSB + (K-1) MSW) / K."""
    g = y.shape[0]
    msb = k * y.var(ddof=1)
    if k == 1:
        return float(msb)
    msw = ssw.sum() / (g * (k - 1))
    return float((msb + (k - 1) * msw) / k)


def run_once(u: dict, target: float, rng: np.random.Generator, use_cv: bool | str, max_images: int,
             min_units: int = 8, aim: float = 1.0, cv_rule: tuple[int, float] | None = None) -> dict:
    """One estimate on units resampled from a pool: draw units until the stopping rule says stop. Returns images,
    estimate, half-width, ..."""
    # without replacement inside one estimate: a unit drawn twice would sit in two cross-fitting folds and leak
    # into its own control (the pool is >= 30x an estimate, so the finite-population effect is negligible)
    order = rng.permutation(u["y"].shape[0])
    cap = min(max_images // u["k"], order.shape[0])

    def draw(g: int):
        idx = order[:g]
        return u["y"][idx], u["items"][idx], u["coefs"][idx]

    return run_rule(draw, u["k"], u["truth"], target, use_cv, cap * u["k"], min_units, aim, cv_rule)


def run_rule(draw, k: int, truth: float, target: float, use_cv: bool | str, max_images: int, min_units: int = 8,
             aim: float = 1.0, cv_rule: tuple[int, float] | None = None) -> dict:
    """One estimate with the client's stopping driver and interval; ``draw(g)`` gives the run's first g units (unit
    means [g], item values [g, K], noise coefficients [g, K, M]), from a pool or freshly sampled.

    As ``antithetic-queue estimate`` runs it by default: the design alone on :class:`SequentialInterval` with
    ``--interval`` :data:`INTERVAL` and ``--range`` :data:`VALUE_RANGE` (the t rule with Cochran's gate, switching
    to a confidence sequence where its switch fires); with the control variate its cross-fitted t interval on the
    t driver. ``use_cv="auto"``: ``--control-variates auto``: the design alone's driver for the pilot, then the
    control variate with ``cv_rule`` = (pilot units, aim) when the pilot projects more images than the
    control-variate route can stop at (``control_variate_switch.auto_control_variate``)."""
    upp = max(1, PROMPT_IMAGES // k)
    auto = use_cv == "auto"
    cv_on = bool(use_cv) and not auto

    def rule_for(cv: bool, pilot: int, aim_: float) -> StoppingRule:
        return StoppingRule(target=target, min_units=pilot, max_images=max_images, confidence=CONFIDENCE, aim=aim_,
                            max_growth=CV_MAX_GROWTH if cv else None)

    def driver_for(cv: bool, rule: StoppingRule) -> SequentialInterval:
        # the control-variate estimate stays on its t interval (the client's driver never switches there)
        return SequentialInterval(rule, "t" if cv else INTERVAL, None if cv else VALUE_RANGE, k, upp, 2 if cv else 1)

    def cv_interval(y, items, coefs):
        res, _ = ncv.cross_fitted_interval(y, coefs, np.arange(y.shape[0]) // upp, CONFIDENCE, item_values=items)
        return res.estimate, res.half_width, res.std_error, res.dof

    drv = driver_for(cv_on, rule_for(cv_on, min_units, aim))
    seen = stages = 0
    projected = None
    while True:
        g = drv.units_wanted
        y, items, coefs = draw(g)
        t_iv = None
        if cv_on:
            est, hw, se, dof = cv_interval(y, items, coefs)
            t_iv = (est, hw)
        iv, dec = drv.look(y[seen:], items[seen:].reshape(-1), t_interval=t_iv)
        seen = g
        stages += 1
        if projected is None:  # what the pilot projects (the Stein step): --control-variates auto decides on it
            projected = dec.units_wanted * k
            # the pilot so far counts as (part of) the control variate's pilot, never its final sample
            cv_pilot = max(cv_rule[0], g) if auto else 0
            if auto and drv.method == "t" and not dec.stop and auto_control_variate(projected, k, upp, cv_pilot):
                cv_on = True
                est, hw, se, dof = cv_interval(y, items, coefs)
                drv = driver_for(True, rule_for(True, cv_pilot, cv_rule[1]))
                iv, dec = drv.look(y, items.reshape(-1), t_interval=(est, hw))
        if dec.stop:
            break
    if not cv_on:
        se = float(y.std(ddof=1) / math.sqrt(g)) if g >= 2 else math.inf
        dof = g - 1
    ssw = ((items - items.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    s2 = item_variance(y, ssw, k)
    est, hw = iv["estimate"], iv["half_width"]
    return {"images": g * k, "estimate": est, "half_width": hw, "covered": bool(iv["low"] <= truth <= iv["high"]),
            "std_error": se, "dof": int(dof), "stages": stages, "reached": dec.reason == "target reached",
            "pilot_projection": int(projected), "control_variate_used": cv_on, "interval": iv["method"],
            "iid_images": iid_images_for(s2, hw, CONFIDENCE)}


def surrogate_ceiling(u: dict, images: int, test_units: int = CEILING_TEST_UNITS) -> dict:
    """Held-out R² of both surrogates fitted on the first ``images`` images' units and applied, with β refitted,
    to the last ``test_units`` units of the pool (disjoint): the principal quadratic fitted on the images (the
    default recipe) and the earlier ridge on the unit-mean chaos of the m lowest DCT coefficients (m from the
    training size). 1 / (1 - R²) is the factor a control with that surrogate saves."""
    k = u["k"]
    n_train = min(images // k, u["y"].shape[0] - test_units)
    y = u["y"][-test_units:]

    def r2(h):
        r = float(np.corrcoef(h, y)[0, 1]) if h.std() > 0 else 0.0
        return r * r

    m_full = int((math.isqrt(9 + 8 * u["feats"].shape[1]) - 3) // 2)
    m = ncv.coefficients_for(n_train, m_full)
    cols = ncv.chaos_columns(m_full, m)
    w = ncv.ridge_fit(u["feats"][:n_train][:, cols].astype(np.float64), u["y"][:n_train])
    chaos = r2(u["feats"][-test_units:][:, cols].astype(np.float64) @ w)
    fit = ncv.fit_principal_quadratic(u["items"][:n_train].reshape(-1), u["coefs"][:n_train].reshape(n_train * k, -1))
    principal = r2(fit(u["coefs"][-test_units:]).mean(axis=1))
    return {"images": int(n_train * k), "units": int(n_train), "chaos_coefficients": int(m), "r2": principal,
            "r2_chaos": chaos, "variance_factor": 1.0 / max(1e-12, 1.0 - principal)}


def fixed_size_coverage(u: dict, g: int, reps: int, rng: np.random.Generator) -> float:
    """Coverage of the design's Student-t interval at a fixed g units (drawn with replacement from the pool)."""
    g = max(2, int(g))
    hits = 0
    for i in range(0, reps, 100):
        y = u["y"][rng.integers(0, u["y"].shape[0], (min(100, reps - i), g))]
        hw = stats.t.ppf(0.5 + CONFIDENCE / 2, g - 1) * y.std(axis=1, ddof=1) / math.sqrt(g)
        hits += int((np.abs(y.mean(axis=1) - u["truth"]) <= hw).sum())
    return hits / reps


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return c - h, c + h


def summarize(runs: list[dict]) -> dict:
    im = np.array([r["images"] for r in runs])
    cov = float(np.mean([r["covered"] for r in runs]))
    lo, hi = wilson(cov, len(runs))
    return {"reps": len(runs), "median_images": float(np.median(im)), "p90_images": float(np.percentile(im, 90)),
            "mean_images": float(im.mean()), "coverage": cov, "coverage_lo": lo, "coverage_hi": hi,
            "reached": float(np.mean([r["reached"] for r in runs])),
            "median_half_width": float(np.median([r["half_width"] for r in runs])),
            "median_iid_projection": float(np.median([r["iid_images"] for r in runs])),
            "median_stages": float(np.median([r["stages"] for r in runs])),
            # share of runs whose final interval is a confidence sequence (the auto switch fired), not the t interval
            "switched": float(np.mean([r.get("interval", "t") != "t" for r in runs]))}


# The pools' units, set in the parent before the worker processes fork (they inherit them copy-on-write).
_UNITS: dict | None = None


def _grid_task(key: tuple, seed: int, max_images: int, reps: int, cv_reps: int) -> tuple[tuple, dict]:
    """One rule-grid cell: (setting, design, control variate, target) on the tuning repetitions."""
    gi, d, cv, ti = key
    reps = cv_reps if cv else reps
    pilot, aim = RULE_GRID[gi]
    stat, target = TARGETS[ti]
    rng = np.random.default_rng([seed, 1, gi, POOL_DESIGNS.index(d), ti, int(cv)])
    rr = [run_once(_UNITS[d][stat], target, rng, cv, max_images, pilot, aim) for _ in range(reps)]
    return key, summarize(rr)


def _row_task(key: tuple, seed: int, max_images: int, rules: dict, n_tune: int, reps: int, design_reps: int
              ) -> tuple[tuple, dict]:
    """One reported row: (design, target, estimator), its tuning then its reported repetitions."""
    d, ti, cv = key
    n_rep = reps if cv else design_reps
    stat, target = TARGETS[ti]
    # auto: the design alone's rule for the pilot, then the control variate's rule if it switches on
    pilot, aim = rules[(d, cv is True)]["pilot_units"], rules[(d, cv is True)]["aim"]
    cv_rule = (rules[(d, True)]["pilot_units"], rules[(d, True)]["aim"])
    rng = np.random.default_rng([seed, 2, POOL_DESIGNS.index(d), ti, ESTIMATORS.index(cv)])
    u = _UNITS[d][stat]
    return key, {"tune": [run_once(u, target, rng, cv, max_images, pilot, aim, cv_rule) for _ in range(n_tune)],
                 "report": [run_once(u, target, rng, cv, max_images, pilot, aim, cv_rule) for _ in range(n_rep)]}


def _map(fn, keys: list, args: tuple, workers: int, progress=None) -> dict:
    """``{key: fn(key, *args)}``, on ``workers`` forked processes (1: in this one). Each task seeds its own
    generator from its key, so the result does not depend on the number of workers or the order they finish in.
    Tasks with the control variate (about 30x the cost) are submitted first, for an even finish."""
    order = sorted(keys, key=lambda k: not any(x is True or x == "auto" for x in k))  # stable: else key order
    out = {}
    if workers <= 1:
        for k in order:
            out[k] = fn(k, *args)[1]
            if progress:
                progress(1)
        return out
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        futures = [ex.submit(fn, k, *args) for k in order]
        for f in cf.as_completed(futures):
            k, v = f.result()
            out[k] = v
            if progress:
                progress(1)
    return out


def task_count() -> int:
    """Progress steps of a full run: the rule grid's cells and the reported rows."""
    return len(RULE_GRID) * len(POOL_DESIGNS) * 2 * len(TARGETS) + len(POOL_DESIGNS) * len(TARGETS) * len(ESTIMATORS)


def run_bench(pool_images: int, reps: int, seed: int, out: pathlib.Path, max_images: int, progress=None,
              design_reps: int | None = None, tune_reps: int | None = None, workers: int = 1) -> dict:
    global _UNITS
    design_reps = design_reps or reps
    tune_reps = tune_reps or reps
    cv_tune_reps = min(reps, 200)  # the rule grid with the control variate: 200 tuning repetitions per row
    # the control variate's on/off default: as many tuning repetitions as reported ones (with 200, a coverage of
    # 0.93 is within one binomial SE of 0.915: a first run switched RQMC's control on by default on 200 tuning
    # repetitions and then reported 0.915 at ±0.002)
    decision_reps = reps
    result = {"pool_images": pool_images, "reps_reported": reps, "reps_reported_design": design_reps,
              "reps_tuning": tune_reps, "reps_tuning_cv": cv_tune_reps, "reps_cv_decision": decision_reps,
              "prompt_images": PROMPT_IMAGES, "interval": INTERVAL, "value_range": list(VALUE_RANGE),
              "confidence": CONFIDENCE, "model": "digits", "steps": 10, "sampler": "dpmpp_2m",
              "max_images": max_images, "targets": [list(t) for t in TARGETS], "rows": [], "pools": {},
              "platform": platform.platform()}
    t0 = time.perf_counter()
    units = {}
    for i, d in enumerate(POOL_DESIGNS):
        pool = load_or_build(out, d, pool_images, seed=seed + i)
        units[d] = {s: units_of(pool, s) for s in ("brightness", "energy")}
        result["pools"][d] = {"images": int(pool["brightness"].shape[0]), "seconds": float(pool["seconds"]),
                              "truth": {s: units[d][s]["truth"] for s in units[d]}}
    _UNITS = units

    def rng_for(*key):
        return np.random.default_rng([seed, *key])

    # 0. how much a surrogate can learn: held-out R² against the images it was fitted on (brightness)
    result["surrogate_ceiling"] = {d: [surrogate_ceiling(units[d]["brightness"], n) for n in CEILING_IMAGES
                                       if n // units[d]["brightness"]["k"] + CEILING_TEST_UNITS
                                       <= units[d]["brightness"]["y"].shape[0]]
                                   for d in POOL_DESIGNS}

    # 1. the rule's pilot size and aim, chosen per design and estimator (design alone / + cv) on the tuning half
    keys = [(gi, d, cv, ti) for gi in range(len(RULE_GRID)) for d in POOL_DESIGNS for cv in (False, True)
            for ti in range(len(TARGETS))]
    cells = _map(_grid_task, keys, (seed, max_images, tune_reps, cv_tune_reps), workers, progress)
    grid = []
    for gi, (pilot, aim) in enumerate(RULE_GRID):
        for d in POOL_DESIGNS:
            for cv in (False, True):
                sms = [cells[(gi, d, cv, ti)] for ti in range(len(TARGETS))]
                grid.append({"design": d, "control_variate": cv, "pilot_units": pilot, "aim": aim,
                             "min_coverage": min(sm["coverage"] for sm in sms),
                             "mean_log_images": sum(math.log(sm["median_images"]) for sm in sms) / len(sms)})
    rules = {}
    for d in POOL_DESIGNS:
        for cv in (False, True):
            mine = [g for g in grid if g["design"] == d and g["control_variate"] == cv]
            ok = [g for g in mine if g["min_coverage"] >= 0.93]
            best = (min(ok, key=lambda g: (g["mean_log_images"], -g["min_coverage"])) if ok
                    else max(mine, key=lambda g: (g["min_coverage"], -g["mean_log_images"])))
            rules[(d, cv)] = {"design": d, "control_variate": cv, "pilot_units": best["pilot_units"],
                              "aim": best["aim"], "met": bool(ok)}
    result["rule_grid"] = grid
    result["rule"] = {"per_design": list(rules.values()), "cv_max_growth": CV_MAX_GROWTH}

    # 2. with that rule: the control variate's default (tuning half), then the reported half
    row_keys = [(d, ti, cv) for d in POOL_DESIGNS for ti in range(len(TARGETS)) for cv in ESTIMATORS]
    runs = _map(_row_task, row_keys, (seed, max_images, rules, decision_reps, reps, design_reps), workers, progress)
    runs = {(d, TARGETS[ti][0], TARGETS[ti][1], cv): runs[(d, ti, cv)] for d, ti, cv in row_keys}
    # defaults from the tuning half: control variate on for a design when, at every target, it needs no more median
    # images than the design alone and its coverage is in 0.93-0.97, and at the tightest brightness target fewer
    defaults = {}
    tightest = min(t for s_, t in TARGETS if s_ == "brightness")
    for d in POOL_DESIGNS:
        ok = True
        for stat, target in TARGETS:
            a = summarize(runs[(d, stat, target, False)]["tune"])
            b = summarize(runs[(d, stat, target, True)]["tune"])
            ok &= b["median_images"] <= a["median_images"] and 0.93 <= b["coverage"] <= 0.97
            if stat == "brightness" and target == tightest:
                ok &= b["median_images"] < a["median_images"]
        defaults[d] = bool(ok)
    result["cv_default"] = defaults
    iid_median = {(s, t): summarize(runs[("iid", s, t, False)]["report"])["median_images"] for s, t in TARGETS}
    for (d, stat, target, cv), r in runs.items():
        s = summarize(r["report"])
        if not cv:
            # the same Student-t interval at a fixed number of units (the row's median): what is left of any
            # undercoverage without a stopping rule (the interval itself on few, skewed unit means)
            rng = rng_for(3, POOL_DESIGNS.index(d), TARGETS.index((stat, target)))
            s["fixed_size_coverage"] = fixed_size_coverage(units[d][stat], int(round(s["median_images"]))
                                                           // units[d][stat]["k"], len(r["report"]), rng)
        s.update({"design": d, "label": LABELS[d], "statistic": stat, "target": target, "control_variate": cv,
                  "default": cv == defaults[d],
                  "fewer_than_iid": iid_median[(stat, target)] / s["median_images"]})
        result["rows"].append(s)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def verdicts(result: dict) -> list[str]:
    """Generated sentences on the issue's targets: pairs >= 4x fewer images than iid (median), the cheapest estimator
    >= 10x at ±0.001 on brightness, coverage in 0.93-0.97 for every row."""
    rows = result["rows"]
    out = []
    for stat in ("brightness", "energy"):
        pairs = [r for r in rows if r["design"] == "antithetic" and not r["control_variate"] and r["statistic"] == stat]
        if not pairs:
            continue
        lo, hi = min(r["fewer_than_iid"] for r in pairs), max(r["fewer_than_iid"] for r in pairs)
        out.append(f"- Antithetic pairs vs iid on {stat} (median images): {lo:.1f}×"
                   + (f" to {hi:.1f}×" if len(pairs) > 1 else "") + " fewer "
                   + f"({'at least' if lo >= 4 else 'below'} the 4× asked for).")
    tight = [r for r in rows if r["statistic"] == "brightness" and r["target"] == min(t for _, t in result["targets"])]
    best = max(tight, key=lambda r: r["fewer_than_iid"])
    out.append(f"- Fewest images at ±{best['target']:g} on brightness: {best['label']}"
               f"{suffix(best['control_variate'])}, {best['fewer_than_iid']:.1f}× fewer images than iid "
               f"({'meets' if best['fewer_than_iid'] >= 10 else 'misses'} the 10× asked for).")
    bad = [r for r in rows if not 0.93 <= r["coverage"] <= 0.97]
    cov = [r["coverage"] for r in rows]
    for name, sel in (("the defaults (bold rows)", [r for r in rows if r["default"]]),
                      ("the other estimators", [r for r in rows if not r["default"]])):
        if not sel:
            continue
        miss = [r for r in sel if r in bad]
        c = [r["coverage"] for r in sel]
        reps_ = sorted({r["reps"] for r in sel})
        out.append(f"- Coverage of the final interval, {name} ({' or '.join(map(str, reps_))} repetitions per row): "
                   f"{min(c):.3f}–{max(c):.3f}; outside 0.93–0.97: "
                   + ("none" if not miss else "; ".join(
                       f"{r['label']}{suffix(r['control_variate'])} {r['statistic']} ±{r['target']:g} "
                       f"({r['coverage']:.3f}, 95 % CI {r['coverage_lo']:.3f}–{r['coverage_hi']:.3f}"
                       + (f"; the same interval at a fixed {r['median_images']:.0f} images: "
                          f"{r['fixed_size_coverage']:.3f}" if "fixed_size_coverage" in r else "") + ")"
                       for r in miss)) + ".")
    out.append(f"- All {len(rows)} rows: coverage {min(cov):.3f}–{max(cov):.3f}, "
               f"{len(rows) - len(bad)} of {len(rows)} inside 0.93–0.97"
               + ("." if not bad else "; rows whose whole 95 % CI lies below 0.93 (undercoverage beyond the binomial "
                  "error of the repetitions): " + (", ".join(
                      f"{r['label']}{suffix(r['control_variate'])} {r['statistic']} ±{r['target']:g}"
                      for r in bad if r["coverage_hi"] < 0.93) or "none") + "."))
    auto = [r for r in rows if r["control_variate"] == "auto"]
    if auto:
        def med(d, st, t, cv):
            return next(x["median_images"] for x in rows if (x["design"], x["statistic"], x["target"],
                                                             x["control_variate"]) == (d, st, t, cv))
        worse = [f"{r['label']} {r['statistic']} ±{r['target']:g} ({r['median_images']:.0f} against "
                 f"{min(med(r['design'], r['statistic'], r['target'], c) for c in (False, True)):.0f})"
                 for r in auto if r["median_images"] > 1.1 * min(med(r["design"], r["statistic"], r["target"], c)
                                                                 for c in (False, True))]
        c = [r["coverage"] for r in auto]
        out.append(f"- `--control-variates auto` ({len(auto)} rows): coverage {min(c):.3f}–{max(c):.3f} "
                   f"({'all' if min(c) >= 0.93 else 'not all'} ≥ 0.93); median images more than 10 % above the "
                   "cheaper of design alone and + cv: " + ("; ".join(worse) if worse else "none") + ".")
    ceil = {d: r for d, r in result.get("surrogate_ceiling", {}).items() if r and "r2_chaos" in r[0]}
    if ceil:
        out.append("- How much of the unit-mean variance a surrogate learns from the images of one run (brightness, "
                   "held-out R²; principal quadratic on images, the default / ridge on unit-mean chaos, the earlier "
                   "recipe): " + "; ".join(
                       f"{LABELS.get(d, d)} " + ", ".join(f"{c['images']:,} images {c['r2']:.2f} / {c['r2_chaos']:.2f}"
                                                          for c in rows_)
                       for d, rows_ in ceil.items()) + ".")
    return out


def markdown(result: dict) -> str:
    lines = [
        f"Images needed to estimate a mean to ± target (95 % interval), embedded digits model; reported repetitions: "
        f"{result['reps_reported_design']} per design-alone row, {result['reps_reported']} per *+ cv* row (separate "
        "tuning repetitions chose, per design, the rule: Stein two-stage, a pilot never final, second stage sized "
        "from the pilot for aim × target, top-ups only where it is still too wide, with the control variate stages "
        f"grown at most {result['rule']['cv_max_growth']:g}× — and where the control variate is on by default); "
        f"prompts of {result['prompt_images']} images, units resampled from pools of {result['pool_images']:,} "
        "images per design (truth = pool mean). *cv* = cross-fitted noise control variate; *cv auto* = "
        "`--control-variates auto` (the design alone's pilot, then the control variate when the pilot projects more "
        "images than the control variate's own pilot and one prompt); **bold** = the default of "
        "`antithetic-queue estimate` for that design. The design alone runs the client's default interval, "
        f"`--interval {result.get('interval', 't')}` with `--range` {_range(result)} (the t rule with Cochran's "
        "gate, switching to a confidence sequence where its switch fires: the *switched* column); with the control "
        "variate its cross-fitted t interval.",
        "",
        "| statistic | target | design | median images | p90 images | × fewer than iid (median) | coverage "
        "[95 % CI] | switched | iid images for the same width (projected) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for stat, target in result["targets"]:
        for r in result["rows"]:
            if r["statistic"] != stat or r["target"] != target:
                continue
            name = r["label"] + suffix(r["control_variate"])
            if r["default"]:
                name = f"**{name}**"
            reached = "" if r["reached"] >= 1 else f" (target reached in {100 * r['reached']:.0f} %)"
            lines.append(
                f"| {stat} | ±{target:g} | {name} | {r['median_images']:.0f}{reached} | {r['p90_images']:.0f} | "
                f"{r['fewer_than_iid']:.1f}× | {r['coverage']:.3f} [{r['coverage_lo']:.3f}, {r['coverage_hi']:.3f}] | "
                f"{100 * r.get('switched', 0.0):.0f} % | {r['median_iid_projection']:.0f} |"
            )
    grid = result.get("rule_grid", [])
    if grid:
        parts = []
        for rule in result["rule"]["per_design"]:
            d, cv = rule["design"], rule["control_variate"]
            tried = "; ".join(f"pilot {g['pilot_units']}, aim {g['aim']:g}: {g['min_coverage']:.3f}, "
                              f"{g['mean_log_images']:.2f}" for g in grid
                              if g["design"] == d and g["control_variate"] == cv)
            chosen = (f"chosen pilot {rule['pilot_units']}, aim {rule['aim']:g}" + (
                "" if rule["met"] else " (none kept every target ≥ 0.93: the highest lowest coverage)"))
            parts.append(f"{LABELS[d]}{' + cv' if cv else ''}: {tried} → {chosen}")
        lines += ["", "Rule settings on the tuning repetitions, per design and estimator (lowest coverage over its "
                  "targets, mean log images; the cheapest with lowest coverage ≥ 0.93 wins): " + ". ".join(parts) + "."]
    lines += [""] + verdicts(result)
    lines += ["", "Control variate on by default for: "
              + (", ".join(LABELS[d] for d, on in result["cv_default"].items() if on) or "no design")
              + f". Command: `antithetic-sampling estimate-bench` ({result['seconds']:.0f} s with cached pools)."]
    return "\n".join(lines)


def _range(result: dict) -> str:
    vr = result.get("value_range")
    return "none" if vr is None else f"{vr[0]:g} {vr[1]:g}"


def headline(result: dict) -> str:
    """The README's short version: every estimator at the tightest brightness target, and the coverage range."""
    tight = min(t for s_, t in result["targets"] if s_ == "brightness")
    rows = [r for r in result["rows"] if r["statistic"] == "brightness" and r["target"] == tight]
    rows.sort(key=lambda r: -r["median_images"])
    cov = [r["coverage"] for r in result["rows"] if r["default"]]
    best = max(rows, key=lambda r: r["fewer_than_iid"])
    lines = [
        f"Images `antithetic-queue estimate` needs for the mean brightness to ±{tight:g} (95 % interval) on the "
        f"embedded digits model, median of {result['reps_reported_design']} (design alone) / "
        f"{result['reps_reported']} (+ cv) repetitions (`antithetic-sampling estimate-bench`; every target and the "
        "method in [docs/evidence.md](docs/evidence.md#estimating-to-a-target-half-width)). *cv* = control variate "
        "from the initial noise; **bold** = what the command does by default for that noise node (the design alone "
        f"with its default `--interval {result.get('interval', 't')}`).",
        "",
        "| noise design (estimator) | median images | fewer than iid | coverage of the final interval |",
        "|---|---|---|---|",
    ]
    for r in rows:
        name = r["label"] + suffix(r["control_variate"])
        if r["default"]:
            name = f"**{name}**"
        lines.append(f"| {name} | {r['median_images']:.0f} | {r['fewer_than_iid']:.1f}× | {r['coverage']:.3f} |")
    lines += ["", f"Fewest images: {best['label']}{suffix(best['control_variate'])}, "
              f"{best['fewer_than_iid']:.1f}× fewer images than iid. Coverage of the defaults over all "
              f"{len(cov)} design × target rows: {min(cov):.3f}–{max(cov):.3f}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = cli_args.parser("estimate-bench")
    args = ap.parse_args(argv)
    pool, reps, dreps, treps = (8192, 20, 20, 20) if args.quick else (args.pool, args.reps, args.design_reps,
                                                                       args.tune_reps)
    from .bench import progress_bar
    from .noise_timing import publish

    if args.fresh:
        return _fresh_main(args)
    if args.render_only:
        import json

        result = json.loads((args.out / "estimate_bench.json").read_text(encoding="utf-8"))
        publish(args.out, "estimate_bench", result, markdown(result), args.readme, "estimate-results")
        _summaries(result, args.summary)
        return 0

    import os

    bar = progress_bar(task_count(), "estimate-bench", unit="cell")
    result = run_bench(pool, reps, args.seed, args.out, args.max_images, bar.update if bar else None, dreps, treps,
                       workers=args.workers or os.cpu_count() or 1)
    if bar:
        bar.close()
    publish(args.out, "estimate_bench", result, markdown(result), args.readme, "estimate-results")
    _summaries(result, args.summary)
    return 0


def _summaries(result: dict, files) -> None:
    from .noise_timing import replace_block

    for f in files or []:
        if not replace_block(f, "estimate-headline", headline(result)):
            print(f"warning: no estimate-headline block in {f}")


def _fresh_main(args) -> int:
    """``--fresh N``: only the fresh-image replication (and the same rows on the pools); ``estimate-fresh`` block."""
    import json

    from . import estimate_fresh as ef
    from .bench import progress_bar
    from .noise_timing import publish

    if args.render_only:
        res = json.loads((args.out / "estimate_fresh.json").read_text(encoding="utf-8"))
    else:
        rows = ef.parse_rows(args.fresh_rows)
        pool_images = 8192 if args.quick else args.pool
        units = {}
        for d in dict.fromkeys(d for d, _ in rows):
            pool = load_or_build(args.out, d, pool_images, seed=args.seed + POOL_DESIGNS.index(d))
            units[d] = units_of(pool, "brightness")
        bench_json = args.out / "estimate_bench.json"
        if not bench_json.is_file():
            import sys

            print(f"error: --fresh: {bench_json} not found; --fresh replicates the pool bench's rows with the rules "
                  "that bench chose: run antithetic-sampling estimate-bench first (same --out)", file=sys.stderr)
            return 2
        rules = ef.rules_of(json.loads(bench_json.read_text(encoding="utf-8")))
        bar = progress_bar(len(rows), "estimate-bench --fresh", unit="row")
        res = ef.run_fresh(units, rows, args.fresh, args.seed, args.max_images, args.fresh_truth, rules,
                           args.fresh_fixed, bar.update if bar else None)
        if bar:
            bar.close()
        res["pool_images"] = pool_images
    publish(args.out, "estimate_fresh", res, ef.markdown(res), args.readme, "estimate-fresh")
    return 0
