"""Prompt templates (Figures 3-5) and the shared word segmentation."""

import pandas as pd

from pmlm_lib.data import prompts


def test_coarse_prompt_carries_prediction_and_k_peers():
    text = prompts.coarse_prompt("gestational diabetes", [("gestational diabetes", 0.934), ("normal", 0.9)])
    assert "my current condition is gestational diabetes." in text
    assert "The diagnosis result is gestational diabetes, with a similarity score of 0.93." in text
    assert text.count("The diagnosis result is") == 2


def test_ablations_leave_sentences_out():
    without_prediction = prompts.coarse_prompt(None, [("normal", 0.9)])
    assert "predicts" not in without_prediction and "similarity score of 0.90" in without_prediction
    without_peers = prompts.coarse_prompt("normal", [])
    assert "similar results" not in without_peers and without_peers.endswith("my current condition is normal.")


def test_coarse_prompts_for_many_patients_hold_no_exam_values():
    peers = pd.DataFrame(
        {
            "patient_id": ["A", "A", "B"],
            "rank": [1, 2, 1],
            "peer_id": ["X", "Y", "X"],
            "peer_label": ["normal", "thalassemia", "normal"],
            "similarity": [0.9, 0.8, 0.7],
        }
    )
    table = prompts.coarse_prompts(pd.Series({"A": "normal", "B": "thalassemia"}), peers, k=1)
    assert list(table.index) == ["A", "B"]
    assert "thalassemia, with" not in table.loc["A", "prompt"]  # rank 2 is beyond k
    for text in table["prompt"]:
        assert "HGB" not in text and "PLT" not in text  # no raw examination values


def test_raw_prompt_holds_the_history():
    text = prompts.raw_prompt("HGB = hemoglobin (g/L)", "2021-03-05: HGB 98")
    assert "2021-03-05: HGB 98" in text and "assess my condition" in text


def test_segmentation_round_trips_english_and_chinese():
    text = "<Input>: I am a patient.\nThe diagnosis  is normal."
    words = prompts.segment(text)
    assert prompts.join(words) == text and words[0] == "<Input>: " and len(words) == 9
    zh = "孕妇 血糖偏高，建议控制饮食。"
    assert prompts.join(prompts.segment(zh)) == zh and len(prompts.segment(zh)) == 14  # one word per character
    assert prompts.segment("   ") == []
