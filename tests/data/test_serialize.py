"""History serialization: newest first, within budget, omissions said, units in the legend."""

import pandas as pd

from pmlm_lib.data.serialize import approx_tokens, legend, serialize_history


def history():
    return pd.DataFrame(
        {
            "patient_id": ["A"] * 3,
            "exam_date": pd.to_datetime(["2021-01-05", "2021-02-05", "2021-03-05"]),
            "hemoglobin": [120.0, None, 98.0],
            "platelet_count": [250.0, 240.0, 140.0],
        }
    )


def test_newest_first_measured_values_only_with_precision():
    text = serialize_history(history(), ["hemoglobin", "platelet_count"])
    lines = text.splitlines()
    assert lines[0] == "2021-03-05: HGB 98, PLT 140"
    assert lines[1] == "2021-02-05: PLT 240"  # the missing haemoglobin is left out, not written as 0
    assert len(lines) == 3


def test_budget_keeps_newest_whole_exams_and_says_what_was_left_out():
    text = serialize_history(
        history(), ["hemoglobin", "platelet_count"], max_tokens=approx_tokens("2021-03-05: HGB 98, PLT 140\n") + 12
    )
    assert text.splitlines()[0].startswith("2021-03-05")
    assert text.splitlines()[-1] == "(2 earlier examinations not shown)"
    assert "2021-01-05" not in text


def test_budget_with_a_real_tokenizer():
    from transformers import AutoTokenizer

    from pmlm_lib.common.weights import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    count = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])
    rows = pd.concat([history()] * 1, ignore_index=True)
    text = serialize_history(rows, ["hemoglobin", "platelet_count"], max_tokens=30, count_tokens=count)
    assert count(text) <= 30 + count("(2 earlier examinations not shown)")


def test_legend_names_units():
    assert legend(["hemoglobin", "platelet_count"]) == "HGB = hemoglobin (g/L); PLT = platelet count (10^9/L)"
    assert legend(["bili"], {"bili": "mg/dL"}) == "bili = bili (mg/dL)"
