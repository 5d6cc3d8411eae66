"""ROCKET (Dempster et al., 2020) on the zero-padded tables, with aeon."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..cohort import Cohort
from .base import Predictor, Standardizer, labels_of, padded_tensor


class RocketPredictor(Predictor):
    family = "rocket"

    def __init__(self, seed: int = 0, n_kernels: int = 2000, max_visits: int = 45, n_jobs: int = 1):
        super().__init__(seed=seed, n_kernels=n_kernels, max_visits=max_visits, n_jobs=n_jobs)
        self.n_kernels, self.max_visits, self.n_jobs = n_kernels, max_visits, n_jobs
        self.model = None
        self.standardizer: Standardizer | None = None

    def _series(self, cohort, ids):
        x, _, _ = padded_tensor(cohort, ids, self.max_visits, self.standardizer)
        return np.ascontiguousarray(x.transpose(0, 2, 1), dtype=np.float64)  # aeon: [cases, channels, time]

    def fit(self, cohort: Cohort, patient_ids, validation_ids=None):
        from aeon.classification.convolution_based import RocketClassifier

        self.classes_ = list(cohort.labels)
        train_rows = cohort.exams[cohort.exams["patient_id"].isin(set(patient_ids))]
        self.standardizer = Standardizer().fit(train_rows[cohort.indicators].to_numpy(dtype=float))
        self.model = RocketClassifier(n_kernels=self.n_kernels, random_state=self.seed, n_jobs=self.n_jobs)
        self.model.fit(self._series(cohort, list(patient_ids)), labels_of(cohort, patient_ids).to_numpy())
        return self

    def _predict_proba(self, cohort, patient_ids):
        proba = self.model.predict_proba(self._series(cohort, patient_ids))
        out = np.zeros((len(patient_ids), len(self.classes_)))
        for j, c in enumerate(self.model.classes_):
            out[:, self.classes_.index(c)] = proba[:, j]
        return out

    def _save_state(self, folder: Path):
        with open(folder / "model.pkl", "wb") as f:
            pickle.dump({"model": self.model, "standardizer": self.standardizer.state()}, f)

    def _load_state(self, folder: Path):
        with open(folder / "model.pkl", "rb") as f:
            state = pickle.load(f)
        self.model, self.standardizer = state["model"], Standardizer.from_state(state["standardizer"])
