"""Prompt templates, in one place as data (the paper's Figures 3, 4 and 5).

Templates are plain `str.format` strings so that a user can read and change them; the functions
below fill them. Figure 3 is the predictor's prompt (the label follows "Your current condition is").
"""

from __future__ import annotations

TEMPLATES = {
    # Figure 3: instruction tuning of the predictor LLM_p
    "predictor": (
        "<Instruction>: Please evaluate the condition of patient based on its health examination indicators "
        "from different dates.\n***\n"
        "<Input>: The health examination indicators for patient include {indicators}.\n"
        "The health data for the patient is (newest examination first):\n{history}\n***\n"
        "<Output>: Your current condition is"
    ),
}


def predictor_prompt(indicators: str, history: str) -> str:
    """Figure 3, up to the label; the label is appended as ' <label>'."""
    return TEMPLATES["predictor"].format(indicators=indicators, history=history)
