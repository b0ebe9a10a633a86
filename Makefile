# One-command set-up for development, demo, tests and benchmarks (CPU is enough).
# `make demo` creates .venv with torch, the pack in editable mode and its `demo` extra only; `make test` (and every
# other target) adds the `dev` extra (pytest, ruff, Ray, Playwright, scikit-learn, scikit-image, ...) to it.
#
# Which torch: `pip install torch==$(TORCH_VERSION) $(TORCH_INDEX)`. With TORCH_INDEX empty (the default) pip takes
# whatever build its indexes offer first: on an ordinary Linux x86_64 machine that is the CUDA build (several GB of
# nvidia-* wheels; PyPI's torch for macOS and Windows is a CPU build anyway). For the CPU build on Linux:
#   make demo TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
# (a GPU machine with its own CUDA wheel index passes that index the same way).
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 1

.PHONY: setup setup-demo demo test test-fast bench evidence-check soak lint clean test-e2e comfyui

# the venv with torch and the pack (editable), shared by both set-ups
$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# pinned: ComfyUI owns torch in a real install, the pack never pulls it (TORCH_INDEX: see the top of this file)
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) $(TORCH_INDEX)
	touch $@

# demo only: the pack's runtime dependencies (numpy, scipy, safetensors, matplotlib) + the `demo` extra
setup-demo: $(VENV)/.demo-ready

$(VENV)/.demo-ready: $(VENV)/.base
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $@

# everything: tests, lint, benches, soak (the `dev` extra)
setup: $(VENV)/.ready

$(VENV)/.ready: $(VENV)/.base
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.demo-ready

demo: setup-demo
	$(BIN)/antithetic-sampling demo --out demo_out

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not e2e and not browser"

# Every measured table and picture: the full tables live in docs/evidence.md, the headline tables in README.md, the
# pictures in docs/images. Each block records the command that wrote it and a fingerprint of the code behind it
# (nodes/evidence/provenance.py); CI reruns the deterministic ones (bench, demo) and compares exactly, and fails
# when the code of any other has changed since (`make evidence-check` is that check, with the reruns).
# guidance-bench times ComfyUI too when a checkout is found (COMFYUI_PATH / COMFYUI_PYTHON, as for the e2e tests);
# `make soak` needs one. The timing benches (noise-bench, metric-bench) want a quiet machine.
EVIDENCE := docs/evidence.md

bench: setup
	$(BIN)/antithetic-sampling bench --no-timing --readme $(EVIDENCE) --readme README.md
	$(BIN)/antithetic-sampling demo --images docs/images
	$(BIN)/antithetic-sampling noise-bench --readme $(EVIDENCE)
	$(BIN)/antithetic-sampling noise-bench --sobol-scaling --readme $(EVIDENCE)
	$(BIN)/antithetic-sampling metric-bench --readme $(EVIDENCE)
	$(BIN)/antithetic-sampling estimate-bench --readme $(EVIDENCE) --summary README.md
	$(BIN)/antithetic-sampling estimate-bench --fresh 250 --fresh-truth 65536 --readme $(EVIDENCE)
	$(BIN)/antithetic-sampling estimate-battery --readme $(EVIDENCE) --summary README.md
	$(BIN)/antithetic-sampling guidance-bench --readme $(EVIDENCE)
	$(BIN)/antithetic-sampling guidance-h2h --readme $(EVIDENCE) --summary README.md --summary docs/guidance.md

evidence-check: setup
	$(BIN)/antithetic-sampling provenance --rerun

# the soak's Ray phase (antithetic-queue --ray) uses Ray, which the dev extra installs
soak: setup
	$(BIN)/antithetic-sampling soak --readme $(EVIDENCE)

lint: setup
	$(BIN)/python -m ruff check .

clean:
	rm -rf $(VENV) demo_out bench_out .pytest_cache

# ---- real ComfyUI from a source snapshot (owner: CI / e2e; issue 21) ------------------------------------------
# `make test-e2e` unpacks ../shared/comfyui/ComfyUI-$(COMFYUI_VERSION).tar.gz into
# ~/.cache/antithetic-sampling/comfyui/$(COMFYUI_VERSION)/ (checkout + its own CPU venv; reused once stamped) and
# runs the e2e suite (browser cells included where Chromium is installed) against it. No snapshot: it says why and
# skips. `make comfyui` only installs and prints COMFYUI_PATH / COMFYUI_PYTHON. E2E_ARGS picks tests (-k ...).
COMFYUI_VERSION ?= 0.33.0
COMFYUI_SNAPSHOTS ?= ../shared/comfyui
E2E_ARGS ?=
SNAPSHOT_INSTALL := $(BIN)/python nodes/local_comfy/snapshot_install.py --version $(COMFYUI_VERSION) --snapshots $(COMFYUI_SNAPSHOTS)

comfyui: setup
	$(SNAPSHOT_INSTALL) install

test-e2e: setup
	$(SNAPSHOT_INSTALL) test -- -m e2e $(E2E_ARGS)
