"""Placeholder objects for the test-only torchvision stand-in (see nodes/local_comfy/_stubs/README.md)."""

from __future__ import annotations

_HINT = (
    "is not available: this is the test-only torchvision stand-in from antithetic-sampling's nodes/local_comfy/_stubs "
    "(the real torchvision could not be imported in this Python). Install a torchvision that matches your torch "
    "to use it."
)


class Missing:
    """Stands in for any torchvision attribute: importable and nestable, but raises as soon as it is used."""

    def __init__(self, qualname: str) -> None:
        object.__setattr__(self, "_qualname", qualname)

    def __getattr__(self, name: str) -> Missing:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return Missing(f"{self._qualname}.{name}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._qualname} {_HINT}")

    def __mro_entries__(self, bases):
        raise RuntimeError(f"{self._qualname} {_HINT} (cannot subclass it)")

    def __repr__(self) -> str:
        return f"<missing {self._qualname} (torchvision test stand-in)>"


def module_getattr(module_name: str):
    """Build a module-level ``__getattr__`` returning a :class:`Missing` for every unknown attribute."""

    def __getattr__(name: str) -> Missing:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return Missing(f"{module_name}.{name}")

    return __getattr__
