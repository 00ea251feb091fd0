# bayescale: the two set-up commands are `make demo` and `make test`.
# Both bootstrap their own virtualenv in .venv from Python 3.11+.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CACHE := $(CURDIR)/.cache
# Keep bayescale's compile cache (PyTensor's compile directory and numba's cache, see
# bayescale/cache.py) inside the project, where `make clean` removes it; outside make it is the
# user's cache directory. A PYTENSOR_FLAGS or NUMBA_CACHE_DIR set by the user still wins.
export BAYESCALE_CACHE_DIR ?= $(CACHE)/bayescale
export TMPDIR := $(CACHE)/tmp
export MPLBACKEND ?= Agg
export PYTHONHASHSEED := 0

.PHONY: demo test test-slow lint benchmark clean data notebooks

$(BIN)/python:
	@mkdir -p $(CACHE)/tmp
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "bayescale needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@ $(VENV)/.installed-runtime

demo: $(VENV)/.installed-runtime
	@mkdir -p $(CACHE)/tmp
	$(BIN)/bayescale demo --out reports/demo

test: $(VENV)/.installed-dev
	@mkdir -p $(CACHE)/tmp
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

test-slow: $(VENV)/.installed-dev
	@mkdir -p $(CACHE)/tmp
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]

# Execute the notebooks with the settings they recommend and save them with their outputs.
notebooks: $(VENV)/.installed-dev
	@mkdir -p $(CACHE)/tmp
	$(BIN)/python scripts/run_notebooks.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks scripts

# Rebuild data/*.csv.gz from the raw public files (needs ../shared/data).
data: $(VENV)/.installed-runtime
	$(BIN)/python scripts/build_datasets.py --raw ../shared/data --out data

clean:
	rm -rf $(VENV) $(CACHE) reports
