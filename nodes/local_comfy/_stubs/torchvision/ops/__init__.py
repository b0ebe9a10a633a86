"""Test-only stand-in for ``torchvision.ops``; raises on any real use (ComfyUI 0.33 imports ``roi_align`` and
``deform_conv2d`` from it while starting: the SAM3 detector and BiRefNet nodes, which SD1.x txt2img never runs)."""

from .._missing import module_getattr

__getattr__ = module_getattr(__name__)
