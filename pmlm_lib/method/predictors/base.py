"""The predictor interface and the shared zero-padded tensor representation."""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import pandas as pd

from pmlm_lib.data.cohort import Cohort


class Predictor(ABC):
    """fit on training patients; predict_proba gives one column per label, rows in the ids' order."""

    family: str = ""

    def __init__(self, seed: int = 0, **options):
        self.seed = seed
        self.options = options
        self.classes_: list[str] = []

    @abstractmethod
    def fit(self, cohort: Cohort, patient_ids: list[str]) -> Predictor: ...

    @abstractmethod
    def _predict_proba(self, cohort: Cohort, patient_ids: list[str]) -> np.ndarray: ...

    @abstractmethod
    def _save_state(self, folder: Path) -> None: ...

    @abstractmethod
    def _load_state(self, folder: Path) -> None: ...

    def predict_proba(self, cohort: Cohort, patient_ids: list[str]) -> pd.DataFrame:
        if not self.classes_:
            raise RuntimeError(f"{self.family}: call fit before predicting")
        probs = self._predict_proba(cohort, list(patient_ids))
        return pd.DataFrame(probs, index=pd.Index(list(patient_ids), name="patient_id"), columns=self.classes_)

    def predict(self, cohort: Cohort, patient_ids: list[str]) -> pd.Series:
        proba = self.predict_proba(cohort, patient_ids)
        return proba.idxmax(axis=1).rename("predicted")

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "module": type(self).__module__,
            "class": type(self).__name__,
            "family": self.family,
            "seed": self.seed,
            "options": self.options,
            "classes": self.classes_,
        }
        (folder / "predictor.json").write_text(json.dumps(meta, indent=2) + "\n")
        self._save_state(folder)
        return folder


def align_proba(proba: np.ndarray, model_classes, classes: list[str]) -> np.ndarray:
    """Columns of a scikit-learn style predict_proba, reordered to `classes` (absent ones stay 0)."""
    out = np.zeros((proba.shape[0], len(classes)))
    for j, c in enumerate(model_classes):
        out[:, classes.index(c)] = proba[:, j]
    return out


def pickle_state(folder: Path, state: dict) -> None:
    import pickle

    with open(folder / "model.pkl", "wb") as f:
        pickle.dump(state, f)


def unpickle_state(folder: Path) -> dict:
    import pickle

    with open(folder / "model.pkl", "rb") as f:
        return pickle.load(f)


def load_predictor(folder: str | Path) -> Predictor:
    """A predictor saved with `save`, ready to predict."""
    folder = Path(folder)
    meta = json.loads((folder / "predictor.json").read_text())
    cls = getattr(importlib.import_module(meta["module"]), meta["class"])
    predictor = cls(seed=meta["seed"], **meta["options"])
    predictor.classes_ = meta["classes"]
    predictor._load_state(folder)
    return predictor


def encode_labels(labels: pd.Series, classes: list[str]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    return labels.map(lookup).to_numpy(dtype=np.int64)
