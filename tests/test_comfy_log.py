"""nodes/local_comfy/comfy_log.py: import problems of the pack read from the load section of a ComfyUI log, in
the bare format of 0.3.x and the level-prefixed (and coloured) format of 0.33; the e2e test
tests/test_e2e_noise.py::test_import_problem_of_a_broken_pack_copy_is_detected does the same on a real server."""

from __future__ import annotations

from antithetic_sampling.nodes.local_comfy.comfy_log import load_section, pack_import_problems, plain

PACK = "antithetic-sampling"
BASE = "/tmp/base/custom_nodes"

FAILED_PROMPT = [
    "got prompt",
    "!!! Exception during processing !!! spectral_coefficients must be between 1 and 64",
    "Traceback (most recent call last):",
    f'  File "{BASE}/{PACK}/nodes/sobol_rqmc.py", line 10, in sample',
    "    raise ValueError('spectral_coefficients must be between 1 and 64')",
    "ValueError: spectral_coefficients must be between 1 and 64",
    "Prompt executed in 0.10 seconds",
]
IMPORT_FAILURE = [
    "Traceback (most recent call last):",
    '  File "/comfy/nodes.py", line 2130, in load_custom_node',
    "    module_spec.loader.exec_module(module)",
    f'  File "{BASE}/{PACK}/nodes/extension.py", line 1, in <module>',
    "    raise ImportError('broken')",
    "ImportError: broken",
    "",
    f"Cannot import {BASE}/{PACK} module for custom nodes: broken",
]


def v064(load: list[str], served: list[str]) -> str:
    return "\n".join(["Total VRAM 1 MB", *load, "", "Import times for custom nodes:",
                      f"   0.0 seconds (IMPORT FAILED): {BASE}/{PACK}" if load else f"   0.5 seconds: {BASE}/{PACK}",
                      "", "Starting server", "", "To see the GUI go to: http://127.0.0.1:8188", *served])


def v033(load: list[str], served: list[str]) -> str:
    """The 0.33 formatter: "[LEVEL] " on a record's first line, ANSI colours; tracebacks at ERROR."""
    def rec(level: str, lines: list[str]) -> list[str]:
        colour = {"INFO": "\x1b[32m", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m"}[level]
        return [f"{colour}[{level}]\x1b[0m {lines[0]}", *lines[1:]] if lines else []

    text = [*rec("INFO", ["Total VRAM 1 MB"]), *rec("WARNING", load), "Import times for custom nodes:",
            *rec("INFO", [f"   0.5 seconds: {BASE}/{PACK}"]), *rec("INFO", ["Starting server"])]
    return "\n".join(text + rec("ERROR", served))


def test_plain_strips_colour_and_level():
    assert plain("\x1b[31m[ERROR]\x1b[0m Traceback (most recent call last):") == "Traceback (most recent call last):"
    assert plain("  File \"x.py\", line 1") == "  File \"x.py\", line 1"


def test_failed_prompts_after_start_are_not_import_problems():
    for fmt in (v064, v033):
        text = fmt([], FAILED_PROMPT)
        assert load_section(text) is not None
        assert pack_import_problems(text, PACK) == [], fmt.__name__


def test_import_failure_is_found_in_both_formats():
    for fmt in (v064, v033):
        problems = pack_import_problems(fmt(IMPORT_FAILURE, FAILED_PROMPT), PACK)
        assert any("ImportError: broken" in p and "extension.py" in p for p in problems), (fmt.__name__, problems)
        assert any(p.startswith("Cannot import") for p in problems), (fmt.__name__, problems)
        assert not any("spectral_coefficients" in p for p in problems), (fmt.__name__, problems)


def test_v3_entrypoint_error_without_traceback_is_found():
    line = f"Error while calling comfy_entrypoint in {BASE}/{PACK}: deliberately broken"
    problems = pack_import_problems(v033([line], FAILED_PROMPT), PACK)
    assert problems == [line], problems
    # a warning naming the pack's folder while nodes load counts too, whatever its wording
    other = f"Some new core check failed for {BASE}/{PACK}"
    assert pack_import_problems(v033([other], []), PACK) == [other]
    assert pack_import_problems(v033([], []), PACK) == []


def test_another_packs_failure_is_not_ours():
    other = [ln.replace(PACK, "some-other-pack") for ln in IMPORT_FAILURE]
    assert pack_import_problems(v033(other, []), PACK) == []


def test_a_log_that_never_started_serving_is_read_whole():
    text = "\n".join(["Total VRAM 1 MB", *IMPORT_FAILURE])
    assert load_section(text) is None
    assert pack_import_problems(text, PACK)
