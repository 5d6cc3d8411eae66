"""A notebook run by hand (not by `pmlm report`) reads the newest run that has its inputs, starts from that run's
parameters, and writes into a copy: the finished run's files stay byte-identical."""

import hashlib
import json
import shutil
from pathlib import Path

import nbformat
import papermill
import pytest

from pmlm_lib.workbench.record import RunRecord, update_latest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_notebook_04_run_by_hand_leaves_the_finished_run_untouched_and_starts_from_its_parameters(
    smoke_run, tmp_path, monkeypatch
):
    monkeypatch.delenv("PMLM_PIPELINE", raising=False)
    reports = tmp_path / "reports"
    finished = Path(shutil.copytree(smoke_run[1], reports / "smoke", symlinks=True))
    # a newer data check (notebooks 01-02 only) that reports/latest points at: notebook 04 cannot read it
    partial = reports / "data-check"
    partial.mkdir()
    record = RunRecord.read(finished)
    record.run, record.started = "data-check", "2999-01-01T00:00:00"
    record.notebooks = [nb for nb in record.notebooks if nb["notebook"][:2] <= "02"]
    record.write(partial)
    update_latest(reports, partial)
    before = _hashes(finished)

    executed = tmp_path / "04_by_hand.ipynb"
    # what a user does in JupyterLab: the stored parameters cell, one value changed (random_control)
    papermill.execute_notebook(
        str(NOTEBOOKS / "04_rl_refinement.ipynb"),
        str(executed),
        parameters={"run_dir": str(reports / "latest"), "random_control": False},
        cwd=str(NOTEBOOKS),
        progress_bar=False,
    )
    assert _hashes(finished) == before  # byte for byte
    copies = [p for p in reports.iterdir() if p.name.startswith("smoke~04-by-hand-")]
    assert len(copies) == 1
    copy = copies[0]
    made = RunRecord.read(copy)
    assert made.status == "by hand" and made.extra["derived_from"] == "smoke"
    statuses = {nb["notebook"]: nb["status"] for nb in made.notebooks}
    assert statuses["03_peer_retrieval"].startswith("ok") and statuses["05_evaluation"] == "not run for this variant"
    first = "".join(
        o.get("text", "")
        for cell in nbformat.read(executed, as_version=4).cells
        for o in cell.get("outputs", [])
        if o["output_type"] == "stream"
    )
    assert "reads run smoke (the newest run with notebooks 01-03 finished (reports/latest points at data-check" in first
    assert f"writes into {copy.name}" in first and "Parameters you changed, kept: random_control = False" in first
    assert "epochs = 2" in first  # the smoke run's, not the stored default's 6
    refined = json.loads((copy / "results" / "rl_refinement.json").read_text())
    assert len(refined["history"]) == 2 and "minus_random" not in refined["history"][0]
    assert not (copy / "artifacts" / "05_evaluation.json").exists()  # a later step's section is not this variant's
