"""The embedded cohort written as a Chinese hospital's export would be, for trying `pmlm check-data`
and for the tests of the loaders.

What makes it realistic, all at once: numeric patient ids with leading zeros; one row per laboratory
panel at its own hour (a blood count at 08:00, a liver panel at 10:00, urine at 14:00) instead of one
row per examination; day-first dates ("24/11/2021 08:00"); Chinese labels; GB18030 encoding;
semicolons between fields and decimal commas; a patient registered without any examination.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pmlm_lib.data.indicators import INDICATOR_BY_NAME
from pmlm_lib.data.synthetic import generate

CHINESE_LABELS = {
    "normal": "正常",
    "uterine scar": "瘢痕子宫",
    "acute fetal distress (heart type)": "急性胎儿窘迫（心率型）",
    "placental dysfunction": "胎盘功能不良",
    "gestational hypertension": "妊娠期高血压",
    "premature rupture of membranes": "胎膜早破",
    "hypothyroidism": "妊娠合并甲状腺功能减退",
    "uterine rupture": "子宫破裂",
    "acute fetal distress (amniotic fluid type)": "急性胎儿窘迫（羊水型）",
    "umbilical cord entanglement": "脐带缠绕",
    "thalassemia": "地中海贫血",
    "gestational diabetes": "妊娠期糖尿病",
}
PANEL_HOURS = {"cbc": "08:00", "liver": "10:30", "urine": "14:15"}


def _number(value: float) -> str:
    return "" if pd.isna(value) else f"{value:g}".replace(".", ",")


def write_hospital_export(folder: str | Path, n_patients: int = 300, seed: int = 0, replies: bool = False) -> Path:
    """exams.csv and patients.csv of `n_patients` synthetic patients (and one without examinations)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cohort = generate(n_patients=n_patients, seed=seed)
    ids = {p: f"{i + 7:06d}" for i, p in enumerate(cohort.patient_ids)}  # 000007, 000008, ...
    panels = []
    for order, (panel, hour) in enumerate(PANEL_HOURS.items()):
        names = [n for n in cohort.indicators if INDICATOR_BY_NAME[n].panel == panel]
        part = cohort.exams.loc[cohort.exams[names].notna().any(axis=1), ["patient_id", "exam_date", *names]]
        panels.append(
            part.assign(
                _order=order, _day=part["exam_date"], exam_date=part["exam_date"].dt.strftime("%d/%m/%Y") + f" {hour}"
            )
        )
    exams = pd.concat(panels).sort_values(["patient_id", "_day", "_order"], kind="stable")
    exams = exams.assign(patient_id=exams["patient_id"].map(ids))[["patient_id", "exam_date", *cohort.indicators]]
    exams[cohort.indicators] = exams[cohort.indicators].apply(lambda column: column.map(_number))
    patients = pd.DataFrame(
        {
            "patient_id": cohort.patients["patient_id"].map(ids),
            "label": cohort.patients["label"].map(CHINESE_LABELS),
            "admission_date": cohort.patients["admission_date"].dt.strftime("%d/%m/%Y"),
        }
    )
    if replies:
        patients["reference_reply"] = cohort.patients["reference_reply"].to_numpy()
    lonely = {"patient_id": f"{len(ids) + 7:06d}", "label": CHINESE_LABELS["normal"], "admission_date": "15/03/2021"}
    if replies:
        lonely["reference_reply"] = "Keep attending your check-ups."
    patients = pd.concat([patients, pd.DataFrame([lonely])], ignore_index=True)
    for name, table in (("exams", exams), ("patients", patients)):
        (folder / f"{name}.csv").write_bytes(table.to_csv(sep=";", index=False).encode("gb18030"))
    return folder
