"""The embedded cohort: reproducible, shaped like the paper's, medically sensible."""

import filecmp

import numpy as np

from pmlm_lib.data import synthetic
from pmlm_lib.data.indicators import INDICATOR_NAMES


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = synthetic.generate(n_patients=120, seed=11, raw=True)
    b = synthetic.generate(n_patients=120, seed=11, raw=True)
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    a.exams.to_csv(tmp_path / "a" / "exams.csv", index=False)
    b.exams.to_csv(tmp_path / "b" / "exams.csv", index=False)
    for name in ("exams.parquet", "patients.parquet", "cohort.json", "exams.csv"):
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name
    c = synthetic.generate(n_patients=120, seed=12, raw=True)
    assert not c.exams[INDICATOR_NAMES].equals(a.exams[INDICATOR_NAMES])


def test_default_size_matches_the_paper(default_cohort):
    s = default_cohort.summary()
    assert s["patients"] == 2373 and s["indicators"] == 35 and s["labels"] == 12
    assert s["max_records_per_patient"] == 45
    assert 36000 <= s["records"] <= 42000
    counts = default_cohort.patients["label"].value_counts()
    assert counts.index[0] == "normal" and counts.iloc[0] > 3 * counts.iloc[-1]
    years = default_cohort.patients["admission_date"].dt.year.value_counts()
    assert years[2020] < 120 and 1500 < years[2021] < 1800 and 550 < years[2022] < 800
    visits = default_cohort.exams.groupby("patient_id").size()
    assert visits.min() == 1


def _last_values(cohort, label, column):
    ids = cohort.patients.loc[cohort.patients["label"] == label, "patient_id"]
    rows = cohort.exams[cohort.exams["patient_id"].isin(ids)]
    return rows.groupby("patient_id")[column].last()


def test_label_effects_follow_medicine(default_cohort):
    c = default_cohort
    # thalassaemia trait: small red cells, many of them
    assert _last_values(c, "thalassemia", "mcv").median() < _last_values(c, "normal", "mcv").median() - 12
    assert _last_values(c, "thalassemia", "rbc").median() > _last_values(c, "normal", "rbc").median() + 0.5
    # hypertensive disorder: platelets fall by delivery
    assert (
        _last_values(c, "gestational hypertension", "platelet_count").median()
        < _last_values(c, "normal", "platelet_count").median() - 40
    )
    # rupture of membranes: white cells rise
    assert (
        _last_values(c, "premature rupture of membranes", "wbc").median()
        > _last_values(c, "normal", "wbc").median() + 2
    )
    # cord entanglement has no laboratory signature
    for col in ("hemoglobin", "wbc", "platelet_count"):
        diff = abs(
            _last_values(c, "umbilical cord entanglement", col).median() - _last_values(c, "normal", col).median()
        )
        assert diff < 0.15 * _last_values(c, "normal", col).median()


def test_values_are_coherent(default_cohort):
    e = default_cohort.exams.dropna(subset=["rbc", "mch", "hemoglobin", "wbc", "neutrophil_ratio", "neutrophil_count"])
    assert np.allclose(e["hemoglobin"], e["rbc"] * e["mch"], rtol=0, atol=10)  # g/L: measurement noise of sd 2
    assert np.allclose(e["neutrophil_count"], e["wbc"] * e["neutrophil_ratio"] / 100, atol=0.1)  # after rounding
    ratios = default_cohort.exams[
        [f"{k}_ratio" for k in ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")]
    ].dropna()
    assert np.allclose(ratios.sum(axis=1), 100, atol=0.3)


def test_missingness_by_panel_and_informative(default_cohort):
    e = default_cohort.exams
    liver = e["albumin"].notna()
    assert (liver == e["alt"].notna()).mean() > 0.9  # panels go missing together
    sick = default_cohort.patients.loc[default_cohort.patients["label"] == "gestational hypertension", "patient_id"]
    well = default_cohort.patients.loc[default_cohort.patients["label"] == "normal", "patient_id"]
    assert liver[e["patient_id"].isin(sick)].mean() > liver[e["patient_id"].isin(well)].mean() + 0.1


def test_replies_name_condition_findings_and_vary(default_cohort):
    p = default_cohort.patients
    for label in ("gestational diabetes", "thalassemia", "premature rupture of membranes"):
        replies = p.loc[p["label"] == label, "reference_reply"]
        assert replies.str.contains(label, regex=False).mean() > 0.95
    assert p["reference_reply"].nunique() > 0.99 * len(p)  # phrasing and content vary between patients
    assert p["reference_reply"].str.contains("expected").mean() > 0.2  # her own values are quoted
    words = p["reference_reply"].str.split().str.len()
    assert 60 < words.median() < 260


def test_raw_table_has_extras_for_the_filter():
    raw = synthetic.generate(n_patients=300, seed=1, raw=True)
    assert set(synthetic.EXTRA_INDICATORS) <= set(raw.indicators)
    assert set(synthetic.RARE_LABELS) & set(raw.labels)
    only_extra = raw.exams[INDICATOR_NAMES].isna().all(axis=1)
    assert only_extra.sum() > 0
