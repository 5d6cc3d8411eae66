"""PMLM workbench library: the machinery behind the notebooks, one subpackage per layer.

Each layer imports only the layers below it (`make lint` checks it):
workbench (running and reporting) > evaluation > method (predict, retrieve, refine) > llm > data > common.
The pipeline reads: data -> method.predictors -> method.retrieval -> data.prompts -> method.refine -> llm
-> evaluation -> workbench.report.
"""

from pathlib import Path

__version__ = "0.1.0"
PACKAGE_DIR = Path(__file__).resolve().parent  # pmlm_lib/, whose parent is the checkout
