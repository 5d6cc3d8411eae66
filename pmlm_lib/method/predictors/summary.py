"""A lightweight predictor beyond the paper: gradient boosting on per-indicator summaries.

Instead of zero padding, each indicator is summarised over the patient's history by its last,
minimum, maximum and mean value, its slope per week, and the share of visits that measured it, with
the number of visits and the span of the history. Unmeasured stays missing (NaN), which histogram
gradient boosting handles natively: "not measured" is never confused with a value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pmlm_lib.data.cohort import Cohort
from pmlm_lib.data.sampling import labels_of
from pmlm_lib.method.predictors.base import Predictor, align_proba, pickle_state, unpickle_state

STATISTICS = ("last", "min", "max", "mean", "slope", "missing")


def summary_features(cohort: Cohort, patient_ids: list[str]) -> pd.DataFrame:
    """One row per patient: STATISTICS for every indicator, plus n_visits and span_days."""
    rows = cohort.exams[cohort.exams["patient_id"].isin(set(patient_ids))]
    t = (rows["exam_date"] - rows.groupby("patient_id")["exam_date"].transform("min")).dt.days / 7.0
    g = rows[["patient_id", *cohort.indicators]].groupby("patient_id", sort=False)
    parts = {
        "last": g.last(),
        "min": g.min(),
        "max": g.max(),
        "mean": g.mean(),
        "missing": rows[cohort.indicators].isna().groupby(rows["patient_id"], sort=False).mean(),
    }
    # least-squares slope per week over the measured values
    values = rows[cohort.indicators].to_numpy(dtype=float)
    present = ~np.isnan(values)
    tt = np.where(present, t.to_numpy()[:, None], np.nan)
    frame = lambda a: pd.DataFrame(a, index=rows.index, columns=cohort.indicators).groupby(
        rows["patient_id"], sort=False
    )
    t_mean = frame(tt).transform("mean").to_numpy()
    v_mean = frame(values).transform("mean").to_numpy()
    cov = frame((tt - t_mean) * (values - v_mean)).sum(min_count=2)
    var = frame((tt - t_mean) ** 2).sum(min_count=2)
    parts["slope"] = cov / var.where(var > 0)
    feats = pd.concat({k: parts[k] for k in STATISTICS}, axis=1)
    feats.columns = [f"{ind}__{stat}" for stat, ind in feats.columns]
    extra = pd.DataFrame(
        {
            "n_visits": rows.groupby("patient_id", sort=False).size(),
            "span_days": rows.groupby("patient_id", sort=False)["exam_date"].agg(lambda d: (d.max() - d.min()).days),
        }
    )
    return pd.concat([feats, extra], axis=1).reindex(list(patient_ids))


class SummaryPredictor(Predictor):
    family = "summary_gbm"

    def __init__(
        self, seed: int = 0, max_iter: int = 150, learning_rate: float = 0.1, class_weight: str | None = "balanced"
    ):
        super().__init__(seed=seed, max_iter=max_iter, learning_rate=learning_rate, class_weight=class_weight)
        self.model = None
        self.feature_names: list[str] = []

    def fit(self, cohort: Cohort, patient_ids, validation_ids=None):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.classes_ = list(cohort.labels)
        x = summary_features(cohort, list(patient_ids))
        self.feature_names = list(x.columns)
        self.model = HistGradientBoostingClassifier(
            max_iter=self.options["max_iter"],
            learning_rate=self.options["learning_rate"],
            class_weight=self.options["class_weight"],
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=20,
            random_state=self.seed,
        )
        self.model.fit(x.to_numpy(), labels_of(cohort, patient_ids).to_numpy())
        return self

    def _predict_proba(self, cohort, patient_ids):
        x = summary_features(cohort, patient_ids).reindex(columns=self.feature_names)
        return align_proba(self.model.predict_proba(x.to_numpy()), self.model.classes_, self.classes_)

    def _save_state(self, folder: Path):
        pickle_state(folder, {"model": self.model, "features": self.feature_names})

    def _load_state(self, folder: Path):
        state = unpickle_state(folder)
        self.model, self.feature_names = state["model"], state["features"]
