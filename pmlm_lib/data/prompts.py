"""Prompt templates, in one place as data (the paper's Figures 3, 4 and 5), and the word segmentation
that the refinement step edits.

Templates are plain `str.format` strings so that a user can read and change them; the functions
below fill them. Figure 3 is the predictor's prompt (the label follows "Your current condition is");
Figure 4 the coarse personalized prompt (prediction and peers, no raw values); Figure 5 the raw-data
prompt that the "before" baseline sends (it carries the patient's exam values).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where tables are made, not at import time
    import pandas as pd


TEMPLATES = {
    # Figure 3: instruction tuning of the predictor LLM_p
    "predictor": (
        "<Instruction>: Please evaluate the condition of patient based on its health examination indicators "
        "from different dates.\n***\n"
        "<Input>: The health examination indicators for patient include {indicators}.\n"
        "The health data for the patient is (newest examination first):\n{history}\n***\n"
        "<Output>: Your current condition is"
    ),
    # Figure 4: the coarse-grained personalized prompt s_0, in parts so that the ablations of
    # Table 3 (without the prediction, without the peers) leave a sentence out instead of faking it
    "coarse": "<Instruction>: You are an assistant with expertise in medical knowledge.\n***\n<Input>: {body}",
    "coarse_request": (
        "I am a patient. Please provide advice based on my prediction results and the data from patients similar to me."
    ),
    "coarse_prediction": (
        "Based on my previous checkup results, the medical deep learning model predicts that my current condition is "
        "{prediction}."
    ),
    "coarse_peers": (
        "In addition, the hospital analyzed the similarity of physical examination indicators and identified "
        "information about past patients with similar results to mine. Their discharge diagnoses are as follows "
        "(similarity range: 0-1):\n{peers}"
    ),
    "coarse_peer": "The diagnosis result is {label}, with a similarity score of {similarity:.2f}.",
    # Figure 5: the evaluation ("before") prompt with the raw examination data
    "raw": (
        "<Instruction>: You are an assistant with expertise in medical knowledge.\n***\n"
        "<Input>: I am a patient. Please assess my condition and provide advice based on my medical test results.\n"
        "The health examination indicators include {indicators}.\n"
        "Here are my health results from different dates (newest first):\n{history}"
    ),
}


def predictor_prompt(indicators: str, history: str) -> str:
    """Figure 3, up to the label; the label is appended as ' <label>'."""
    return TEMPLATES["predictor"].format(indicators=indicators, history=history)


def coarse_prompt(prediction: str | None, peers: list[tuple[str, float]]) -> str:
    """Figure 4: the prediction and the k peers' true diagnoses with their similarities.

    prediction=None or peers=[] give the ablations "without self-informed" and "without
    peer-informed" personalization (the paper's Table 3).
    """
    body = TEMPLATES["coarse_request"] + "\n"
    sentences = []
    if prediction is not None:
        sentences.append(TEMPLATES["coarse_prediction"].format(prediction=prediction))
    if peers:
        lines = "\n".join(TEMPLATES["coarse_peer"].format(label=label, similarity=sim) for label, sim in peers)
        sentences.append(TEMPLATES["coarse_peers"].format(peers=lines))
    return TEMPLATES["coarse"].format(body=body + " ".join(sentences)).strip()


def raw_prompt(indicators: str, history: str) -> str:
    """Figure 5: the patient's raw examination values (leaves the machine only with an opt-in)."""
    return TEMPLATES["raw"].format(indicators=indicators, history=history)


# One word segmentation for the whole workbench: a word is a run of non-space characters (or one
# CJK character, since Chinese has no spaces) with the white space that follows it, so that joining
# the words gives back the text exactly and deleting a word removes its trailing space.
_WORD = re.compile(
    r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]\s*|[^\s\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+\s*"
)


def segment(text: str) -> list[str]:
    """The words of a prompt, each with its trailing white space; ''.join(segment(t)) == t.lstrip()."""
    return _WORD.findall(text.lstrip())


def join(words: list[str]) -> str:
    return "".join(words).strip()


# The clinical content of s_0: the predicted condition and each peer's diagnosis, as the templates place them.
# Each pattern is its template with the placeholder as a group, so a changed template changes it too.
CLINICAL = ("prediction", "peers")


def _span_pattern(template: str, field: str) -> re.Pattern:
    before, after = template.split("{" + field + "}")
    after = after.split("{")[0]  # up to the next placeholder (the peer line's similarity)
    return re.compile(re.escape(before) + r"(.+?)" + re.escape(after))


_SPANS = {
    "prediction": _span_pattern(TEMPLATES["coarse_prediction"], "prediction"),
    "peers": _span_pattern(TEMPLATES["coarse_peer"], "label"),
}


def clinical_kinds(prompt: str) -> list[str | None]:
    """For each word of `segment(prompt)`: "prediction" inside the predicted condition, "peers" inside
    a peer's diagnosis, None elsewhere (the words that the refinement may delete without changing what
    the prompt says about the patient)."""
    text = prompt.lstrip()
    marks: list[tuple[int, int, str]] = [
        (m.start(1), m.end(1), kind) for kind, pattern in _SPANS.items() for m in pattern.finditer(text)
    ]
    kinds, at = [], 0
    for word in segment(text):
        core_start, core_end = at, at + len(word.rstrip())
        kinds.append(next((k for s, e, k in marks if core_start < e and core_end > s), None))
        at += len(word)
    return kinds


def coarse_prompts(predicted: pd.Series, peers: pd.DataFrame, k: int) -> pd.DataFrame:
    """s_0 of every patient: the predicted label and the top-k peers (from retrieval.peer_table)."""
    import pandas as pd

    top = peers[peers["rank"] <= k].sort_values(["patient_id", "rank"])
    grouped = {pid: list(zip(g["peer_label"], g["similarity"])) for pid, g in top.groupby("patient_id", sort=False)}
    rows = [
        {"patient_id": pid, "prompt": coarse_prompt(label, grouped.get(pid, []))} for pid, label in predicted.items()
    ]
    return pd.DataFrame(rows).set_index("patient_id")
