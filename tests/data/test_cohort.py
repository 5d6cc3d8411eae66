"""Validation: every user mistake gives one error naming the file, row, column and the fix."""

import pandas as pd
import pytest

from pmlm_lib.data.cohort import Cohort, CohortError, load_folder, load_tables

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


def load_with(tmp_path, options=None, **tables):
    return load_folder(write(tmp_path, **tables), options)


def error_with(tmp_path, options, **tables) -> str:
    with pytest.raises(CohortError) as info:
        load_with(tmp_path, options, **tables)
    return str(info.value)


def log_reasons(cohort) -> str:
    return " | ".join(f"{r['reason']} ({r['removed']}) {r['detail']}" for r in cohort.load_log)


def test_same_day_rows_merge_into_one_examination_and_are_counted(tmp_path):
    c = load_with(tmp_path, exams=EXAMS.replace("2021-04-01,118,", "2021-03-01,,240"))
    a = c.history("A")
    assert (
        len(a) == 1 and a.loc[0, "hemoglobin"] == 120 and a.loc[0, "platelet_count"] == 240
    )  # each indicator's last value
    assert "merged into one" in log_reasons(c) and "1 patient-days" in log_reasons(c)
    msg = error_with(tmp_path, {"exam_resolution": "keep"}, exams=EXAMS.replace("2021-04-01", "2021-03-01"))
    assert "two examinations at 2021-03-01" in msg and "line 3" in msg and "line 2" in msg


def test_hourly_rows_merge_by_day_or_keep_their_times(tmp_path):
    hourly = EXAMS.replace("A,2021-04-01,118,", "A,2021-03-01 08:00,118,\nA,2021-03-01 14:30,121,260")
    by_day = load_with(tmp_path, exams=hourly)
    assert by_day.history("A")["hemoglobin"].tolist() == [121]  # the last value of the day, in time order
    kept = load_with(tmp_path, {"exam_resolution": "keep"}, exams=hourly)
    assert kept.history("A")["exam_date"].dt.strftime("%H:%M").tolist() == ["00:00", "08:00", "14:30"]
    from pmlm_lib.data.serialize import serialize_history

    assert "2021-03-01 14:30: HGB 121, PLT 260" in serialize_history(kept.history("A"), kept.indicators)


def test_patient_without_exams_is_removed_and_counted_or_raised(tmp_path):
    c = load_with(tmp_path, patients=PATIENTS + "C,normal,Fine.,2021-06-01\n")
    assert c.patient_ids == ["A", "B"] and "patients without examinations removed (1) C" in log_reasons(c)
    msg = error_with(tmp_path, {"on_quality": "raise"}, patients=PATIENTS + "C,normal,Fine.,2021-06-01\n")
    assert "patients.csv, row 3 (line 4 of the file), column 'patient_id'" in msg and "no examinations" in msg


def test_exams_of_unknown_patient(tmp_path):
    msg = error_of(tmp_path, exams=EXAMS + "Z,2021-05-02,99,100\n")
    assert "row 4" in msg and "patient Z" in msg and "not in" in msg
    msg = error_of(tmp_path, exams=EXAMS.replace("B,", "0B,"))
    assert "leading zeros" in msg


def test_missing_label_and_reply_words_are_missing_not_text(tmp_path):
    c = load_with(
        tmp_path,
        patients=PATIENTS.replace("B,thalassemia", "B,NA") + "C,normal,null,2021-06-01\n",
        exams=EXAMS + "C,2021-06-02,120,200\n",
    )
    # a missing label removes the patient; a missing reply does not: 01-03 need none, 04-06 leave her out
    assert c.patient_ids == ["A", "C"] and "without a label removed" in log_reasons(c) and "'NA' (1)" in log_reasons(c)
    assert "patients without a doctor's reply kept for filtering, prediction and retrieval" in log_reasons(c)
    assert "'null' (1)" in log_reasons(c) and c.with_reply(["A", "C"]) == ["A"]
    assert pd.isna(c.by_patient("reference_reply")["C"])
    saved = c.save(tmp_path / "saved")  # the run folder's copy reads back the same way (notebooks 02-07)
    assert load_folder(saved).with_reply(["A", "C"]) == ["A"]
    msg = error_with(tmp_path, {"on_quality": "raise"}, patients=PATIENTS.replace("B,thalassemia", "B,"))
    assert "column 'label'" in msg and "label of patient B is missing" in msg
    msg = error_with(
        tmp_path, {"on_quality": "raise"}, patients=PATIENTS.replace("Keep attending your check-ups.", "null")
    )
    assert "column 'reference_reply'" in msg and "row 1" in msg


def test_label_spellings_that_differ_in_case_and_spaces_are_one_label(tmp_path):
    patients = PATIENTS + "C,Normal ,Fine.,2021-06-01\nD,NORMAL,Fine.,2021-06-01\n"
    exams = EXAMS + "C,2021-06-02,120,200\nD,2021-06-02,121,201\n"
    c = load_with(tmp_path, patients=patients, exams=exams)
    assert c.labels == ["normal", "thalassemia"] and "spellings" in log_reasons(c) and "'NORMAL'" in log_reasons(c)
    msg = error_with(tmp_path, {"on_quality": "raise"}, patients=patients, exams=exams)
    assert "spelled in several ways" in msg and "column 'label'" in msg


def test_implausible_values_are_missing_and_counted_or_raised(tmp_path):
    exams = (
        "patient_id,exam_date,hemoglobin,platelet_count,neutrophil_ratio,ph\n"
        "A,2021-03-01,120,250,60,6.5\nA,2021-04-01,99999,240,250,0\nB,2021-05-02,101,-3,70,7\nB,2021-05-09,110,200,65,6\n"
    )
    c = load_with(tmp_path, exams=exams)
    assert c.exams[["hemoglobin", "platelet_count", "neutrophil_ratio", "ph"]].isna().sum().tolist() == [1, 1, 1, 1]
    assert "implausible values treated as missing (outside the indicator's plausibility limits) (4)" in log_reasons(
        c
    ) and "hemoglobin (1, outside 20..250)" in log_reasons(c)
    msg = error_with(tmp_path, {"on_quality": "raise"}, exams=exams)
    assert "row 2 (line 3 of the file), column 'hemoglobin'" in msg and "99999 is outside 20..250" in msg
    # a cohort's own limits extend the catalogue
    c = load_with(tmp_path, {"plausibility": {"platelet_count": [0, 260]}}, exams=exams.replace("-3", "300"))
    assert c.exams["platelet_count"].isna().sum() == 1


def test_values_in_another_unit_are_an_error_not_a_clean_up(tmp_path):
    exams = (
        "patient_id,exam_date,hemoglobin\nA,2021-03-01,12.0\nA,2021-04-01,11.8\nB,2021-05-02,10.1\n"  # g/dL, not g/L
    )
    msg = error_of(tmp_path, exams=exams)
    assert "column 'hemoglobin'" in msg and "3 of its 3 values" in msg and "another unit" in msg
    (tmp_path / "cohort.json").write_text('{"units": {"hemoglobin": "g/dL"}}')
    assert load_folder(tmp_path).exams["hemoglobin"].tolist() == [12.0, 11.8, 10.1]  # limits converted: 2..25 g/dL


def test_censored_values_take_their_bound(tmp_path):
    c = load_with(tmp_path, exams=EXAMS.replace("101,180", "101,<5"))
    assert c.exams["platelet_count"].tolist()[-1] == 5 and "censored" in log_reasons(c)
    msg = error_with(tmp_path, {"on_quality": "raise"}, exams=EXAMS.replace("101,180", "101,<5"))
    assert "censored" in msg and "column 'platelet_count'" in msg


def test_day_first_dates_are_read_one_way_for_the_whole_column(tmp_path):
    exams = "patient_id,exam_date,hemoglobin\nA,09/11/2020,120\nA,24/11/2020,118\nB,02/12/2020,101\n"
    patients = "patient_id,label\nA,normal\nB,thalassemia\n"
    c = load_with(tmp_path, exams=exams, patients=patients)
    assert c.history("A")["exam_date"].dt.strftime("%Y-%m-%d").tolist() == ["2020-11-09", "2020-11-24"]
    assert "day/month/year" in log_reasons(c)
    ambiguous = exams.replace("24/11/2020", "10/11/2020")
    msg = error_of(tmp_path, exams=ambiguous, patients=patients)
    assert "ambiguous" in msg and "column 'exam_date'" in msg and "dayfirst" in msg
    c = load_with(tmp_path, {"dayfirst": True}, exams=ambiguous, patients=patients)
    assert c.history("A")["exam_date"].dt.strftime("%m-%d").tolist() == ["11-09", "11-10"]
    msg = error_of(tmp_path, exams=exams.replace("02/12/2020", "11/24/2020"), patients=patients)
    assert "mixes day-first dates" in msg
    c = load_with(tmp_path, {"date_format": "%d/%m/%Y"}, exams=ambiguous, patients=patients)
    assert c.history("A")["exam_date"].dt.strftime("%m-%d").tolist() == ["11-09", "11-10"]


def test_time_zone_offsets_keep_the_ward_clock(tmp_path):
    exams = (
        "patient_id,exam_date,hemoglobin\nA,2021-03-01T23:30:00+08:00,120\nA,2021-03-02T06:00:00Z,118\n"
        "B,2021-05-02T10:00:00-05:00,101\n"
    )
    c = load_with(
        tmp_path, {"exam_resolution": "keep"}, exams=exams, patients="patient_id,label\nA,normal\nB,thalassemia\n"
    )
    assert c.history("A")["exam_date"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2021-03-01 23:30",
        "2021-03-02 06:00",
    ]
    assert "time-zone offsets removed (times kept as recorded) (3)" in log_reasons(c)


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


# ---- files as hospitals export them --------------------------------------------------------
def write_bytes(tmp_path, exams: bytes, patients: bytes):
    (tmp_path / "exams.csv").write_bytes(exams)
    (tmp_path / "patients.csv").write_bytes(patients)
    return tmp_path


def test_semicolons_tabs_and_decimal_commas(tmp_path):
    semi = "patient_id;exam_date;hemoglobin;rbc\nA;2021-03-01;120;3,85\nA;2021-04-01;118;\nB;2021-05-02;101;4,1\n"
    c = load_folder(
        write_bytes(tmp_path, semi.encode(), PATIENTS.replace(",", ";").replace("check-ups.", "check-ups").encode())
    )
    assert c.exams["rbc"].tolist()[0] == 3.85 and c.exams["hemoglobin"].tolist() == [120, 118, 101]
    assert "decimal comma" in log_reasons(c)
    tabbed = EXAMS.replace(",", "\t")
    assert load_folder(write_bytes(tmp_path, tabbed.encode(), PATIENTS.encode())).exams["hemoglobin"].tolist() == [
        120,
        118,
        101,
    ]


def test_encodings_utf8_bom_gb18030_and_latin1_by_name(tmp_path):
    chinese = "patient_id,label,reference_reply\nA,正常,按时产检。\nB,地中海贫血,补充叶酸。\n"
    c = load_folder(write_bytes(tmp_path, EXAMS.encode("utf-8-sig"), chinese.encode("gb18030")))
    assert c.labels == sorted(["正常", "地中海贫血"]) and c.exams.columns[0] == "patient_id"
    latin = "patient_id,label\nA,normal\nB,anémie\n"
    write_bytes(tmp_path, EXAMS.encode(), latin.encode("latin-1"))
    with pytest.raises(CohortError) as info:
        load_folder(tmp_path)
    assert "patients.csv" in str(info.value) and "encoding: latin-1" in str(info.value)
    assert load_folder(tmp_path, {"encoding": "latin-1"}).labels == ["anémie", "normal"]


def test_empty_and_header_only_files(tmp_path):
    msg = error_of(tmp_path, exams="")
    assert "exams.csv: the file is empty" in msg
    msg = error_of(tmp_path, exams="patient_id,exam_date,hemoglobin\n")
    assert "exams.csv" in msg and "header but no rows" in msg


def test_excel_headers_trailing_empty_column_duplicates_and_spaces(tmp_path):
    excel = (
        EXAMS.replace("platelet_count\n", "platelet_count ,\n").replace("250\n", "250,\n").replace("118,\n", "118,,\n")
    )
    excel = excel.replace("180\n", "180,\n")
    c = load_with(tmp_path, exams=excel)
    assert c.indicators == ["hemoglobin", "platelet_count"]
    assert "trimmed" in log_reasons(c) and "empty columns without a name removed" in log_reasons(c)
    msg = error_of(tmp_path, exams=EXAMS.replace("platelet_count", "hemoglobin"))
    assert "the column name 'hemoglobin' appears twice (columns 3 and 4)" in msg


def test_one_source_per_table(tmp_path):
    folder = write(tmp_path)
    load_folder(folder).exams.assign(exam_date=lambda e: e["exam_date"].dt.strftime("%Y-%m-%d")).to_parquet(
        folder / "exams.parquet", index=False
    )
    c = load_folder(folder)  # the same table twice: read once, said in the log
    assert "hold the same table" in log_reasons(c)
    (folder / "exams.csv").write_text(EXAMS.replace("120", "125"))
    with pytest.raises(CohortError, match="both exams.parquet and exams.csv hold the exams table, and they differ"):
        load_folder(folder)


def test_invalid_cohort_json_names_line_and_column(tmp_path):
    folder = write(tmp_path)
    (folder / "cohort.json").write_text('{"name": "ward 3",\n "units": {"hemoglobin": "g/L",}}')
    with pytest.raises(CohortError, match=r"cohort.json, line 2, column \d+"):
        load_folder(folder)
    (folder / "cohort.json").write_text('{"nmae": "ward 3"}')
    with pytest.raises(CohortError, match="unknown key.*nmae"):
        load_folder(folder)
    (folder / "cohort.json").write_text('{"options": {"dayfirts": true}}')
    with pytest.raises(CohortError, match="unknown option.*dayfirts"):
        load_folder(folder)


def test_a_declared_unit_converts_the_limits_instead_of_switching_the_check_off(tmp_path):
    exams = (
        "patient_id,exam_date,hemoglobin,total_bilirubin\n"
        "A,2021-03-01,12.0,0.8\nA,2021-04-01,99999,0.9\nB,2021-05-02,10.1,90\n"
    )
    (tmp_path / "cohort.json").write_text('{"units": {"hemoglobin": "g/dL", "total_bilirubin": "mg/dL"}}')
    c = load_folder(write(tmp_path, exams=exams))
    assert c.exams["hemoglobin"].isna().sum() == 1 and c.exams["total_bilirubin"].isna().sum() == 1
    reasons = log_reasons(c)
    assert "hemoglobin (1, outside 2..25)" in reasons and "total_bilirubin (1, outside 0..58.4795)" in reasons
    # a unit without a known factor: unchecked, and the log says so and how to give limits
    (tmp_path / "cohort.json").write_text('{"units": {"hemoglobin": "furlongs"}}')
    c = load_folder(tmp_path)
    assert c.exams["hemoglobin"].isna().sum() == 0
    assert "indicators left without a plausibility check" in log_reasons(
        c
    ) and "hemoglobin (declared furlongs, catalogue g/L)" in log_reasons(c)
    assert 'cohort.json ("options": {"plausibility": {"name": [low, high]}})' in log_reasons(c)
    (tmp_path / "cohort.json").write_text(
        '{"units": {"hemoglobin": "furlongs"}, "options": {"plausibility": {"hemoglobin": [1, 50]}}}'
    )
    c = load_folder(tmp_path)
    assert c.exams["hemoglobin"].isna().sum() == 1 and "left without a plausibility check" not in log_reasons(c)


def test_missing_value_words_in_number_cells_are_counted_in_the_log(tmp_path):
    exams = (
        "patient_id,exam_date,hemoglobin,platelet_count\n"
        "A,2021-03-01,NA,250\nA,2021-04-01,118,null\nB,2021-05-02,-,N/A\n"
    )
    c = load_folder(write(tmp_path, exams=exams))
    assert c.exams[["hemoglobin", "platelet_count"]].isna().sum().tolist() == [2, 2]
    assert "missing-value words (NA, null, -, N/A, ...) read as missing measurements (4)" in log_reasons(c)
    assert "hemoglobin (2, e.g. 'NA')" in log_reasons(c)


def test_a_cohort_whose_indicator_columns_are_all_empty_is_an_error(tmp_path):
    msg = error_of(tmp_path, exams="patient_id,exam_date,hemoglobin\nA,2021-03-01,\nB,2021-05-02,\n")
    assert "exams.csv, column 'hemoglobin'" in msg and "no examination has a value in any of its 1 indicator" in msg
    assert "How to fix: fill in the measurements" in msg


def test_an_admission_after_every_examination_is_flagged(tmp_path):
    in_time = PATIENTS.replace("2021-04-20", "2021-03-15").replace("2021-05-10", "2021-05-01")  # before the last exam
    c = load_folder(write(tmp_path, patients=in_time.replace("2021-05-01", "2022-05-10")))
    assert "patients admitted after their last examination (kept as given" in log_reasons(c)
    assert [r["removed"] for r in c.load_log if r["reason"].startswith("patients admitted after")] == [1]
    assert (
        "row 2 (line 3 of the file), column 'admission_date': 2022-05-10, last examination 2021-05-02" in log_reasons(c)
    )
    assert "admitted after" not in log_reasons(load_folder(write(tmp_path, patients=in_time)))


def test_a_time_zone_dropped_from_a_parquet_column_is_logged(tmp_path):
    exams = pd.DataFrame(
        {
            "patient_id": ["A", "A", "B"],
            "exam_date": pd.to_datetime(["2021-03-01 23:30", "2021-03-02 06:00", "2021-05-02 10:00"]).tz_localize(
                "Asia/Shanghai"
            ),
            "hemoglobin": [120.0, 118.0, 101.0],
        }
    )
    exams.to_parquet(tmp_path / "exams.parquet")
    (tmp_path / "patients.csv").write_text("patient_id,label\nA,normal\nB,thalassemia\n")
    c = load_folder(tmp_path, options={"exam_resolution": "keep"})
    assert c.history("A")["exam_date"].dt.strftime("%H:%M").tolist() == ["23:30", "06:00"]
    assert "time zone Asia/Shanghai removed (times kept as recorded there) (3)" in log_reasons(c)


def test_merged_label_spellings_still_pick_a_normal_case_and_write_a_normal_reply():
    import numpy as np

    from pmlm_lib.data.replies import OPENINGS, write_reply

    reply = write_reply("Normal", pd.DataFrame({"gestational_week": [30.0]}), np.random.default_rng(0))
    assert any(reply.startswith(o.format(c="Normal")[:30]) for o in OPENINGS["normal"])


def test_a_two_digit_year_is_named_first_with_a_fix_that_loads(tmp_path):
    exams = "patient_id,exam_date,hemoglobin\nA,09/11/20,120\nA,10/11/20,118\nB,11/11/20,101\n"
    msg = error_of(tmp_path, exams=exams)
    assert "'09/11/20' has a two-digit year" in msg and "'%d/%m/%y' for day/month/year" in msg
    c = load_with(tmp_path, {"date_format": "%d/%m/%y"}, exams=exams)
    assert c.history("A")["exam_date"].dt.strftime("%Y-%m-%d").tolist() == ["2020-11-09", "2020-11-10"]
