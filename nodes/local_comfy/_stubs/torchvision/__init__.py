"""Test-only torchvision stand-in; see nodes/local_comfy/_stubs/README.md. Importable, raises on any real use."""

from . import models, ops, transforms
from ._missing import module_getattr

__version__ = "0.0.0+antithetic-sampling-test-stub"
IS_ANTITHETIC_SAMPLING_STUB = True

__getattr__ = module_getattr(__name__)
__all__ = ["models", "ops", "transforms"]
