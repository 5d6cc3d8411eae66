"""The 35 examination indicators of the paper (Appendix A.2), with units and pregnancy reference
intervals by trimester.

Intervals follow published pregnancy reference tables (Abbassi-Ghanavati, Greer & Cunningham,
Obstet Gynecol 2009; and Chinese laboratory practice for units: g/L, umol/L, 10^9/L). They are
used by the synthetic cohort, by the doctor's replies (what counts as a notable finding) and by
the case-study plots. Values are (low, high) for trimesters 1, 2 and 3.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Indicator:
    name: str  # column name in the cohort tables
    label: str  # how a clinician writes it
    unit: str
    panel: str  # "cbc", "liver" or "urine": indicators of one panel are measured together
    ranges: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    decimals: int = 1

    def range_for(self, trimester: int) -> tuple[float, float]:
        return self.ranges[min(max(trimester, 1), 3) - 1]


def _ind(name, label, unit, panel, t1, t2, t3, decimals=1):
    return Indicator(name, label, unit, panel, (t1, t2, t3), decimals)


INDICATORS: tuple[Indicator, ...] = (
    _ind("ph", "urine pH", "", "urine", (5.0, 8.0), (5.0, 8.0), (5.0, 8.0), 1),
    _ind("albumin", "albumin", "g/L", "liver", (33.0, 47.0), (28.0, 42.0), (26.0, 40.0)),
    _ind("total_protein", "total protein", "g/L", "liver", (62.0, 76.0), (57.0, 69.0), (56.0, 68.0)),
    _ind("indirect_bilirubin", "indirect bilirubin", "umol/L", "liver", (1.5, 12.0), (1.5, 11.0), (1.5, 11.0)),
    _ind("direct_bilirubin", "direct bilirubin", "umol/L", "liver", (0.5, 5.0), (0.5, 5.0), (0.5, 5.0)),
    _ind("total_bilirubin", "total bilirubin", "umol/L", "liver", (3.0, 17.0), (3.0, 16.0), (3.0, 16.0)),
    _ind("alp", "alkaline phosphatase", "U/L", "liver", (17.0, 88.0), (25.0, 126.0), (38.0, 229.0), 0),
    _ind("alt", "alanine aminotransferase", "U/L", "liver", (3.0, 30.0), (2.0, 33.0), (2.0, 25.0), 0),
    _ind("prealbumin", "prealbumin", "mg/L", "liver", (170.0, 340.0), (150.0, 310.0), (140.0, 290.0), 0),
    _ind("total_bile_acid", "total bile acid", "umol/L", "liver", (0.0, 10.0), (0.0, 10.0), (0.0, 10.0)),
    _ind("large_platelet_count", "large platelet count", "10^9/L", "cbc", (30.0, 90.0), (30.0, 90.0), (30.0, 95.0), 0),
    _ind("plateletcrit", "plateletcrit", "%", "cbc", (0.17, 0.35), (0.16, 0.34), (0.15, 0.33), 2),
    _ind("large_platelet_ratio", "large platelet ratio", "%", "cbc", (13.0, 43.0), (13.0, 43.0), (14.0, 45.0)),
    _ind("mpv", "mean platelet volume", "fL", "cbc", (8.5, 12.0), (8.7, 12.3), (9.0, 12.8)),
    _ind("pdw", "platelet distribution width", "%", "cbc", (9.0, 17.0), (9.0, 17.0), (9.5, 17.5)),
    _ind("rdw_cv", "red cell distribution width (CV)", "%", "cbc", (11.5, 14.5), (11.5, 15.0), (11.5, 15.5)),
    _ind("rdw_sd", "red cell distribution width (SD)", "fL", "cbc", (37.0, 50.0), (37.0, 51.0), (38.0, 53.0)),
    _ind("basophil_count", "basophil count", "10^9/L", "cbc", (0.0, 0.06), (0.0, 0.06), (0.0, 0.07), 2),
    _ind("eosinophil_count", "eosinophil count", "10^9/L", "cbc", (0.02, 0.5), (0.02, 0.5), (0.02, 0.5), 2),
    _ind("monocyte_count", "monocyte count", "10^9/L", "cbc", (0.2, 0.9), (0.2, 1.0), (0.2, 1.1), 2),
    _ind("lymphocyte_count", "lymphocyte count", "10^9/L", "cbc", (1.0, 3.2), (0.9, 3.0), (0.9, 2.9), 2),
    _ind("neutrophil_count", "neutrophil count", "10^9/L", "cbc", (3.2, 10.5), (3.5, 11.5), (3.8, 12.5), 2),
    _ind("basophil_ratio", "basophil ratio", "%", "cbc", (0.0, 0.8), (0.0, 0.8), (0.0, 0.8)),
    _ind("eosinophil_ratio", "eosinophil ratio", "%", "cbc", (0.2, 5.0), (0.2, 5.0), (0.2, 4.5)),
    _ind("monocyte_ratio", "monocyte ratio", "%", "cbc", (3.0, 9.0), (3.0, 9.0), (3.0, 9.0)),
    _ind("lymphocyte_ratio", "lymphocyte ratio", "%", "cbc", (12.0, 35.0), (11.0, 32.0), (10.0, 30.0)),
    _ind("neutrophil_ratio", "neutrophil ratio", "%", "cbc", (55.0, 82.0), (58.0, 84.0), (60.0, 86.0)),
    _ind(
        "mchc",
        "mean corpuscular hemoglobin concentration",
        "g/L",
        "cbc",
        (320.0, 360.0),
        (320.0, 360.0),
        (318.0, 358.0),
        0,
    ),
    _ind("mch", "mean corpuscular hemoglobin", "pg", "cbc", (27.0, 34.0), (27.0, 34.0), (27.0, 34.0)),
    _ind("hematocrit", "hematocrit", "%", "cbc", (31.0, 41.0), (30.0, 39.0), (28.0, 40.0)),
    _ind("wbc", "white blood cell count", "10^9/L", "cbc", (5.7, 13.6), (5.6, 14.8), (5.9, 16.9)),
    _ind("platelet_count", "platelet count", "10^9/L", "cbc", (174.0, 391.0), (155.0, 409.0), (146.0, 429.0), 0),
    _ind("hemoglobin", "hemoglobin", "g/L", "cbc", (110.0, 139.0), (105.0, 148.0), (105.0, 150.0), 0),
    _ind("mcv", "mean corpuscular volume", "fL", "cbc", (81.0, 96.0), (82.0, 97.0), (81.0, 99.0)),
    _ind("rbc", "red blood cell count", "10^12/L", "cbc", (3.42, 4.55), (3.2, 4.49), (3.1, 4.43), 2),
)

INDICATOR_BY_NAME = {ind.name: ind for ind in INDICATORS}

# Short names a laboratory report uses; they keep a serialized history within a token budget.
ABBREVIATIONS = {
    "ph": "pH",
    "albumin": "ALB",
    "total_protein": "TP",
    "indirect_bilirubin": "IBIL",
    "direct_bilirubin": "DBIL",
    "total_bilirubin": "TBIL",
    "alp": "ALP",
    "alt": "ALT",
    "prealbumin": "PA",
    "total_bile_acid": "TBA",
    "large_platelet_count": "P-LCC",
    "plateletcrit": "PCT",
    "large_platelet_ratio": "P-LCR",
    "mpv": "MPV",
    "pdw": "PDW",
    "rdw_cv": "RDW-CV",
    "rdw_sd": "RDW-SD",
    "basophil_count": "BASO#",
    "eosinophil_count": "EO#",
    "monocyte_count": "MONO#",
    "lymphocyte_count": "LYMPH#",
    "neutrophil_count": "NEUT#",
    "basophil_ratio": "BASO%",
    "eosinophil_ratio": "EO%",
    "monocyte_ratio": "MONO%",
    "lymphocyte_ratio": "LYMPH%",
    "neutrophil_ratio": "NEUT%",
    "mchc": "MCHC",
    "mch": "MCH",
    "hematocrit": "HCT",
    "wbc": "WBC",
    "platelet_count": "PLT",
    "hemoglobin": "HGB",
    "mcv": "MCV",
    "rbc": "RBC",
}
INDICATOR_NAMES = [ind.name for ind in INDICATORS]

# Indicators a clinician comments on in advice to a patient (the others are read by the lab), most
# telling first: the doctors' replies mention them, and the case study plots them.
SALIENT = (
    "hemoglobin",
    "platelet_count",
    "wbc",
    "neutrophil_ratio",
    "mcv",
    "alt",
    "total_bile_acid",
    "albumin",
    "total_bilirubin",
    "prealbumin",
    "alp",
)

# What a measurement can physically be, in the catalogue's units (wide on purpose: a sick patient's
# value is plausible; a typing error, a unit mix-up or a sentinel such as 99999 is not). Used by the
# data-quality checks of a cohort whose units are the catalogue's (or not declared); a hospital adds
# or overrides limits in its cohort.json ("plausibility": {"name": [low, high]}).
PLAUSIBLE_LIMITS: dict[str, tuple[float, float]] = {
    "ph": (4.0, 9.5),
    "albumin": (5.0, 70.0),
    "total_protein": (20.0, 130.0),
    "indirect_bilirubin": (0.0, 800.0),
    "direct_bilirubin": (0.0, 600.0),
    "total_bilirubin": (0.0, 1000.0),
    "alp": (1.0, 5000.0),
    "alt": (0.0, 10000.0),
    "prealbumin": (10.0, 800.0),
    "total_bile_acid": (0.0, 500.0),
    "large_platelet_count": (0.0, 1000.0),
    "plateletcrit": (0.0, 2.0),
    "large_platelet_ratio": (0.0, 100.0),
    "mpv": (4.0, 20.0),
    "pdw": (3.0, 40.0),
    "rdw_cv": (8.0, 40.0),
    "rdw_sd": (20.0, 150.0),
    "basophil_count": (0.0, 5.0),
    "eosinophil_count": (0.0, 30.0),
    "monocyte_count": (0.0, 30.0),
    "lymphocyte_count": (0.0, 300.0),
    "neutrophil_count": (0.0, 200.0),
    "basophil_ratio": (0.0, 100.0),
    "eosinophil_ratio": (0.0, 100.0),
    "monocyte_ratio": (0.0, 100.0),
    "lymphocyte_ratio": (0.0, 100.0),
    "neutrophil_ratio": (0.0, 100.0),
    "mchc": (200.0, 450.0),
    "mch": (10.0, 50.0),
    "hematocrit": (5.0, 75.0),
    "wbc": (0.1, 500.0),
    "platelet_count": (1.0, 2500.0),
    "hemoglobin": (20.0, 250.0),
    "mcv": (40.0, 150.0),
    "rbc": (0.5, 10.0),
}


def trimester_of_week(gestational_week: float) -> int:
    """Trimester (1, 2 or 3) of a gestational week: 1-13, 14-27, 28 and later."""
    if gestational_week < 14:
        return 1
    if gestational_week < 28:
        return 2
    return 3
