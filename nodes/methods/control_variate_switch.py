"""When ``--control-variates auto`` turns the noise control variate on: a size rule with no tuned constant.

The cross-fitted control variate (``noise_control_variates``) needs its own pilot before it can stop: at least 4
units (intercept, β and their spread), never the final sample, then one prompt more. It can only save images when
the design alone would need more than that, so the switch compares the design alone's pilot projection (the Stein
step, ``sequential_estimation.decide``) with that minimum:

    on  ⇔  projected images > (⌈max(pilot_cv, 4) / u⌉ · u + u) · K

u = units per prompt, K = images per unit. Shared by ``antithetic-queue estimate`` and ``estimate-bench`` (which
measures it), so that neither copies it.
"""

from __future__ import annotations


def auto_control_variate(projected_images: int, unit_size: int, units_per_prompt: int, cv_pilot_units: int) -> bool:
    """``--control-variates auto``: turn the control variate on when the design alone's pilot projects more images
    than the control-variate route can possibly stop at: its own pilot (never the final sample, at least 4 units
    for the intercept, β and their spread) and one prompt more. Below that the control can only cost images
    (estimate-bench: it pays at tight targets and costs at loose ones)."""
    upp = max(1, int(units_per_prompt))
    pilot = -(-max(int(cv_pilot_units), 4) // upp) * upp
    return int(projected_images) > (pilot + upp) * int(unit_size)
