"""Test-only stand-in for ``torchvision.transforms.functional``; raises on any real use."""

import enum

from .._missing import module_getattr


class InterpolationMode(enum.Enum):
    """Same members as torchvision's enum so module-level references resolve."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


__getattr__ = module_getattr(__name__)
