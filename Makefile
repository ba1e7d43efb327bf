# omics-ml: `make run` trains on the bundled example, `make test` runs the test suite.
# Both create the virtual environment first (Python 3.11+, packages from PyPI).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: run test lint bench bench-scale setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)

# Two workers, each test file whole on one worker (module fixtures run their workflow once):
# while one worker's workflow waits on a single job, the other uses the idle core.
test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

lint: setup
	$(BIN)/ruff check src tests workflow/scripts benchmarks resources
	$(BIN)/ruff format --check src tests workflow/scripts benchmarks resources
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

# Count normalisation vs pydeseq2 and (where R is installed: apt-get install r-bioc-edger) edgeR.
bench: setup
	$(BIN)/python benchmarks/normalise_counts.py

# Cohort scale: SIZE=S (CI-sized, about 4 minutes), M or L; results in $(SCALE_DIR)/summary.json.
SIZE ?= S
SCALE_DIR ?= benchmark-scale-$(SIZE)
bench-scale: setup
	rm -rf $(SCALE_DIR)
	$(BIN)/python benchmarks/cohort_scale.py --size $(SIZE) --workdir $(SCALE_DIR)

clean:
	rm -rf results logs .snakemake
