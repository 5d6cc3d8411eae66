# The README's commands. Each one creates .venv first when it is missing or stale.
VENV   := .venv
PY     := $(VENV)/bin/python
PROFILE ?= default
RUN    ?=
ARGS   ?=

.PHONY: setup report test test-fast lab strip bench
setup:
	@bash scripts/setup_env.sh

report: setup  ## regenerate the whole report on the embedded data (profile: default)
	$(PY) -m pmlm_lib.cli report --profile $(PROFILE) $(if $(RUN),--run $(RUN)) $(ARGS)

test: setup  ## the whole test suite (unit tests and the smoke pipeline)
	$(PY) -m pytest -q $(ARGS)

test-fast: setup  ## unit tests only
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lab: setup  ## JupyterLab on notebooks/, in the project's environment
	$(VENV)/bin/jupyter lab notebooks/

strip: setup  ## remove outputs from stored notebooks (keeps tags such as `parameters`)
	$(PY) -m pmlm_lib.notebook_hygiene --strip notebooks/*.ipynb

bench: setup  ## speed and memory side by side -> reports/bench/bench.md (the report part runs the default report twice)
	$(PY) -m pmlm_lib.cli bench $(ARGS)
