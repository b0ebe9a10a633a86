"""Run a local ComfyUI with this pack installed: find a checkout, build a tiny random-weight SD1.5 checkpoint,
start ``main.py`` on a free port, talk to it over HTTP (``host``), and shrink the example workflows so they run
on that checkpoint in seconds (``tiny_workflow``).

Used by the e2e tests, ``antithetic-sampling soak`` / ``guidance-bench``, and the Ray engine of the batch
client. Imports nothing from ComfyUI or torch at module level (the checkpoint builder runs in ComfyUI's own
Python as a subprocess).
"""
