"""Estimating a mean to a target half-width with as few images as possible: a pilot, then Stein-style jumps.

Jia et al., "Antithetic Noise in Diffusion Models" (arXiv 2506.06185, ICLR 2026), §5.1: with a noise design the
independent units are pairs / K-groups / RQMC replicates, and the interval is μ̂ ± t_{1-α/2, G-1} s(Ȳ)/√G over the
G unit means Ȳ_g. This module turns that interval into a stopping rule.

Rule (Stein's two-stage procedure with measured top-ups; Stein 1945, *Ann. Math. Statist.* 16:243; Chow &
Robbins 1965, *Ann. Math. Statist.* 36:457):

1. pilot: G₀ units (at least ``min_units``, whole prompts). With ``two_stage`` (the default) the pilot is never
   the final sample, however narrow its interval: a run that stopped on a pilot whose spread happened to come out
   small would report a too-narrow interval (with skewed unit means a small spread goes with a low mean), which
   is where the purely sequential rule lost coverage;
2. from the pilot's interval h₀, the units needed follow (the Stein step, with the t quantile of the larger
   sample): G₁ = ⌈G₀ (h₀ / (a · target))² (t_{G₁-d} / t_{G₀-d})²⌉, at least one prompt more than the pilot; a =
   ``aim`` <= 1 sizes the stage slightly below the target. The run goes to G₁ without looking at the data in
   between, so the size of the final sample depends on the pilot's spread only;
3. at G₁ the interval is computed exactly as the interval node does (or the control-variate interval); stop when
   its half-width h <= target (absolute, or ``target_rel`` · |μ̂|, the smaller when both are given);
4. otherwise (the pilot under-estimated the spread) a top-up stage is projected the same way from the current
   spread (with ``max_growth``, at most that factor: the control-variate interval narrows as its surrogate
   learns, so one jump from a small stage would overshoot), and 3 is repeated. Top-ups re-introduce a little of
   the sequential rule's selectivity; their coverage cost is part of what ``estimate-bench`` measures;
5. stop anyway when the image budget is spent (the interval is then reported as it is, wider than asked).

Coverage of the final interval is therefore not exactly the nominal one; it is *measured* by ``estimate-bench``
for every design and target (≥ 200 repetitions, on repetitions separate from those that chose ``min_units`` and
``aim``), never assumed.

:func:`iid_images_for` answers the reverse question: how many independent images a plain run would need for the
same half-width, given the per-image variance measured from the design's own data (Student-t on n - 1 dof).
Pure numpy/scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

__all__ = ["StoppingRule", "Decision", "decide", "iid_images_for", "target_half_width"]


@dataclass(frozen=True)
class StoppingRule:
    target: float | None = None  # absolute half-width
    target_rel: float | None = None  # half-width relative to |estimate|
    min_units: int = 8  # pilot: independent units before the first decision
    max_images: int | None = None  # budget
    confidence: float = 0.95
    aim: float = 1.0  # stages are sized for aim x target (< 1: land below the target, fewer selective stops)
    max_growth: float | None = None  # a stage at most multiplies the units by this (None: jump to the projection)
    two_stage: bool = True  # the pilot is never the final sample (Stein); False: stop on the pilot when narrow enough

    def __post_init__(self) -> None:
        if self.target is None and self.target_rel is None:
            raise ValueError("target: give an absolute --target and/or a relative --target-rel")
        for name in ("target", "target_rel"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name}: must be a positive number, got {v!r}")
        if self.min_units < 3:
            raise ValueError(f"min_units: the pilot needs at least 3 independent units, got {self.min_units}")
        if not 0 < self.aim <= 1:
            raise ValueError(f"aim: must be in (0, 1], got {self.aim!r}")
        if self.max_growth is not None and self.max_growth <= 1:
            raise ValueError(f"max_growth: must be > 1, got {self.max_growth!r}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images: must be at least 1, got {self.max_images}")


def target_half_width(rule: StoppingRule, estimate: float) -> float:
    """The half-width asked for at the current estimate (the smaller of the absolute and relative targets)."""
    goals = []
    if rule.target is not None:
        goals.append(float(rule.target))
    if rule.target_rel is not None:
        goals.append(float(rule.target_rel) * abs(float(estimate)))
    return min(goals)


@dataclass(frozen=True)
class Decision:
    stop: bool
    reason: str  # "target reached" | "budget spent" | "pilot" | "more units"
    units_wanted: int  # total units wanted after this decision (== units when stopping)
    goal: float  # half-width asked for


def decide(rule: StoppingRule, units: int, unit_size: int, estimate: float | None, half_width: float | None,
           dof_loss: int = 1, units_per_prompt: int = 1) -> Decision:
    """Next step of the rule after ``units`` units (``half_width``/``estimate``: their interval; None before the
    pilot is complete). ``dof_loss``: dof the interval pays (1 for the design alone, 2 with one control variate).
    ``units_wanted`` is rounded up to whole prompts of ``units_per_prompt`` units and capped by the budget."""
    upp = max(1, int(units_per_prompt))
    cap = None if rule.max_images is None else max(upp, (rule.max_images // unit_size) // upp * upp)
    pilot = max(rule.min_units, dof_loss + 2)
    pilot = -(-pilot // upp) * upp
    if cap is not None:
        pilot = min(pilot, cap)
    goal = target_half_width(rule, estimate) if estimate is not None else float("nan")
    if half_width is None or units < pilot:
        return Decision(False, "pilot", pilot, goal)
    at_pilot = units <= pilot
    if half_width <= goal and not (rule.two_stage and at_pilot):
        return Decision(True, "target reached", units, goal)
    if cap is not None and units >= cap:
        return Decision(True, "budget spent", units, goal)
    want = units * (half_width / (rule.aim * goal)) ** 2 if goal > 0 else math.inf
    if math.isfinite(want):
        # the t quantile shrinks as units are added: one fixed-point step with the projected size
        t_now = stats.t.ppf(0.5 + rule.confidence / 2, max(1, units - dof_loss))
        t_new = stats.t.ppf(0.5 + rule.confidence / 2, max(1, math.ceil(want) - dof_loss))
        want = want * (t_new / t_now) ** 2
        total = max(units + upp, math.ceil(want))
        if rule.max_growth is not None:
            total = min(total, max(units + upp, math.ceil(units * rule.max_growth)))
    else:
        total = cap if cap is not None else units * 4
    total = -(-total // upp) * upp
    if cap is not None:
        total = min(total, cap)
    return Decision(False, "more units", int(total), goal)


def iid_images_for(item_variance: float, half_width: float, confidence: float = 0.95) -> int:
    """Smallest n with t_{1-α/2, n-1} · sqrt(σ² / n) <= half_width: the images a plain (iid) run would need."""
    if not (half_width > 0) or not math.isfinite(item_variance):
        return -1
    if item_variance <= 0:
        return 2
    z = stats.norm.ppf(0.5 + confidence / 2)
    n = max(2, math.ceil(item_variance * (z / half_width) ** 2))
    while stats.t.ppf(0.5 + confidence / 2, n - 1) * math.sqrt(item_variance / n) > half_width:
        n = max(n + 1, math.ceil(n * 1.001))
    # walk back if the normal start overshot (never: t > z), kept for clarity of the contract
    while n > 2 and stats.t.ppf(0.5 + confidence / 2, n - 2) * math.sqrt(item_variance / (n - 1)) <= half_width:
        n -= 1
    return int(n)


# ------------------------------------------------------------------------------------------ the interval driver

INTERVALS = ("auto", "t", "betting", "asymptotic")
BETTING_GROWTH = 2.0  # a sequence's stage at most doubles the units: its projection trusts an early spread estimate
MIN_GROWTH = 1.1  # and adds at least 10 % (a look costs O(units); creeping up one prompt at a time costs looks)


@dataclass(frozen=True)
class AutoSwitch:
    """When ``auto`` leaves the t rule, checked at every look: for the betting sequence (bounded values only), a
    run whose per-image values take at most ``max_distinct`` distinct values, and fewer than half as many as there
    are images (flags, counts, a rare outcome that has not shown up yet), or whose unit means have no spread; for
    the asymptotic sequence, a run whose unit means are skewed beyond ``max_skew`` (sample skewness minus two
    standard errors sqrt(6/G), from ``min_units_for_skew`` units on) while the run is still too small for the CLT
    by Cochran's rule at the skewness's upper bound, G < ``clt_margin`` · (|γ̂₁| + 2 sqrt(6/G))² (``None``: at any
    size: a skew that is merely detectable in a large run, where the t interval is sound, then costs the wider
    sequence). ``max_skew`` and ``clt_margin`` are chosen on the tuning laws of ``antithetic-sampling
    estimate-battery`` (see docs/estimate.md)."""

    max_distinct: int = 10
    max_skew: float = 0.0  # estimate-battery's choice on its tuning laws (0.5 and above covered 0.88 there)
    min_units_for_skew: int = 8
    # estimate-battery's choice between None and Cochran's 25 on its tuning laws: 25 spared large, mildly skewed runs
    # their images but left a tuning cell at 0.89 (bimodal scores in pairs, prompts of 4, tight target)
    clt_margin: float | None = None


AUTO_SWITCH = AutoSwitch()


def skewed(y, switch: AutoSwitch) -> bool:
    """|sample skewness| above ``max_skew`` by more than two of its standard errors under normality
    (sqrt(6/G)): small normal samples have skewness ±0.9 (1 SE at G = 8) by chance alone; with ``clt_margin``,
    only while G < clt_margin · (|γ̂₁| + 2 SE)² (Cochran's rule at the skewness's upper bound: beyond it the t
    interval's normal approximation holds even for that skew)."""
    g = len(y)
    if g < switch.min_units_for_skew:
        return False
    gamma, two_se = abs(_skewness(y)), 2 * math.sqrt(6 / g)
    if gamma - two_se <= switch.max_skew:
        return False
    return switch.clt_margin is None or g < switch.clt_margin * (gamma + two_se) ** 2


def _skewness(y) -> float:
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    s = y.std()
    return float(((y - y.mean()) ** 3).mean() / s**3) if s > 0 else math.inf


class SequentialInterval:
    """The stopping driver shared by ``antithetic-queue estimate`` and the benches: it holds the unit means seen
    so far (in the order they were drawn), computes the interval of the chosen kind after every stage and says
    how many units to have before the next look.

    ``interval``:

    * ``t``: the design's t interval on the unit means with the Stein two-stage rule (:func:`decide`); a caller
      with its own t interval (the control variate) passes it to :meth:`look`;
    * ``betting``: the betting confidence sequence (``betting_confidence``) on the unit means, valid at every
      look simultaneously, so the run stops at the first look whose half-width is within the target (the pilot
      included) and a spent budget or an interruption still leaves a valid interval. Every unit's bets are aimed
      at the half-width wanted when it was requested; stages are projected from the running spread,
      n ≈ 2 log(2/α) σ̂²/g² units, and grow at most :data:`BETTING_GROWTH` x;
    * ``asymptotic``: the asymptotic confidence sequence (``asymptotic_confidence_sequence``), ρ tuned for the
      size projected after the pilot; for unbounded values; stops at the first look after the pilot within the
      target once Cochran's rule for the CLT under skew holds (G >= 25 γ̂₁², γ̂₁ the unit means' skewness);
    * ``auto``: the t rule, stopping only once Cochran's rule G >= 25 γ̂₁² holds, and switching for good as soon
      as :class:`AutoSwitch` fires: to the betting sequence for few distinct values or no spread (bounded values),
      to the asymptotic sequence when the unit means are skewed.

    ``value_range``: (lo, hi) every per-image value lies in (unit means then do too), or None (unbounded)."""

    def __init__(self, rule: StoppingRule, interval: str = "auto", value_range: tuple[float, float] | None = (0, 1),
                 unit_size: int = 1, units_per_prompt: int = 1, dof_loss: int = 1,
                 switch: AutoSwitch = AUTO_SWITCH):
        from . import betting_confidence as bc

        if interval not in INTERVALS:
            raise ValueError(f"interval: one of {', '.join(INTERVALS)}, got {interval!r}")
        if interval == "betting" and value_range is None:
            raise ValueError("interval: the betting sequence needs bounded values (a range LO HI)")
        self.rule, self.requested, self.range = rule, interval, value_range
        self.unit_size, self.upp, self.dof_loss, self.switch = int(unit_size), max(1, int(units_per_prompt)), \
            int(dof_loss), switch
        self.method = "betting" if interval == "betting" else ("asymptotic" if interval == "asymptotic" else "t")
        self.switch_reason: str | None = None
        self._cs = (bc.BettingConfidenceSequence(*value_range, rule.confidence, horizon=self._cap())
                    if value_range is not None else None)
        self._units: list = []
        self._distinct: set = set()
        self._n_items = 0
        self._next_goal = rule.target if rule.target is not None else None  # the pilot's goal, if absolute
        self._rho_t: float | None = None
        self.decision = decide(rule, 0, self.unit_size, None, None, self.dof_loss, self.upp)
        if self.method != "t":
            self.decision = Decision(False, "pilot", self._pilot(), float("nan"))

    # --- sizes
    def _cap(self) -> int | None:
        r = self.rule
        return None if r.max_images is None else max(self.upp, (r.max_images // self.unit_size) // self.upp * self.upp)

    def _pilot(self) -> int:
        p = -(-max(self.rule.min_units, self.dof_loss + 2) // self.upp) * self.upp
        cap = self._cap()
        return p if cap is None else min(p, cap)

    @property
    def units_wanted(self) -> int:
        return self.decision.units_wanted

    @property
    def units(self) -> int:
        return len(self._units)

    # --- one look
    def look(self, new_unit_means, new_item_values=None, t_interval: tuple[float, float] | None = None):
        """Add the units drawn since the last look (and optionally their per-image values, for the switch), return
        (interval dict: estimate, low, high, half_width, method; Decision)."""
        import numpy as np

        y_new = np.asarray(new_unit_means, dtype=np.float64).reshape(-1)
        if self._cs is not None:
            self._cs.extend(y_new, goal=self._next_goal, name="unit means")
        self._units.extend(y_new.tolist())
        items = y_new if new_item_values is None else np.asarray(new_item_values, dtype=np.float64).reshape(-1)
        self._n_items += items.shape[0]
        if len(self._distinct) <= self.switch.max_distinct:
            self._distinct.update(np.unique(items).tolist())
        y = np.asarray(self._units)
        g = y.shape[0]
        est = float(y.mean())
        if self.requested == "auto" and self.method == "t":
            reason = self._switch_reason(y)
            if reason and reason.startswith("skewed"):
                # continuous but skewed: the t interval's trouble is the CLT's slow start, not the values; the
                # asymptotic sequence with Cochran's rule fixes that at a small cost, where the betting sequence
                # would pay for the whole declared range (its bets are capped by it, so with unit means spread far
                # less than the range it needs many times the t rule's images: estimate-battery's digits rows)
                self.method, self.switch_reason = "asymptotic", reason
            elif reason and self.range is not None:  # a flag, a rare outcome, no spread: only a guarantee helps
                self.method, self.switch_reason = "betting", reason
        if self.method == "t":
            if t_interval is None:
                from scipy import stats

                hw = float(stats.t.ppf(0.5 + self.rule.confidence / 2, g - 1) * y.std(ddof=1) / math.sqrt(g)) \
                    if g >= 2 else math.inf
                t_interval = (est, hw)
            est, hw = float(t_interval[0]), float(t_interval[1])
            out = {"estimate": est, "low": est - hw, "high": est + hw, "half_width": hw, "method": "t"}
            dec = decide(self.rule, g, self.unit_size, est, hw, self.dof_loss, self.upp)
            if self.requested == "auto" and dec.stop and dec.reason == "target reached":
                dec = self._cochran_gate(y, dec)
        elif self.method == "betting":
            r = self._cs.interval()
            out = {"estimate": r.estimate, "low": r.low, "high": r.high, "half_width": r.half_width,
                   "method": "betting"}
            dec = self._decide_sequence(g, est, r.half_width, self._betting_projection(y))
        else:
            out = self._asymptotic(y)
            # asymptotic: like the t rule, the pilot is never the final sample (its spread is too rough), and the
            # run goes on until Cochran's rule for the CLT under skew, G >= 25 γ̂₁² units, holds
            cochran = 25 * _skewness(y) ** 2 if g >= 3 else math.inf
            dec = self._decide_sequence(g, est, out["half_width"], None,
                                        may_stop=not (self.rule.two_stage and g <= self._pilot()) and g >= cochran)
        goal = target_half_width(self.rule, est)
        self._next_goal = goal if goal > 0 else None
        self.decision = dec
        out["switch_reason"] = self.switch_reason
        return out, dec

    def _cochran_gate(self, y, dec: Decision) -> Decision:
        """``auto`` on the t rule: a stop is accepted only once Cochran's rule for the CLT under skew holds,
        G >= 25 γ̂₁² units (Cochran, *Sampling Techniques*, 1977, §2.15); otherwise the run grows to that size
        (whole prompts, within the budget). Small prompts at a loose target otherwise stop on a handful of units
        whose skewed mean the t interval misjudges; for symmetric unit means the rule asks for nothing more."""
        g = y.shape[0]
        need = 25 * _skewness(y) ** 2 if g >= 3 else math.inf
        if g >= need:
            return dec
        cap = self._cap()
        if cap is not None and g >= cap:
            return Decision(True, "budget spent", g, dec.goal)
        total = max(g + self.upp, math.ceil(min(need, 4 * g)))  # re-checked at the next look (γ̂₁ moves)
        total = -(-total // self.upp) * self.upp
        return Decision(False, "more units (Cochran's rule)", int(total if cap is None else min(total, cap)),
                        dec.goal)

    def _switch_reason(self, y) -> str | None:
        import numpy as np

        if len(self._distinct) <= min(self.switch.max_distinct, self._n_items // 2):
            return f"few distinct values ({len(self._distinct)} in {self._n_items} images)"
        if y.shape[0] >= 2 and float(np.ptp(y)) == 0.0:
            return "no spread"
        if skewed(y, self.switch):
            return f"skewed unit means (skewness {_skewness(y):.2f})"
        return None

    def _betting_projection(self, y) -> float:
        """Units at which bets aimed at the goal reach it: 2 log(2/α) σ̂²/g² with the paper's regularised spread
        (prior variance 1/4 of the range², one pseudo-observation: never 0 before the run has seen any spread)."""
        import numpy as np

        lo, hi = self.range
        z = (y - lo) / (hi - lo)
        t = np.arange(1, z.shape[0] + 1)
        mu = (0.5 + np.cumsum(z)) / (t + 1)
        s2 = (0.25 + np.sum((z - mu) ** 2)) / (z.shape[0] + 1)
        g = target_half_width(self.rule, float(y.mean())) / (hi - lo)
        alpha = 1 - self.rule.confidence
        return 2 * math.log(2 / alpha) * s2 / g**2 if g > 0 else math.inf

    def _asymptotic(self, y) -> dict:
        from .asymptotic_confidence_sequence import asymptotic_cs

        g = y.shape[0]
        if g < 2:
            return {"estimate": float(y.mean()), "low": -math.inf, "high": math.inf, "half_width": math.inf,
                    "method": "asymptotic"}
        if self._rho_t is None and g >= self._pilot():
            # ρ tuned once, for the size the t rule would project from the pilot
            from scipy import stats

            h = stats.t.ppf(0.5 + self.rule.confidence / 2, g - 1) * y.std(ddof=1) / math.sqrt(g)
            goal = target_half_width(self.rule, float(y.mean()))
            self._rho_t = float(max(g, g * (h / goal) ** 2)) if goal > 0 and math.isfinite(h) else float(g)
        # no running intersection: the sequence is valid only asymptotically, and intersecting would carry an early,
        # too narrow interval (heavy tails: a small early spread) to the end
        est, lo, hi = asymptotic_cs(y, self.rule.confidence, t_star=self._rho_t or g, times=[g],
                                    running_intersection=False)
        a, b = float(lo[0]), float(hi[0])
        return {"estimate": float(est[0]), "low": a, "high": b, "half_width": (b - a) / 2, "method": "asymptotic"}

    def _decide_sequence(self, g: int, est: float, hw: float, projection: float | None,
                         may_stop: bool = True) -> Decision:
        """Stage rule of the confidence sequences: stop at any look within the target (valid by time-uniformity),
        else project the units (the larger of ``projection`` and g (h/goal)²), at least MIN_GROWTH x and one
        prompt more, at most BETTING_GROWTH x, rounded to whole prompts and capped by the budget."""
        goal = target_half_width(self.rule, est)
        if g < self._pilot():
            return Decision(False, "pilot", self._pilot(), goal)
        if hw <= goal and may_stop:
            return Decision(True, "target reached", g, goal)
        cap = self._cap()
        if cap is not None and g >= cap:
            return Decision(True, "budget spent", g, goal)
        ratio = g * (hw / goal) ** 2 if goal > 0 else math.inf
        want = ratio if projection is None else max(projection, ratio)
        want = want / self.rule.aim if math.isfinite(want) else math.inf
        floor = max(g + self.upp, math.ceil(g * MIN_GROWTH))
        total = min(max(floor, math.ceil(want) if math.isfinite(want) else g * 4),
                    max(floor, math.ceil(g * BETTING_GROWTH)))
        total = -(-total // self.upp) * self.upp
        if cap is not None:
            total = min(total, cap)
        return Decision(False, "more units", int(total), goal)
