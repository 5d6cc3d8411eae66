"""The paper's published numbers, to show beside ours (Shi et al., "From General to Specific")."""

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
    "LSTM": (21.60, 5.51), "CNN": (20.89, 6.42), "ROCKET": (36.05, 20.58), "Transformer": (41.12, 24.58),
    "Llama3-8B": (79.41, 62.94), "GLM4-9B": (65.63, 56.12), "Qwen2-7B": (80.05, 69.86), "LLaVA1.5-7B": (82.58, 74.13),
}
