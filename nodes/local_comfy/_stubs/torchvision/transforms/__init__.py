"""Test-only stand-in for ``torchvision.transforms``; raises on any real use."""

from .._missing import module_getattr
from . import functional

InterpolationMode = functional.InterpolationMode

__getattr__ = module_getattr(__name__)
__all__ = ["InterpolationMode", "functional"]
