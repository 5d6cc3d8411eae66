"""The predictor interface and the shared zero-padded tensor representation."""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort import Cohort


class Predictor(ABC):
    """fit on training patients; predict_proba gives one column per label, rows in the ids' order."""

    family: str = ""

    def __init__(self, seed: int = 0, **options):
        self.seed = seed
        self.options = options
        self.classes_: list[str] = []

    @abstractmethod
    def fit(self, cohort: Cohort, patient_ids: list[str]) -> "Predictor": ...

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
        meta = {"module": type(self).__module__, "class": type(self).__name__, "family": self.family,
                "seed": self.seed, "options": self.options, "classes": self.classes_}
        (folder / "predictor.json").write_text(json.dumps(meta, indent=2) + "\n")
        self._save_state(folder)
        return folder


def load_predictor(folder: str | Path) -> Predictor:
    """A predictor saved with `save`, ready to predict."""
    folder = Path(folder)
    meta = json.loads((folder / "predictor.json").read_text())
    cls = getattr(importlib.import_module(meta["module"]), meta["class"])
    predictor = cls(seed=meta["seed"], **meta["options"])
    predictor.classes_ = meta["classes"]
    predictor._load_state(folder)
    return predictor


class Standardizer:
    """Per-indicator mean and sd from training examinations (missing values ignored)."""

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        self.mean, self.std = mean, std

    def fit(self, values: np.ndarray) -> "Standardizer":
        self.mean = np.nanmean(values, axis=0)
        self.std = np.nanstd(values, axis=0)
        self.mean = np.nan_to_num(self.mean)
        self.std = np.where(np.nan_to_num(self.std) > 1e-9, np.nan_to_num(self.std), 1.0)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> "Standardizer":
        return cls(np.array(state["mean"]), np.array(state["std"]))


def padded_tensor(cohort: Cohort, patient_ids: list[str], max_visits: int, standardizer: Standardizer | None = None,
                  keep_missing_mask: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The paper's zero-padded representation: [patients, max_visits, indicators].

    The newest `max_visits` examinations are kept (oldest first within them); values are
    standardized, then missing values and padding become 0 — which is exactly what makes a zero
    ambiguous. Returns the tensor, the visit mask (True = a real visit) and, when asked, the mask
    of measured values (a missingness-aware model can use it).
    """
    index = {pid: i for i, pid in enumerate(patient_ids)}
    rows = cohort.exams[cohort.exams["patient_id"].isin(index)]
    values = rows[cohort.indicators].to_numpy(dtype=float)
    if standardizer is not None:
        values = standardizer.transform(values)
    order = rows["patient_id"].map(index).to_numpy()
    x = np.zeros((len(patient_ids), max_visits, len(cohort.indicators)), dtype=np.float32)
    measured = np.zeros_like(x, dtype=bool) if keep_missing_mask else None
    mask = np.zeros((len(patient_ids), max_visits), dtype=bool)
    # rows are sorted by patient and date: place each patient's newest visits at the end of her slot
    starts = np.r_[0, np.flatnonzero(np.diff(order)) + 1, len(order)]
    for a, b in zip(starts[:-1], starts[1:]):
        if a == b:
            continue
        p = order[a]
        block = values[max(a, b - max_visits):b]
        k = len(block)
        x[p, :k] = np.nan_to_num(block, nan=0.0)
        mask[p, :k] = True
        if measured is not None:
            measured[p, :k] = ~np.isnan(block)
    return x, mask, measured


def encode_labels(labels: pd.Series, classes: list[str]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    return labels.map(lookup).to_numpy(dtype=np.int64)


def labels_of(cohort: Cohort, patient_ids: list[str]) -> pd.Series:
    return cohort.patients.set_index("patient_id").loc[list(patient_ids), "label"]


def stratified_sample(cohort: Cohort, patient_ids: list[str], n: int | None, seed: int) -> list[str]:
    """n of the patients, stratified by label (labels with one patient pooled); all when n is None or larger."""
    ids = list(patient_ids)
    if n is None or n >= len(ids):
        return ids
    from sklearn.model_selection import train_test_split

    labels = labels_of(cohort, ids)
    strat = labels.where(labels.map(labels.value_counts()) >= 2, "rare")
    if strat.value_counts().min() < 2 or n < strat.nunique():
        strat = None
    sample, _ = train_test_split(ids, train_size=n, random_state=seed, stratify=None if strat is None else strat.to_numpy())
    keep = set(sample)
    return [p for p in ids if p in keep]
