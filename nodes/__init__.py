"""Python package of the pack.

- ``nodes.methods``: pure torch/numpy/scipy math (never imports ``comfy``).
- ``nodes.*_nodes``: thin V3 node classes (``comfy_api.latest``) that adapt the methods; each module exports
  ``NODES``, collected by ``nodes.extension``.
- ``nodes.evidence``: embedded models, sampling harness, ``demo`` and ``bench`` (no ComfyUI needed).
- ``nodes.api_client``: batch-queue client for the ComfyUI HTTP API.
"""
