"""Filtering and split: what each filter removes is reported; the split respects dates and labels."""

import pandas as pd
import pytest

from pmlm_lib.data import filtering, synthetic
from pmlm_lib.data.indicators import INDICATOR_NAMES


@pytest.fixture(scope="module")
def raw():
    return synthetic.generate(n_patients=600, seed=5, raw=True)


def test_filters_reduce_raw_to_the_papers_shape(raw):
    result = filtering.filter_and_split(raw, min_coverage=0.3, min_patients=12)
    assert result.cohort.indicators == INDICATOR_NAMES  # the sparse extras go, the 35 stay
    assert not set(synthetic.RARE_LABELS) & set(result.cohort.labels)
    assert not result.cohort.exams[result.cohort.indicators].isna().all(axis=1).any()
    log = result.log.table().set_index("step")
    assert log.loc["indicators by coverage", "removed"] == len(synthetic.EXTRA_INDICATORS)
    removed_exams = log.loc["empty examinations", "removed"] + log.loc["examinations of those patients", "removed"]
    assert removed_exams == len(raw.exams) - len(result.cohort.exams)
    dropped_patients = log.loc["patients with a dropped label", "removed"]
    assert dropped_patients == len(raw.patients) - len(result.cohort.patients)


def test_date_split_follows_admission_dates(raw):
    result = filtering.filter_and_split(raw, min_patients=12)
    assert result.split_method == "date"
    adm = result.cohort.patients.set_index("patient_id")["admission_date"]
    split = result.split
    assert (adm[split == "train"] <= pd.Timestamp("2021-12-31")).all()
    assert (
        (adm[split == "validation"] > pd.Timestamp("2021-12-31"))
        & (adm[split == "validation"] <= pd.Timestamp("2022-06-30"))
    ).all()
    assert (adm[split == "test"] > pd.Timestamp("2022-06-30")).all()
    assert set(split.index) == set(result.cohort.patient_ids)


def test_stratified_split_is_seeded_and_keeps_every_label(raw):
    c = filtering.filter_and_split(raw, min_patients=12).cohort
    a = filtering.split_stratified(c, seed=4)
    b = filtering.split_stratified(c, seed=4)
    assert a.equals(b) and not a.equals(filtering.split_stratified(c, seed=5))
    per_label = pd.crosstab(c.patients.set_index("patient_id")["label"], a)
    assert (per_label > 0).all().all()


def test_auto_uses_stratified_split_without_calendar_dates(raw):
    undated = raw._replace(raw.exams, raw.patients, raw.indicators)
    undated.calendar_dates = False
    assert filtering.filter_and_split(undated, min_patients=12).split_method == "stratified"


def test_impossible_thresholds_say_what_to_change(raw):
    with pytest.raises(ValueError, match="lower min_coverage"):
        filtering.filter_and_split(raw, min_coverage=1.01)
    with pytest.raises(ValueError, match="lower min_patients"):
        filtering.filter_and_split(raw, min_patients=10_000)


def test_summary_table_sits_beside_the_paper(raw):
    result = filtering.filter_and_split(raw, min_patients=12)
    table = filtering.summary_table(raw, result)
    assert table.loc["indicators", "paper"] == 35 and table.loc["indicators", "filtered"] == 35
    assert table.loc["patients admitted in 2021", "paper"] == 1638
