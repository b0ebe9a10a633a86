"""Test-only stand-in for ``torchvision.models``; raises on any real use."""

from .._missing import module_getattr

__getattr__ = module_getattr(__name__)
