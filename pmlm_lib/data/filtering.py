"""Step 1: filtering and split (the paper's Section 5.1 and Appendix A.2).

Indicators are kept by coverage, examinations without any kept value are dropped, labels are kept
by patient count, and patients are split by admission date (2021 and earlier: train; first half
of 2022: validation; the rest: test), or, for data without calendar dates, by a seeded split
stratified by label. Every filter says what it removed and why: nothing disappears silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pmlm_lib.common import paper
from pmlm_lib.data.cohort import Cohort

SPLITS = ("train", "validation", "test")


@dataclass
class FilterLog:
    """What each filter removed, and why, in the order they ran."""

    rows: list[dict] = field(default_factory=list)

    def add(self, step: str, removed: int, unit: str, reason: str, detail: str = "") -> None:
        self.rows.append({"step": step, "removed": int(removed), "unit": unit, "reason": reason, "detail": detail})

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["step", "removed", "unit", "reason", "detail"])


def indicator_coverage(cohort: Cohort) -> pd.Series:
    """Share of examinations in which each indicator was measured, highest first."""
    return cohort.exams[cohort.indicators].notna().mean().sort_values(ascending=False)


def select_indicators(cohort: Cohort, min_coverage: float, log: FilterLog) -> Cohort:
    coverage = indicator_coverage(cohort)
    keep = [c for c in cohort.indicators if coverage[c] >= min_coverage]
    dropped = [c for c in cohort.indicators if coverage[c] < min_coverage]
    if not keep:
        raise ValueError(
            f"no indicator is measured in at least {min_coverage:.0%} of examinations "
            f"(best: {coverage.index[0]} at {coverage.iloc[0]:.1%}); lower min_coverage"
        )
    log.add(
        "indicators by coverage",
        len(dropped),
        "indicators",
        f"measured in fewer than {min_coverage:.0%} of examinations",
        ", ".join(f"{c} ({coverage[c]:.1%})" for c in dropped),
    )
    exams = cohort.exams[["patient_id", "exam_date", *keep]]
    return cohort._replace(exams, cohort.patients, keep)


def drop_empty_exams(cohort: Cohort, log: FilterLog) -> Cohort:
    empty = cohort.exams[cohort.indicators].isna().all(axis=1)
    exams = cohort.exams[~empty].reset_index(drop=True)
    log.add("empty examinations", int(empty.sum()), "examinations", "no kept indicator was measured")
    left = set(exams["patient_id"])
    gone = cohort.patients[~cohort.patients["patient_id"].isin(left)]
    if len(gone):
        log.add(
            "patients without examinations",
            len(gone),
            "patients",
            "all of their examinations were empty",
            ", ".join(gone["patient_id"].head(20)),
        )
    return cohort._replace(
        exams, cohort.patients[cohort.patients["patient_id"].isin(left)].reset_index(drop=True), cohort.indicators
    )


def select_labels(cohort: Cohort, min_patients: int, log: FilterLog) -> Cohort:
    counts = cohort.patients["label"].value_counts()
    rare = counts[counts < min_patients]
    log.add(
        "labels by patient count",
        len(rare),
        "labels",
        f"fewer than {min_patients} patients",
        ", ".join(f"{label} ({n})" for label, n in rare.items()),
    )
    keep_ids = cohort.patients.loc[~cohort.patients["label"].isin(rare.index), "patient_id"]
    if keep_ids.empty:
        raise ValueError(
            f"no label has {min_patients} patients or more (largest: {counts.index[0]} with {counts.iloc[0]}); lower "
            "min_patients"
        )
    kept = cohort.subset(keep_ids)
    if len(rare):
        log.add(
            "patients with a dropped label",
            int(rare.sum()),
            "patients",
            f"their label has fewer than {min_patients} patients",
        )
        log.add(
            "examinations of those patients",
            len(cohort.exams) - len(kept.exams),
            "examinations",
            "their patient was dropped",
        )
    return kept


def split_by_date(cohort: Cohort, train_end: str, validation_end: str) -> pd.Series:
    """train: admitted on or before train_end; validation: up to validation_end; test: after."""
    adm = cohort.by_patient("admission_date")
    split = np.where(
        adm <= pd.Timestamp(train_end), "train", np.where(adm <= pd.Timestamp(validation_end), "validation", "test")
    )
    return pd.Series(split, index=adm.index, name="split")


def split_stratified(cohort: Cohort, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> pd.Series:
    """A seeded split stratified by label, for data without calendar dates."""
    rng = np.random.default_rng(seed)
    out = {}
    for _label, group in cohort.patients.groupby("label", sort=True):
        ids = group["patient_id"].to_numpy().copy()
        rng.shuffle(ids)
        n = len(ids)
        n_train = int(round(fractions[0] * n))
        n_val = int(round(fractions[1] * n))
        if n >= 3:  # every label in every split when it has patients enough
            n_train = min(max(n_train, 1), n - 2)
            n_val = min(max(n_val, 1), n - n_train - 1)
        for i, pid in enumerate(ids):
            out[pid] = "train" if i < n_train else ("validation" if i < n_train + n_val else "test")
    return pd.Series(out, name="split").reindex(cohort.patients["patient_id"])


@dataclass
class FilterResult:
    cohort: Cohort
    split: pd.Series  # patient_id -> "train" | "validation" | "test"
    log: FilterLog
    split_method: str


def filter_and_split(
    cohort: Cohort,
    *,
    min_coverage: float = 0.3,
    min_patients: int = 30,
    split: str = "auto",
    train_end: str = "2021-12-31",
    validation_end: str = "2022-06-30",
    fractions=(0.7, 0.15, 0.15),
    seed: int = 0,
) -> FilterResult:
    """Run the filters in the paper's order and split the patients.

    split: "date" (the paper's calendar split), "stratified" (seeded, by label), or "auto" (date
    when the cohort has calendar dates and the date split leaves every part non-empty).
    """
    log = FilterLog(rows=list(cohort.load_log))  # what loading cleaned comes first
    c = select_indicators(cohort, min_coverage, log)
    c = drop_empty_exams(c, log)
    c = select_labels(c, min_patients, log)
    method = split
    if split == "auto":
        method = "stratified"
        if c.calendar_dates:
            by_date = split_by_date(c, train_end, validation_end)
            if all((by_date == s).any() for s in SPLITS):
                method = "date"
    if method == "date":
        parts = split_by_date(c, train_end, validation_end)
    elif method == "stratified":
        parts = split_stratified(c, fractions, seed)
    else:
        raise ValueError(f"split must be 'auto', 'date' or 'stratified', not {split!r}")
    return FilterResult(cohort=c, split=parts, log=log, split_method=method)


def split_label_counts(cohort: Cohort, split: pd.Series) -> pd.DataFrame:
    """Patients per label and split (the paper's class counts), with totals."""
    df = cohort.patients.assign(split=cohort.patients["patient_id"].map(split))
    table = pd.crosstab(df["label"], df["split"]).reindex(columns=list(SPLITS), fill_value=0)
    table["total"] = table.sum(axis=1)
    table = table.sort_values("total", ascending=False)
    table.loc["all labels"] = table.sum()
    return table


def summary_table(raw: Cohort, result: FilterResult, compare_with_paper: bool = True) -> pd.DataFrame:
    """Raw against filtered counts (records, patients, indicators, labels, most records of one
    patient, patients per split), beside the paper's figures (Section 5.1, Appendix A.2)."""
    r, f = raw.summary(), result.cohort.summary()
    keys = ["patients", "records", "indicators", "labels", "max_records_per_patient"]
    table = pd.DataFrame({"raw": [r[k] for k in keys], "filtered": [f[k] for k in keys]}, index=keys)
    counts = result.split.value_counts()
    for s in SPLITS:
        table.loc[f"patients in {s}"] = [None, int(counts.get(s, 0))]
    if compare_with_paper:
        table["paper"] = [paper.COHORT.get(k) for k in keys] + [None] * len(SPLITS)
        if result.split_method == "date":
            years = result.cohort.patients["admission_date"].dt.year.value_counts()
            for year, n in paper.PATIENTS_BY_YEAR.items():
                table.loc[f"patients admitted in {year}"] = [None, int(years.get(year, 0)), n]
    table.index.name = "count"
    return table.astype("Int64")
