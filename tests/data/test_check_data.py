"""`pmlm check-data` on a hospital export as it comes, and on files it cannot read."""

import pytest

from pmlm_lib.data.hospital_export import CHINESE_LABELS, write_hospital_export
from pmlm_lib.workbench.cli import main


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_hospital_export(tmp_path_factory.mktemp("export"), n_patients=200, seed=1)


def test_check_data_reports_what_reading_and_filtering_do(export, capsys):
    assert main(["check-data", str(export), "--min-patients", "8"]) == 0
    out = capsys.readouterr().out
    assert "Loaded: 200 patients" in out and "doctors' replies: no" in out
    assert "patients.csv: read as gb18030, delimiter ';'" in out
    assert "dates read as day/month/year" in out and "decimal comma" in out
    assert "patients without examinations removed" in out and "examinations of one patient on one day merged" in out
    assert "Kept: " in out and CHINESE_LABELS["normal"] in out
    first_id = out.split("patients without examinations removed")[1].split("\n")[0]
    assert "000207" in first_id  # ids keep their leading zeros


def test_check_data_names_the_error_and_the_option_that_fixes_it(export, tmp_path, capsys):
    (tmp_path / "exams.csv").write_bytes((export / "exams.csv").read_bytes())
    latin = "patient_id;label\n000007;anémie\n".encode("latin-1")
    (tmp_path / "patients.csv").write_bytes(latin)
    assert main(["check-data", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "patients.csv" in out and "--encoding latin-1" in out
    (tmp_path / "exams.csv").write_text(
        "patient_id;exam_date;hemoglobin\n000007;09/11/2020;120\n000007;10/11/2020;118\n"
    )
    (tmp_path / "patients.csv").write_text("patient_id;label\n000007;x\n")
    assert main(["check-data", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ambiguous" in out and "--dayfirst" in out and "line 2" in out
    assert main(["check-data", str(tmp_path), "--dayfirst", "--min-patients", "1"]) == 0
    assert "2020-11-09 to 2020-11-10" in capsys.readouterr().out


def test_check_data_on_a_relative_path_from_the_callers_directory(export, monkeypatch, capsys):
    monkeypatch.chdir(export.parent)
    assert main(["check-data", export.name, "--min-patients", "8"]) == 0
    assert f"Checking {export}" in capsys.readouterr().out
    assert main(["check-data", "no-such-folder"]) == 1
    assert "no such folder" in capsys.readouterr().err
