"""ROCKET (Dempster et al., 2020) on the zero-padded tables, with aeon."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pmlm_lib.data.cohort import Cohort
from pmlm_lib.data.representation import Standardizer, padded_tensor
from pmlm_lib.data.sampling import labels_of
from pmlm_lib.method.predictors.base import Predictor, align_proba, pickle_state, unpickle_state


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
        return align_proba(
            self.model.predict_proba(self._series(cohort, patient_ids)), self.model.classes_, self.classes_
        )

    def _save_state(self, folder: Path):
        pickle_state(folder, {"model": self.model, "standardizer": self.standardizer.state()})

    def _load_state(self, folder: Path):
        state = unpickle_state(folder)
        self.model, self.standardizer = state["model"], Standardizer.from_state(state["standardizer"])
