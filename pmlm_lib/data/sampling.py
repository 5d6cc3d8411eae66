"""Samples of patients: who is trained on, evaluated, refined or shown, when not everyone can be.

A sample is stratified by label, so that a small sample still holds the rare conditions in their share,
and seeded, so that the same parameters give the same patients.
"""

from __future__ import annotations

from pmlm_lib.data.cohort import Cohort


def labels_of(cohort: Cohort, patient_ids: list[str]):
    """The patients' labels, in the order of patient_ids."""
    return cohort.by_patient("label").loc[list(patient_ids)]


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
    sample, _ = train_test_split(
        ids, train_size=n, random_state=seed, stratify=None if strat is None else strat.to_numpy()
    )
    keep = set(sample)
    return [p for p in ids if p in keep]
