"""Loaders for the public sets and MEDS streams produce valid cohorts."""

import pandas as pd

from conftest import needs_public_data
from pmlm_lib import adapters, filtering


@needs_public_data("pbcseq", "pbcseq.csv")
def test_pbcseq_is_a_valid_cohort():
    c = adapters.load_pbcseq()
    s = c.summary()
    assert s["patients"] == 312 and s["records"] == 1945 and s["max_records_per_patient"] == 16
    assert set(c.labels) == {"stage 1", "stage 2", "stage 3", "stage 4"}
    assert not c.calendar_dates and not c.has_replies
    result = filtering.filter_and_split(c, min_patients=10)
    assert result.split_method == "stratified" and "stage 1" not in result.cohort.labels


@needs_public_data("mimic_iv_demo_meds", "events.parquet")
def test_mimic_demo_is_a_valid_cohort():
    c = adapters.load_mimic_demo()
    assert c.summary()["patients"] == 100
    assert {"hemoglobin", "platelet_count", "wbc", "alt"} <= set(c.indicators)
    assert set(c.labels) <= {"diabetes", "hypothyroidism", "hypertension", "anemia", "none of these"}
    # haemoglobin in g/dL, as MIMIC reports it
    assert 6 < c.exams["hemoglobin"].median() < 16


def test_meds_loader_maps_codes_days_and_label_priority():
    t = pd.Timestamp
    events = pd.DataFrame({
        "subject_id": [1, 1, 1, 1, 2, 2, 2],
        "time": [t("2100-01-01 08:00"), t("2100-01-01 20:00"), t("2100-01-03"), t("2100-01-05"),
                 t("2100-02-01"), t("2100-02-02"), t("2100-02-02")],
        "code": ["LAB//HB", "LAB//HB", "LAB//PLT", "DX//ANEMIA", "LAB//HB", "DX//ANEMIA", "DX//DIABETES"],
        "value": [10.0, 12.0, 200.0, None, 9.0, None, None],
    })
    c = adapters.load_meds(events, {"LAB//HB": "hemoglobin", "LAB//PLT": "platelet_count"},
                           [("diabetes", ("DX//DIABETES",)), ("anemia", ("DX//ANEMIA",))])
    assert c.label_of("2") == "diabetes" and c.label_of("1") == "anemia"  # first rule wins
    h = c.history("1")
    assert len(h) == 2 and h.loc[0, "hemoglobin"] == 11.0  # two values on one day are averaged
    assert c.indicators == ["hemoglobin", "platelet_count"]
