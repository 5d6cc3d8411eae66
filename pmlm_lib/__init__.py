"""PMLM workbench library: the machinery behind the notebooks.

The pipeline reads top to bottom, one module per step:
cohort -> synthetic / adapters -> filtering -> (predictors -> retrieval -> prompts -> refine
-> responders -> metrics -> plots), with `artifacts` and `pipeline` running and reporting it.
"""

__version__ = "0.1.0"
