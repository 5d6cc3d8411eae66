"""The paper's published numbers, to show beside ours (Shi et al., "From General to Specific")."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where the table is made
    import pandas as pd

# Section 5.1 and Appendix A.2: the filtered cohort.
COHORT = {
    "patients": 2373,
    "records": 38817,
    "indicators": 35,
    "labels": 12,
    "max_records_per_patient": 45,
}
# Appendix A.2: patients by admission year.
PATIENTS_BY_YEAR = {2020: 56, 2021: 1638, 2022: 679}
# Appendix A.2: the raw data before filtering.
RAW = {"records": 194345, "indicators": 302, "labels": 456}

# Appendix A.3, Table A1: predictor study (percent).
TABLE_A1 = {
    "LSTM": (21.60, 5.51),
    "CNN": (20.89, 6.42),
    "ROCKET": (36.05, 20.58),
    "Transformer": (41.12, 24.58),
    "Llama3-8B": (79.41, 62.94),
    "GLM4-9B": (65.63, 56.12),
    "Qwen2-7B": (80.05, 69.86),
    "LLaVA1.5-7B": (82.58, 74.13),
}

# Section 5.2, Tables 1-3 (percent), columns in this order.
TABLE_COLUMNS = ["BLEU-4", "ROUGE-L", "ROUGE-1", "ROUGE-2", "BERTScore-P", "BERTScore-R", "BERTScore-F1"]
TABLE_1 = {  # (model, before|after): figures
    ("Gemini 1.5-pro", "before"): (6.49, 15.46, 27.57, 6.19, 62.79, 65.15, 63.94),
    ("Gemini 1.5-pro", "after"): (10.65, 22.39, 37.01, 13.67, 69.54, 70.75, 70.13),
    ("GLM4", "before"): (8.39, 19.46, 30.93, 9.95, 63.06, 64.95, 63.99),
    ("GLM4", "after"): (9.42, 21.31, 34.67, 11.57, 66.80, 69.51, 68.12),
    ("GLM4-plus", "before"): (7.79, 15.45, 33.15, 10.48, 59.43, 63.26, 61.26),
    ("GLM4-plus", "after"): (9.04, 18.47, 36.22, 11.96, 65.20, 69.58, 67.31),
    ("GPT3.5-turbo", "before"): (8.73, 20.08, 29.48, 9.69, 65.56, 64.90, 65.19),
    ("GPT3.5-turbo", "after"): (9.39, 22.84, 32.41, 10.49, 69.25, 68.59, 68.89),
    ("GPT4", "before"): (7.76, 15.49, 28.62, 9.38, 61.03, 64.59, 62.75),
    ("GPT4", "after"): (10.88, 22.69, 39.03, 14.30, 69.80, 71.21, 70.50),
}
TABLE_2 = {
    "Llama3-8B (LoRA)": (9.56, 23.52, 38.44, 14.12, 65.61, 65.93, 65.77),
    "GLM4-9B (LoRA)": (8.79, 19.72, 36.40, 12.02, 64.37, 64.29, 64.33),
    "Qwen2-7B (LoRA)": (8.03, 19.78, 36.64, 12.18, 64.38, 64.22, 64.30),
    "LLaVA1.5-7B (LoRA)": (7.45, 16.61, 33.26, 13.59, 61.30, 63.29, 62.28),
    "PMLM (GPT4)": (10.88, 22.69, 39.03, 14.30, 69.80, 71.21, 70.50),
}
TABLE_3 = {
    "without self-informed prediction (SP)": (8.42, 18.39, 34.01, 10.85, 61.10, 65.01, 62.99),
    "without peer-informed prompt (PP)": (9.29, 21.38, 34.54, 11.51, 65.92, 68.61, 67.24),
    "without RL refinement (PR)": (7.91, 17.68, 33.07, 10.39, 63.62, 66.09, 64.83),
    "PMLM": (10.88, 22.69, 39.03, 14.30, 69.80, 71.21, 70.50),
}


def table(figures: dict) -> pd.DataFrame:
    """One of the tables above as a DataFrame with the metric columns."""
    import pandas as pd

    return pd.DataFrame.from_dict(figures, orient="index", columns=TABLE_COLUMNS)


NOT_GIVEN = "not given"  # a parameter the paper's method has but whose value it does not state
# The paper's value of each notebook parameter it fixes (Section 5.1, Algorithm 1, Appendix A.2), and why the
# workbench may run another: {notebook: {parameter: (the paper's value, why a run may differ)}}. A notebook
# shows these beside the values it ran with (workbench/parameter_text.py).
PARAMETERS = {
    "01_data_filtering": {
        "n_patients": (2373, "the synthetic cohort is drawn to the paper's size"),
        "split": ("date", "data without calendar dates cannot be split by date; 'auto' picks it when it can"),
        "train_end": ("2021-12-31", ""),
        "validation_end": ("2022-06-30", ""),
    },
    "02_predictor_study": {
        "rocket_kernels": (10000, "ROCKET's own default; fewer kernels fit the CPU budget"),
        "lm_model": ("Llama3-8B, GLM4-9B, Qwen2-7B, LLaVA1.5-7B", "7-9B models need a GPU; a folder path runs one"),
        "lm_train_patients": (None, "the paper fine-tunes on every training patient; a CPU cannot in minutes"),
    },
    "03_peer_retrieval": {
        "k": (10, ""),
        "max_visits": (45, "the paper's largest record count per patient"),
        "encoder_mode": ("paper", "'supervised' and 'contrastive' are the workbench's alternatives"),
    },
    "04_rl_refinement": {
        "n_steps": (10, ""),
        "restarts": (1, "Algorithm 1 trains once; trainings disagree, and validation patients choose among several"),
        "lr": (0.005, "16 episodes per update learned more reliably at 0.01 on validation (docs/evidence.md)"),
        "train_patients": (None, "the paper trains on every training patient; answers are the CPU's budget"),
        "patients_per_epoch": (None, "Algorithm 1 runs every training patient in each epoch"),
        "batch_size": (None, "Algorithm 1 updates once per epoch"),
        "baseline": ("none", "Eq. 11 has none; a baseline lowers the variance of the gradient (text of notebook 04)"),
        "protect": ([], "the paper lets the policy delete any word; protecting diagnoses keeps the clinical content"),
        "embed": ("every_step", "Eq. 6 re-encodes s_i at each step; 'once' encodes s_0 and drops deleted rows"),
        "operations": (["delete"], ""),
        "reward_metric": ("f1", ""),
        "train_encoder": (True, ""),
        "responder": ("GPT-4 and four other remote LLMs", "the bundled SmolLM2-135M runs here without a network"),
        "temperature": (NOT_GIVEN, "0 makes answers repeatable"),
    },
    "05_evaluation": {
        "eval_patients": (None, "the paper evaluates every test patient; answers are the CPU's budget"),
        "sampled_seeds": ([0, 1, 2, 3, 4], "the paper reports the mean of five runs"),
        "responder": ("GPT-4 and four other remote LLMs", "the bundled SmolLM2-135M runs here without a network"),
    },
    "06_figures": {
        "heatmap_indices": (100, ""),
        "k_grid": (NOT_GIVEN, "Figure 7 shows the values; the text does not list them"),
        "n_grid": (NOT_GIVEN, "Figure 7 shows the values; the text does not list them"),
    },
}
