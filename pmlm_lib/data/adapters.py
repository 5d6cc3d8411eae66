"""Loaders for data nobody on this project wrote: MEDS event streams and the two public sets.

- `load_meds`: a MEDS event stream (`subject_id`, `time`, `code`, `value`), a mapping from codes to
  indicators, and rules that derive one label per patient from diagnosis codes.
- `load_pbcseq`: Mayo Clinic PBC sequential visits; label = histologic stage.
- `load_mimic_demo`: the MIMIC-IV demo in MEDS; labels from ICD codes (see MIMIC_LABEL_RULES).

Neither public set has calendar dates (PBC counts days since enrolment, MIMIC shifts dates into
the future) nor doctors' replies: they serve filtering, prediction and retrieval.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pmlm_lib import PACKAGE_DIR
from pmlm_lib.data.cohort import (
    Cohort,
    CohortError,
    DataOptions,
    TableSource,
    censored_at_bound,
    censored_note,
    read_times,
)

PUBLIC_DATA_ENV = "PMLM_PUBLIC_DATA"


def public_data_dir() -> Path:
    """`../shared/data/public` beside the repository, or the folder named by $PMLM_PUBLIC_DATA."""
    if os.environ.get(PUBLIC_DATA_ENV):
        return Path(os.environ[PUBLIC_DATA_ENV])
    return PACKAGE_DIR.parents[1] / "shared" / "data" / "public"


def _require(path: Path) -> Path:
    if not path.exists():
        raise CohortError(
            f"{path}: file not found. How to fix: place the public data beside the repository "
            f"(../shared/data/public) or set {PUBLIC_DATA_ENV} to its folder"
        )
    return path


# ---- PBC -----------------------------------------------------------------------------------
PBC_INDICATORS = [
    "bili",
    "chol",
    "albumin",
    "alk.phos",
    "ast",
    "platelet",
    "protime",
    "ascites",
    "hepato",
    "spiders",
    "edema",
]
PBC_UNITS = {
    "bili": "mg/dL",
    "chol": "mg/dL",
    "albumin": "g/dL",
    "alk.phos": "U/L",
    "ast": "U/mL",
    "platelet": "10^9/L",
    "protime": "s",
    "ascites": "0/1",
    "hepato": "0/1",
    "spiders": "0/1",
    "edema": "0/0.5/1",
}
PBC_ORIGIN = pd.Timestamp("2000-01-01")  # day 0 of enrolment; the visits carry no calendar date


def load_pbcseq(path: str | Path | None = None) -> Cohort:
    """PBC sequential visits: one examination per visit, label = histologic stage (1-4).

    Patients whose stage is missing on every visit are left out (reported in the description).
    """
    path = _require(Path(path) if path else public_data_dir() / "pbcseq" / "pbcseq.csv")
    raw = pd.read_csv(path)
    missing = [c for c in ("id", "day", "stage", *PBC_INDICATORS) if c not in raw.columns]
    if missing:
        raise CohortError(
            f"{path}, column '{missing[0]}': required column is missing. How to fix: use the pbcseq.csv of R's "
            "survival package"
        )
    stage = raw.groupby("id")["stage"].agg(lambda s: s.dropna().iloc[-1] if s.notna().any() else np.nan)
    unstaged = stage[stage.isna()].index
    raw = raw[~raw["id"].isin(unstaged)]
    exams = pd.DataFrame(
        {
            "patient_id": "PBC" + raw["id"].astype(int).astype(str).str.zfill(3),
            "exam_date": PBC_ORIGIN + pd.to_timedelta(raw["day"], unit="D"),
        }
    )
    exams = pd.concat([exams, raw[PBC_INDICATORS].reset_index(drop=True).set_index(exams.index)], axis=1)
    ids = stage.dropna().index
    patients = pd.DataFrame(
        {"patient_id": ["PBC" + str(int(i)).zfill(3) for i in ids], "label": [f"stage {int(stage[i])}" for i in ids]}
    )
    return Cohort.from_tables(
        exams,
        patients,
        exams_source=TableSource(str(path), "csv"),
        indicators=PBC_INDICATORS,
        name="pbcseq",
        calendar_dates=False,
        units=PBC_UNITS,
        options=DataOptions(allow_future_dates=True),
        description=(
            f"Mayo Clinic PBC sequential visits (R survival::pbcseq); label = histologic stage; "
            f"{len(unstaged)} patients without a stage left out"
        ),
    )


# ---- MEDS ----------------------------------------------------------------------------------
def load_meds(
    events: pd.DataFrame | str | Path,
    code_map: dict[str, str],
    label_rules: list[tuple[str, tuple[str, ...]]],
    *,
    default_label: str = "none of these",
    labs_before_diagnosis: bool = True,
    min_exams: int = 1,
    name: str = "meds",
    units: dict[str, str] | None = None,
    description: str = "",
    options: DataOptions | None = None,
) -> Cohort:
    """A cohort from a MEDS event stream.

    code_map: event code -> indicator name (codes not in the map are ignored). Several values of
      one indicator on one day are averaged into that day's examination.
    label_rules: (label, code prefixes) in priority order; a patient takes the first label whose
      prefixes match one of the patient's codes, else `default_label` (how many is counted in the load log).
    labs_before_diagnosis: keep only examinations up to the day of the first matching diagnosis
      code, so that a predictor sees the history before the diagnosis.
    options: how text times are read (date_format, dayfirst) and extra plausibility limits.
    """
    options = options or DataOptions()
    source = str(events) if not isinstance(events, pd.DataFrame) else "MEDS events"
    if not isinstance(events, pd.DataFrame):
        events = pd.read_parquet(_require(Path(events)))
    value_column = "numeric_value" if "numeric_value" in events.columns else "value"  # MEDS names it numeric_value
    for col in ("subject_id", "time", "code", value_column):
        if col not in events.columns:
            raise CohortError(
                f"{source}, column '{col}': required MEDS column is missing (columns found: "
                f"{', '.join(map(str, events.columns[:8]))}). How to fix: a MEDS stream has subject_id, time, "
                "code and numeric_value (or value)"
            )
    log = []
    ev = (
        events[["subject_id", "time", "code", value_column]]
        .rename(columns={value_column: "value"})
        .dropna(subset=["time"])
        .reset_index(drop=True)
    )
    table = TableSource(source, "parquet", settings="load_meds")
    if ev.empty:
        raise CohortError(
            f"{source}: the event stream has no events with a time. How to fix: export the MEDS data with its events "
            "(subject_id, time, code, numeric_value), or check that the file is the data, not its metadata"
        )
    shifted = dataclasses.replace(options, allow_future_dates=True)  # MEDS exports shift dates, often into the future
    times = read_times(ev["time"], table, "time", shifted, log)
    ev = ev.assign(patient_id=ev["subject_id"].astype(str), day=times.values.dt.normalize().to_numpy())
    if not pd.api.types.is_numeric_dtype(ev["value"]):
        text = ev["value"].astype("string").str.strip()
        number, censored = censored_at_bound(text, pd.to_numeric(text, errors="coerce"), table, "value", options)
        if censored:
            log.append(censored_note({"value": censored}))
        ev = ev.assign(value=number.astype(float))

    labels, diagnosis_day = {}, {}
    for pid, codes in ev[["patient_id", "code", "day"]].groupby("patient_id"):
        labels[pid] = default_label
        for label, prefixes in label_rules:
            hit = codes[codes["code"].str.startswith(prefixes)]
            if len(hit):
                labels[pid] = label
                diagnosis_day[pid] = hit["day"].min()
                break

    lab = ev[ev["code"].isin(code_map.keys()) & ev["value"].notna()]
    if lab.empty:
        numeric = ev[ev["value"].notna()]["code"].value_counts()
        raise CohortError(
            f"{source}, column 'code': no event with a value has a code of the code map ({len(code_map)} codes, e.g. "
            f"{', '.join(map(str, list(code_map)[:3]))}). The commonest codes with values here: "
            f"{', '.join(f'{c} ({n})' for c, n in numeric.head(5).items()) or 'none'}. How to fix: map this stream's "
            "measurement codes to indicator names in code_map (code -> indicator)"
        )
    lab = lab.assign(indicator=lab["code"].map(code_map))
    if labs_before_diagnosis and diagnosis_day:
        cutoff = lab["patient_id"].map(diagnosis_day)
        lab = lab[cutoff.isna() | (lab["day"] <= cutoff)]
    wide = lab.pivot_table(index=["patient_id", "day"], columns="indicator", values="value", aggfunc="mean")
    indicators = [i for i in dict.fromkeys(code_map.values()) if i in wide.columns]
    wide = wide.reindex(columns=indicators).reset_index().rename(columns={"day": "exam_date"})
    counts = wide.groupby("patient_id").size()
    keep = counts[counts >= min_exams].index
    wide = wide[wide["patient_id"].isin(keep)]
    defaulted = sum(labels[p] == default_label for p in keep)
    log.append(
        {
            "step": "reading the data",
            "removed": int(defaulted),
            "unit": "patients",
            "reason": f"no label rule matched their codes: labelled '{default_label}'",
            "detail": f"{len(keep)} patients with examinations; rules tried in order: "
            + ", ".join(label for label, _ in label_rules),
        }
    )
    patients = pd.DataFrame({"patient_id": list(keep), "label": [labels[p] for p in keep]})
    return Cohort.from_tables(
        wide,
        patients,
        exams_source=table,
        indicators=indicators,
        name=name,
        calendar_dates=False,
        units=units or {},
        load_log=log,
        options=DataOptions(
            allow_future_dates=True,
            date_format=options.date_format,
            dayfirst=options.dayfirst,
            plausibility=options.plausibility,
        ),
        description=description,
    )


# MIMIC-IV lab item ids of a full blood count and a liver panel (d_labitems.csv), named as our indicators.
MIMIC_LAB_ITEMS = {
    51222: ("hemoglobin", "g/dL"),
    51221: ("hematocrit", "%"),
    51279: ("rbc", "10^12/L"),
    51250: ("mcv", "fL"),
    51248: ("mch", "pg"),
    51249: ("mchc", "g/dL"),
    51277: ("rdw_cv", "%"),
    51301: ("wbc", "10^9/L"),
    51265: ("platelet_count", "10^9/L"),
    51256: ("neutrophil_ratio", "%"),
    51244: ("lymphocyte_ratio", "%"),
    51254: ("monocyte_ratio", "%"),
    51200: ("eosinophil_ratio", "%"),
    51146: ("basophil_ratio", "%"),
    50862: ("albumin", "g/dL"),
    50885: ("total_bilirubin", "mg/dL"),
    50863: ("alp", "U/L"),
    50861: ("alt", "U/L"),
    50878: ("ast", "U/L"),
    50912: ("creatinine", "mg/dL"),
    50931: ("glucose", "mg/dL"),
}

# Labels from ICD-10 and ICD-9 codes, first match wins (a patient with diabetes and anaemia is
# "diabetes"): the more specific endocrine conditions first, the common ones after.
MIMIC_LABEL_RULES: list[tuple[str, tuple[str, ...]]] = [
    (
        "diabetes",
        (
            "DIAGNOSIS//ICD//10//E08",
            "DIAGNOSIS//ICD//10//E09",
            "DIAGNOSIS//ICD//10//E10",
            "DIAGNOSIS//ICD//10//E11",
            "DIAGNOSIS//ICD//10//E13",
            "DIAGNOSIS//ICD//9//249",
            "DIAGNOSIS//ICD//9//250",
        ),
    ),
    ("hypothyroidism", ("DIAGNOSIS//ICD//10//E03", "DIAGNOSIS//ICD//10//E890", "DIAGNOSIS//ICD//9//244")),
    (
        "hypertension",
        (
            "DIAGNOSIS//ICD//10//I10",
            "DIAGNOSIS//ICD//10//I11",
            "DIAGNOSIS//ICD//10//I12",
            "DIAGNOSIS//ICD//10//I13",
            "DIAGNOSIS//ICD//10//I15",
            "DIAGNOSIS//ICD//10//I16",
            "DIAGNOSIS//ICD//9//401",
            "DIAGNOSIS//ICD//9//402",
            "DIAGNOSIS//ICD//9//403",
            "DIAGNOSIS//ICD//9//404",
            "DIAGNOSIS//ICD//9//405",
        ),
    ),
    (
        "anemia",
        tuple(f"DIAGNOSIS//ICD//10//D{n}" for n in range(50, 65))
        + tuple(f"DIAGNOSIS//ICD//9//{n}" for n in range(280, 286)),
    ),
]


def load_mimic_demo(folder: str | Path | None = None, labs_before_diagnosis: bool = False) -> Cohort:
    """MIMIC-IV demo (MEDS): daily lab panels, label from ICD codes by MIMIC_LABEL_RULES.

    By default all labs are kept: in MIMIC, diagnosis codes carry the discharge time of the stay,
    so cutting at the first diagnosis would drop most of a patient's history.
    """
    folder = Path(folder) if folder else public_data_dir() / "mimic_iv_demo_meds"
    events = pd.read_parquet(_require(folder / "events.parquet"))
    codes = events["code"].drop_duplicates()
    lab_codes = codes[codes.str.startswith("LAB//")]
    item = pd.to_numeric(lab_codes.str.split("//").str[1], errors="coerce")
    code_map = {
        c: MIMIC_LAB_ITEMS[int(i)][0]
        for c, i in zip(lab_codes, item)
        if i in MIMIC_LAB_ITEMS and not c.endswith("//UNK")
    }
    return load_meds(
        events,
        code_map,
        MIMIC_LABEL_RULES,
        default_label="none of these",
        labs_before_diagnosis=labs_before_diagnosis,
        name="mimic_demo",
        units={name: unit for name, unit in MIMIC_LAB_ITEMS.values()},
        description="MIMIC-IV Clinical Database Demo in MEDS (ODbL 1.0); labels from ICD codes, first match of "
        "diabetes > hypothyroidism > hypertension > anemia, else 'none of these'",
    )
