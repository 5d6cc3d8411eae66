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
