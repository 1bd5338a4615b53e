# Kiln — set-up, build, test, demo, benchmarks. Works on a fresh Debian machine:
# missing system packages are installed with apt-get, python tools into .venv/.
SHELL := /bin/bash
SWIFT ?= swift
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := libzstd-dev libopenblas-dev zlib1g-dev protobuf-compiler pkg-config
PY_PACKAGES := numpy ml_dtypes safetensors

.PHONY: all deps venv build release test demo bench clean

all: build

# Install the Debian packages that are missing (as root, or via sudo).
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(PY_PACKAGES)

venv: $(PY)

build: deps
	$(SWIFT) build --build-tests

release: deps
	$(SWIFT) build -c release

# The whole suite: unit tests, plugin loading (incl. the out-of-tree template), CLI, ml_dtypes cross-checks.
test: deps venv
	$(SWIFT) build --build-tests
	KILN_TEST_PYTHON=$(abspath $(PY)) $(SWIFT) test --skip-build

# Build release and run the pipeline on an embedded deterministic model.
demo: release
	.build/release/kiln demo

bench: release venv
	KILN_BENCH_PYTHON=$(abspath $(PY)) bash Tools/bench/run.sh

clean:
	rm -rf .build .build-* $(VENV) Tools/plugin-template/.build*
