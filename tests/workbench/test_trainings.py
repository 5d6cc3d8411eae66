"""`pmlm trainings`: the refinement trained again on a finished run, compared across trainings on its patients."""

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pmlm_lib.evaluation import systems as ev
from pmlm_lib.evaluation.across_trainings import combined
from pmlm_lib.workbench.trainings import TrainingsError, run_trainings, training_seed


def _difference_table(matrix: np.ndarray) -> pd.DataFrame:
    """Patients x trainings differences as `differences` gives them (one comparison, one setting)."""
    n, k = matrix.shape
    return pd.DataFrame(
        [
            {"setting": "matched", "against": ev.WITHOUT_PR, "training": j, "patient_id": f"P{p}", "d": matrix[p, j]}
            for p in range(n)
            for j in range(k)
        ]
    )


def test_the_combined_interval_widens_with_the_spread_between_trainings():
    rng = np.random.default_rng(0)
    patients = rng.normal(0, 6, size=(60, 1))  # the patients' own effects, shared by every training
    noise = rng.normal(0, 2, size=(60, 3))
    agreeing = combined(_difference_table(3.0 + patients + noise))
    disagreeing = combined(_difference_table(3.0 + patients + noise + np.array([[-4.0, 0.0, 4.0]])))
    assert agreeing["n"] == 60 and agreeing["trainings"] == 3
    assert agreeing["mean_difference"] == pytest.approx(disagreeing["mean_difference"])
    assert disagreeing["sd_between_trainings"] == pytest.approx(agreeing["sd_between_trainings"] + 4.0, abs=1.0)
    width = lambda r: r["ci95_high"] - r["ci95_low"]  # noqa: E731
    # trainings that disagree by +-4 points cannot give the interval of trainings that agree
    assert width(disagreeing) > 2 * width(agreeing)
    assert disagreeing["ci95_low"] < 0 < agreeing["ci95_low"]
    # with trainings that agree, the interval is about the patients' own (no narrower)
    per_patient = (3.0 + patients + noise).mean(axis=1)
    own = 2 * 2.0 * per_patient.std(ddof=1) / np.sqrt(60)
    assert width(agreeing) >= 0.95 * own
    # the two-level bootstrap widens with the spread too, and holds the mean
    boot = lambda r: r["bootstrap_high"] - r["bootstrap_low"]  # noqa: E731
    assert boot(disagreeing) > 2 * boot(agreeing)
    for r in (agreeing, disagreeing):
        assert r["bootstrap_low"] < r["mean_difference"] < r["bootstrap_high"]
    hurting = combined(_difference_table(patients + noise + np.array([[-3.0, 2.0, 4.0]])))
    assert hurting["trainings_mean_below_zero"] == 1 and agreeing["trainings_mean_below_zero"] == 0


def test_trainings_of_one_seed_get_their_own_seeds():
    assert training_seed(0, 0) == 0 and training_seed(1, 0) == 1
    seeds = {training_seed(s, j) for s in range(3) for j in range(3)}
    assert len(seeds) == 9  # runs of seeds 0, 1 and 2 never share a training


@pytest.mark.slow
def test_a_run_trained_again_is_compared_on_its_patients_and_its_page_says_so(smoke_run, tmp_path):
    _, smoke_dir, _ = smoke_run
    reports = tmp_path / "reports"
    base = reports / "base"
    shutil.copytree(smoke_dir, base)
    console = io.StringIO()
    run_trainings(base, k=2, reports_dir=reports, console=console)

    other = reports / "base-training1"
    record = json.loads((other / "run.json").read_text())
    assert record["status"] == "ok"
    assert [nb["notebook"][:2] for nb in record["notebooks"]] == ["01", "02", "03", "04", "05"]
    assert record["parameters"]["04_rl_refinement"]["training_seed"] == training_seed(0, 1)
    # another training: its own episodes (order and sampled edits) ...
    log_base = (base / "refinement_log.jsonl").read_text()
    log_other = (other / "refinement_log.jsonl").read_text()
    assert log_base != log_other
    # ... on the same test patients, where what does not depend on the policy answers exactly as before
    scored = {r.name: pd.read_parquet(r / "answers_scored.parquet") for r in (base, other)}
    matched = {k: v[(v["setting"] == ev.MATCHED) & (v["responder"] == ev.BUNDLED)] for k, v in scored.items()}
    for system in (ev.WITHOUT_PR, ev.BEFORE):
        a, b = (m[m["system"] == system].set_index("patient_id")["answer"].sort_index() for m in matched.values())
        assert a.index.equals(b.index) and (a == b).all(), system
    table = pd.read_csv(base / "tables" / "trainings.csv")
    joint = table[table["training"] == "across 2 trainings"]
    patients = matched["base"]["patient_id"].nunique()
    assert set(joint["PMLM against"]) >= {ev.WITHOUT_PR, ev.RANDOM, ev.BEFORE} and (joint["n"] == patients).all()
    for _, row in joint.iterrows():
        own = table[(table["setting"] == row["setting"]) & (table["PMLM against"] == row["PMLM against"])]
        means = own[own["training"].str.startswith("training_seed")]["mean_difference"]
        assert len(means) == 2 and row["mean_difference"] == pytest.approx(means.mean(), abs=1e-3)
        assert row["ci95_low"] <= row["mean_difference"] <= row["ci95_high"]
    # the base run's page: the findings across trainings in the Findings box, and the section
    page = (base / "index.html").read_text()
    assert page.index("Across 2 trainings of the refinement") < page.index("id='contents'")
    cohort = json.loads((base / "results" / "evaluation.json").read_text())["cohort"]
    assert f"the {cohort} cohort)" in page  # named as notebook 05's findings name it
    assert "patients × 2 trainings" in page and "<h2 id='trainings'>" in page
    # what one training is worth: the spread measured for the profile, in the Findings box
    spread = page[page.index("What one training is worth") : page.index("id='contents'")]
    assert "by `pmlm trainings` on run base" in spread and "sd " in spread and "of 2 below zero" in spread
    assert (reports / "latest").resolve() == base.resolve()  # the trainings are part of the base run
    assert "across 2 trainings" in console.getvalue()

    # asked again: the finished training is kept, not trained again
    again = io.StringIO()
    run_trainings(base, k=2, reports_dir=reports, console=again)
    assert "kept" in again.getvalue() and "04_rl_refinement" not in again.getvalue()

    # a training cannot be the base of more trainings
    with pytest.raises(TrainingsError, match="training_seed"):
        run_trainings(other, k=2, reports_dir=reports, console=io.StringIO())
