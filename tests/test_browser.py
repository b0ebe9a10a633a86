"""The example workflows and the frontend extension in a real browser against a real ComfyUI.

Headless Chromium (Debian's ``chromium`` package, ``/usr/bin/chromium`` or ``$CHROMIUM_PATH``) driven by
Playwright's Python package (``pip install playwright``; its own browser downloads are never used), against the
session ``comfy_server`` fixture (ComfyUI on a free loopback port, this pack symlinked into custom_nodes, the
tiny random SD1.5 checkpoint). Skips with the reason when Chromium, Playwright or ComfyUI is missing.

What it checks, in file order (one browser page per cell of the matrix below):
* the frontend starts with our extension registered once (one ``antithetic_sampling.ui`` entry, the script
  fetched once), in the cell's renderer and without console errors of the pack's. Console errors are attributed
  by source (see ``PACK_SOURCES``): the pack's script or files, or an error raised through the script, fail the
  test; the frontend's own (offline fetches, its start-up races) are listed at the end of each cell; a control
  test throws from the pack's script and from another script and checks both land on their side;
* the "missing nodes" detector used below does see that warning (so its silence later means something);
* every workflow, opened the way a user does (templates browser -> the pack's entry -> its card): the pack is
  listed under Custom Nodes (1.27) / Extensions (newer) with all six cards and their
  thumbnails; loading opens no dialog (missing nodes / models) and logs no console error of the pack's; the graph
  equals the file (nodes, links, every widget value after the frontend's own round trip); the frontend's own prompt
  conversion executes the same as ``workflows/api/<name>.json`` (class types, inputs, links); our design badge
  on every node that carries a design, drawn next to the frontend's own badges and never in red on a shipped workflow; pack nodes in the category colours;
  no overlapping nodes or groups, no badge over another node or a group title; a screenshot of the whole graph
  (``--update-thumbnails`` turns it into ``workflows/<name>.jpg``);
* new pack nodes get the category colour and exactly one badge;
* a long red badge on a narrow node stays inside the node (canvas: wrapped; Vue: ellipsis, full text as title);
* the mismatch warning turns on (red, with the reason, actually drawn on the canvas) when a design is changed
  (through the graph API in the page) to disagree with its noise node, and off again when it agrees, for the
  metric, the confidence interval and the Antithetic Sampler; a pair metric on an independent batch stays neutral;
* one workflow run from the UI: antithetic_vs_independent, switched to the tiny checkpoint, 64 px and 2 steps
  (bundled canvas: the way a user does it, mouse on the canvas widgets: the checkpoint combo's list, the number
  prompts), queued
  with the Run button; both image batches show in their Save Image nodes, the metric node shows its plot and our
  summary panel with exactly the text the server put in ``/history``; the panel is neither saved in the
  workflow nor sent with the prompt.

The whole module runs as a matrix of cells (pytest ids ``[bundled-canvas]`` ...; ``-k newest-vue`` picks one):

* ``bundled-canvas``: the frontend bundled with the ComfyUI checkout (1.27 with 0.3.64), LiteGraph canvas.
* ``bundled-vue``: the same frontend with its experimental Vue renderer (``Comfy.VueNodes.Enabled``). 1.27's
  renderer draws no node badges or colours at all (not even the frontend's own) and attaches no DOM widgets, so
  only start-up and the missing-node check run there; the rest skips with that reason.
* ``newest-canvas`` / ``newest-vue``: ``comfyui-frontend-package`` ``NEWEST_FRONTEND`` (exact pin, override with
  ``$ANTITHETIC_NEWEST_FRONTEND``) installed by ``ensure_frontend`` (nodes/local_comfy/frontend.py) (``pip install --no-deps --target`` into
  the cache, nothing else touched) and served by a second server with ``--front-end-root``; canvas and the Vue
  renderer ("Nodes 2.0"). Skips with the reason when pip cannot fetch it or the checkout lacks
  ``--front-end-root``.

Selectors follow the version: templates browser (1.27: ComfyUI menu -> Browse Templates -> "Custom Nodes";
newest: sidebar Templates -> "Extensions"), the Run button, image outputs (Vue mode: Save Image's ``node.imgs``
stays empty although the images show, so the DOM is read). The run is driven by mouse on the canvas widgets in
``bundled-canvas``, through the graph API elsewhere. Our script must not touch APIs the frontend deprecates
(LiteGraph's ``onDeprecationWarning``, checked after every test, with our script on the stack).

Screenshots go to ``$ANTITHETIC_BROWSER_SCREENSHOTS`` or a folder under pytest's temporary directory (printed at
the end of the module).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
import warnings

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
    pytest.skip(
        f"browser: no Chromium at {CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="browser: Playwright's Python package is missing (pip install playwright; only its driver is used, "
    "never `playwright install`)",
)

from antithetic_sampling.nodes.api_client.example_workflows import CATEGORY_COLORS  # noqa: E402
from antithetic_sampling.nodes.local_comfy.errors import ComfyUnavailable  # noqa: E402
from antithetic_sampling.nodes.local_comfy.frontend import ensure_frontend  # noqa: E402
from antithetic_sampling.nodes.local_comfy.paths import CHECKPOINT_NAME, PACK_FOLDER  # noqa: E402
from antithetic_sampling.nodes.local_comfy.server import ComfyServer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
WF = ROOT / "workflows"
NAMES = sorted(p.stem for p in WF.glob("*.json"))
EXTENSION_NAME = "antithetic_sampling.ui"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}
UI_TIMEOUT_MS = 180_000  # generous: two shared cores, other servers busy
RUN_TIMEOUT_S = 900
THUMB_WIDTH = 512
# The newest comfyui-frontend-package on PyPI when this was written (exact: what the matrix tested).
NEWEST_FRONTEND = os.environ.get("ANTITHETIC_NEWEST_FRONTEND", "1.58.1")
CELLS = ["bundled-canvas", "bundled-vue", "newest-canvas", "newest-vue"]
BUNDLED_VUE_SKIP = (
    "bundled frontend's experimental Vue renderer draws no node badges or colours (not even the frontend's own) "
    "and attaches no DOM widgets: a frontend limitation, nothing for the pack to show"
)

# Our badge on every node that carries a design in the shipped workflows: {workflow: {node id: text}}.
EXPECTED_BADGES = {
    "antithetic_vs_independent": {8: "pairs · interleaved", 11: "pairs · interleaved"},
    "flow_model_antithetic": {10: "pairs · interleaved", 14: "pairs · interleaved"},
    "k_antithetic_gallery": {8: "K=4 · interleaved", 12: "K=4 · interleaved"},
    "nag_guided_ksampler": {},
    "partial_antithetic_ancestral": {
        12: "pairs · interleaved · masked", 13: "mirrored pairs · interleaved · masked", 20: "pairs · interleaved",
    },
    "sobol_rqmc_estimate": {8: "RQMC · n=8", 12: "RQMC · n=8", 17: "iid"},
}
WARN_BG = "#B3261E"
DESIGN_NODES = {"AntitheticLatentNoise", "SobolRQMCLatentBatch", "AntitheticSampler", "AntitheticKSampler", "PairDiversityMetric",
                "NoiseDesignConfidenceInterval"}

# Console errors are attributed by source. The pack's (they fail the test): logged or thrown by its script (the
# script's URL as the message's location or in an error's stack: an error raised through one of its hooks and
# logged by the frontend counts too), naming its frontend extension, or a failed request for one of its files
# (the script, the templates and their thumbnails). Everything else is the frontend's own (offline fetches the
# page's Content-Security-Policy blocks, start-up races such as 1.49's "ComfyApp graph accessed before
# initialization", routes an older backend lacks, 1.27's settingStore bug): listed at the end of each cell, never
# failed. tests/test_browser.py::test_console_errors_are_attributed_by_source shows both sides still fire.
PACK_SOURCES = (
    f"/extensions/{PACK_FOLDER}/",
    "antithetic_sampling.js",
    EXTENSION_NAME,
    f"/api/workflow_templates/{PACK_FOLDER}/",
)


def is_packs(text: str, url: str) -> bool:
    """Whether a console error or uncaught exception (message or stack text, and the URL it came from) is the
    pack's: its script or files are its source, or it names the pack's frontend extension."""
    return any(src in text or src in url for src in PACK_SOURCES)


class Console:
    """The page's console errors and uncaught exceptions, attributed by source: ``entries`` (the pack's, in
    order) and ``foreign`` (the frontend's own, listed); and the extension scripts the page fetched."""

    def __init__(self, page, allow_missing_thumbnails: bool, newest: bool = False) -> None:
        self.entries: list[str] = []
        self.foreign: list[str] = []
        self.extension_requests: list[str] = []
        self.allow_missing_thumbnails = allow_missing_thumbnails
        self.newest = newest
        page.on("console", self._on_console)
        page.on("pageerror", self._on_pageerror)
        page.on("request", self._on_request)

    def _on_request(self, req) -> None:
        if "/extensions/" in req.url:
            self.extension_requests.append(req.url.split("/extensions/", 1)[1])

    def _on_console(self, msg) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        entry = f"console.error: {msg.text} ({url})"
        if not is_packs(msg.text, url):
            self.foreign.append(entry)
            return
        if ("Failed to load resource" in msg.text and "404" in msg.text and self.allow_missing_thumbnails
                and f"/api/workflow_templates/{PACK_FOLDER}/" in url and url.endswith(".jpg")):
            return  # --update-thumbnails: the thumbnails being made may not exist yet
        self.entries.append(entry)

    def _on_pageerror(self, err) -> None:
        text = f"{err.name}: {err.message}\n{err.stack or ''}"
        (self.entries if is_packs(text, "") else self.foreign).append(f"uncaught: {text}")

    def mark(self) -> int:
        return len(self.entries)

    def since(self, mark: int) -> list[str]:
        return self.entries[mark:]


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, request):
    env = os.environ.get("ANTITHETIC_BROWSER_SCREENSHOTS")
    if env:
        out = pathlib.Path(env)
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = tmp_path_factory.mktemp("browser_screenshots")
    yield out
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"[browser] screenshots in {out}")


# Loader node -> the models folder its file input lists (ComfyUI's folder_paths names).
LOADER_FOLDERS = {
    "CheckpointLoaderSimple": "checkpoints", "TripleCLIPLoader": "text_encoders", "DualCLIPLoader": "text_encoders",
    "CLIPLoader": "text_encoders", "VAELoader": "vae", "UNETLoader": "diffusion_models",
    "CLIPVisionLoader": "clip_vision", "LoraLoader": "loras",
}
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")


def workflow_model_files() -> set[tuple[str, str]]:
    """(models folder, file name) of every model file the shipped workflows name."""
    out = set()
    for name in NAMES:
        for node in load_api(name).values():
            for value in node["inputs"].values():
                if isinstance(value, str) and value.endswith(MODEL_SUFFIXES):
                    folder = LOADER_FOLDERS.get(node["class_type"])
                    assert folder, f"{name}: add the models folder of {node['class_type']} to LOADER_FOLDERS"
                    out.add((folder, value))
    return out


class Cell:
    """One cell of the matrix: which frontend, which renderer, and the server that serves it."""

    def __init__(self, name: str, server) -> None:
        self.name = name
        self.newest = name.startswith("newest")
        self.vue = name.endswith("vue")
        self.server = server
        # The 1.27 series (bundled with ComfyUI 0.3.64): templates under the ComfyUI menu, widgets driven with the
        # mouse on the canvas, a Vue renderer without badges. Newer frontends (1.49 bundled with 0.33, 1.58):
        # the Templates side bar. Set from the version the page reports (see the ``browser`` fixture).
        self.frontend_version = ""
        self.legacy_ui = not self.newest

    def skip_unless_shown(self) -> None:
        if self.vue and self.legacy_ui:
            pytest.skip(BUNDLED_VUE_SKIP)


def _server_with_model_placeholders(comfy_server, base, extra_args: list[str]):
    """A second server of the same checkout whose model folders hold the shipped workflows' model files.

    Newer frontends (1.49 bundled with 0.33, 1.58) check a loaded workflow's model files against the server's
    lists and warn about missing ones (1.27 does not). The shipped workflows name real models (SD1.5, SDXL, SD3.5
    and its text encoders); on this server they exist as placeholders (links to the tiny checkpoint, never loaded:
    the run switches to the tiny checkpoint), as on an install that has them, so "no warning on load" stays a
    strict check.
    """
    server = ComfyServer(comfy_server.env, base, comfy_server.checkpoint_path, extra_args=extra_args)
    for folder, filename in workflow_model_files():
        target = base / "models" / folder / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(comfy_server.checkpoint_path)
    return server


def bundled_frontend_version(comfy_server) -> tuple[int, ...]:
    """The ``comfyui-frontend-package`` version the checkout pins in its requirements.txt (its bundled frontend)."""
    text = (comfy_server.env.comfy_path / "requirements.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == "comfyui-frontend-package":
            return tuple(int(p) for p in version.strip().split(".") if p.isdigit())
    return ()


@pytest.fixture(scope="module")
def newest_server(comfy_server, tmp_path_factory):
    """A second server of the same checkout, serving the newest frontend (``--front-end-root``)."""
    cenv = comfy_server.env
    if "--front-end-root" not in cenv.server_flags:
        pytest.skip(f"newest frontend: ComfyUI {cenv.version} has no --front-end-root")
    try:
        static = ensure_frontend(NEWEST_FRONTEND)
    except ComfyUnavailable as e:
        pytest.skip(f"newest frontend: {e}")
    server = _server_with_model_placeholders(comfy_server, tmp_path_factory.mktemp("comfy_newest"),
                                             ["--front-end-root", str(static)])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bundled_server(comfy_server, tmp_path_factory):
    """The bundled frontend's server: the session server while that frontend is the 1.27 series (it checks no
    model files); from 1.28 on, a second server with the workflows' model files as placeholders."""
    if bundled_frontend_version(comfy_server)[:2] < (1, 28):
        yield comfy_server
        return
    server = _server_with_model_placeholders(comfy_server, tmp_path_factory.mktemp("comfy_bundled"), [])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=CELLS)
def cell(request, comfy_server):
    if request.param.startswith("newest"):
        return Cell(request.param, request.getfixturevalue("newest_server"))
    return Cell(request.param, request.getfixturevalue("bundled_server"))


DEPRECATION_SPY_JS = """() => {
  // Every deprecation LiteGraph reports, with the stack that triggered it (ours: antithetic_sampling.js on it).
  window.__antitheticDeprecations = [];
  if (!Array.isArray(LiteGraph.onDeprecationWarning)) return false;
  LiteGraph.alwaysRepeatWarnings = true;
  LiteGraph.onDeprecationWarning.push((message) => {
    const stack = new Error().stack ?? '';
    if (stack.includes('antithetic_sampling.js')) window.__antitheticDeprecations.push(`${message}\n${stack}`);
  });
  return true;
}"""


@pytest.fixture(scope="module")
def browser(cell, tmp_path_factory, request):
    # A returning user: with Comfy.TutorialCompleted unset the frontend opens the templates dialog by itself at
    # an unpredictable moment, racing the clicks below. The minimap would sit on top of the screenshots. The
    # renderer is a user setting, set before the page opens.
    for key, value in (("Comfy.TutorialCompleted", True), ("Comfy.Minimap.Visible", False),
                       ("Comfy.VueNodes.Enabled", cell.vue)):
        cell.server.post_json(f"/api/settings/{key}", value)
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium_profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        page = context.new_page()
        console = Console(page, allow_missing_thumbnails=request.config.getoption("--update-thumbnails"),
                          newest=cell.newest)
        page.goto(cell.server.url, wait_until="domcontentloaded")
        page.wait_for_function(
            "() => window.app?.graph && window.app?.canvas && window.app?.extensionManager"
            " && document.querySelector('[data-testid=\"queue-button\"]')",
            timeout=UI_TIMEOUT_MS,
        )
        page.wait_for_load_state("networkidle", timeout=UI_TIMEOUT_MS)
        cell.frontend_version = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ ?? ''")
        parts = tuple(int(p) for p in cell.frontend_version.split(".")[:2] if p.isdigit())
        cell.legacy_ui = len(parts) == 2 and parts < (1, 28)
        console.deprecations_tracked = page.evaluate(DEPRECATION_SPY_JS)
        try:
            yield page, console
        finally:
            context.close()
            _list_foreign(request, cell, console)


class FrontendConsoleErrors(UserWarning):
    """The frontend's own console errors in one cell: listed in pytest's warnings summary, never failed."""


def _list_foreign(request, cell, console) -> None:
    """List the frontend's own console errors of a cell (counted, first lines) as one warning: pytest prints it in
    its warnings summary whatever the verbosity."""
    if not console.foreign:
        return
    counts: dict[str, int] = {}
    for entry in console.foreign:
        first = entry.splitlines()[0][:300]
        counts[first] = counts.get(first, 0) + 1
    lines = "".join(f"\n  {n} x {first}" for first, n in counts.items())
    warnings.warn(FrontendConsoleErrors(f"[browser] {cell.name}: {len(console.foreign)} console errors of the "
                                        f"frontend's own (not the pack's; listed, not failed):{lines}"), stacklevel=1)


@pytest.fixture(autouse=True)
def _no_deprecated_api_from_our_script(request):
    # After every test of a cell: LiteGraph reported no deprecated API use with our script on the stack.
    yield
    if "browser" not in request.fixturenames:
        return
    page = request.getfixturevalue("browser")[0]
    ours = page.evaluate("() => window.__antitheticDeprecations ?? []")
    assert ours == [], "our script used deprecated frontend APIs:\n" + "\n".join(ours)


@pytest.fixture()
def page(browser):
    return browser[0]


@pytest.fixture()
def console(browser):
    return browser[1]


# ------------------------------------------------------------------------------------------------ helpers


def load_ui(name: str) -> dict:
    return json.loads((WF / f"{name}.json").read_text(encoding="utf-8"))


def load_api(name: str) -> dict:
    return json.loads((WF / "api" / f"{name}.json").read_text(encoding="utf-8"))


DIALOGS_JS = """() => [...document.querySelectorAll('.global-dialog, [role="dialog"]')]
    .filter(d => d.checkVisibility ? d.checkVisibility() : d.offsetParent !== null)
    .filter((d, i, all) => !all.some(o => o !== d && o.contains(d)))
    .map(d => ({key: d.getAttribute('aria-labelledby'), text: d.innerText.slice(0, 400)}))"""


def open_dialogs(page) -> list[dict]:
    """The frontend's open dialogs (1.27: ``.global-dialog``, newer: ``[role=dialog]``); ``key`` = aria-labelledby."""
    return page.evaluate(DIALOGS_JS)


def wait_no_dialog(page) -> None:
    page.wait_for_function(f"() => ({DIALOGS_JS})().length === 0")


# What the frontend shows when a workflow has problems (missing nodes or models): a dialog (1.27: the
# load-workflow warning) or, in newer frontends, the error overlay; the visible texts of either.
PROBLEMS_JS = """() => [...document.querySelectorAll('.global-dialog, [role="dialog"], [data-testid="error-overlay"]')]
    .filter(d => d.checkVisibility ? d.checkVisibility() : d.offsetParent !== null)
    .map(d => d.innerText.slice(0, 600)).filter(t => t.trim())"""


def problems(page) -> list[str]:
    """Visible problem dialogs / overlays (missing nodes, missing models, invalid values)."""
    return page.evaluate(PROBLEMS_JS)


def dismiss_problems(page) -> None:
    dismiss = page.locator('[data-testid="error-overlay-dismiss"]')
    if dismiss.count() and dismiss.first.is_visible():
        dismiss.first.click()
    if open_dialogs(page):
        page.keyboard.press("Escape")
    page.wait_for_function(f"() => ({PROBLEMS_JS})().length === 0")


def open_templates(page, cell):
    """Open the templates browser at the pack's category the way a user does; return the dialog locator.

    1.27: ComfyUI menu -> Browse Templates -> "Custom Nodes" section -> antithetic-sampling.
    Newer (1.49, 1.58): sidebar "Templates" -> "Extensions" section -> antithetic-sampling.
    """
    if not cell.legacy_ui:
        page.locator('[data-testid="side-toolbar"] button[aria-label="Templates"]').click()
        dialog = page.get_by_role("dialog").filter(has=page.locator('[data-testid="template-workflows-content"]'))
        dialog.wait_for()
        heading, item_js = "Extensions", """(d, [heading, pack]) => {
             const h = [...d.querySelectorAll('h3')].find(e => e.textContent.trim().toLowerCase() === heading.toLowerCase());
             if (!h) return null;
             // the section: the heading's row, then its items until the next heading row
             const section = h.parentElement.parentElement;
             return [...section.querySelectorAll('span')].map(e => e.textContent.trim()).filter(Boolean);
           }"""
    else:
        page.locator(".comfyui-logo-wrapper").click()
        page.get_by_role("menuitem", name="Browse Templates").click()
        dialog = page.locator('.global-dialog[aria-labelledby="global-template-workflows"]')
        dialog.wait_for()
        heading, item_js = "Custom Nodes", """(d, [heading, pack]) => {
             const items = [...d.querySelectorAll('li[role="option"]')];
             const head = items.findIndex(li => li.querySelector('h2')?.textContent.trim() === heading);
             if (head < 0) return null;
             return items.slice(head + 1).map(li => li.getAttribute('aria-label'));
           }"""
    section = dialog.evaluate(item_js, [heading, PACK_FOLDER])
    assert section is not None, f"the templates dialog has no {heading!r} section"
    assert PACK_FOLDER in section, f"{PACK_FOLDER} not under {heading}: {section}"
    if not cell.legacy_ui:
        dialog.get_by_text(PACK_FOLDER, exact=True).click()
    else:
        dialog.locator(f'li[role="option"][aria-label="{PACK_FOLDER}"]').click()
    # the grid showed the core templates until now: wait until it shows exactly our six cards
    expected = sorted(f"template-workflow-{n}" for n in NAMES)
    cards_js = (
        "() => [...document.querySelectorAll('[data-testid^=\"template-workflow-\"]')]"
        ".map(e => e.dataset.testid).filter(t => t !== 'template-workflows-content').sort()"
    )
    try:
        page.wait_for_function(
            f"(expected) => JSON.stringify(({cards_js})()) === JSON.stringify(expected)", arg=expected
        )
    except sync_api.TimeoutError:
        pytest.fail(f"the {PACK_FOLDER} category shows {page.evaluate(cards_js)}, expected {expected}")
    return dialog


def load_from_templates(page, cell, name: str, check_thumbnail: bool) -> None:
    dialog = open_templates(page, cell)
    card = dialog.locator(f'[data-testid="template-workflow-{name}"]')
    if check_thumbnail:
        url = f"/api/workflow_templates/{PACK_FOLDER}/{name}.jpg"
        status = page.evaluate(
            "async (u) => { const r = await fetch(u); return [r.status, r.headers.get('content-type')]; }", url
        )
        assert status[0] == 200, f"{url}: HTTP {status[0]} (pytest tests/test_browser.py --update-thumbnails makes it)"
        assert status[1] == "image/jpeg", status
        img = card.locator("img").first
        img.wait_for()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    card.click()
    dialog.wait_for(state="detached")
    ui = load_ui(name)
    page.wait_for_function(  # the dialog closes before the graph is replaced: wait for this file's nodes
        "nodes => app.graph.nodes.length === nodes.length"
        " && nodes.every(([i, t]) => app.graph.getNodeById(i)?.type === t)",
        arg=[[n["id"], n["type"]] for n in ui["nodes"]],
    )
    page.wait_for_timeout(500)  # let dialogs that follow a load (missing nodes / models) open


def our_badges(page) -> dict[int, dict]:
    """{node id: {"text", "warn", "bg", "count"}} for every node carrying our badge (any text)."""
    return {
        int(k): v
        for k, v in page.evaluate(
            """() => Object.fromEntries(app.graph.nodes.map(n => {
                   const ours = (n.badges ?? []).map(b => typeof b === 'function' ? b() : b)
                                                .filter(b => b?.antithetic);
                   return [n.id, ours];
                 }).filter(([, ours]) => ours.length).map(([id, ours]) => [id, {
                   text: ours[0].text, warn: ours[0].antithetic.warn, bg: ours[0].bgColor, count: ours.length}]))"""
        ).items()
    }


def drawn_texts(page, node_id: int) -> list[str]:
    """Every string the canvas draws while node ``node_id`` is centred at 100 % zoom (fillText spy)."""
    return page.evaluate(
        """(id) => {
             const node = app.graph.getNodeById(id);
             app.canvas.ds.scale = 1;
             app.canvas.centerOnNode(node);
             const proto = CanvasRenderingContext2D.prototype;
             const original = proto.fillText;
             const seen = [];
             proto.fillText = function (text, ...rest) { seen.push(String(text)); return original.call(this, text, ...rest); };
             try { app.canvas.setDirty(true, true); app.canvas.draw(true, true); } finally { proto.fillText = original; }
             return seen;
           }""",
        node_id,
    )


BADGE_CHIP_JS = """([id, text]) => {
  // Vue renderer: the chip of our badge inside the node's element (its title attribute is the full label).
  const node = document.querySelector(`[data-node-id="${id}"]`);
  if (!node) return null;
  const chip = [...node.querySelectorAll('[title]')].find(e => e.getAttribute('title') === text);
  if (!chip) return null;
  const r = chip.getBoundingClientRect(), n = node.getBoundingClientRect();
  return {text: chip.textContent.trim(), visible: chip.checkVisibility(), chip: [r.left, r.right],
          node: [n.left, n.right], clipped: chip.scrollWidth > chip.clientWidth + 1};
}"""


def badge_chip(page, node_id: int, text: str) -> dict | None:
    return page.evaluate(BADGE_CHIP_JS, [node_id, text])


def badge_shown(page, cell, node_id: int, text: str) -> bool:
    """Our badge with ``text`` is on screen: drawn on the canvas (its lines, when wrapped), or a Vue chip."""
    if cell.vue:
        page.evaluate("(id) => { app.canvas.ds.scale = 1; app.canvas.centerOnNode(app.graph.getNodeById(id));"
                      " app.canvas.setDirty(true, true); }", node_id)
        try:
            page.wait_for_function(f"(a) => ({BADGE_CHIP_JS})(a)?.visible", arg=[node_id, text], timeout=10_000)
        except sync_api.TimeoutError:
            return False
        return True
    drawn = drawn_texts(page, node_id)
    if text in drawn:
        return True
    # wrapped: consecutive drawn strings that make up the label
    return any(" ".join(drawn[i:j]) == text for i in range(len(drawn)) for j in range(i + 2, min(len(drawn), i + 8) + 1))


def set_widget(page, node_id: int, name: str, value) -> None:
    """Set a widget through the graph API in the page (value + the widget's callback, as the UI does)."""
    page.evaluate(
        """([id, name, value]) => {
             const node = app.graph.getNodeById(id);
             const w = node.widgets.find(w => w.name === name);
             w.value = value;
             w.callback?.(value, app.canvas, node);
             node.setDirtyCanvas(true, true);
           }""",
        [node_id, name, value],
    )


def widget_point(page, node_id: int, name: str) -> tuple[float, float]:
    """Centre the node at 100 % zoom; return the page coordinates of the middle of its widget ``name``."""
    return tuple(
        page.evaluate(
            """([id, name]) => {
                 const node = app.graph.getNodeById(id);
                 app.canvas.ds.scale = 1;
                 app.canvas.centerOnNode(node);
                 app.canvas.setDirty(true, true);
                 app.canvas.draw(true, true);  // lays the widgets out (w.y)
                 const w = node.widgets.find(w => w.name === name);
                 const h = w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT;
                 const p = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0] / 2, node.pos[1] + w.y + h / 2]);
                 const r = app.canvas.canvas.getBoundingClientRect();
                 const dpr = window.devicePixelRatio || 1;
                 return [r.left + p[0] / dpr, r.top + p[1] / dpr];
               }""",
            [node_id, name],
        )
    )


def widget_value(page, node_id: int, name: str):
    return page.evaluate(
        "([id, name]) => app.graph.getNodeById(id).widgets.find(w => w.name === name).value", [node_id, name]
    )


def pick_combo_value(page, node_id: int, name: str, value: str) -> None:
    """Click the combo widget on the canvas and choose ``value`` from the list it opens (what a user does)."""
    x, y = widget_point(page, node_id, name)
    page.mouse.click(x, y)
    page.locator(".litecontextmenu .litemenu-entry", has_text=value).first.click()
    assert widget_value(page, node_id, name) == value


def type_number(page, node_id: int, name: str, value: int) -> None:
    """Click the middle of a number widget on the canvas, type the value in its prompt and press Enter."""
    x, y = widget_point(page, node_id, name)
    page.mouse.click(x, y)
    box = page.locator(".graphdialog input")
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_function(
        "([id, name, v]) => app.graph.getNodeById(id).widgets.find(w => w.name === name).value === v",
        arg=[node_id, name, value],
    )


LAYOUT_PROBLEMS_JS = """() => {
  const T = LiteGraph.NODE_TITLE_HEIGHT, GAP = 2;
  const ctx = app.canvas.ctx;
  const nodes = app.graph.nodes;
  const groups = app.graph.groups ?? app.graph._groups ?? [];
  const box = (n) => [n.pos[0], n.pos[1] - T, n.size[0], n.size[1] + T];
  const hit = (a, b) => a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];
  const out = [];
  for (const n of nodes) {
    const min = n.computeSize();
    if (min[0] > n.size[0] + 0.5 || min[1] > n.size[1] + 0.5)
      out.push(`node ${n.id} ${n.type} saved ${Array.from(n.size)} < frontend minimum ${Array.from(min)}`);
  }
  for (let i = 0; i < nodes.length; i++)
    for (let j = i + 1; j < nodes.length; j++)
      if (hit(box(nodes[i]), box(nodes[j]))) out.push(`nodes ${nodes[i].id} and ${nodes[j].id} overlap`);
  for (const g of groups) {  // LGraphGroup.draw: title at `padding` from the left edge, never clipped
    ctx.save();
    ctx.font = `${g.font_size || LiteGraph.DEFAULT_GROUP_FONT_SIZE}px ${LiteGraph.GROUP_FONT}`;
    const w = ctx.measureText(g.title).width + 2 * (LGraphGroup.padding ?? 4);
    ctx.restore();
    if (w > g.size[0]) out.push(`title of group "${g.title}" is wider than the group (${Math.round(w)} > ${g.size[0]})`);
  }
  for (let i = 0; i < groups.length; i++)
    for (let j = i + 1; j < groups.length; j++)
      if (hit([...groups[i].pos, ...groups[i].size], [...groups[j].pos, ...groups[j].size]))
        out.push(`groups "${groups[i].title}" and "${groups[j].title}" overlap`);
  for (const n of nodes) {
    const badges = (n.badges ?? []).map(b => typeof b === 'function' ? b() : b);
    if (!badges.some(b => b?.antithetic && b.text)) continue;
    // LGraphNode.drawBadges: right-aligned, GAP apart, bottom edge GAP above the title bar
    const w = badges.reduce((acc, b) => acc + b.getWidth(ctx) + GAP, 0);
    const h = Math.max(...badges.map(b => b.visible ? b.height : 0));
    const row = [n.pos[0] + n.size[0] - w, n.pos[1] - T - GAP - h, w, h];
    for (const m of nodes) if (m !== n && hit(row, box(m))) out.push(`badges of node ${n.id} cover node ${m.id}`);
    for (const g of groups)
      if (hit(row, [g.pos[0], g.pos[1], g.size[0], g.titleHeight ?? 34]))
        out.push(`badges of node ${n.id} cover the title of group "${g.title}"`);
  }
  return out;
}"""

FIT_GRAPH_JS = """([top, side, bottom]) => {
  // Show the whole graph as large as the window allows, at full detail; return its rectangle on the page.
  const c = app.canvas, T = LiteGraph.NODE_TITLE_HEIGHT;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  const add = (x, y, w, h) => { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h); };
  for (const n of app.graph.nodes) add(n.pos[0], n.pos[1] - T - 24, n.size[0], n.size[1] + T + 24);
  for (const g of app.graph.groups ?? app.graph._groups ?? []) add(g.pos[0], g.pos[1], g.size[0], g.size[1]);
  x0 -= 10; y0 -= 10; x1 += 10; y1 += 10;
  const r = c.canvas.getBoundingClientRect();
  const s = Math.min((r.width - 2 * side) / (x1 - x0), (r.height - top - bottom) / (y1 - y0), 1);
  c.min_font_size_for_lod = 0;  // full detail (titles, widget text) even when zoomed out
  c.ds.scale = s;
  c.ds.offset = [side / s - x0, top / s - y0];
  c.setDirty(true, true);
  c.draw(true, true);
  return [r.left + side, r.top + top, (x1 - x0) * s, (y1 - y0) * s];
}"""


def graph_screenshot(page, path: pathlib.Path) -> None:
    """Whole graph, UI chrome hidden (focus mode), cropped to the graph."""
    lod = page.evaluate("() => { app.extensionManager.focusMode = true; return app.canvas.min_font_size_for_lod; }")
    page.wait_for_timeout(300)
    x, y, w, h = page.evaluate(FIT_GRAPH_JS, [70, 20, 150])
    page.wait_for_timeout(700)  # DOM widgets (text boxes, notes) follow the canvas on the next frames
    page.screenshot(path=str(path), clip={"x": x, "y": y, "width": w, "height": h})
    page.evaluate("(lod) => { app.extensionManager.focusMode = false; app.canvas.min_font_size_for_lod = lod; }", lod)


def write_thumbnail(png: pathlib.Path, jpg: pathlib.Path) -> None:
    from PIL import Image

    with Image.open(png) as im:
        im = im.convert("RGB")
        height = max(1, round(im.height * THUMB_WIDTH / im.width))
        im = im.resize((THUMB_WIDTH, height), Image.Resampling.LANCZOS)
        im.save(jpg, "JPEG", quality=82, optimize=True, progressive=True)


# ------------------------------------------------------------------------------------------------ tests


def test_frontend_starts_with_our_extension_once(cell, page, console):
    # the cell's renderer is the one in effect (a setting the frontend knows, read back from the frontend)
    renderer = page.evaluate(
        "() => app.extensionManager.setting?.get?.('Comfy.VueNodes.Enabled')"
        " ?? app.ui.settings.getSettingValue('Comfy.VueNodes.Enabled')"
    )
    assert renderer is cell.vue, renderer
    if cell.newest:
        # the deprecation check after each test does fire: a deprecated read from a script of our name
        fired = page.evaluate(
            """() => {
                 let node = app.graph.nodes.find(n => n.inputs?.length);
                 if (!node) { node = LiteGraph.createNode('VAEDecode'); app.graph.add(node); }
                 const read = (0, eval)("(slot) => slot.link\\n//# sourceURL=antithetic_sampling.js");
                 read(node.inputs[0]);
                 const seen = window.__antitheticDeprecations.splice(0);
                 return seen.map(s => s.split('\\n')[0]);
               }"""
        )
        assert any("input.link is deprecated" in m for m in fired), fired
    assert page.evaluate("() => app.extensions.filter(e => e.name === 'antithetic_sampling.ui').length") == 1
    assert page.evaluate("() => app.extensions.filter(e => e.name.includes('antithetic')).map(e => e.name)") == [
        EXTENSION_NAME
    ]
    fetched = [u for u in console.extension_requests if "antithetic" in u]
    assert fetched == [f"{PACK_FOLDER}/antithetic_sampling.js"], fetched
    assert console.since(0) == [], "console errors while the frontend started:\n" + "\n".join(console.since(0))


def test_missing_node_dialog_is_detected(page, console):
    # The check every template load relies on, shown to fire: a node type the server does not have.
    graph = {"last_node_id": 1, "last_link_id": 0, "nodes": [{"id": 1, "type": "NoSuchNodeFromAnotherPack",
             "pos": [0, 0], "size": [200, 60], "flags": {}, "order": 0, "mode": 0, "properties": {}}],
             "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4}
    mark = console.mark()
    page.evaluate("g => app.loadGraphData(g, true, true, 'missing-node-check')", graph)
    try:
        page.wait_for_function(f"() => ({PROBLEMS_JS})().some(t => t.includes('NoSuchNodeFromAnotherPack'))",
                               timeout=60_000)
    except sync_api.TimeoutError:
        pytest.fail(f"no missing-node warning shown; visible: {page.evaluate(PROBLEMS_JS)}")
    dismiss_problems(page)
    # what the frontend logs about the unknown type is expected here; anything else is not
    assert [e for e in console.since(mark) if "NoSuchNodeFromAnotherPack" not in e] == []
    del console.entries[mark:]


CONTROL_HOOK_JS = """async () => {
  // Our extension's beforeRegisterNodeDef with no node class: it throws inside antithetic_sampling.js.
  const ext = app.extensions.find(e => e.name === 'antithetic_sampling.ui');
  const data = {name: '__attribution_control__', category: 'antithetic/noise'};
  try { await ext.beforeRegisterNodeDef(null, data); } catch (e) { console.error('[control] extension hook:', e); }
  setTimeout(() => { ext.beforeRegisterNodeDef(null, data); });  // unhandled rejection, raised in our script
  setTimeout(() => { throw new Error('[control] thrown by a page script, not the pack'); });
}"""


def test_console_errors_are_attributed_by_source(page, console):
    # Control for every console check of this module: an error raised in the pack's script (logged by a caller,
    # or left unhandled) counts as the pack's; one thrown by another script is listed as the frontend's own.
    mark, foreign_mark = console.mark(), len(console.foreign)
    page.evaluate(CONTROL_HOOK_JS)
    deadline = time.monotonic() + 60
    while (len(console.since(mark)) < 2 or len(console.foreign) <= foreign_mark) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    ours, theirs = console.since(mark), console.foreign[foreign_mark:]
    assert any(e.startswith("console.error: [control] extension hook:") for e in ours), ours
    assert any(e.startswith("uncaught:") and "antithetic_sampling.js" in e for e in ours), ours
    assert any("thrown by a page script, not the pack" in e for e in theirs), theirs
    assert not any("not the pack" in e for e in ours), ours
    del console.entries[mark:]
    del console.foreign[foreign_mark:]


@pytest.mark.parametrize("name", NAMES)
def test_template_loads_cleanly(name, cell, page, console, screenshots, request):
    cell.skip_unless_shown()
    updating = request.config.getoption("--update-thumbnails")  # thumbnails may be missing or stale meanwhile
    update = updating and cell.name == "bundled-canvas"  # written from one cell: the bundled canvas
    mark = console.mark()
    load_from_templates(page, cell, name, check_thumbnail=not updating)

    assert problems(page) == [], f"{name}: a dialog or error opened on load (missing nodes or models?)"

    ui = load_ui(name)
    saved = page.evaluate("() => app.graph.serialize()")
    by_id = {n["id"]: n for n in saved["nodes"]}
    for node in ui["nodes"]:
        live = by_id[node["id"]]
        assert live["type"] == node["type"]
        # (newer frontends leave widgets_values out for nodes without widgets: [] and absent are the same)
        assert (live.get("widgets_values") or []) == (node.get("widgets_values") or []), (
            f"{name}: node {node['id']} {node['type']} widgets changed on load: {live.get('widgets_values')}"
        )
    assert sorted(map(tuple, saved["links"])) == sorted(map(tuple, ui["links"]))

    # The frontend's own UI -> API conversion agrees with the API copy. Only difference allowed: the frontend's
    # PreviewAny extension adds a display-only "preview" text widget that it sends as an input (the server
    # ignores inputs a node does not declare).
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    for node in prompt.values():
        if node["class_type"] == "PreviewAny":
            node["inputs"].pop("preview", None)
    # Compared on what executes (class types, inputs, links): _meta holds a display title (core display names
    # change between versions) and, in newer frontends, the node's source (cnr_id, ver); the server reads neither.
    executed = {nid: {"class_type": n["class_type"], "inputs": n["inputs"]} for nid, n in prompt.items()}
    expected = {nid: {"class_type": n["class_type"], "inputs": n["inputs"]} for nid, n in load_api(name).items()}
    assert executed == expected, f"{name}: the frontend converts the workflow differently from api/{name}.json"

    badges = our_badges(page)
    assert {i: b["text"] for i, b in badges.items()} == EXPECTED_BADGES[name]
    assert all(b["count"] == 1 and not b["warn"] for b in badges.values()), badges
    for nid, text in EXPECTED_BADGES[name].items():
        assert badge_shown(page, cell, nid, text), f"{name}: badge of node {nid} not drawn"

    info = page.evaluate(
        "() => app.graph.nodes.map(n => [n.id, n.constructor.nodeData?.category ?? '', n.color ?? null,"
        " n.bgcolor ?? null])"
    )
    for nid, category, color, bgcolor in info:
        if category.startswith("antithetic/"):
            assert (color, bgcolor) == CATEGORY_COLORS[category.split("/")[1]], f"{name}: node {nid} colour"

    if not cell.vue:  # LiteGraph's layout (node minimum sizes, badge rows); the Vue renderer lays out in CSS
        assert page.evaluate(LAYOUT_PROBLEMS_JS) == []

    png = screenshots / f"{cell.name}-{name}.png"
    graph_screenshot(page, png)
    if update:
        write_thumbnail(png, WF / f"{name}.jpg")
    assert console.since(mark) == [], f"{name}: console errors:\n" + "\n".join(console.since(mark))


def test_new_pack_nodes_get_category_colour_and_one_badge(cell, page, console, comfy_server):
    cell.skip_unless_shown()
    info = comfy_server.object_info()
    ours = {k: v["category"] for k, v in info.items() if v.get("category", "").startswith("antithetic/")}
    assert len(ours) >= 8, ours
    mark = console.mark()
    page.evaluate("() => app.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
    page.wait_for_function("() => app.graph.nodes.length === 0")
    created = page.evaluate(
        """(types) => types.map((t, i) => {
             const n = LiteGraph.createNode(t);
             n.pos = [i * 360, 0];
             app.graph.add(n);
             return [n.id, t, n.color ?? null, n.bgcolor ?? null];
           })""",
        sorted(ours),
    )
    badges = our_badges(page)
    created = [(int(nid), *rest) for nid, *rest in created]  # newer frontends may hand out string ids
    for nid, node_type, color, bgcolor in created:
        assert (color, bgcolor) == CATEGORY_COLORS[ours[node_type].split("/")[1]], node_type
        if node_type in DESIGN_NODES:
            assert badges[nid]["count"] == 1 and badges[nid]["text"], (node_type, badges.get(nid))
        else:
            assert nid not in badges, (node_type, badges.get(nid))
    assert console.since(mark) == [], "\n".join(console.since(mark))


def _load(page, name: str) -> None:
    page.evaluate("async (g) => { await app.loadGraphData(g[0], true, true, g[1]); }", [load_ui(name), name])
    wait_no_dialog(page)


def test_mismatch_warning(cell, page, console, screenshots):
    cell.skip_unless_shown()
    mark = console.mark()

    def badge(nid):
        return our_badges(page)[nid]

    # metric vs the noise that made its batch
    # (the batch here comes from Antithetic KSampler, node 8, which draws its own antithetic noise)
    _load(page, "antithetic_vs_independent")
    set_widget(page, 8, "group_size", 4)
    warned = badge(11)
    assert warned == {"text": "⚠ pairs · interleaved (noise has K=4)", "warn": True, "bg": WARN_BG, "count": 1}
    assert badge_shown(page, cell, 11, warned["text"])
    page.screenshot(path=str(screenshots / f"{cell.name}-mismatch_warning.png"))
    set_widget(page, 8, "group_size", 2)
    set_widget(page, 8, "layout", "halves")
    assert badge(11)["text"] == "⚠ pairs · interleaved (noise is halves)"
    set_widget(page, 11, "pairing", "halves")
    assert badge(11) == {"text": "pairs · halves", "warn": False, "bg": badge(11)["bg"], "count": 1}
    assert badge(11)["bg"] != WARN_BG
    # the same pairs of an independent batch (core KSampler's, decoded by node 6) are a baseline, not a mismatch
    page.evaluate("() => app.graph.getNodeById(6).connect(0, app.graph.getNodeById(11), 0)")
    assert badge(11)["text"] == "pairs · halves"

    # confidence intervals: RQMC points per replicate, and a paired design on an iid batch
    _load(page, "sobol_rqmc_estimate")
    set_widget(page, 8, "points_per_replicate", 4)
    assert badge(12)["text"] == "⚠ RQMC · n=8 (noise has n=4)" and badge(12)["warn"]
    set_widget(page, 12, "group_size", 4)
    assert badge(12) == {"text": "RQMC · n=4", "warn": False, "bg": badge(12)["bg"], "count": 1}
    set_widget(page, 17, "design", "antithetic pairs")
    assert badge(17)["text"] == "⚠ pairs · interleaved (batch is iid)"

    # Antithetic Sampler vs the noise node of the same SamplerCustomAdvanced
    _load(page, "partial_antithetic_ancestral")
    set_widget(page, 13, "layout", "halves")
    assert badge(13)["text"] == "⚠ mirrored pairs · halves · masked (noise is interleaved)"
    assert badge_shown(page, cell, 13, badge(13)["text"])
    set_widget(page, 12, "layout", "halves")
    assert not badge(13)["warn"] and badge(13)["text"] == "mirrored pairs · halves · masked"
    assert console.since(mark) == [], "\n".join(console.since(mark))


def test_long_warning_badge_fits_its_node(cell, page, console, screenshots):
    # A long red badge on a narrow node: the badge row stays inside the node (canvas: the label wraps onto more
    # lines; Vue: the chip shrinks to the node, ellipsis, full label in its title tooltip).
    cell.skip_unless_shown()
    mark = console.mark()
    _load(page, "partial_antithetic_ancestral")
    set_widget(page, 13, "layout", "halves")
    label = "⚠ mirrored pairs · halves · masked (noise is interleaved)"
    assert our_badges(page)[13]["text"] == label
    page.evaluate("() => { const n = app.graph.getNodeById(13); n.setSize([240, n.size[1]]);"
                  " app.canvas.setDirty(true, true); }")
    if cell.vue:
        assert badge_shown(page, cell, 13, label)
        chip = badge_chip(page, 13, label)
        assert chip["node"][0] - 1 <= chip["chip"][0] and chip["chip"][1] <= chip["node"][1] + 1, chip
    else:
        row = page.evaluate(
            """() => {
                 const n = app.graph.getNodeById(13), ctx = app.canvas.ctx;
                 const bs = (n.badges ?? []).map(b => typeof b === 'function' ? b() : b);
                 const ours = bs.find(b => b?.antithetic);
                 return {row: bs.reduce((a, b) => a + b.getWidth(ctx) + 2, 0), width: n.size[0],
                         lines: ours.lines.length};
               }"""
        )
        assert row["row"] <= row["width"], row
        assert row["lines"] > 1, row  # 240 px cannot hold the label on one line
        assert badge_shown(page, cell, 13, label)
    page.screenshot(path=str(screenshots / f"{cell.name}-long_badge.png"))
    assert console.since(mark) == [], "\n".join(console.since(mark))


RESULT_STATE_JS = """(vue) => {
  const panel = app.graph.getNodeById(11).widgets?.find(w => w.name === 'antithetic_summary');
  const loaded = (imgs) => [...imgs].filter(i => i.complete && i.naturalWidth > 0);
  // Vue renderer: the node's images are <img> elements in its DOM (node.imgs stays empty there)
  const imgs = (id) => vue
    ? loaded(document.querySelectorAll(`[data-node-id="${id}"] img`))
    : loaded(app.graph.getNodeById(id).imgs ?? []);
  const sizes = (id) => imgs(id).map(i => [i.naturalWidth, i.naturalHeight]);
  return {panel: panel?.element ? panel.element.textContent : null, saved: [imgs(7).length, imgs(10).length],
          plot: imgs(11).length, sizes: [sizes(7), sizes(10)],
          dialogs: [...document.querySelectorAll('.global-dialog, [role="dialog"]')]
            .filter(d => d.checkVisibility()).map(d => d.innerText.slice(0, 600))};
}"""


def test_run_from_the_ui_shows_images_and_metric_panel(cell, page, console, screenshots):
    cell.skip_unless_shown()
    name = "antithetic_vs_independent"
    mark = console.mark()
    load_from_templates(page, cell, name, check_thumbnail=False)
    assert problems(page) == []

    # What a user does to run it here (only the tiny checkpoint exists). 1.27 canvas: mouse on the canvas
    # widgets. Other cells: through the graph API (their widgets are other DOM / canvas controls).
    if cell.legacy_ui and not cell.vue:
        pick_combo_value(page, 1, "ckpt_name", CHECKPOINT_NAME)
        type_number(page, 4, "width", 64)
        type_number(page, 4, "height", 64)
        type_number(page, 5, "steps", 2)
        type_number(page, 8, "steps", 2)
    else:
        set_widget(page, 1, "ckpt_name", CHECKPOINT_NAME)
        set_widget(page, 4, "width", 64)
        set_widget(page, 4, "height", 64)
        set_widget(page, 5, "steps", 2)
        set_widget(page, 8, "steps", 2)
    widgets_before = {n["id"]: n.get("widgets_values") for n in page.evaluate("() => app.graph.serialize()")["nodes"]}
    page.evaluate("() => app.extensionManager.command.execute('Comfy.Canvas.FitView')")  # every output in view

    page.locator('[data-testid="queue-button"]').first.click()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        state = page.evaluate(RESULT_STATE_JS, cell.vue)
        assert not state["dialogs"], f"the run opened a dialog: {state['dialogs']}"
        if state["panel"] and state["saved"] == [8, 8] and state["plot"] >= 1:
            break
        assert time.monotonic() < deadline, f"no result in the UI after {RUN_TIMEOUT_S} s: {state}"
        page.wait_for_timeout(500)
    assert state["plot"] == 1, state

    entry = next(iter(cell.server.get_json("/history?max_items=1").values()))
    sent = entry["prompt"][2]
    assert sent["1"]["inputs"]["ckpt_name"] == CHECKPOINT_NAME
    assert (sent["4"]["inputs"]["width"], sent["4"]["inputs"]["height"]) == (64, 64)
    assert (sent["5"]["inputs"]["steps"], sent["8"]["inputs"]["steps"]) == (2, 2)
    assert "antithetic_summary" not in sent["11"]["inputs"]  # the panel is never sent
    assert [len(entry["outputs"][k]["images"]) for k in ("7", "10")] == [8, 8]
    text = "\n".join(entry["outputs"]["11"]["text"])
    assert state["panel"] == text.strip()
    assert text.startswith("interleaved pairs, 4 pair(s) of 8 images"), text
    assert "centered correlation" in text and "reference" in text
    for sizes in state["sizes"]:
        assert sizes and all(sz == [64, 64] for sz in sizes), state["sizes"]
    # Preview Any shows the metric's report (1.27: widget "preview"; newer frontends name it differently)
    previews = page.evaluate("() => (app.graph.getNodeById(12).widgets ?? []).map(w => [w.name, String(w.value ?? '')])")
    assert any(v.startswith("### Pair Diversity Metric") for _, v in previews), [(n, v[:80]) for n, v in previews]

    widgets_after = {n["id"]: n.get("widgets_values") for n in page.evaluate("() => app.graph.serialize()")["nodes"]}
    assert widgets_after == widgets_before, "the result panel leaked into the saved workflow"

    page.mouse.move(VIEWPORT["width"] / 2, VIEWPORT["height"] - 40)  # no tooltip from the Run button
    graph_screenshot(page, screenshots / f"{cell.name}-run_graph.png")
    page.evaluate(
        "() => { app.canvas.ds.scale = 1; app.canvas.centerOnNode(app.graph.getNodeById(11));"
        " app.canvas.setDirty(true, true); }"
    )
    page.wait_for_timeout(700)
    page.screenshot(path=str(screenshots / f"{cell.name}-run_metric_node.png"))
    assert console.since(mark) == [], "console errors during the run:\n" + "\n".join(console.since(mark))
