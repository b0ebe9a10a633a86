"""The pack's V3 ``ComfyExtension``: collects ``NODES`` from every ``nodes/*_nodes.py`` module."""

from __future__ import annotations

import importlib
import logging
import pkgutil

from comfy_api.latest import ComfyExtension, io

log = logging.getLogger("antithetic_sampling")


def _node_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(_pkg_path()) if m.name.endswith("_nodes"))


def _pkg_path() -> list[str]:
    from . import __path__ as pkg_path

    return list(pkg_path)


def collect_nodes() -> list[type[io.ComfyNode]]:
    nodes: list[type[io.ComfyNode]] = []
    for name in _node_modules():
        module = importlib.import_module(f"{__package__}.{name}")
        nodes.extend(getattr(module, "NODES", []))
    return nodes


class AntitheticSamplingExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return collect_nodes()
