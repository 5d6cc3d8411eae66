"""Exports that went through a spreadsheet, and rows that contradict each other: read exactly and logged where that
can be done, else one error that says what the spreadsheet did and how to export the file so that it does not."""

import pytest

from pmlm_lib.data.cohort import CohortError, load_folder
from pmlm_lib.workbench.cli import main

PATIENTS = "patient_id,label\nA,normal\nB,thalassemia\n"


def _folder(tmp_path, exams: str | bytes, patients: str | bytes = PATIENTS):
    for name, table in (("exams.csv", exams), ("patients.csv", patients)):
        path = tmp_path / name
        path.write_bytes(table) if isinstance(table, bytes) else path.write_text(table)
    return tmp_path


def _error(folder, **options) -> str:
    with pytest.raises(CohortError) as info:
        load_folder(folder, options)
    return str(info.value)


def _log(cohort) -> str:
    return " | ".join(f"{r['reason']} ({r['removed']}) {r['detail']}" for r in cohort.load_log)


def test_dates_stored_as_serial_numbers_are_named_with_both_readings_and_the_export_fix(tmp_path):
    folder = _folder(tmp_path, "patient_id,exam_date,hemoglobin\nA,2021-03-01,120\nB,44159,101\n")
    message = _error(folder)
    assert "exams.csv" in message and "row 2" in message and "exam_date" in message
    assert "'44159' is not a date but a spreadsheet's serial day number" in message
    assert "2020-11-24 in Excel's 1900 date system, 2024-11-25 in the 1904 one" in message
    assert "format the date column as a date (YYYY-MM-DD)" in message
    plain = _error(_folder(tmp_path, "patient_id,exam_date,hemoglobin\nA,2021-03-01,120\nB,last week,101\n"))
    assert "'last week' is not a date" in plain and "serial day number" not in plain


def test_ids_in_scientific_notation_stop_the_load_saying_that_digits_were_lost(tmp_path):
    exams = "patient_id,exam_date,hemoglobin\n2.02112E+11,2021-03-01,120\n2.02112E+11,2021-03-02,101\n"
    patients = "patient_id,label\n2.02112E+11,normal\n2.02112E+11,thalassemia\n"
    message = _error(_folder(tmp_path, exams, patients))
    assert "exams.csv" in message and "row 1" in message and "patient_id" in message
    assert "'2.02112E+11' is in scientific notation" in message and "kept 6 of the id's 12 digits" in message
    assert "formatted as text" in message and "add" not in message.split("How to fix")[-1].split()[:3]


def test_a_thousands_separator_is_read_when_declared_and_named_when_not(tmp_path):
    exams = 'patient_id,exam_date,platelet_count\nA,2021-03-01,"1,234.5"\nA,2021-04-01,250\nB,2021-05-02,"1,100"\n'
    folder = _folder(tmp_path, exams)
    message = _error(folder)
    assert "'1,234.5' is written with a thousands separator (',')" in message and "thousands: ','" in message
    cohort = load_folder(folder, {"thousands": ","})
    assert sorted(cohort.exams["platelet_count"]) == [250.0, 1100.0, 1234.5]
    assert "thousands separator ',' read without it (1,234.5 = 1234.5) (2) platelet_count (2)" in _log(cohort)
    # European exports: dots group the thousands, commas are the decimal marks
    dotted = _folder(
        tmp_path, "patient_id;exam_date;platelet_count\nA;2021-03-01;1.234,5\nA;2021-04-01;250,5\nB;2021-05-02;99\n"
    )
    assert sorted(load_folder(dotted, {"thousands": "."}).exams["platelet_count"]) == [99.0, 250.5, 1234.5]
    contradicts = _folder(tmp_path, "patient_id;exam_date;platelet_count\nA;2021-03-01;1.234,5\nB;2021-05-02;1.5\n")
    assert "'1.5' has a dot that is not a thousands separator" in _error(contradicts, thousands=".")


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_a_file_with_a_utf16_or_utf32_byte_order_mark_is_read_exactly_and_the_log_says_so(tmp_path, codec):
    exams = "patient_id\texam_date\themoglobin\nA\t2021-03-01\t120\nB\t2021-05-02\t101\n"
    bom = {"utf-16": "\ufeff", "utf-16-be": "\ufeff", "utf-32": "\ufeff"}[codec]
    raw = (bom + exams).encode(codec) if codec != "utf-16" and codec != "utf-32" else exams.encode(codec)
    patients = "patient_id,label\nA,normal\nB,anémie\n".encode()
    cohort = load_folder(_folder(tmp_path, raw, patients))
    assert list(cohort.exams["hemoglobin"]) == [120.0, 101.0] and "anémie" in cohort.labels
    assert cohort.indicators == ["hemoglobin"]  # no NUL between the letters of the header
    assert "byte-order mark: the file was read as UTF-" in _log(cohort)


def test_conflicting_rows_are_logged_with_both_values_and_the_rule_and_the_rule_is_a_parameter(tmp_path):
    exams = (
        "patient_id,exam_date,hemoglobin,platelet_count\n"
        "A,2021-03-01,120,250\n"
        "A,2021-03-01,125,250\n"  # a corrected row sent twice: hemoglobin disagrees, platelets agree
        "B,2021-05-02,101,180\n"
    )
    folder = _folder(tmp_path, exams)
    cohort = load_folder(folder)
    a = cohort.exams[cohort.exams["patient_id"] == "A"]
    assert len(a) == 1 and a["hemoglobin"].iloc[0] == 125.0 and a["platelet_count"].iloc[0] == 250.0
    log = _log(cohort)
    assert (
        "conflicting values of one patient, time and indicator: the later row in the file kept (on_conflict: last)"
        in log
    )
    assert "(1) A 2021-03-01 hemoglobin: 120 and 125" in log
    assert load_folder(folder, {"on_conflict": "first"}).exams.set_index("patient_id").loc["A", "hemoglobin"] == 120.0
    message = _error(folder, on_conflict="raise")
    assert "row 2" in message and "hemoglobin" in message and "120 and 125" in message and "on_conflict" in message
    # repeated measurements at different times of one day are no conflict: the day keeps the later one, as before
    timed = "patient_id,exam_date,hemoglobin\nA,2021-03-01 08:00,120\nA,2021-03-01 14:00,125\nB,2021-05-02,101\n"
    assert "conflicting" not in _log(load_folder(_folder(tmp_path, timed)))
    with pytest.raises(CohortError, match="on_conflict must be one of"):
        load_folder(folder, {"on_conflict": "mean"})


def test_check_data_quotes_the_spreadsheet_damage_and_the_conflicts(tmp_path, capsys):
    exams = 'patient_id,exam_date,platelet_count\nA,2021-03-01,"1,234.5"\nA,2021-03-01,"1,200"\nB,2021-05-02,250\n'
    folder = _folder(tmp_path, exams)
    assert main(["check-data", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "thousands separator" in out and "--thousands ','" in out
    assert main(["check-data", str(folder), "--thousands", ",", "--min-patients", "1"]) == 0
    out = capsys.readouterr().out
    assert (
        "conflicting values of one patient, time and indicator" in out
        and "A 2021-03-01 platelet_count: 1234.5 and 1200" in out
    )
