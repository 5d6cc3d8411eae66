"""`pmlm tune`: configurations of the refinement compared on validation patients, training by training."""

import json

import numpy as np
import pandas as pd
import pytest

from pmlm_lib.workbench.trainings import TrainingsError
from pmlm_lib.workbench.tuning import configurations_from, result, summarize, train


def _training(tmp_path, name, seed, s0, rand, sets):
    run = tmp_path / name
    (run / "results").mkdir(parents=True)
    greedy = {"mode": "greedy", "patients": 40, "− s_0": s0, "− s_0 CI low": s0 - 2, "− s_0 CI high": s0 + 2}
    greedy.update(
        {"− random deletion": rand, "− random deletion CI low": rand - 2, "− random deletion CI high": rand + 2}
    )
    record = {
        "training_seed": seed,
        "inference": {"mode": "greedy", "validation": [greedy]},
        "history": [{"minus_random": 0.01}],
        "personalization": {
            "distinct_edit_sets": sets,
            "share_most_common": 0.5,
            "share_prediction_cut": 0.0,
            "share_peer_diagnosis_cut": 0.25,
        },
    }
    (run / "results" / "rl_refinement.json").write_text(json.dumps(record))
    return run


def test_each_configuration_gets_its_mean_spread_and_worst_training(tmp_path):
    rows = [
        {"configuration": "a", **result(_training(tmp_path, "a0", 0, 5.0, 4.0, 100))},
        {"configuration": "a", **result(_training(tmp_path, "a1", 1, -3.0, -2.0, 200))},
        {"configuration": "b", **result(_training(tmp_path, "b0", 0, 6.0, 5.0, 10))},
        {"configuration": "b", **result(_training(tmp_path, "b1", 1, 4.0, 3.0, 30))},
    ]
    assert rows[1]["− s_0 CI"] == "[-5.0, -1.0]" and rows[0]["training"] == 0 and rows[0]["n"] == 40
    table = summarize(pd.DataFrame(rows))
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "− s_0: mean"] == pytest.approx(1.0) and table.loc["a", "− s_0: worst"] == -3.0
    assert table.loc["a", "− random deletion: sd"] == pytest.approx(4.2426, abs=1e-3)
    assert table.loc["b", "− random deletion: worst"] == 3.0 and table.loc["b", "distinct_edit_sets (mean)"] == 20


def test_configurations_are_named_once_and_read_from_yaml(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("group_size: 4\nbaseline: group\nprotect: [prediction]\n")
    assert configurations_from(["today", f"mine={mine}"]) == {
        "today": {},
        "mine": {"group_size": 4, "baseline": "group", "protect": ["prediction"]},
    }
    with pytest.raises(ValueError, match="its own name"):
        configurations_from(["today", "today"])
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping of notebook 04 parameters"):
        configurations_from([f"bad={tmp_path / 'list.yaml'}"])


def test_a_run_without_its_first_three_notebooks_cannot_be_tuned(tmp_path):
    run = tmp_path / "partial"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"notebooks": [{"notebook": "01_data_filtering", "status": "ok"}]}))
    with pytest.raises(TrainingsError, match="notebooks 02, 03 did not finish"):
        train(run, "today", {}, 0, reports_dir=tmp_path)
    with pytest.raises(TrainingsError, match="not a run folder"):
        train(tmp_path / "nothing", "today", {}, 0, reports_dir=tmp_path)


def test_one_training_measured_in_two_modes_gives_a_row_per_mode_with_the_personalization_controls(tmp_path):
    run = _training(tmp_path, "t0", 0, 5.0, 4.0, 40)
    record = json.loads((run / "results" / "rl_refinement.json").read_text())
    consensus = {"mode": "consensus", "patients": 40, "− shuffled": float("nan")}
    for other, value in (("s_0", 6.0), ("random deletion", 5.0), ("consensus template", 0.0)):
        consensus.update({f"− {other}": value, f"− {other} CI low": value - 1, f"− {other} CI high": value + 1})
    record["inference"]["validation"].append(consensus)
    record["inference"]["validation"][0].update(
        {"− shuffled": -0.5, "− shuffled CI low": -2.0, "− shuffled CI high": 1.0}
    )
    record["restarts"] = {"count": 5, "chosen": 1, "selection": [{"accepted": False}, {"accepted": True}]}
    (run / "results" / "rl_refinement.json").write_text(json.dumps(record))
    greedy, other = result(run), result(run, "consensus")
    assert greedy["mode"] == "greedy" and greedy["− shuffled"] == -0.5 and greedy["− shuffled CI"] == "[-2.0, +1.0]"
    assert other["mode"] == "consensus" and other["− s_0"] == 6.0 and other["− consensus template"] == 0.0
    assert greedy["turned down"] == 1 and greedy["first try passed"] is False
    table = summarize(
        pd.DataFrame([{"configuration": "a · greedy", **greedy}, {"configuration": "a · consensus", **other}])
    )
    assert (
        table.loc["a · greedy", "first tries turned down"] == 1 and table.loc["a · greedy", "− shuffled: mean"] == -0.5
    )
    assert table.loc["a · consensus", "− consensus template: mean"] == 0.0


def test_the_trainings_per_patient_scores_give_an_interval_over_trainings_and_patients(tmp_path):
    """Two trainings of one configuration, each with its validation patients' scores per system: the summary's
    two-level interval of PMLM − shuffled comes from the differences patient by patient, its own mode's shuffle."""
    from pmlm_lib.workbench.tuning import across

    rng = np.random.default_rng(0)
    rows = []
    for j, shift in enumerate((1.0, 3.0)):
        run = _training(tmp_path, f"s{j}", j, 5.0, 4.0, 40)
        sampled = rng.normal(50, 5, 30)
        pd.DataFrame(
            {
                "patient_id": [f"P{i}" for i in range(30)],
                "greedy": sampled,
                "shuffled (greedy)": sampled - shift + rng.normal(0, 1, 30),
                "s_0": sampled - 5,
                "random deletion": sampled - 4,
            }
        ).to_csv(run / "inference_modes_scores.csv", index=False)
        rows.append({"configuration": "a", **result(run)})
    table = across(pd.DataFrame(rows), tmp_path)
    low, high = (float(x) for x in table.loc["a", "− shuffled: two-level CI"].strip("[]").split(", "))
    assert low < 2.0 < high and high - low > 1.0  # around the mean shift of 2, wide from the two trainings' spread
    assert table.loc["a", "− s_0: two-level CI"] == "[+5.0, +5.0]"
