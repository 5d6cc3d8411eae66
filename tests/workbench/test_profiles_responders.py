"""A profile names its responders once; `pmlm report` and `pmlm plan` refine once for each."""

import pytest

from pmlm_lib.workbench.errors import PipelineError
from pmlm_lib.workbench.plan import format_plan, make_plan
from pmlm_lib.workbench.profiles import PROFILE_DIR, expand_responders, load_profile

TWO = PROFILE_DIR / "examples" / "two-responders.yaml"


def test_the_example_profile_refines_once_per_responder_and_the_plan_counts_each():
    profile = load_profile(str(TWO))
    assert list(profile["responders"]) == ["SmolLM2-135M", "Gemma3-270M"]
    keys = expand_responders({"04_rl_refinement": {"lr": 0.01}, "05_evaluation": {}}, profile["responders"])
    assert keys["04_rl_refinement"]["responder"] == "bundled" and keys["04_rl_refinement"]["variant"] == ""
    gemma = keys["04_rl_refinement@Gemma3-270M"]
    assert gemma == {
        "lr": 0.01,
        "responder": profile["responders"]["Gemma3-270M"],
        "responder_name": "Gemma3-270M",
        "variant": "Gemma3-270M",
    }
    assert keys["05_evaluation"]["refinements"] == ["Gemma3-270M"]
    plan = make_plan(str(TWO))
    by_key = {p.notebook: p for p in plan["notebooks"]}
    assert {r.responder for r in by_key["04_rl_refinement@Gemma3-270M"].requests} == {"Gemma3-270M"}
    assert by_key["04_rl_refinement@Gemma3-270M"].minutes > 0
    text = format_plan(plan)
    assert "Per responder" in text and "SmolLM2-135M:" in text and "Gemma3-270M:" in text


@pytest.mark.parametrize(
    "responders, says",
    [
        ("bundled", "must map names to responder specs"),
        ({"two words": "bundled"}, "cannot name files"),
        ({"gemma": {"model": "gemma3-270m"}}, "give 'bundled' or a spec with a backend"),
    ],
)
def test_a_bad_responders_list_is_one_clear_error(tmp_path, responders, says):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"extends": "smoke", "responders": responders}))
    with pytest.raises(PipelineError, match=says):
        load_profile(str(path))
