"""The embedded default cohort: a seeded generator of an obstetric cohort shaped like the paper's.

The paper's hospital data is private. This generator mirrors its shape (Section 5.1, Appendix A.2):
pregnant patients admitted for delivery in 2020-2022, 35 laboratory indicators measured at dated
visits (1 to 45 per patient, more for sicker patients), 12 labels with a skewed balance, and one
doctor's reply per patient. Values follow pregnancy reference intervals by gestational age
(`indicators.py`) and are physiologically coherent (haemoglobin = RBC x MCH, differential counts
= WBC x ratios, plateletcrit = platelets x MPV, ...). Labels shift values where medicine says
they do, and not where it does not (umbilical cord entanglement, uterine scar): the predictor
study should find some labels predictable and others not.

`generate(raw=True)` also emits the wider raw table the filtering step works on: extra sparse
indicators (glucose, TSH, uric acid, ...), visits that carry only those, and rare extra
conditions with too few patients to keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pmlm_lib.data.cohort import Cohort
from pmlm_lib.data.indicators import INDICATOR_BY_NAME, INDICATOR_NAMES, INDICATORS
from pmlm_lib.data.replies import write_reply

# The 12 labels of the paper, with the share of patients (normal is the largest class) and the
# mean number of visits (sicker patients are examined more often).
LABELS: dict[str, tuple[float, float]] = {
    "normal": (0.27, 9.0),
    "uterine scar": (0.14, 14.0),
    "acute fetal distress (heart type)": (0.08, 15.0),
    "placental dysfunction": (0.06, 21.0),
    "gestational hypertension": (0.08, 25.0),
    "premature rupture of membranes": (0.10, 16.0),
    "hypothyroidism": (0.06, 21.0),
    "uterine rupture": (0.02, 23.0),
    "acute fetal distress (amniotic fluid type)": (0.05, 15.0),
    "umbilical cord entanglement": (0.05, 13.0),
    "thalassemia": (0.03, 18.0),
    "gestational diabetes": (0.06, 23.0),
}

# Rare conditions present only in the raw table (too few patients: the filtering step drops them).
RARE_LABELS: dict[str, int] = {
    "intrahepatic cholestasis of pregnancy": 18,
    "twin pregnancy": 20,
    "placenta previa": 14,
    "severe preeclampsia": 12,
    "HELLP syndrome": 5,
}

# Extra indicators of the raw table: (unit, share of visits measuring it, mean, sd).
EXTRA_INDICATORS: dict[str, tuple[str, float, float, float]] = {
    "fasting_glucose": ("mmol/L", 0.10, 4.4, 0.4),
    "tsh": ("mIU/L", 0.05, 1.8, 0.7),
    "uric_acid": ("umol/L", 0.09, 260.0, 50.0),
    "creatinine": ("umol/L", 0.13, 48.0, 8.0),
    "fibrinogen": ("g/L", 0.17, 4.2, 0.6),
    "d_dimer": ("mg/L", 0.08, 1.2, 0.6),
    "crp": ("mg/L", 0.06, 6.0, 4.0),
    "ferritin": ("ug/L", 0.03, 40.0, 25.0),
    "urine_protein": ("g/24h", 0.05, 0.12, 0.06),
}

# Indicators whose distribution is right-skewed: simulated on the log scale.
LOG_SCALE = {"indirect_bilirubin", "direct_bilirubin", "alt", "total_bile_acid", "eosinophil_ratio", "basophil_ratio"}

# Admission years as in the paper's Appendix A.2 (56, 1,638 and 679 patients).
YEAR_SHARES = {2020: 56 / 2373, 2021: 1638 / 2373, 2022: 679 / 2373}

SICK_PANEL_LABELS = {
    "gestational hypertension",
    "placental dysfunction",
    "gestational diabetes",
    "hypothyroidism",
    "uterine rupture",
    "intrahepatic cholestasis of pregnancy",
    "severe preeclampsia",
    "HELLP syndrome",
}


@dataclass(frozen=True)
class SyntheticConfig:
    n_patients: int = 2373  # patients with one of the 12 labels (the paper's filtered cohort)
    seed: int = 0
    raw: bool = False  # also emit extra sparse indicators, extra-only visits and rare conditions
    visit_scale: float = 1.03  # multiplies the mean number of visits (1.03: about 38,800 records, as the paper)


def _independent_base(ind: str, week: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of an indicator at gestational weeks, from the reference intervals.

    The interval's midpoint is the mean of its trimester, interpolated between trimester centres
    (weeks 8, 21, 34) so that values drift smoothly through pregnancy; sd = width / 4.
    """
    spec = INDICATOR_BY_NAME[ind]
    lo = np.array([r[0] for r in spec.ranges])
    hi = np.array([r[1] for r in spec.ranges])
    if ind in LOG_SCALE:
        lo, hi = np.log(np.maximum(lo, 0.05)), np.log(hi)
    centres = np.array([8.0, 21.0, 34.0])
    mean = np.interp(week, centres, (lo + hi) / 2)
    sd = np.interp(week, centres, (hi - lo) / 4)
    return mean, sd


def _label_effects(label: str, ramp: np.ndarray, acute: np.ndarray) -> dict[str, np.ndarray]:
    """Additive shifts (in the indicator's own unit, or on the log scale for LOG_SCALE ones).

    ramp: 0 early in pregnancy rising to 1 near delivery (progressive disease);
    acute: 1 at inpatient visits around admission, else 0.
    """
    one = np.ones_like(ramp)
    e: dict[str, np.ndarray] = {}
    if label == "thalassemia":  # trait: microcytosis with a high red-cell count
        e = {"mcv": -19 * one, "mch": -8.0 * one, "rbc": 0.95 * one, "rdw_cv": 1.6 * one}
    elif label == "premature rupture of membranes":  # infection / inflammation around rupture
        e = {
            "wbc": 1.0 * ramp + 3.5 * acute,
            "neutrophil_ratio": 2.0 * ramp + 6.0 * acute,
            "lymphocyte_ratio": -4.0 * acute,
        }
    elif label == "gestational hypertension":
        e = {
            "platelet_count": -70 * ramp,
            "alt": 0.45 * ramp,
            "mpv": 0.9 * ramp,
            "albumin": -3.0 * ramp,
            "total_bile_acid": 0.3 * ramp,
        }
    elif label == "severe preeclampsia":
        e = {"platelet_count": -110 * ramp, "alt": 0.9 * ramp, "mpv": 1.2 * ramp, "albumin": -6.0 * ramp}
    elif label == "HELLP syndrome":
        e = {"platelet_count": -160 * ramp, "alt": 2.0 * ramp, "indirect_bilirubin": 0.9 * ramp}
    elif label == "placental dysfunction":
        e = {"platelet_count": -30 * ramp, "mpv": 0.6 * ramp, "alp": 45 * ramp, "albumin": -1.5 * ramp}
    elif label == "hypothyroidism":  # mild macrocytic tendency and anaemia, lower prealbumin
        e = {"mcv": 3.5 * one, "mch": 0.9 * one, "rbc": -0.22 * one, "prealbumin": -25 * one}
    elif label == "uterine rupture":  # acute haemorrhage at admission
        e = {"rbc": -0.9 * acute, "wbc": 4.5 * acute, "platelet_count": -50 * acute, "neutrophil_ratio": 6.0 * acute}
    elif label == "gestational diabetes":  # no glucose in the 35: only faint traces
        e = {"wbc": 0.9 * one, "rdw_cv": 0.35 * one, "alt": 0.15 * one, "prealbumin": 15 * one}
    elif label == "acute fetal distress (amniotic fluid type)":
        e = {"wbc": 1.2 * acute, "neutrophil_ratio": 3.0 * acute}
    elif label == "acute fetal distress (heart type)":
        e = {"neutrophil_ratio": 1.5 * acute}
    elif label == "intrahepatic cholestasis of pregnancy":
        e = {"total_bile_acid": 2.0 * ramp, "alt": 1.3 * ramp, "direct_bilirubin": 0.5 * ramp}
    elif label == "twin pregnancy":
        e = {"rbc": -0.25 * one, "platelet_count": -25 * one}
    return e


def _extra_effects(label: str) -> dict[str, float]:
    return {
        "gestational diabetes": {"fasting_glucose": 1.9},
        "hypothyroidism": {"tsh": 3.5},
        "gestational hypertension": {"uric_acid": 90.0, "urine_protein": 0.2},
        "severe preeclampsia": {"uric_acid": 140.0, "urine_protein": 2.5},
        "premature rupture of membranes": {"crp": 9.0},
        "thalassemia": {"ferritin": 50.0},
    }.get(label, {})


def _visit_days(rng: np.random.Generator, n: int, label: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Visit days relative to the admission day (0), whether each is inpatient, and the admission week."""
    if label in ("premature rupture of membranes", "acute fetal distress (amniotic fluid type)"):
        adm_week = rng.uniform(34.0, 39.5)
    elif label in ("gestational hypertension", "placental dysfunction", "severe preeclampsia", "HELLP syndrome"):
        adm_week = rng.uniform(33.0, 39.0)
    elif label == "uterine rupture":
        adm_week = rng.uniform(30.0, 40.0)
    else:
        adm_week = rng.uniform(37.0, 41.0)
    sick = label not in ("normal", "uterine scar", "umbilical cord entanglement")
    stay = int(rng.integers(2, 9 if sick else 5))  # inpatient days with daily labs
    n_in = min(n - 1, stay) if n > 1 else 1
    if n == 1:
        return np.array([0]), np.array([True]), adm_week
    n_pre = n - n_in
    first_week = rng.uniform(6.0, 20.0)
    span = int(max((adm_week - first_week) * 7, n_pre + 1))
    pre = -np.sort(rng.choice(np.arange(1, span + 1), size=n_pre, replace=False))[::-1]
    inpatient = np.arange(n_in)
    days = np.concatenate([np.sort(pre), inpatient])
    return days, np.concatenate([np.zeros(n_pre, bool), np.ones(n_in, bool)]), adm_week


def _admission_date(rng: np.random.Generator) -> pd.Timestamp:
    year = rng.choice(list(YEAR_SHARES), p=np.array(list(YEAR_SHARES.values())))
    if year == 2020:  # collection starts late in 2020, as the paper's 56 patients of that year suggest
        start, days = pd.Timestamp("2020-10-01"), 92
    else:
        start = pd.Timestamp(f"{year}-01-01")
        days = 365
    return start + pd.Timedelta(days=int(rng.integers(0, days)))


def _simulate_patient(rng: np.random.Generator, label: str, n_visits: int, raw: bool):
    days, inpatient, adm_week = _visit_days(rng, n_visits, label)
    week = adm_week + days / 7.0
    ramp = np.clip((week - 20.0) / (adm_week - 20.0 + 1e-9), 0.0, 1.0) ** 1.5
    acute = inpatient.astype(float)
    effects = _label_effects(label, ramp, acute)
    n = len(days)

    def draw(ind: str) -> np.ndarray:
        mean, sd = _independent_base(ind, week)
        # a patient keeps her own level (between-person sd 0.8) with smaller visit-to-visit noise
        # (0.5), as laboratory biological variation is smaller within than between persons
        person = rng.normal(0.0, 0.8)
        return mean + sd * (person + rng.normal(0.0, 0.5, n)) + effects.get(ind, 0.0)

    v: dict[str, np.ndarray] = {}
    # red cells: RBC, MCV, MCH drawn; haemoglobin, haematocrit, MCHC derived
    v["rbc"] = np.clip(draw("rbc"), 2.0, 6.5)
    v["mcv"] = np.clip(draw("mcv"), 55.0, 115.0)
    v["mch"] = np.clip(draw("mch"), 15.0, 40.0)
    v["hemoglobin"] = v["rbc"] * v["mch"] + rng.normal(0, 2.0, n)
    v["hematocrit"] = v["rbc"] * v["mcv"] / 10.0 + rng.normal(0, 0.5, n)
    v["mchc"] = v["hemoglobin"] / v["hematocrit"] * 100.0
    v["rdw_cv"] = np.clip(draw("rdw_cv"), 10.0, 25.0)
    v["rdw_sd"] = v["rdw_cv"] * v["mcv"] / 100.0 * 3.6 + rng.normal(0, 1.0, n)
    # white cells: WBC and the differential ratios drawn; counts derived
    v["wbc"] = np.clip(draw("wbc"), 2.0, 35.0)
    ratios = {r: draw(r) for r in ("neutrophil_ratio", "lymphocyte_ratio", "monocyte_ratio")}
    ratios["eosinophil_ratio"] = np.exp(draw("eosinophil_ratio"))
    ratios["basophil_ratio"] = np.exp(draw("basophil_ratio"))
    ratios = {k: np.clip(x, 0.0, None) for k, x in ratios.items()}
    total = sum(ratios.values())
    for name, r in ratios.items():
        v[name] = r / total * 100.0
        v[name.replace("_ratio", "_count")] = v["wbc"] * v[name] / 100.0
    # platelets: count and MPV drawn; plateletcrit, large-platelet ratio and count derived
    v["platelet_count"] = np.clip(draw("platelet_count"), 15.0, 700.0)
    v["mpv"] = np.clip(draw("mpv"), 7.0, 15.0)
    v["pdw"] = np.clip(draw("pdw") + 1.2 * (v["mpv"] - 10.5), 7.0, 25.0)
    v["plateletcrit"] = v["platelet_count"] * v["mpv"] / 10000.0
    v["large_platelet_ratio"] = np.clip(28.0 + 8.0 * (v["mpv"] - 10.5) + rng.normal(0, 2.5, n), 5.0, 70.0)
    v["large_platelet_count"] = v["platelet_count"] * v["large_platelet_ratio"] / 100.0
    # liver panel: albumin with globulin gives total protein; bilirubin fractions sum
    v["albumin"] = draw("albumin")
    v["total_protein"] = v["albumin"] + 28.0 + rng.normal(0, 2.5, n) + 0.5 * (week < 14)
    v["direct_bilirubin"] = np.exp(draw("direct_bilirubin"))
    v["indirect_bilirubin"] = np.exp(draw("indirect_bilirubin"))
    v["total_bilirubin"] = v["direct_bilirubin"] + v["indirect_bilirubin"]
    v["alp"] = np.clip(draw("alp"), 10.0, None)
    v["alt"] = np.exp(draw("alt"))
    v["prealbumin"] = np.clip(draw("prealbumin"), 40.0, None)
    v["total_bile_acid"] = np.exp(draw("total_bile_acid"))
    # urine pH from a dipstick: steps of 0.5
    v["ph"] = np.clip(np.round(draw("ph") * 2) / 2, 5.0, 8.5)

    values = {ind.name: np.round(v[ind.name], ind.decimals) for ind in INDICATORS}

    # missingness: by panel (informative: sick patients and inpatients get liver panels), then at random
    sick_panels = label in SICK_PANEL_LABELS
    p_cbc = np.where(inpatient, 0.98, 0.92)
    p_liver = np.where(inpatient, 0.85, 0.45) + (0.25 if sick_panels else 0.0)
    p_urine = np.where(inpatient, 0.6, 0.45)
    has = {
        "cbc": rng.random(n) < p_cbc,
        "liver": rng.random(n) < np.clip(p_liver, 0, 0.98),
        "urine": rng.random(n) < p_urine,
    }
    none = ~(has["cbc"] | has["liver"] | has["urine"])
    has["cbc"] |= none
    no_large_platelets = rng.random() < 0.15  # some sites' analysers report no large-platelet indices
    for ind in INDICATORS:
        miss = ~has[ind.panel] | (rng.random(n) < 0.03)
        if no_large_platelets and ind.name in ("large_platelet_count", "large_platelet_ratio"):
            miss[:] = True
        values[ind.name][miss] = np.nan

    if raw:
        extra_fx = _extra_effects(label)
        for name, (_unit, share, mean, sd) in EXTRA_INDICATORS.items():
            x = (
                mean
                + sd * (rng.normal(0, 0.6) + rng.normal(0, 0.8, n))
                + extra_fx.get(name, 0.0) * np.maximum(ramp, 0.5)
            )
            x = np.round(np.clip(x, 0.01, None), 2)
            x[rng.random(n) >= share * (1.8 if sick_panels else 1.0)] = np.nan
            values[name] = x
    return days, week, values


def _visit_counts(rng: np.random.Generator, labels: list[str], scale: float) -> np.ndarray:
    means = np.array([LABELS.get(label, (0, 20.0))[1] for label in labels]) * scale
    r = 1.6  # negative binomial dispersion: long tail of heavily examined patients
    counts = rng.negative_binomial(r, r / (r + means)) + 1
    return np.clip(counts, 1, 45)


def generate(config: SyntheticConfig | None = None, **overrides) -> Cohort:
    """Generate the default cohort (or the wider raw table with raw=True). Same seed, same bytes."""
    cfg = config or SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig(**{**cfg.__dict__, **overrides})
    rng = np.random.default_rng(cfg.seed)
    names = list(LABELS)
    shares = np.array([LABELS[n][0] for n in names])
    labels = list(rng.choice(names, size=cfg.n_patients, p=shares / shares.sum()))
    if cfg.raw:
        for rare, count in RARE_LABELS.items():
            labels += [rare] * max(1, round(count * cfg.n_patients / 2373))
    order = rng.permutation(len(labels))
    labels = [labels[i] for i in order]
    counts = _visit_counts(rng, labels, cfg.visit_scale)
    # the largest record count of the paper's cohort is 45: the most examined patient reaches it
    if cfg.n_patients >= 500:
        counts[int(np.argmax(counts))] = 45

    exam_frames, patient_rows = [], []
    width = len(str(len(labels)))
    for i, (label, n_visits) in enumerate(zip(labels, counts)):
        pid = f"P{i + 1:0{width}d}"
        admission = _admission_date(rng)
        days, week, values = _simulate_patient(rng, label, int(n_visits), cfg.raw)
        reply_rng = np.random.default_rng([cfg.seed, i, 7])
        reply = write_reply(label, {**values, "gestational_week": week}, reply_rng)
        dates = admission + pd.to_timedelta(days, unit="D")
        frame = pd.DataFrame({"patient_id": pid, "exam_date": dates, **values})
        if cfg.raw and rng.random() < 0.08:  # a glucose-tolerance visit that carries only extra indicators
            ogtt = {c: np.nan for c in values}
            ogtt["fasting_glucose"] = round(
                float(rng.normal(4.5 + (1.9 if label == "gestational diabetes" else 0), 0.4)), 2
            )
            ogtt_day = dates.min() - pd.Timedelta(days=int(rng.integers(1, 20)))
            frame = pd.concat(
                [pd.DataFrame([{"patient_id": pid, "exam_date": ogtt_day, **ogtt}]), frame], ignore_index=True
            )
        exam_frames.append(frame)
        patient_rows.append({"patient_id": pid, "label": label, "reference_reply": reply, "admission_date": admission})
    exams = pd.concat(exam_frames, ignore_index=True)
    patients = pd.DataFrame(patient_rows)
    indicator_cols = list(INDICATOR_NAMES) + (list(EXTRA_INDICATORS) if cfg.raw else [])
    units = {ind.name: ind.unit for ind in INDICATORS}
    units.update({k: v[0] for k, v in EXTRA_INDICATORS.items()})
    return Cohort.from_tables(
        exams,
        patients,
        indicators=indicator_cols,
        name="synthetic-obstetric" + ("-raw" if cfg.raw else ""),
        calendar_dates=True,
        units={k: units[k] for k in indicator_cols},
        description=(
            f"Synthetic obstetric cohort (seed {cfg.seed}, {cfg.n_patients} core patients"
            + (", raw table with extra indicators and rare conditions" if cfg.raw else "")
            + ")"
        ),
    )
