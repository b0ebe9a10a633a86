"""Argument checks shared by the public functions of ``nodes.methods``: a bad value is refused with a ValueError
that names the argument, before it can turn into a silent truncation or an unrelated error deep inside torch."""

from __future__ import annotations

import math
import numbers

SEED_LIMIT = 1 << 64


def check_seed(seed, name: str = "seed") -> int:
    """A seed as a Python int: an integer (not a bool, not a float, not even 3.0) in [0, 2**64)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {seed!r} ({type(seed).__name__})")
    value = int(seed)
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {value}")
    return value


def check_finite(value, name: str, minimum: float | None = None, maximum: float | None = None) -> float:
    """A real number that is finite (not NaN, not inf) and within [minimum, maximum] where given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value:g}")
    return value


def check_int(value, name: str, minimum: int | None = None) -> int:
    """An integer (not a bool or float) >= minimum where given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_band(sigma_start, sigma_end, start_name: str = "sigma_start", end_name: str = "sigma_end") -> tuple[float, float]:
    """A guidance band [sigma_end, sigma_start]: both finite and >= 0, the upper end first."""
    start = check_finite(sigma_start, start_name, minimum=0.0) if not _is_inf(sigma_start) else math.inf
    end = check_finite(sigma_end, end_name, minimum=0.0)
    if end > start:
        raise ValueError(f"{end_name} ({end:g}) must not exceed {start_name} ({start:g}): the band runs from "
                         f"{start_name} (high noise) down to {end_name}; swap them")
    return start, end


def _is_inf(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value) == math.inf


# ComfyUI IMAGE tensors hold values in 0..1; anything far above is almost surely 0..255 pixels.
UNIT_RANGE_LIMIT = 2.0


def check_unit_range(images, name: str = "images") -> None:
    """Refuse images that are clearly in 0..255 (max > 2) instead of ComfyUI's 0..1: every metric would be off by
    a factor 255 (correlations would not, which hides the mistake)."""
    if (images.numel() if hasattr(images, "numel") else images.size) == 0:
        return
    top = float(images.max())
    if top > UNIT_RANGE_LIMIT:
        raise ValueError(f"{name}: pixel values reach {top:g}, but IMAGE values are 0..1 in ComfyUI; these look like "
                         "0..255 pixels: divide by 255 first")
