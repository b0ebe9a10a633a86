"""Run a local ComfyUI with this pack installed: find a checkout, build a tiny random-weight SD1.5 checkpoint,
start ``main.py`` on a free port, talk to it over HTTP, and shrink the example workflows so they run on that
checkpoint in seconds. One module per concern:

* ``checkout``: find the checkout and its Python (:func:`~.checkout.discover` -> :class:`~.checkout.ComfyEnv`);
* ``preflight``: will that Python start the server (its ``requirements.txt``), which flags ``main.py`` takes;
* ``tiny_checkpoint`` / ``tiny_checkpoint_builder``: the random-weight SD1.5 checkpoint, cached / built;
* ``frontend``: an exact ``comfyui-frontend-package`` version in the cache, for ``--front-end-root``;
* ``server``: the running server and its HTTP calls (:class:`~.server.ComfyServer`);
* ``errors``: :class:`~.errors.ComfyUnavailable` (skip), :class:`~.errors.ComfyError` (a failed prompt) and
  readable text of the server's error answers;
* ``txt2img_graph``: API-format test graphs for the tiny checkpoint; ``tiny_workflow``: the example workflows
  shrunk to it;
* ``paths``: the pack root, the stand-ins, the cache folder.

Used by the e2e tests, ``antithetic-sampling soak`` / ``guidance-bench``, and the Ray engine of the batch
client. Imports nothing from ComfyUI or torch at module level (the checkpoint builder runs in ComfyUI's own
Python as a subprocess).
"""
