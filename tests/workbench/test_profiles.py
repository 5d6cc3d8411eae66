"""Profiles: named ones, files that extend them, and the run plan they imply."""

import json

import pytest

from pmlm_lib.workbench.errors import PipelineError
from pmlm_lib.workbench.profiles import load_profile, parse_overrides


def test_a_profile_file_extends_another_and_changes_only_what_it_says(tmp_path):
    (tmp_path / "gpu.yaml").write_text(
        "extends: default\ndescription: larger samples\n"
        "parameters:\n  05_evaluation:\n    eval_patients: 200\n"
        "prices:\n  gpt-4o: {prompt_per_1k: 0.0025, answer_per_1k: 0.01}\n"
    )
    (tmp_path / "more.yaml").write_text("extends: gpu.yaml\nparameters:\n  common:\n    seed: 3\n")
    base, gpu, more = (
        load_profile("default"),
        load_profile(str(tmp_path / "gpu.yaml")),
        load_profile(str(tmp_path / "more.yaml")),
    )
    assert gpu["parameters"]["05_evaluation"]["eval_patients"] == 200
    assert gpu["parameters"]["04_rl_refinement"] == base["parameters"]["04_rl_refinement"]
    assert more["parameters"]["common"]["seed"] == 3 and more["parameters"]["05_evaluation"]["eval_patients"] == 200
    assert more["prices"]["gpt-4o"]["answer_per_1k"] == 0.01 and gpu["description"] == "larger samples"


def test_profile_mistakes_are_errors(tmp_path):
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(PipelineError, match="extends itself"):
        load_profile(str(tmp_path / "loop.yaml"))
    (tmp_path / "typo.yaml").write_text("extend: default\n")
    with pytest.raises(PipelineError, match="unknown key"):
        load_profile(str(tmp_path / "typo.yaml"))
    with pytest.raises(PipelineError, match="not found"):
        load_profile(str(tmp_path / "absent.yaml"))
    with pytest.raises(PipelineError, match="unknown profile"):
        load_profile("nope")


def test_example_profiles_load():
    from pmlm_lib.workbench.profiles import PROFILE_DIR

    examples = sorted((PROFILE_DIR / "examples").glob("*.yaml"))
    assert len(examples) >= 2
    for path in examples:
        assert load_profile(str(path))["parameters"]


def test_the_plan_counts_the_answers_each_notebook_will_request():
    from pmlm_lib.workbench.plan import make_plan

    plan = make_plan("smoke", overrides=parse_overrides(["05_evaluation.eval_patients=5"]))
    by = {p.notebook: {r.what.split(":")[0]: r.answers for r in p.requests} for p in plan["notebooks"]}
    smoke = load_profile("smoke")["parameters"]
    r4, r5 = smoke["04_rl_refinement"], smoke["05_evaluation"]
    assert by["04_rl_refinement"]["RL episodes"] == r4["epochs"] * r4["patients_per_epoch"] * r4.get("group_size", 1)
    assert by["04_rl_refinement"]["s_0 of the training pool"] == r4["train_patients"]
    # the judging of the first training is counted, and what each training turned down would add is said
    judging = next(r for r in plan["notebooks"][3].requests if r.what.startswith("validation: random deletion"))
    per_training = r4["epochs"] * r4["patients_per_epoch"] * r4.get("group_size", 1) + r4["selection_patients"]
    assert judging.answers == 2 * r4["selection_patients"]
    assert f"each training turned down: {per_training} answers more, up to {r4['restarts'] - 1} times" in judging.what
    assert by["05_evaluation"]["matched"] == 5 and sum(
        r.answers for r in plan["notebooks"][4].requests if "sampled" in r.what
    ) == 5 * 8 * len(r5["sampled_seeds"])  # before, PMLM, without SP/PP/PR, random deletion, consensus, shuffled
    assert all(p.minutes > 0 for p in plan["notebooks"])
    # the headroom study of a finished run is sized too: s_0, 3 + k item-level candidates, 3 word-level, 100 patients
    from pmlm_lib.workbench.plan import format_plan

    (study,) = plan["studies"].items()
    assert study[0] == "pmlm headroom --patients 100" and study[1]["answers"] == 100 * (10 + 7)
    assert "pmlm headroom --patients 100: 1,700 answers" in format_plan(plan)
    # the sampled setting answers the matched setting's prompts again: only its answers are computed
    sampled = [r for r in plan["notebooks"][4].requests if "sampled" in r.what]
    assert sampled and all(r.computed_tokens == r.answers * r.answer_tokens for r in sampled)


def test_the_plans_rate_is_not_set_by_one_run_made_on_a_busy_machine(tmp_path):
    """Three earlier runs answered at 250, 240 and (beside other work) 20 tokens/s: the plan uses 240."""
    from pmlm_lib.workbench.plan import measured_rate

    for name, seconds in (("a", 40.0), ("b", 10000 / 240), ("busy", 500.0)):
        logs = tmp_path / name / "logs"
        logs.mkdir(parents=True)
        (tmp_path / name / "run.json").write_text("{}")
        row = {
            "backend": "llama.cpp",
            "generated": 10,
            "max_tokens": 100,
            "prompt_tokens": 9000,
            "wall_seconds": seconds,
        }
        (logs / "04_rl_refinement.answers.jsonl").write_text(json.dumps(row) + "\n")
    rate, basis = measured_rate(tmp_path)
    assert round(rate) == 240 and "3 earlier run" in basis


def test_the_plan_finds_an_earlier_run_with_the_same_parameters(tmp_path):
    """A finished run of the same profile and parameters is the one whose cached answers the plan counts."""
    from pmlm_lib.workbench.plan import make_plan
    from pmlm_lib.workbench.profiles import default_notebooks_dir, discover_notebooks, parameters_for

    profile = load_profile("smoke")
    parameters = {
        nb.stem: parameters_for(nb, profile, tmp_path / "x", {}) for nb in discover_notebooks(default_notebooks_dir())
    }
    for name, status in (("failed-one", "failed"), ("earlier", "ok")):
        (tmp_path / name / "logs").mkdir(parents=True)
        (tmp_path / name / "run.json").write_text(json.dumps({"run": name, "status": status, "parameters": parameters}))
    plan = make_plan("smoke", reports_dir=tmp_path)
    assert plan["same_parameters_run"] == "earlier"
