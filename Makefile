# The two commands of the README: `make demo` and `make test`. Both create .venv when it is
# missing and install hepgen into it. On CPU machines torch is pinned by constraints-cpu.txt
# so that pip does not resolve a multi-GB CUDA build; see README "GPU installation".

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,test
CONSTRAINTS ?= constraints-cpu.txt
# Optional: an extra package index for torch, e.g. https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
PIP_INDEX := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
STAMP := $(VENV)/.hepgen-installed

.PHONY: demo test test-slow bench bench-gpu lint clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_INDEX) -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hepgen demo -o demo_out

# The default suite on TEST_WORKERS processes (pytest-xdist), one test file per worker so that
# each module's fixtures are built once; tests/conftest.py gives each worker its share of the
# cores' threads. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[$(EXTRAS),bench]"
	$(PY) benchmarks/run.py --output benchmarks/results

# the sampling and generate benchmarks on CUDA (batches up to 1e6); exits 0 without a GPU
bench-gpu: $(STAMP)
	benchmarks/gpu.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) demo_out benchmarks/results
