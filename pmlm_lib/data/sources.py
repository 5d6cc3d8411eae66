"""Resolve a notebook's `data_source` parameter to a cohort.

- "default": the embedded synthetic obstetric cohort, as the raw wide table that filtering reduces
  (cached by seed, size and the generator's own code, so a second run reads it from disk);
- "pbcseq", "mimic_demo": the public sets in ../shared/data/public;
- a folder path: the user's own cohort (exams and patients tables, CSV or Parquet; see data/README.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from pmlm_lib.common.atomic import private_name, publish
from pmlm_lib.common.weights import cache_dir
from pmlm_lib.data import adapters, indicators, replies, synthetic
from pmlm_lib.data.cohort import Cohort, CohortError, load_folder

if TYPE_CHECKING:  # pandas is imported where tables are made, not at import time
    import pandas as pd

NAMED_SOURCES = ("default", "pbcseq", "mimic_demo")


def _generator_fingerprint() -> str:
    h = hashlib.sha256()
    for module in (synthetic, replies, indicators):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:12]


def synthetic_cohort(seed: int = 0, n_patients: int = 2373, raw: bool = True, use_cache: bool = True) -> Cohort:
    key = f"seed{seed}-n{n_patients}-{'raw' if raw else 'clean'}-{_generator_fingerprint()}"
    folder = cache_dir() / "cohorts" / key
    if use_cache and (folder / "cohort.json").exists():
        return load_folder(folder)
    cohort = synthetic.generate(seed=seed, n_patients=n_patients, raw=raw)
    if not use_cache:
        return cohort
    tmp = private_name(folder)
    cohort.save(tmp)
    publish(tmp, folder)  # a run interrupted while writing leaves no half cohort; two runs never clash
    # read back, so that the first run and every cached run see exactly the same tables
    return load_folder(folder)


def load_source(source: str, *, seed: int = 0, n_patients: int = 2373, options: dict | None = None) -> Cohort:
    """The cohort of a data source; `options` (see cohort.DataOptions) say how a folder's files are read."""
    if source == "default":
        return synthetic_cohort(seed=seed, n_patients=n_patients, raw=True)
    if source == "pbcseq":
        return adapters.load_pbcseq()
    if source == "mimic_demo":
        return adapters.load_mimic_demo()
    path = Path(source).expanduser()
    if path.is_dir():
        return load_folder(path, options)
    hint = ""
    if not path.is_absolute():
        hint = (
            f" (a relative path is resolved from {Path.cwd()}: pmlm report resolves --data from the directory it is "
            "run in; in a notebook, give an absolute path)"
        )
    raise CohortError(
        f"{source}: not a known data source nor a folder{hint}. How to fix: use one of "
        f"{', '.join(NAMED_SOURCES)} or a folder with exams.(csv|parquet) and patients.(csv|parquet)"
    )


def filtered_cohort(run) -> tuple[Cohort, pd.Series]:
    """The cohort and split that notebook 01 wrote into the run folder."""
    import pandas as pd

    folder = run.require("cohort", "cohort.json", made_by="01_data_filtering").parent
    split = pd.read_csv(run.require("split.csv", made_by="01_data_filtering"), dtype={"patient_id": str})
    return load_folder(folder), split.set_index("patient_id")["split"]
