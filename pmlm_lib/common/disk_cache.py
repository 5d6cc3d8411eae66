"""Content-keyed disk cache for trained models and their predictions.

A key is a hash of everything that determines the result: the data (the cohort rows involved),
the model family and options, the seed, and the code that computes it. Entries are folders written
under a temporary name and renamed when complete, so an interrupted run leaves nothing half-made,
and a second run with the same inputs reads the result instead of training again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd

from pmlm_lib.common.atomic import private_name, publish
from pmlm_lib.common.weights import cache_dir


def cohort_fingerprint(cohort, patient_ids=None) -> str:
    """Hash of the examinations and labels of these patients (all when None)."""
    exams, patients = cohort.exams, cohort.patients
    if patient_ids is not None:
        ids = set(patient_ids)
        exams, patients = exams[exams["patient_id"].isin(ids)], patients[patients["patient_id"].isin(ids)]
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(exams, index=False).to_numpy().tobytes())
    h.update(pd.util.hash_pandas_object(patients[["patient_id", "label"]], index=False).to_numpy().tobytes())
    h.update(json.dumps(cohort.indicators).encode())
    return h.hexdigest()[:16]


def code_fingerprint(*modules) -> str:
    h = hashlib.sha256()
    for module in modules:
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:12]


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class CacheEntry:
    """A folder in the cache: `ready` once `commit` renamed it into place. Each writer works in its own
    temporary folder, so two runs sharing one cache never write into each other's half-made entry."""

    def __init__(self, kind: str, key: str):
        self.path = cache_dir() / kind / key
        self.partial: Path | None = None

    @property
    def ready(self) -> bool:
        return (self.path / ".complete").exists()

    def begin(self) -> Path:
        self.partial = private_name(self.path)
        self.partial.mkdir(parents=True)
        return self.partial

    def commit(self) -> Path:
        (self.partial / ".complete").write_text("")
        if self.path.exists() and not self.ready:  # a broken entry (from before .complete markers): replace it
            shutil.rmtree(self.path, ignore_errors=True)
        return publish(self.partial, self.path)
