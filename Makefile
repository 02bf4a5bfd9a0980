# oto: build, test and demo entry points (GNU make).
#
#   make demo    build oto and prune the demo CNN on the bundled digits data
#   make test    Python venv + model zoo + fmt/clippy checks + `cargo test --workspace`
#   make install release build of oto into $(PREFIX)/bin (default ~/.local/bin), with
#                shell completions; it finds libtorch and onnxruntime without this environment
#
# libtorch comes from the venv's PyTorch (LIBTORCH_USE_PYTORCH=1) unless LIBTORCH is set
# in the environment; onnxruntime (the test oracle) from the venv's onnxruntime wheel.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

VENV ?= .venv
PY := $(VENV)/bin/python
# Interpreter used only to create the venv.
PYTHON ?= python3
CARGO ?= cargo
STAMPS := .stamps
REQUIREMENTS := graphs/requirements.txt
ZOO := graphs/zoo
# The ONNX conformance node tests (crates/torch/tests/conformance.rs), written from the onnx
# wheel; stamped by their script and the requirements (a new onnx brings new cases).
NODE_TESTS := graphs/node_tests
NODE_TESTS_PY := graphs/node_tests.py

VENV_ABS := $(abspath $(VENV))
# Stamps are named after content hashes: a changed file gives a new stamp name, which
# does not exist yet, so the step reruns.
hash = $(shell cat $(1) 2>/dev/null | sha256sum | cut -c1-16)
SETUP_STAMP := $(STAMPS)/setup-$(call hash,$(REQUIREMENTS))
# Inside the zoo, so deleting graphs/zoo also forgets that it was generated. The other
# collections (users' exports, Optimum exports, node tests) have stamps of their own.
ZOO_HASH := $(call hash,graphs/train_ref.py graphs/zoo.py)
GRAPHS_STAMP := $(ZOO)/.stamp-$(ZOO_HASH)
NODE_TESTS_STAMP := $(NODE_TESTS)/.stamp-$(call hash,$(NODE_TESTS_PY) $(REQUIREMENTS))
# Optimum's exports (graphs/optimum_zoo.py) run in an overlay venv on top of the main one.
OPT_VENV := .venv-optimum
OPT_REQUIREMENTS := graphs/requirements-optimum.txt
OPT_SETUP_STAMP := $(STAMPS)/optimum-$(call hash,$(OPT_REQUIREMENTS))
OPT_ZOO := graphs/optimum_zoo
OPT_ZOO_STAMP := $(OPT_ZOO)/.stamp-$(call hash,graphs/optimum_zoo.py $(OPT_REQUIREMENTS))
# `make demo` needs only the demo CNN: exported alone (seconds instead of the whole zoo's
# two minutes) unless this zoo.py's whole zoo is there already.
DEMO_STAMP := $(ZOO)/.demo-$(ZOO_HASH)
# The same architectures as users' files are made (TorchScript exporter, no cleanup;
# graphs/user_zoo.py imports zoo.py, so both are in its hash).
USER_ZOO := graphs/user_zoo
USER_ZOO_STAMP := $(USER_ZOO)/.stamp-$(call hash,graphs/zoo.py graphs/user_zoo.py)
# Hand-made ONNX Model Zoo-era graphs (IR 3, opsets 7-9, caffe2 conversions).
LEGACY_ZOO := graphs/legacy_zoo
LEGACY_ZOO_STAMP := $(LEGACY_ZOO)/.stamp-$(call hash,graphs/legacy_zoo.py)
# PyTorch Hessian-vector products, gradients and (MLP) full-Hessian trace and eigenvalues
# on zoo models, for the second-order tests (crates/torch/tests/hessian.rs); rebuilt when
# the script or the zoo changes.
HESSIAN_REF := graphs/hessian_ref
HESSIAN_REF_STAMP := $(HESSIAN_REF)/.stamp-$(call hash,graphs/hessian_ref.py graphs/train_ref.py graphs/zoo.py)
# An ImageFolder-style folder of PNG/JPEG files and its PIL-prepared reference tensors.
IMAGE_FOLDER := graphs/image_folder
IMAGE_FOLDER_STAMP := $(IMAGE_FOLDER)/.stamp-$(call hash,graphs/image_folder.py)

# --- environment for cargo ------------------------------------------------------------
# torch-sys runs `python` (when VIRTUAL_ENV is set, else `python3`) from PATH to ask
# PyTorch where libtorch is; put the venv first.
export VIRTUAL_ENV := $(VENV_ABS)
export PATH := $(VENV_ABS)/bin:$(PATH)
ifdef LIBTORCH
  # A user-supplied libtorch (e.g. a CUDA build): torch-sys reads LIBTORCH itself.
  export LIBTORCH
  unexport LIBTORCH_USE_PYTORCH
else
  export LIBTORCH_USE_PYTORCH := 1
endif
# Recursive (`?=`) so that it is evaluated when a recipe runs, after `setup`; through the
# shell, because make's own $(wildcard) caches directory listings taken before the venv existed.
ORT_DYLIB_PATH ?= $(shell ls -d $(VENV_ABS)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | sort | tail -n 1)
export ORT_DYLIB_PATH
# A CI build is built once: incremental state would only take disk space (and CI's disk is
# small; the pip cache is skipped for the same reason: --no-cache-dir below).
ifdef CI
  export CARGO_INCREMENTAL := 0
endif

.PHONY: setup graphs build test demo examples install bench bench-quality bench-quality-oto bench-quantize gpu-check fuzz proto fmt clippy clean distclean env

# --- Python environment ---------------------------------------------------------------
setup: $(SETUP_STAMP) gloo

# Gloo's headers (Debian's libgloo-dev), which libtorch's ProcessGroupGloo.hpp includes: the
# c10d shim of data-parallel training (crates/torch/build.rs) is built only when they are
# there. Installed when missing and possible (root with apt-get); otherwise oto builds
# without data-parallel training and `oto prune --nproc` says what to install.
GLOO_HEADER := /usr/include/gloo/config.h
.PHONY: gloo
gloo:
	@if [ -e $(GLOO_HEADER) ] || [ -n "$${GLOO_INCLUDE_DIR:-}" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q libgloo-dev || { apt-get update -q && apt-get install -y -q libgloo-dev; } || \
	        echo "note: could not install libgloo-dev: oto builds without data-parallel training"; \
	else \
	    echo "note: Gloo headers missing (apt-get install libgloo-dev as root): oto builds without data-parallel training"; \
	fi

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

# pyvenv.cfg is newer than the stamp when the venv was (re)created: reinstall then.
$(SETUP_STAMP): $(REQUIREMENTS) $(VENV)/pyvenv.cfg
	$(PY) -m pip install --disable-pip-version-check --no-cache-dir -r $(REQUIREMENTS)
	mkdir -p $(STAMPS)
	rm -f $(STAMPS)/setup-*
	touch $@

# The overlay venv sees the main venv's packages through a .pth file (appended after its
# own site-packages, so its pinned transformers wins): no second copy of torch.
$(OPT_SETUP_STAMP): $(OPT_REQUIREMENTS) | $(SETUP_STAMP)
	rm -rf $(OPT_VENV)
	$(PY) -m venv $(OPT_VENV)
	$(PY) -c 'import site; print(site.getsitepackages()[0])' > \
	    "$$($(OPT_VENV)/bin/python -c 'import site; print(site.getsitepackages()[0])')/oto_main_venv.pth"
	$(OPT_VENV)/bin/python -m pip install --disable-pip-version-check --no-cache-dir -q -r $(OPT_REQUIREMENTS)
	mkdir -p $(STAMPS)
	rm -f $(STAMPS)/optimum-*
	touch $@

# --- model zoo ------------------------------------------------------------------------
graphs: $(GRAPHS_STAMP) $(USER_ZOO_STAMP) $(NODE_TESTS_STAMP) $(OPT_ZOO_STAMP) $(LEGACY_ZOO_STAMP) $(HESSIAN_REF_STAMP) $(IMAGE_FOLDER_STAMP)

# The script empties $(IMAGE_FOLDER) first, old stamps included.
$(IMAGE_FOLDER_STAMP): | $(SETUP_STAMP)
	$(PY) graphs/image_folder.py --out $(IMAGE_FOLDER)
	touch $@

$(OPT_ZOO_STAMP): | $(OPT_SETUP_STAMP)
	$(OPT_VENV)/bin/python graphs/optimum_zoo.py --out $(OPT_ZOO)
	rm -f $(OPT_ZOO)/.stamp-*
	touch $@

$(GRAPHS_STAMP): | $(SETUP_STAMP)
	$(PY) graphs/zoo.py --out $(ZOO)
	$(PY) graphs/train_ref.py --out $(ZOO)
	rm -f $(ZOO)/.stamp-*
	touch $@

$(USER_ZOO_STAMP): | $(SETUP_STAMP)
	$(PY) graphs/user_zoo.py --out $(USER_ZOO)
	rm -f $(USER_ZOO)/.stamp-*
	touch $@

$(LEGACY_ZOO_STAMP): | $(SETUP_STAMP)
	$(PY) graphs/legacy_zoo.py --out $(LEGACY_ZOO)
	rm -f $(LEGACY_ZOO)/.stamp-*
	touch $@

# Reads the zoo's models, so it runs after the zoo export.
$(HESSIAN_REF_STAMP): $(GRAPHS_STAMP) | $(SETUP_STAMP)
	$(PY) graphs/hessian_ref.py --zoo $(ZOO) --out $(HESSIAN_REF)
	rm -f $(HESSIAN_REF)/.stamp-*
	touch $@

# The script empties $(NODE_TESTS) first, old stamps included.
$(NODE_TESTS_STAMP): | $(SETUP_STAMP)
	$(PY) $(NODE_TESTS_PY) --out $(NODE_TESTS)
	touch $@

$(DEMO_STAMP): | $(SETUP_STAMP)
	if [ ! -e $(GRAPHS_STAMP) ]; then $(PY) graphs/zoo.py --out $(ZOO) --only demo_cnn; fi
	rm -f $(ZOO)/.demo-*
	touch $@

# --- Rust -----------------------------------------------------------------------------
build: setup
	$(CARGO) build --workspace

# What CI runs: formatting and lints first (quick to fail), then every test.
test: setup graphs
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

# The main job on the bundled example: analyze the demo CNN, then prune it on the digits
# data to 50% group sparsity (examples/digits.toml) and print the summary table.
demo: setup $(DEMO_STAMP)
	$(CARGO) build -q --bin oto
	$(CARGO) run -q --bin oto -- analyze $(ZOO)/demo_cnn.onnx
	$(CARGO) run -q --bin oto -- prune --config examples/digits.toml

# The release binary under $(PREFIX)/bin. libtorch is found through the rpath the build
# records (crates/torch/link_args.rs), onnxruntime through the path recorded at build time
# (crates/ort/build.rs: this ORT_DYLIB_PATH, overridable at run time), so the installed
# `oto` runs in any shell while the venv stays where it is. Completions go to the usual
# per-user places under $(PREFIX)/share.
PREFIX ?= $(HOME)/.local

install: setup
	$(CARGO) build --release --bin oto
	install -D -m 755 target/release/oto $(PREFIX)/bin/oto
	mkdir -p $(PREFIX)/share/bash-completion/completions $(PREFIX)/share/zsh/site-functions $(PREFIX)/share/fish/vendor_completions.d
	target/release/oto completions bash > $(PREFIX)/share/bash-completion/completions/oto
	target/release/oto completions zsh > $(PREFIX)/share/zsh/site-functions/_oto
	target/release/oto completions fish > $(PREFIX)/share/fish/vendor_completions.d/oto.fish
	env -i $(PREFIX)/bin/oto --version

# The other examples: BERT-tiny by distillation on unlabeled tokens, a torchvision
# ResNet-18 exported as a user would, and HESSO in a hand-written training loop.
examples: setup graphs
	$(CARGO) build -q --bin oto --examples
	$(CARGO) run -q --bin oto -- prune --config examples/bert_tiny_distill.toml
	$(PY) examples/torchvision/export_resnet18.py --out target/examples/resnet18
	$(CARGO) run -q --bin oto -- prune --model target/examples/resnet18/resnet18.onnx \
	    --data target/examples/resnet18/images.npz --target-sparsity 0.5 --steps 60 --batch-size 16 \
	    --lr 0.01 --out target/examples/resnet18/pruned
	$(CARGO) run -q --example custom_loop -- target/examples/custom_loop

# The pruning-quality grid on the digits CNN (bench/quality.py): every budget, target,
# method and seed by default (hours on 2 cores); a subset with e.g.
#   make bench-quality QUALITY_ARGS="--budgets demo --targets s0.8,m0.25 --seeds 0,1"
# Runs already in bench/quality.json are kept; the table is bench/quality.md. Then the
# second task, BERT-tiny by distillation (bench/quality_bert.py, bench/quality_bert.md;
# a few minutes per run), with BERT_QUALITY_ARGS.
QUALITY_ARGS ?=
BERT_QUALITY_ARGS ?=
bench-quality: setup $(GRAPHS_STAMP)
	$(CARGO) build -q --release --bin oto
	$(PY) bench/quality.py --oto target/release/oto $(QUALITY_ARGS)
	$(PY) bench/quality_bert.py --oto target/release/oto $(BERT_QUALITY_ARGS)

# The grid's baseline, OTO 3.0.1's HESSO on the digits CNN with the 30-epoch budget, 20
# seeds a target (bench/quality_oto.py, about 10 minutes), in its own venv from PyPI (its
# PyTorch is 2.2.2: OTO does not import with 2.13); its runs join bench/quality.json and
# the table is rewritten. E.g. make bench-quality-oto OTO_QUALITY_ARGS="--targets s0.5 --seeds 0,1,2".
OTO_VENV := bench/.venv-oto
OTO_REQUIREMENTS := bench/requirements-oto.txt
OTO_SETUP_STAMP := $(STAMPS)/oto301-$(call hash,$(OTO_REQUIREMENTS))
OTO_QUALITY_ARGS ?=
$(OTO_SETUP_STAMP): $(OTO_REQUIREMENTS)
	rm -rf $(OTO_VENV)
	$(PYTHON) -m venv $(OTO_VENV)
	$(OTO_VENV)/bin/python -m pip install --disable-pip-version-check --no-cache-dir -q -r $(OTO_REQUIREMENTS)
	mkdir -p $(STAMPS)
	rm -f $(STAMPS)/oto301-*
	touch $@

bench-quality-oto: setup $(OTO_SETUP_STAMP)
	$(OTO_VENV)/bin/python bench/quality_oto.py $(OTO_QUALITY_ARGS)
	$(PY) bench/quality.py --budgets ""

# oto quantize against onnxruntime's quantize_static (bench/quantize.md): the demo CNN
# (bench/quantize.py, a few minutes), then resnet18 and BERT-tiny, each trained briefly, with
# the bit-allocation ablation on resnet18 (bench/quantize_zoo.py: about an hour of 2 cores,
# most of it resnet18's Hessian traces; too long for make bench; e.g.
#   make bench-quantize QUANTIZE_ARGS="--tasks bert" for a few minutes).
QUANTIZE_ARGS ?=
bench-quantize: setup $(GRAPHS_STAMP)
	$(CARGO) build -q --release --bin oto
	$(PY) bench/quantize.py --oto target/release/oto
	$(PY) bench/quantize_zoo.py --oto target/release/oto $(QUANTIZE_ARGS)

# The big benchmark models (graphs/zoo.py --bench), stamped like the zoo.
BENCH_GRAPHS := graphs/bench
BENCH_STAMP := $(BENCH_GRAPHS)/.stamp-$(ZOO_HASH)

$(BENCH_STAMP): | $(SETUP_STAMP)
	$(PY) graphs/zoo.py --bench --out $(BENCH_GRAPHS)
	rm -f $(BENCH_GRAPHS)/.stamp-*
	touch $@

# Every benchmark, its output captured in BENCH_LOG; bench/report.py turns the `BENCH {json}`
# lines in it into the one results table bench/results.md. BENCH_NOTE adds a line to it
# (e.g. make bench BENCH_NOTE="machine shared with other builds").
BENCH_LOG := target/bench.log
BENCH_NOTE ?=
TO_LOG := 2>&1 | tee -a $(BENCH_LOG)
LOADAVG = echo "BENCH_LOADAVG $$(cut -d' ' -f1-3 /proc/loadavg)"

# Real transformer exports for the analysis benchmark (bench/transformer_graphs.py, in the
# Optimum overlay venv): an Optimum BERT-base and a LLaMA-7B-shaped TorchScript export
# whose 27 GB of weights are a sparse file.
BENCH_TFM := $(BENCH_GRAPHS)/transformers
BENCH_TFM_STAMP := $(BENCH_TFM)/.stamp-$(call hash,bench/transformer_graphs.py graphs/optimum_zoo.py $(OPT_REQUIREMENTS))

$(BENCH_TFM_STAMP): | $(OPT_SETUP_STAMP)
	$(OPT_VENV)/bin/python bench/transformer_graphs.py --out $(BENCH_TFM)
	rm -f $(BENCH_TFM)/.stamp-*
	touch $@

bench: setup graphs $(BENCH_STAMP) $(BENCH_TFM_STAMP)
	mkdir -p $(dir $(BENCH_LOG))
	$(LOADAVG) | tee $(BENCH_LOG)
	$(CARGO) bench --workspace $(TO_LOG)
	@echo "ONNX load, oto-onnx vs onnx.load (bert_base):" $(TO_LOG)
	$(CARGO) run -q --release -p oto-onnx --example bench_load -- $(BENCH_GRAPHS)/bert_base.onnx $(TO_LOG)
	$(CARGO) run -q --release -p oto-onnx --example bench_load -- $(BENCH_GRAPHS)/bert_base.onnx --touch $(TO_LOG)
	$(PY) bench/onnx_load.py $(BENCH_GRAPHS)/bert_base.onnx $(TO_LOG)
	@echo "Construction at 50% and onnxruntime latency, compact vs full:" $(TO_LOG)
	$(CARGO) run -q --release -p oto-construct --example bench_construct -- $(BENCH_GRAPHS)/bert_base.onnx --batch 4 $(TO_LOG)
	$(CARGO) run -q --release -p oto-construct --example bench_construct -- $(ZOO)/resnet50.onnx --batch 8 $(TO_LOG)
	@echo "Training step, oto executor vs PyTorch eager (2 threads):" $(TO_LOG)
	$(CARGO) run -q --release -p oto-torch --example bench_step -- $(ZOO)/resnet18.onnx --batch 32 --threads 2 $(TO_LOG)
	$(PY) bench/torch_step.py resnet18 --batch 32 --threads 2 $(TO_LOG)
	$(CARGO) run -q --release -p oto-torch --example bench_step -- $(ZOO)/bert_tiny.onnx --batch 16 --threads 2 $(TO_LOG)
	$(PY) bench/torch_step.py bert_tiny --batch 16 --threads 2 $(TO_LOG)
	@echo "Hessian-vector product vs gradient, oto vs PyTorch (2 threads; bench/hvp.md):" $(TO_LOG)
	$(CARGO) run -q --release -p oto-hessian --example bench_hvp -- $(ZOO)/resnet18.onnx --batch 16 --threads 2 $(TO_LOG)
	$(PY) bench/hvp_torch.py resnet18 --batch 16 --threads 2 $(TO_LOG)
	$(CARGO) run -q --release -p oto-hessian --example bench_hvp -- $(ZOO)/bert_tiny.onnx --batch 16 --threads 2 $(TO_LOG)
	$(PY) bench/hvp_torch.py bert_tiny --batch 16 --threads 2 $(TO_LOG)
	@echo "Training step over a whole HESSO schedule vs the plain base optimizer (2 threads):" $(TO_LOG)
	$(CARGO) run -q --release -p oto-optim --example bench_hesso -- $(ZOO)/resnet18.onnx --batch 32 --threads 2 $(TO_LOG)
	$(CARGO) run -q --release -p oto-optim --example bench_hesso -- $(ZOO)/bert_tiny.onnx --batch 16 --threads 2 $(TO_LOG)
	$(LOADAVG) | tee -a $(BENCH_LOG)
	$(PY) bench/report.py $(BENCH_LOG) --out bench/results.md --note "$(BENCH_NOTE)"

# On a machine with NVIDIA GPUs only (not part of `make test`): a CUDA/NCCL build, a HESSO
# job on --device cuda, a training step against PyTorch on CUDA, and with 2+ GPUs the
# data-parallel job over NCCL (bench/gpu_check.sh).
# On a machine without an NVIDIA GPU it stops at once (the preflight), before any setup.
gpu-check:
	bench/gpu_check.sh --preflight
	$(MAKE) --no-print-directory setup $(DEMO_STAMP)
	PY=$(PY) CARGO=$(CARGO) bench/gpu_check.sh

fuzz:
	$(CARGO) run --profile fuzz -p oto-fuzz -- --iterations 100000

proto:
	$(CARGO) run -p oto-onnx --example regen_proto

fmt:
	$(CARGO) fmt --all

clippy: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Prints the exports above, for running cargo by hand: eval "$(make -s env)"
env:
	@echo 'export VIRTUAL_ENV=$(VIRTUAL_ENV)'
	@echo 'export PATH=$(PATH)'
	@$(if $(LIBTORCH),echo 'export LIBTORCH=$(LIBTORCH)',echo 'export LIBTORCH_USE_PYTORCH=1')
	@echo 'export ORT_DYLIB_PATH=$(ORT_DYLIB_PATH)'

clean:
	$(CARGO) clean
	rm -rf $(STAMPS) $(ZOO) $(USER_ZOO) $(OPT_ZOO) $(BENCH_GRAPHS) $(NODE_TESTS) $(HESSIAN_REF) $(IMAGE_FOLDER)

# Also removes the Python venv (the next `make setup` downloads it again).
distclean: clean
	rm -rf $(VENV) $(OPT_VENV)
