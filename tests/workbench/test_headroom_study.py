"""`pmlm headroom` on the smoke run: candidate edits of s_0 answered on validation patients by the real bundled
responder, the three headroom figures written beside the run (never into it), and quoted by the report."""

import json

import pandas as pd

from pmlm_lib.evaluation import headroom as figures
from pmlm_lib.workbench import headroom
from pmlm_lib.workbench.cli import main
from pmlm_lib.workbench.record import RunRecord
from pmlm_lib.workbench.report import headroom_note


def test_the_headroom_study_answers_every_candidate_and_says_what_a_per_patient_choice_adds(smoke_run, capsys):
    reports, run_dir, _ = smoke_run
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file())
    record = RunRecord.read_if_any(run_dir)
    assert "Not measured yet" in headroom_note(run_dir, record)
    k, with_policy = headroom.plan_of(run_dir)
    assert (k, with_policy) == (10, True)

    out = headroom.run_study(run_dir, patients=4)
    assert out == reports / "smoke-headroom"
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file()) == before  # run untouched
    summary = json.loads((out / headroom.RESULT).read_text())
    assert summary["patients"] == 4 and summary["candidates"] == k + 7
    assert summary["answers"]["asked"] == headroom.planned_answers(k, 4, with_policy) == 4 * 17
    answers = pd.read_parquet(out / "answers.parquet")
    assert set(answers["patient_id"]) <= set(
        pd.read_csv(run_dir / "split.csv", dtype=str).query("split == 'validation'")["patient_id"]
    )
    assert answers["BERTScore-F1"].between(0, 100).all() and (answers["answer"].str.len() > 0).all()
    by = answers.set_index(["patient_id", "candidate"])["prompt"]
    one = answers["patient_id"].iloc[0]
    assert "predicts that my current condition" not in by[one, headroom.DROP_PREDICTION]
    assert "similarity score" not in by[one, headroom.DROP_PEERS]
    assert by[one, "drop peer 1"].count("similarity score of") == k - 1
    table = summary["table"]
    assert table[figures.ORACLE]["mean"] >= max(r["mean"] for n, r in table.items() if n != figures.ORACLE)
    assert table[figures.BEST_SINGLE]["mean"] >= table[figures.S0]["mean"]
    assert summary["headroom"]["n"] == 4 and "validation patients" in summary["sentence"]
    assert summary["decoding"]["max_tokens"] == 16 and summary["decoding"]["temperature"] == 0
    assert "| (b) per-patient oracle" in (out / "headroom.md").read_text()
    note = headroom_note(run_dir, record)
    assert (
        note.startswith(f"Measured by `pmlm headroom` on run smoke ({summary['date']}") and summary["sentence"] in note
    )

    # a rerun costs no answer (the cache), and the command line says how many answers a study asks for
    again = json.loads((headroom.run_study(run_dir, patients=4) / headroom.RESULT).read_text())
    assert again["answers"]["new"] == 0 and again["headroom"] == summary["headroom"]
    assert main(["headroom", "--run", str(run_dir), "--patients", "100", "--plan"]) == 0
    assert capsys.readouterr().out.strip().endswith(": 1700 answers")
