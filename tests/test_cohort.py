"""Validation: every user mistake gives one error naming the file, row, column and the fix."""

import pandas as pd
import pytest

from pmlm_lib.cohort import Cohort, CohortError, load_folder, load_tables

EXAMS = """patient_id,exam_date,hemoglobin,platelet_count
A,2021-03-01,120,250
A,2021-04-01,118,
B,2021-05-02,101,180
"""
PATIENTS = """patient_id,label,reference_reply,admission_date
A,normal,Keep attending your check-ups.,2021-04-20
B,thalassemia,Take folic acid.,2021-05-10
"""


def write(tmp_path, exams=EXAMS, patients=PATIENTS):
    (tmp_path / "exams.csv").write_text(exams)
    (tmp_path / "patients.csv").write_text(patients)
    return tmp_path


def error_of(tmp_path, **tables) -> str:
    folder = write(tmp_path, **tables)
    with pytest.raises(CohortError) as info:
        load_folder(folder)
    return str(info.value)


def test_valid_folder_loads_with_types(tmp_path):
    c = load_folder(write(tmp_path))
    assert c.indicators == ["hemoglobin", "platelet_count"]
    assert c.exams["exam_date"].dtype.kind == "M"
    assert c.exams["platelet_count"].isna().sum() == 1
    assert c.has_replies and c.labels == ["normal", "thalassemia"]
    assert c.summary()["max_records_per_patient"] == 2


def test_missing_required_column(tmp_path):
    msg = error_of(tmp_path, exams=EXAMS.replace("exam_date", "date"))
    assert "exams.csv" in msg and "column 'exam_date'" in msg and "How to fix" in msg


def test_non_numeric_value_names_line_and_column(tmp_path):
    msg = error_of(tmp_path, exams=EXAMS.replace("101,180", "101,18O"))
    assert "exams.csv, row 3 (line 4 of the file), column 'platelet_count'" in msg
    assert "'18O' is not a number" in msg


def test_unparseable_date(tmp_path):
    msg = error_of(tmp_path, exams=EXAMS.replace("2021-04-01", "2021-02-30"))
    assert "row 2 (line 3 of the file), column 'exam_date'" in msg and "is not a date" in msg


def test_impossible_date(tmp_path):
    msg = error_of(tmp_path, exams=EXAMS.replace("2021-05-02", "1821-05-02"))
    assert "column 'exam_date'" in msg and "impossible" in msg
    msg = error_of(tmp_path, exams=EXAMS.replace("2021-05-02", "2091-05-02"))
    assert "impossible" in msg


def test_duplicate_patient_date(tmp_path):
    msg = error_of(tmp_path, exams=EXAMS.replace("2021-04-01", "2021-03-01"))
    assert "two examinations on 2021-03-01" in msg and "line 3" in msg and "line 2" in msg


def test_patient_without_exams(tmp_path):
    msg = error_of(tmp_path, patients=PATIENTS + "C,normal,Fine.,2021-06-01\n")
    assert "patients.csv, row 3 (line 4 of the file), column 'patient_id'" in msg and "no examinations" in msg


def test_exams_of_unknown_patient(tmp_path):
    msg = error_of(tmp_path, exams=EXAMS + "Z,2021-05-02,99,100\n")
    assert "row 4" in msg and "patient Z" in msg and "not in" in msg


def test_empty_label_and_empty_reply(tmp_path):
    msg = error_of(tmp_path, patients=PATIENTS.replace("B,thalassemia", "B,"))
    assert "column 'label'" in msg and "label of patient B is empty" in msg
    msg = error_of(tmp_path, patients=PATIENTS.replace("Keep attending your check-ups.", ""))
    assert "column 'reference_reply'" in msg and "row 1" in msg


def test_replies_optional_until_a_step_needs_them(tmp_path):
    folder = write(tmp_path, patients="patient_id,label\nA,normal\nB,thalassemia\n")
    c = load_folder(folder)
    assert not c.has_replies
    with pytest.raises(CohortError, match="needs the doctors' reference replies"):
        c.require_replies("RL refinement")


def test_parquet_roundtrip_keeps_everything(tmp_path, small_cohort):
    small_cohort.save(tmp_path / "c")
    back = Cohort.load(tmp_path / "c")
    pd.testing.assert_frame_equal(back.exams, small_cohort.exams)
    pd.testing.assert_frame_equal(back.patients, small_cohort.patients)
    assert back.units == small_cohort.units and back.calendar_dates


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CohortError, match="file not found"):
        load_tables(tmp_path / "nope.csv", tmp_path / "also.csv")
