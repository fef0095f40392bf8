# edgekit: `make demo` and `make test` do all the set-up on a fresh machine (Debian 12, as root or with sudo).
# Every step leaves a stamp, so a second run reinstalls nothing and starts in seconds.

SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt
EDGEKIT := $(BIN)/edgekit
STAMPS := $(VENV)/.stamps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# llvm-19: llvm-mc and llvm-mca time the blocks counted on the Pi 5's core (edgekit/emu/plugin/cycles.py)
APT_PACKAGES := qemu-user-static qemu-user openssh-server openssh-client chromium dpkg-dev gcc libglib2.0-dev pkg-config postgresql llvm-19
RECIPE ?=
TARGET ?= pi4-emu
# make demo DEMO_RECIPE=recipes/digits-keras.yaml: a Keras model through both TFLite routes
DEMO_RECIPE ?= recipes/yolov5-lite.yaml
# three workers (pytest-xdist, grouped in tests/conftest.py: host-only, bare-rig lab and balance, devices); with two
# the 1923 tests took 33 min 15 s on a 2-core machine, with three 25 min 58 s (2026-12-06; 2026-12-07: 1924 tests 25 min 41 s,
# 1945 tests 31 min 15 s on a slower hour); PYTEST_WORKERS= runs it in one process
PYTEST_WORKERS ?= -n 3 --dist loadgroup
PYTEST_ARGS ?=
# where torch comes from: pip's own configuration by default; TORCH_INDEX=https://download.pytorch.org/whl/cpu takes
# PyTorch's CPU build (PyPI's x86_64 wheel is the CUDA build, several GB)
TORCH_INDEX ?=

.PHONY: setup demo test quantize check emu-assets clean-venv help
help:
	@echo "make setup     system packages, .venv, the lab's venv and the emulated ARM devices (every download is here)"
	@echo "make demo      set everything up, then: edgekit deploy $(DEMO_RECIPE) --target $(TARGET)"
	@echo "make test      set everything up, run make check (ruff + mypy), then the whole test suite"
	@echo "make check     ruff and mypy (exits non-zero on any finding)"
	@echo "make quantize  set up python and the emulated cores, then convert the INT8 formats of every recipe in"
	@echo "               recipes/ (or RECIPE=path); ncnn-int8 gets its per-layer speed plan counted on both cores"

setup: $(STAMPS)/python $(STAMPS)/system $(STAMPS)/lab emu-assets

$(STAMPS)/system: Makefile
	@echo "==> system packages: $(APT_PACKAGES)"
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  lists=fetched; $(SUDO) apt-get update -q --error-on=any || lists=failed; \
	  if ! DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(APT_PACKAGES); then \
	    echo "make setup: apt-get could not install the system packages ($(APT_PACKAGES))" >&2; \
	    if [ $$lists = failed ]; then echo "  the likely cause: apt-get update could not fetch the package lists (its errors are above: the mirror or the network is unreachable); check the network, http_proxy and /etc/apt/sources.list, then run make setup again" >&2; fi; \
	    exit 1; fi; fi
	@mkdir -p $(STAMPS) && touch $@

# a fresh set-up writes ~8 GB (.venv 4.3 GB, the emulated devices 2.5 GB, the lab's venv, the system packages, pip's
# build directories); a disk that fills half-way leaves a broken .venv and pip's "No space left on device", so say it first
SETUP_DISK_GB ?= 8
$(STAMPS)/python: pyproject.toml constraints.txt
	@mkdir -p $(VENV); avail=$$(df -Pk $(VENV) | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ ! -x $(BIN)/python ] && [ "$$avail" -lt $(SETUP_DISK_GB) ]; then \
	    echo "make setup: only $$avail GB free on $$(df -P $(VENV) | awk 'NR==2 {print $$6}'); a fresh set-up needs about $(SETUP_DISK_GB) GB (.venv, the emulated devices, the system packages); free some space (du -sh /tmp/* ~/.cache/* shows the big ones) and run make setup again" >&2; \
	    rmdir $(VENV) 2>/dev/null; exit 1; fi
	@echo "==> python environment in $(VENV) (torch first, then the toolchain)"
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q -U pip setuptools wheel
	@$(PIP) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	@$(PIP) -e '.[convert,dev]'
	@mkdir -p $(STAMPS) && touch $@

# labgrid (coordinator, exporter, client) in a venv of its own: it needs protobuf >= 5.29.6, the toolchain's
# onnx2tf pins 4.25.5. edgekit runs its client through edgekit/lab/helper.py (docs/lab.md).
LAB_VENV := .venv-lab
$(STAMPS)/lab: constraints-lab.txt
	@echo "==> labgrid environment in $(LAB_VENV) (labgrid-coordinator, -exporter, -client)"
	@[ -x $(LAB_VENV)/bin/python ] || $(PY) -m venv $(LAB_VENV)
	@$(LAB_VENV)/bin/pip install -q -c constraints-lab.txt -U pip setuptools wheel
	@$(LAB_VENV)/bin/pip install -q -c constraints-lab.txt labgrid
	@mkdir -p $(STAMPS) && touch $@

# set-up builds pi4-emu and pi5-emu whatever TARGET is (a real board's name is no emulated device), plus TARGET when
# it is one of edgekit's emulated devices; only the deploy uses TARGET
EMU_DEVICES := pi4-emu pi5-emu phone-emu
emu-assets: $(STAMPS)/python $(STAMPS)/system
	@for d in pi4-emu pi5-emu $(filter-out pi4-emu pi5-emu,$(filter $(TARGET),$(EMU_DEVICES))); do \
	  $(EDGEKIT) emu build $$d || exit $$?; done

demo: setup
	$(EDGEKIT) deploy "$(DEMO_RECIPE)" --target "$(TARGET)"

test: setup check
	@$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc = 5 ]; then echo "no tests were collected"; exit 0; fi; exit $$rc

# emu-assets: the NCNN INT8 speed plan counts each layer on the emulated Cortex-A72 and A76 (without them,
# ncnn-int8 is written all-int8: mobilenetv2 0.975x of fp32's instructions on the A72 against 0.955x with the
# plan, and int8 depthwise layers that lose on a core: README, INT8 that is faster)
# Every recipe is converted even when one fails (a Ctrl-C stops them all); the failed ones are named at the end.
quantize: $(STAMPS)/python emu-assets
	@failed=""; rc=0; for r in $(if $(RECIPE),"$(RECIPE)",recipes/*.yaml); do \
	  echo "==> $$r"; $(EDGEKIT) convert "$$r" --int8-only; s=$$?; \
	  if [ $$s = 130 ]; then exit 130; fi; \
	  if [ $$s != 0 ]; then failed="$$failed $$r"; [ $$rc = 2 ] || rc=$$s; fi; done; \
	  if [ -n "$$failed" ]; then echo "quantize: failed:$$failed (their errors above)"; fi; exit $$rc

# Lint and types; fails on any finding. Rules and mypy settings live in pyproject.toml.
check: $(STAMPS)/python
	$(BIN)/python -m ruff check edgekit tests bench
	$(BIN)/python -m ruff format --check edgekit tests bench
	$(BIN)/python -m mypy

clean-venv:
	rm -rf $(VENV) $(LAB_VENV)
