"""``antithetic-sampling estimate-bench --fresh N``: the headline rows replicated on freshly sampled images.

The main bench draws the units of every repetition from one cached pool per design (exact iid sampling from the
pool's empirical law, truth = the pool mean). This mode checks that shortcut: for each row it runs N estimates
whose every unit is sampled fresh from the embedded digits model (noise seeds disjoint from every pool's, each
unit used by one estimate only), with the stopping rule the pool bench chose for that row (read from its
``estimate_bench.json``; ``RULE_DEFAULTS`` of ``antithetic-queue estimate`` ships the same, a test keeps them
equal) and the client's interval, in prompts of 8 images, against a truth from a large separate fresh
sample; and, in the same command, N estimates of the same row resampled from the pool (truth = pool mean, as the
main table does). Where the two disagree is flagged by a stated test at 5 %:

- coverage: two-proportion z test (pooled), |z| > 1.96;
- images: Mann-Whitney U test on the images used, p < 0.05.

Each flag is wrong 5 % of the time when pool and fresh agree (per row and test: with R rows and 2 tests, about
2R × 5 % false flags expected in all).

Diagnostics per row, all from the same runs: the pool's estimates scored against the fresh truth instead of the
pool mean (does the finite pool move the truth?), coverage of the runs that stopped at the Stein stage against
those that needed top-ups, and the 95th percentile of |estimate - truth| / SE against the t quantile the interval
used (an interval on too few degrees of freedom shows as a ratio above 1). ``--fresh-fixed M`` adds the same
interval at a fixed number of units (the row's fresh median) on M fresh and M pool samples: what is left without
a stopping rule.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import stats

from .estimate_pool import POOL_DESIGNS, load_design, sample_images

# noise seeds of fresh units: far above every pool chunk's seed (seed * 1_000_003 + images < 2**40 for any
# --seed below 10**6), one 2**24-wide slot per (bench seed, design); slot 15 holds the truth sample
FRESH_SEED_BASE = 1 << 40
TRUTH_SLOT = 15
CHUNK_IMAGES = 2048
# the truth: a separate fresh sample of K-groups K=4 (every image is N(0, I), so its mean is unbiased; on brightness
# it is about 7x as precise per image as iid)
TRUTH_DESIGN = "k4"
DEFAULT_TRUTH_IMAGES = 131072
DEFAULT_ROWS = ("k4", "k4+cv")
HEADLINE_ROWS = ("k4", "k4+cv", "antithetic", "antithetic+cv", "rqmc", "rqmc+cv", "iid+cv")
ALPHA = 0.05


def fresh_seed(seed: int, slot: int, chunk: int) -> int:
    return FRESH_SEED_BASE + ((int(seed) * 16 + int(slot)) << 24) + int(chunk)


def parse_rows(text: str) -> list[tuple[str, bool | str]]:
    """``"k4,k4+cv,k4+auto"`` -> [("k4", False), ("k4", True), ("k4", "auto")]; ``headline`` = every row of the
    README's headline but iid alone (about 4000 images per estimate)."""
    names = HEADLINE_ROWS if text.strip() == "headline" else [t.strip() for t in text.split(",") if t.strip()]
    out = []
    for name in names:
        d, _, cv = name.partition("+")
        if d not in POOL_DESIGNS or cv not in ("", "cv", "auto"):
            raise ValueError(f"--fresh-rows: {name!r} is not DESIGN, DESIGN+cv or DESIGN+auto with DESIGN one of "
                             f"{', '.join(POOL_DESIGNS)}")
        out.append((d, {"": False, "cv": True, "auto": "auto"}[cv]))
    if not out:
        raise ValueError("--fresh-rows: no row given")
    return out


class FreshUnits:
    """Units of one design sampled on demand from the digits model, each handed out once (never a pool's seeds)."""

    def __init__(self, design: str, seed: int, slot: int | None = None, steps: int = 10):
        self.model, self.design = load_design(design)
        self.k = int(self.design.unit_size)
        self.seed, self.steps = seed, steps
        self.slot = POOL_DESIGNS.index(design) if slot is None else slot
        self.chunks = 0
        self.images = 0
        self.seconds = 0.0
        self._buf: dict[str, np.ndarray] = {}

    def _refill(self) -> None:
        t0 = time.perf_counter()
        n = CHUNK_IMAGES - CHUNK_IMAGES % self.k
        s = sample_images(self.model, self.design, n, fresh_seed(self.seed, self.slot, self.chunks), self.steps)
        self.chunks += 1
        self.images += n
        self.seconds += time.perf_counter() - t0
        new = {"brightness": s["brightness"].reshape(-1, self.k), "energy": s["energy"].reshape(-1, self.k),
               "coefs": s["coefficients"].reshape(n // self.k, self.k, -1)}
        self._buf = {k: np.concatenate([self._buf[k], v]) if self._buf else v for k, v in new.items()}

    def take(self, g: int) -> dict[str, np.ndarray]:
        """The next ``g`` units, never handed out before."""
        while not self._buf or self._buf["coefs"].shape[0] < g:
            self._refill()
        out = {k: v[:g] for k, v in self._buf.items()}
        self._buf = {k: v[g:] for k, v in self._buf.items()}
        return out

    def draw_for(self, stat: str):
        """``draw(g)`` for one estimate: its first g units, extended from the stream as the run asks for more."""
        got: dict[str, np.ndarray] = {}

        def draw(g: int):
            have = got["coefs"].shape[0] if got else 0
            if g > have:
                new = self.take(g - have)
                got.update({k: np.concatenate([got[k], v]) if have else v for k, v in new.items()})
            items = got[stat][:g].astype(np.float64)
            return items.mean(axis=1), items, got["coefs"][:g]

        return draw


def fresh_truth(images: int, seed: int, steps: int = 10) -> dict:
    """Mean and standard error of every statistic over ``images`` fresh images of ``TRUTH_DESIGN`` (unit means)."""
    src = FreshUnits(TRUTH_DESIGN, seed, slot=TRUTH_SLOT, steps=steps)
    u = src.take(images // src.k)
    out = {"design": TRUTH_DESIGN, "images": int(src.images), "seconds": round(src.seconds, 1)}
    for stat in ("brightness", "energy"):
        y = u[stat].astype(np.float64).mean(axis=1)
        out[stat] = {"mean": float(y.mean()), "se": float(y.std(ddof=1) / math.sqrt(y.shape[0]))}
    return out


def two_proportion_z(p1: float, n1: int, p2: float, n2: int) -> float:
    """Pooled two-proportion z statistic of p1 - p2 (0 when both are 0 or 1)."""
    p = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return (p1 - p2) / se if se > 0 else 0.0


def _cover(runs: list[dict]) -> float:
    return float(np.mean([r["covered"] for r in runs])) if runs else float("nan")


def _t_ratio(runs: list[dict], truth: float, confidence: float) -> float:
    """95th percentile of |estimate - truth| / SE over the runs, divided by the median t quantile they used."""
    z = [abs(r["estimate"] - truth) / r["std_error"] for r in runs if r["std_error"] > 0]
    q = [stats.t.ppf(0.5 + confidence / 2, r["dof"]) for r in runs]
    return float(np.percentile(z, 100 * confidence) / np.median(q)) if z else float("nan")


def fixed_size(draw_source, truth: float, g: int, reps: int, use_cv: bool, k: int, confidence: float) -> float:
    """Coverage of the row's interval on exactly g units (no stopping rule); ``draw_source()`` gives a fresh
    ``draw`` per sample."""
    from ..methods import noise_control_variates as ncv

    upp = max(1, 8 // k)
    hits = 0
    for _ in range(reps):
        y, items, coefs = draw_source()(g)
        if use_cv:
            r, _ = ncv.cross_fitted_interval(y, coefs, np.arange(g) // upp, confidence, item_values=items)
            est, hw = r.estimate, r.half_width
        else:
            est = float(y.mean())
            hw = float(stats.t.ppf(0.5 + confidence / 2, g - 1) * y.std(ddof=1) / math.sqrt(g))
        hits += abs(est - truth) <= hw
    return hits / reps


def rules_of(bench_result: dict) -> dict:
    """``{(design, control variate on): (pilot units, aim)}`` from a pool bench result (``estimate_bench.json``)."""
    return {(r["design"], bool(r["control_variate"])): (int(r["pilot_units"]), float(r["aim"]))
            for r in bench_result["rule"]["per_design"]}


def run_fresh(units: dict, rows: list[tuple[str, bool]], reps: int, seed: int, max_images: int, truth_images: int,
              rules: dict, fixed_reps: int = 0, progress=None) -> dict:
    """Pool and fresh repetitions of every row at the tightest brightness target; ``units[design]`` = the pool's
    brightness units (``estimate_bench.units_of``); ``rules`` from :func:`rules_of`."""
    from . import estimate_bench as eb

    stat, target = "brightness", min(t for s_, t in eb.TARGETS if s_ == "brightness")
    t0 = time.perf_counter()
    truth = fresh_truth(truth_images, seed)
    true_mean = truth[stat]["mean"]
    out = {"reps": reps, "statistic": stat, "target": target, "truth": truth, "rows": [], "alpha": ALPHA,
           "fixed_reps": fixed_reps, "prompt_images": eb.PROMPT_IMAGES, "chunk_images": CHUNK_IMAGES}
    streams: dict[str, FreshUnits] = {}
    for d, cv in rows:
        pilot, aim = rules[(d, cv is True)]
        cv_rule = rules[(d, True)]  # where auto switches the control variate on
        u = units[d]
        src = streams.setdefault(d, FreshUnits(d, seed))
        k = src.k
        images0, seconds0 = src.images, src.seconds
        r0 = time.perf_counter()
        fresh = [eb.run_rule(src.draw_for(stat), k, true_mean, target, cv, max_images, pilot, aim, cv_rule)
                 for _ in range(reps)]
        fresh_s = time.perf_counter() - r0
        rng = np.random.default_rng([seed, 7, POOL_DESIGNS.index(d), eb.ESTIMATORS.index(cv)])
        pool = [eb.run_once(u, target, rng, cv, max_images, pilot, aim, cv_rule) for _ in range(reps)]
        for r in pool:
            r["covered_true"] = bool(abs(r["estimate"] - true_mean) <= r["half_width"])
        sp, sf = eb.summarize(pool), eb.summarize(fresh)
        z = two_proportion_z(sf["coverage"], reps, sp["coverage"], reps)
        mw = stats.mannwhitneyu([r["images"] for r in fresh], [r["images"] for r in pool])
        row = {"design": d, "control_variate": cv, "k": k, "label": eb.LABELS[d] + eb.suffix(cv),
               "pilot_units": pilot, "aim": aim, "pool": sp, "fresh": sf,
               "pool_coverage_vs_fresh_truth": float(np.mean([r["covered_true"] for r in pool])),
               "pool_mean_minus_truth": u["truth"] - true_mean,
               "z_coverage": z, "p_images": float(mw.pvalue),
               "coverage_disagrees": bool(abs(z) > stats.norm.ppf(1 - ALPHA / 2)),
               "images_disagree": bool(mw.pvalue < ALPHA),
               "fresh_images_generated": int(src.images - images0),
               "fresh_seconds": round(fresh_s, 1), "fresh_sampling_seconds": round(src.seconds - seconds0, 1)}
        for name, runs, tr in (("pool", pool, u["truth"]), ("fresh", fresh, true_mean)):
            stein = [r for r in runs if r["stages"] <= 2]
            row[name].update({
                "coverage_stein_stage": _cover(stein), "share_stein_stage": len(stein) / len(runs),
                "coverage_top_ups": _cover([r for r in runs if r["stages"] > 2]),
                "t_ratio": _t_ratio(runs, tr, eb.CONFIDENCE)})
        if fixed_reps and cv != "auto":  # at a fixed size auto is one of the other two rows
            g = max(4, int(round(sf["median_images"])) // k)
            g -= g % max(1, eb.PROMPT_IMAGES // k)
            frng = np.random.default_rng([seed, 8, POOL_DESIGNS.index(d), eb.ESTIMATORS.index(cv)])

            def pool_draw(u=u, frng=frng, g=g):
                idx = frng.choice(u["y"].shape[0], g, replace=False)
                return lambda n: (u["y"][idx[:n]], u["items"][idx[:n]], u["coefs"][idx[:n]])

            row["fixed_units"] = g
            row["fresh"]["fixed_size_coverage"] = fixed_size(lambda src=src: src.draw_for(stat), true_mean, g,
                                                             fixed_reps, cv, k, eb.CONFIDENCE)
            row["pool"]["fixed_size_coverage"] = fixed_size(pool_draw, u["truth"], g, fixed_reps, cv, k,
                                                            eb.CONFIDENCE)
        out["rows"].append(row)
        if progress:
            progress(1)
    out["images_generated"] = int(sum(s.images for s in streams.values())) + truth["images"]
    out["sampling_seconds"] = round(sum(s.seconds for s in streams.values()) + truth["seconds"], 1)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _f(x: float) -> str:
    return "–" if x != x else f"{x:.3f}"


def _row_suffix(cv) -> str:
    return {False: "", True: "+cv", "auto": "+auto"}[cv]


def markdown(res: dict) -> str:
    tr = res["truth"][res["statistic"]]
    zc = stats.norm.ppf(1 - res["alpha"] / 2)
    lines = [
        f"The rows at ±{res['target']:g} on {res['statistic']} replicated on freshly sampled images: {res['reps']} "
        "estimates per row whose every unit is newly sampled from the digits model (noise seeds disjoint from the "
        f"pools', each unit used once, prompts of {res['prompt_images']} images), with the shipped rule (pilot, aim) "
        "and interval of `antithetic-queue estimate`, against a truth from a separate fresh sample "
        f"({res['truth']['images']:,} images of {res['truth']['design']}: {tr['mean']:.6f}, SE {tr['se']:.2g} = "
        f"{tr['se'] / res['target']:.3f} × target); next to {res['reps']} estimates of the same row resampled "
        "from the pool (truth = pool mean). *Disagree*: coverage by a pooled two-proportion z test (|z| > "
        f"{zc:.2f}), images by a Mann-Whitney U test (p < {res['alpha']:g}); each flag is raised falsely "
        f"{100 * res['alpha']:.0f} % of the time when pool and fresh agree.",
        "",
        "| estimator (pilot, aim) | pool: median images | fresh: median images | pool: coverage [95 % CI] | "
        "fresh: coverage [95 % CI] | z (coverage) | p (images) | disagree? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        p, f = r["pool"], r["fresh"]
        flags = [w for w, on in (("coverage", r["coverage_disagrees"]), ("images", r["images_disagree"])) if on]
        lines.append(
            f"| {r['label']} ({r['pilot_units']}, {r['aim']:g}) | {p['median_images']:.0f} | {f['median_images']:.0f} "
            f"| {p['coverage']:.3f} [{p['coverage_lo']:.3f}, {p['coverage_hi']:.3f}] | {f['coverage']:.3f} "
            f"[{f['coverage_lo']:.3f}, {f['coverage_hi']:.3f}] | {r['z_coverage']:+.2f} | {r['p_images']:.2g} | "
            f"{'**' + ' and '.join(flags) + '**' if flags else 'no'} |")
    lines += ["", "Where a gap would come from (same runs; pool / fresh):", ""]
    for r in res["rows"]:
        p, f = r["pool"], r["fresh"]
        parts = [f"pool mean − fresh truth {r['pool_mean_minus_truth']:+.2g} "
                 f"({r['pool_mean_minus_truth'] / res['target']:+.3f} × target), pool runs scored against the fresh "
                 f"truth cover {r['pool_coverage_vs_fresh_truth']:.3f}",
                 (f"coverage of runs that stopped at the Stein stage {_f(p['coverage_stein_stage'])} / "
                  f"{_f(f['coverage_stein_stage'])} ({100 * p['share_stein_stage']:.0f} / "
                  f"{100 * f['share_stein_stage']:.0f} % of runs), after top-ups {_f(p['coverage_top_ups'])} / "
                  f"{_f(f['coverage_top_ups'])}") if p["share_stein_stage"] or f["share_stein_stage"] else
                 "every run needed top-ups (stages grow at most 1.3× with the control variate), so there is no "
                 "split by stage",
                 f"95th percentile of |error| / SE over the t quantile used {p['t_ratio']:.3f} / {f['t_ratio']:.3f}"]
        if "fixed_units" in r:
            parts.append(f"the same interval at a fixed {r['fixed_units']} units ({r['fixed_units'] * r['k']} images; "
                         f"{res['fixed_reps']} samples each) covers {p['fixed_size_coverage']:.3f} / "
                         f"{f['fixed_size_coverage']:.3f}")
        lines.append(f"- {r['label']}: " + "; ".join(parts) + ".")
    bad = [r["label"] for r in res["rows"] if r["coverage_disagrees"] or r["images_disagree"]]
    low = [f"{r['label']} ({r['fresh']['coverage']:.3f})" for r in res["rows"] if r["fresh"]["coverage"] < 0.93]
    lines += ["", "- Pool and fresh disagree (5 % test) on: " + (", ".join(bad) if bad else "no row") + ".",
              "- Fresh coverage below 0.93: " + (", ".join(low) if low else "no row") + ".",
              f"- Cost: {res['images_generated']:,} images sampled ({res['sampling_seconds']:.0f} s of sampling, "
              f"{1000 * res['sampling_seconds'] / max(1, res['images_generated']):.2f} ms per image on one CPU "
              f"thread), {res['seconds']:.0f} s in all. Command: `antithetic-sampling estimate-bench --fresh "
              f"{res['reps']} --fresh-rows {','.join(r['design'] + _row_suffix(r['control_variate']) for r in res['rows'])}"
              + (f" --fresh-truth {res['truth']['images']}" if res["truth"]["images"] != DEFAULT_TRUTH_IMAGES else "")
              + (f" --fresh-fixed {res['fixed_reps']}" if res["fixed_reps"] else "") + "`."]
    return "\n".join(lines)
