"""Numeric views of a patient's history shared by the predictors and the retrieval step.

`padded_tensor` is the paper's zero-padded table [patients, visits, indicators] (Eqs. 3 and A.3);
`Standardizer` holds per-indicator mean and sd learned on training examinations only.
"""

from __future__ import annotations

import numpy as np

from pmlm_lib.data.cohort import Cohort


class Standardizer:
    """Per-indicator mean and sd from training examinations (missing values ignored)."""

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        self.mean, self.std = mean, std

    def fit(self, values: np.ndarray) -> Standardizer:
        self.mean = np.nan_to_num(np.nanmean(values, axis=0))
        std = np.nan_to_num(np.nanstd(values, axis=0))
        self.std = np.where(std > 1e-9, std, 1.0)
        return self

    @classmethod
    def of_patients(cls, cohort: Cohort, patient_ids) -> Standardizer:
        rows = cohort.exams[cohort.exams["patient_id"].isin(set(patient_ids))]
        return cls().fit(rows[cohort.indicators].to_numpy(dtype=float))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> Standardizer:
        return cls(np.array(state["mean"]), np.array(state["std"]))


def padded_tensor(
    cohort: Cohort,
    patient_ids: list[str],
    max_visits: int,
    standardizer: Standardizer | None = None,
    keep_missing_mask: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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
    # rows are sorted by patient and date: each patient's block is contiguous, oldest first
    starts = np.r_[0, np.flatnonzero(np.diff(order)) + 1, len(order)]
    for a, b in zip(starts[:-1], starts[1:]):
        if a == b:
            continue
        p = order[a]
        block = values[max(a, b - max_visits) : b]
        k = len(block)
        x[p, :k] = np.nan_to_num(block, nan=0.0)
        mask[p, :k] = True
        if measured is not None:
            measured[p, :k] = ~np.isnan(block)
    return x, mask, measured


def concatenated(cohort: Cohort, patient_ids: list[str], max_visits: int, standardizer: Standardizer) -> np.ndarray:
    """Eq. 3: x' = zero-padded concatenation of a patient's examinations, [patients, max_visits * indicators]."""
    x, _, _ = padded_tensor(cohort, patient_ids, max_visits, standardizer)
    return x.reshape(len(patient_ids), -1)
