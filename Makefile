# One-command set-up for development, demo, tests and benchmarks (CPU is enough).
# `make demo` / `make test` create .venv (CPU torch 2.13.0 + the pack in editable mode + dev tools) on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 1

.PHONY: setup demo test test-fast bench soak lint clean test-e2e comfyui

setup: $(VENV)/.ready

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU build of torch, pinned: ComfyUI owns torch in a real install, the pack never pulls it.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/antithetic-sampling demo --out demo_out

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not e2e and not browser"

# Every measured table: the full tables live in docs/evidence.md, the headline table in README.md (bench writes
# both, and the one noise-timing table). guidance-bench times ComfyUI too when a checkout is found (COMFYUI_PATH /
# COMFYUI_PYTHON, as for the e2e tests); `make soak` needs one.
EVIDENCE := docs/evidence.md

bench: setup
	$(BIN)/antithetic-sampling bench --readme $(EVIDENCE) --readme README.md
	$(BIN)/antithetic-sampling metric-bench --readme $(EVIDENCE)
	$(BIN)/antithetic-sampling estimate-bench --readme $(EVIDENCE) --summary README.md
	$(BIN)/antithetic-sampling guidance-bench --readme $(EVIDENCE)
	$(BIN)/antithetic-sampling guidance-h2h --readme $(EVIDENCE) --summary README.md --summary docs/guidance.md

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
