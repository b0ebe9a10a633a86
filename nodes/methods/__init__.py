"""Pure math of the pack: torch, numpy and scipy only. Nothing in this package may import ``comfy``."""
