"""Estimating a mean to a target half-width with as few images as possible: a pilot, then Stein-style jumps.

Jia et al., "Antithetic Noise in Diffusion Models" (arXiv 2506.06185, ICLR 2026), §5.1: with a noise design the
independent units are pairs / K-groups / RQMC replicates, and the interval is μ̂ ± t_{1-α/2, G-1} s(Ȳ)/√G over the
G unit means Ȳ_g. This module turns that interval into a stopping rule.

Rule (a sequential variant of Stein's two-stage procedure; Stein 1945, *Ann. Math. Statist.* 16:243; Chow &
Robbins 1965, *Ann. Math. Statist.* 36:457):

1. pilot: G₀ units (at least ``min_units``, whole prompts);
2. after every stage, compute the interval exactly as the interval node does (or the control-variate interval);
   stop when its half-width h_G <= target (absolute, or ``target_rel`` · |μ̂|, the smaller when both are given);
3. otherwise project the units needed from the current spread, G' = ⌈G (h_G / (a · target))² (t_{G'-d} / t_{G-d})²⌉
   (the Stein step with the t quantile of the larger sample; a = ``aim`` <= 1 sizes the stage slightly below the
   target so that most runs stop at the first projected stage instead of stopping selectively when the spread
   happens to come out small), add at least one prompt (and, with ``max_growth``, at most that factor: the
   control-variate interval narrows as its surrogate learns, so one jump from a small stage would overshoot), and
   go to 2;
4. stop anyway when the image budget is spent (the interval is then reported as it is, wider than asked).

Stopping when the current interval is narrow enough slightly favours samples whose spread happens to be small,
so the coverage of the final interval is not exactly the nominal one; it is *measured* by ``estimate-bench`` for
every design and target (≥ 200 repetitions), never assumed.

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
    if half_width <= goal:
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
