# guideplan: `make run` opens the GUI on a bundled sample case, `make test` runs the suite.
# Both bootstrap a fresh machine: system packages (apt-get, when root), .venv, install.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SAMPLES_STAMP := sample_data/README.md

.PHONY: run test system-deps install samples lint bench stress clean

run: system-deps install samples
	@bash scripts/with-display.sh $(PY) main.py $(ARGS)

# GUI tests need an X server: without a display the suite runs on a virtual one that
# outlives the test process (Qt exits non-zero if its X server vanishes under it).
test: system-deps install
	@bash scripts/with-display.sh $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - that is a failure here"; exit 1; fi; \
	exit $$rc

system-deps:
	@bash scripts/system-deps.sh

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The sample cases are deterministic: regenerated only when missing.
samples: install
	@test -f $(SAMPLES_STAMP) || $(PY) -m guideplan.cli sample --out sample_data

lint: install
	$(PY) -m ruff check guideplan tests benchmarks main.py
	$(VENV)/bin/lint-imports

bench: install
	$(PY) -m pip install --quiet -e ".[test,bench]"
	$(PY) benchmarks/bench_load.py
	bash scripts/with-display.sh $(PY) benchmarks/bench_startup.py

# Crash hunt (issue 18): the GUI test files N times, each a fresh pytest process, under
# LOAD CPU-bound processes; reports each run's exit (signal for a crash) and the logs.
N ?= 20
LOAD ?= 2
STRESS_FILES ?= tests/ui/test_treatment_gui.py tests/ui/test_trajectory_gui.py
stress: system-deps install
	$(PY) benchmarks/stress_gui.py --runs $(N) --load $(LOAD) $(STRESS_ARGS) $(STRESS_FILES)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
