"""Loaders for the public sets and MEDS streams produce valid cohorts."""

import pandas as pd
import pytest
from conftest import needs_public_data

from pmlm_lib.data import adapters, filtering


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
    events = pd.DataFrame(
        {
            "subject_id": [1, 1, 1, 1, 2, 2, 2],
            "time": [
                t("2100-01-01 08:00"),
                t("2100-01-01 20:00"),
                t("2100-01-03"),
                t("2100-01-05"),
                t("2100-02-01"),
                t("2100-02-02"),
                t("2100-02-02"),
            ],
            "code": ["LAB//HB", "LAB//HB", "LAB//PLT", "DX//ANEMIA", "LAB//HB", "DX//ANEMIA", "DX//DIABETES"],
            "value": [10.0, 12.0, 200.0, None, 9.0, None, None],
        }
    )
    c = adapters.load_meds(
        events,
        {"LAB//HB": "hemoglobin", "LAB//PLT": "platelet_count"},
        [("diabetes", ("DX//DIABETES",)), ("anemia", ("DX//ANEMIA",))],
        units={"hemoglobin": "g/dL"},
    )
    assert c.label_of("2") == "diabetes" and c.label_of("1") == "anemia"  # first rule wins
    h = c.history("1")
    assert len(h) == 2 and h.loc[0, "hemoglobin"] == 11.0  # two values on one day are averaged
    assert c.indicators == ["hemoglobin", "platelet_count"]


def test_meds_standard_numeric_value_censored_values_text_times_and_default_labels():
    events = pd.DataFrame(
        {
            "subject_id": [7, 7, 7, 8, 8],
            "time": ["24/01/2100 08:00", "24/01/2100 20:00", "25/01/2100", "02/02/2100", "03/02/2100"],
            "code": ["LAB//PLT", "LAB//PLT", "DX//ANEMIA", "LAB//PLT", "LAB//PLT"],
            "numeric_value": ["150", "<5", None, "210", ">=400"],
        }
    )
    c = adapters.load_meds(events, {"LAB//PLT": "platelet_count"}, [("anemia", ("DX//ANEMIA",))])
    assert c.history("7")["exam_date"].dt.strftime("%Y-%m-%d").tolist() == ["2100-01-24"]
    assert c.history("7")["platelet_count"].tolist() == [77.5]  # the day's mean of 150 and the bound 5
    assert c.history("8")["platelet_count"].tolist() == [210, 400]
    reasons = " | ".join(f"{r['reason']} ({r['removed']})" for r in c.load_log)
    assert "censored values such as '<5' taken at their bound (2)" in reasons
    assert "no label rule matched their codes: labelled 'none of these' (1)" in reasons
    assert "dates read as day/month/year" in reasons


def _events(codes, values):
    t = pd.Timestamp("2100-01-01")
    return pd.DataFrame(
        {
            "subject_id": [1] * len(codes),
            "time": [t + pd.Timedelta(days=i) for i in range(len(codes))],
            "code": codes,
            "numeric_value": values,
        }
    )


def test_meds_messages_fit_an_event_stream_not_a_csv():
    from pmlm_lib.data.cohort import CohortError

    with pytest.raises(CohortError) as unmatched:
        adapters.load_meds(_events(["LAB//51222", "LAB//51222"], [11.0, 12.0]), {"LAB//HB": "hemoglobin"}, [])
    message = str(unmatched.value)
    assert "column 'code': no event with a value has a code of the code map" in message
    assert "LAB//51222 (2)" in message and "map this stream's measurement codes" in message
    assert "add a column" not in message
    with pytest.raises(CohortError, match="the event stream has no events"):
        adapters.load_meds(_events([], []), {"LAB//HB": "hemoglobin"}, [])
    # values in another unit than declared: the fix names load_meds' arguments, not a cohort.json
    with pytest.raises(CohortError) as mixed:
        adapters.load_meds(
            _events(["LAB//HB"] * 3, [120.0, 118.0, 101.0]), {"LAB//HB": "hemoglobin"}, [], units={"hemoglobin": "g/dL"}
        )
    message = str(mixed.value)
    assert "outside 2..25, the plausible range in g/dL" in message and "load_meds(units=" in message
    assert "cohort.json" not in message


def test_meds_declared_unit_keeps_the_plausibility_check():
    c = adapters.load_meds(
        _events(["LAB//HB"] * 4, [11.0, 99999.0, 12.0, 10.5]),
        {"LAB//HB": "hemoglobin"},
        [],
        units={"hemoglobin": "g/dL"},
    )
    assert c.exams["hemoglobin"].isna().sum() == 1
    assert any("hemoglobin (1, outside 2..25)" in r["detail"] for r in c.load_log)
