"""The cohort H = {X, Y, R}: one explicit type, its validation and its files.

X is a long table of examinations (`patient_id`, `exam_date`, one column per indicator, missing
allowed); Y and R live in a per-patient table (`patient_id`, `label`, optional `reference_reply`,
optional `admission_date`). Every check raises one `CohortError` that names the file, the row,
the column, and how to fix it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

EXAM_KEYS = ("patient_id", "exam_date")
PATIENT_REQUIRED = ("patient_id", "label")
OPTIONAL_PATIENT_COLUMNS = ("reference_reply", "admission_date")
EARLIEST_DATE = pd.Timestamp("1900-01-01")


class CohortError(ValueError):
    """A problem in the user's data, with where it is and how to fix it."""


@dataclass(frozen=True)
class TableSource:
    """Where a table came from, so that errors can point at the line a user sees."""

    path: str
    kind: str = "table"  # "csv" (line numbers count the header), "parquet" or "table"

    def where(self, index: int | None = None, column: str | None = None) -> str:
        parts = [self.path]
        if index is not None:
            if self.kind == "csv":
                parts.append(f"row {index + 1} (line {index + 2} of the file)")
            else:
                parts.append(f"row {index + 1}")
        if column is not None:
            parts.append(f"column '{column}'")
        return ", ".join(parts)


def _fail(source: TableSource, index, column, problem: str, fix: str):
    raise CohortError(f"{source.where(index, column)}: {problem}. How to fix: {fix}")


def _first(mask) -> int:
    """Index of the first True in a boolean Series or array."""
    return int(np.flatnonzero(np.asarray(mask))[0])


def _is_blank(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().eq("")


def _parse_dates(values: pd.Series, source: TableSource, column: str, allow_future: bool):
    text = values.astype("string").str.strip()
    parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    bad = parsed.isna() & text.notna() & text.ne("")
    if bad.any():
        i = _first(bad)
        _fail(source, i, column, f"'{text.iloc[i]}' is not a date",
              "write dates as YYYY-MM-DD (for example 2021-03-15)")
    latest = pd.Timestamp(dt.date.today()) + pd.Timedelta(days=1)
    impossible = parsed.notna() & ((parsed < EARLIEST_DATE) | (~allow_future & (parsed > latest)))
    if impossible.any():
        i = _first(impossible)
        _fail(source, i, column, f"date {parsed.iloc[i].date()} is impossible (before 1900 or in the future)",
              "correct the date; for de-identified data with shifted dates load with allow_future_dates=True")
    return parsed.dt.normalize()


def _numeric_columns(exams: pd.DataFrame, indicators: list[str], source: TableSource) -> pd.DataFrame:
    out = {}
    for col in indicators:
        raw = exams[col]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            values = raw.astype(float)
        else:
            text = raw.astype("string").str.strip()
            values = pd.to_numeric(text.replace("", pd.NA), errors="coerce").astype(float)
            bad = values.isna() & text.notna() & text.ne("")
            if bad.any():
                i = _first(bad)
                _fail(source, i, col, f"'{text.iloc[i]}' is not a number",
                      "leave a missing measurement empty and write numbers with a decimal point, without units")
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            i = _first(infinite)
            _fail(source, i, col, "the value is infinite", "leave a missing measurement empty")
        out[col] = values.to_numpy()
    return pd.DataFrame(out, index=exams.index)


@dataclass
class Cohort:
    """Patients with dated examinations, one label each and (optionally) a doctor's reply."""

    exams: pd.DataFrame
    patients: pd.DataFrame
    indicators: list[str]
    name: str = "cohort"
    calendar_dates: bool = True  # False: dates are offsets or shifted; split by stratified sampling
    units: dict[str, str] = field(default_factory=dict)
    description: str = ""

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_tables(
        cls,
        exams: pd.DataFrame,
        patients: pd.DataFrame,
        *,
        exams_source: TableSource | None = None,
        patients_source: TableSource | None = None,
        indicators: list[str] | None = None,
        allow_future_dates: bool = False,
        **meta,
    ) -> "Cohort":
        """Validate raw tables and return a typed cohort, or raise one clear CohortError."""
        es = exams_source or TableSource("exams table")
        ps = patients_source or TableSource("patients table")
        exams = exams.reset_index(drop=True)
        patients = patients.reset_index(drop=True)

        for col in EXAM_KEYS:
            if col not in exams.columns:
                _fail(es, None, col, f"required column '{col}' is missing (columns found: {', '.join(map(str, exams.columns[:8]))})",
                      f"add a '{col}' column; the examinations table needs patient_id, exam_date and one column per indicator")
        for col in PATIENT_REQUIRED:
            if col not in patients.columns:
                _fail(ps, None, col, f"required column '{col}' is missing",
                      "the patients table needs patient_id and label (reference_reply and admission_date are optional)")
        if indicators is None:
            indicators = [c for c in exams.columns if c not in EXAM_KEYS]
        missing_ind = [c for c in indicators if c not in exams.columns]
        if missing_ind:
            _fail(es, None, missing_ind[0], "indicator column is missing", "add the column or remove it from the indicator list")
        if not indicators:
            _fail(es, None, None, "no indicator columns", "add at least one column of measurements besides patient_id and exam_date")

        pid = exams["patient_id"].astype("string").str.strip()
        blank = _is_blank(exams["patient_id"])
        if blank.any():
            _fail(es, _first(blank), "patient_id", "patient_id is empty", "give every examination its patient's id")
        dates = _parse_dates(exams["exam_date"], es, "exam_date", allow_future_dates)
        if dates.isna().any():
            _fail(es, _first(dates.isna()), "exam_date", "exam_date is empty", "give every examination its date")
        values = _numeric_columns(exams, list(indicators), es)

        dup = pd.DataFrame({"patient_id": pid, "exam_date": dates}).duplicated(keep=False)
        if dup.any():
            rows = np.flatnonzero(dup.to_numpy())
            first = rows[0]
            twin = next(r for r in rows[1:] if pid.iloc[r] == pid.iloc[first] and dates.iloc[r] == dates.iloc[first])
            _fail(es, int(twin), "exam_date",
                  f"patient {pid.iloc[first]} has two examinations on {dates.iloc[first].date()} (also at {es.where(int(first))})",
                  "merge the two rows into one examination per patient and day")

        ppid = patients["patient_id"].astype("string").str.strip()
        blank = _is_blank(patients["patient_id"])
        if blank.any():
            _fail(ps, _first(blank), "patient_id", "patient_id is empty", "give every patient an id")
        dupp = ppid.duplicated()
        if dupp.any():
            i = _first(dupp)
            _fail(ps, i, "patient_id", f"patient {ppid.iloc[i]} appears twice", "keep one row per patient")
        for col in ("label", "reference_reply"):
            if col in patients.columns:
                blank = _is_blank(patients[col])
                if blank.any():
                    i = _first(blank)
                    what = "label" if col == "label" else "doctor's reply"
                    _fail(ps, i, col, f"the {what} of patient {ppid.iloc[i]} is empty",
                          f"fill in the {what}, or remove the patient" + (" (or drop the whole column if no patient has one)" if col == "reference_reply" else ""))

        known = set(ppid)
        unknown = ~pid.isin(known)
        if unknown.any():
            i = _first(unknown)
            _fail(es, i, "patient_id", f"examination of patient {pid.iloc[i]}, who is not in {ps.path}",
                  "add the patient (with a label) to the patients table, or remove the examination")
        with_exams = set(pid)
        lonely = ~ppid.isin(with_exams)
        if lonely.any():
            i = _first(lonely)
            _fail(ps, i, "patient_id", f"patient {ppid.iloc[i]} has no examinations in {es.path}",
                  "add her examinations or remove her from the patients table")

        first_exam = pd.Series(dates.to_numpy(), index=pid.to_numpy()).groupby(level=0).min()
        out_p = pd.DataFrame({"patient_id": ppid.astype(str).to_numpy(),
                              "label": patients["label"].astype(str).str.strip().to_numpy()})
        if "reference_reply" in patients.columns:
            out_p["reference_reply"] = patients["reference_reply"].astype(str).str.strip().to_numpy()
        if "admission_date" in patients.columns and not _is_blank(patients["admission_date"]).all():
            adm = _parse_dates(patients["admission_date"], ps, "admission_date", allow_future_dates)
            out_p["admission_date"] = adm.fillna(out_p["patient_id"].map(first_exam)).to_numpy()
        else:
            # without an admission date the first examination stands in for it
            out_p["admission_date"] = out_p["patient_id"].map(first_exam).to_numpy()
        out_p["admission_date"] = pd.to_datetime(out_p["admission_date"]).astype("datetime64[ns]")

        out_e = pd.concat([pd.DataFrame({"patient_id": pid.astype(str).to_numpy(),
                                         "exam_date": dates.astype("datetime64[ns]").to_numpy()}),
                           values.reset_index(drop=True)], axis=1)
        out_e = out_e.sort_values(["patient_id", "exam_date"], kind="stable").reset_index(drop=True)
        out_p = out_p.sort_values("patient_id", kind="stable").reset_index(drop=True)
        return cls(exams=out_e, patients=out_p, indicators=list(indicators), **meta)

    # ---- views ----------------------------------------------------------------------------
    @property
    def has_replies(self) -> bool:
        return "reference_reply" in self.patients.columns

    def require_replies(self, step: str) -> None:
        if not self.has_replies:
            raise CohortError(
                f"{step} needs the doctors' reference replies, and the cohort '{self.name}' has none: "
                "add a 'reference_reply' column to its patients table (the public sets have none; "
                "use them for filtering, prediction and retrieval only)."
            )

    @property
    def labels(self) -> list[str]:
        return sorted(self.patients["label"].unique())

    @property
    def patient_ids(self) -> list[str]:
        return self.patients["patient_id"].tolist()

    def history(self, patient_id: str) -> pd.DataFrame:
        """One patient's examinations, oldest first."""
        rows = self.exams[self.exams["patient_id"] == patient_id]
        if rows.empty:
            raise KeyError(f"patient {patient_id!r} is not in cohort '{self.name}'")
        return rows.reset_index(drop=True)

    def label_of(self, patient_id: str) -> str:
        return self.patients.set_index("patient_id").at[patient_id, "label"]

    def subset(self, patient_ids) -> "Cohort":
        keep = set(patient_ids)
        return self._replace(self.exams[self.exams["patient_id"].isin(keep)].reset_index(drop=True),
                             self.patients[self.patients["patient_id"].isin(keep)].reset_index(drop=True),
                             self.indicators)

    def _replace(self, exams, patients, indicators) -> "Cohort":
        return Cohort(exams=exams, patients=patients, indicators=list(indicators), name=self.name,
                      calendar_dates=self.calendar_dates,
                      units={k: v for k, v in self.units.items() if k in indicators},
                      description=self.description)

    def summary(self) -> dict:
        per_patient = self.exams.groupby("patient_id").size()
        return {
            "patients": int(len(self.patients)),
            "records": int(len(self.exams)),
            "indicators": int(len(self.indicators)),
            "labels": int(self.patients["label"].nunique()),
            "max_records_per_patient": int(per_patient.max()),
            "mean_records_per_patient": round(float(per_patient.mean()), 2),
            "first_exam": str(self.exams["exam_date"].min().date()),
            "last_exam": str(self.exams["exam_date"].max().date()),
            "missing_share": round(float(self.exams[self.indicators].isna().to_numpy().mean()), 4),
        }

    # ---- files ----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write exams.parquet, patients.parquet and cohort.json (deterministic bytes)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.exams.to_parquet(folder / "exams.parquet", index=False)
        self.patients.to_parquet(folder / "patients.parquet", index=False)
        meta = {"name": self.name, "calendar_dates": self.calendar_dates, "indicators": self.indicators,
                "units": self.units, "description": self.description}
        (folder / "cohort.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Cohort":
        """Read a folder written by `save`, or any folder with exams and patients tables (CSV or Parquet)."""
        return load_folder(folder)


def _read_table(path: Path) -> tuple[pd.DataFrame, TableSource]:
    if path.suffix.lower() == ".csv":
        # read as text so that validation can point at a non-numeric cell instead of a dtype guess
        return pd.read_csv(path, dtype=str, keep_default_na=False), TableSource(str(path), "csv")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path), TableSource(str(path), "parquet")
    raise CohortError(f"{path}: unsupported file type '{path.suffix}'. How to fix: use .csv or .parquet")


def _find(folder: Path, stem: str) -> Path:
    for suffix in (".parquet", ".csv"):
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    raise CohortError(f"{folder}: no {stem}.csv or {stem}.parquet. How to fix: put the {stem} table in that folder "
                      "(see data/README.md for the format)")


def load_tables(exams_path: str | Path, patients_path: str | Path, **options) -> Cohort:
    """Load a cohort from an examinations file and a patients file (CSV or Parquet)."""
    exams_path, patients_path = Path(exams_path), Path(patients_path)
    for p in (exams_path, patients_path):
        if not p.exists():
            raise CohortError(f"{p}: file not found. How to fix: check the path")
    exams, es = _read_table(exams_path)
    patients, ps = _read_table(patients_path)
    return Cohort.from_tables(exams, patients, exams_source=es, patients_source=ps, **options)


def load_folder(folder: str | Path, **options) -> Cohort:
    folder = Path(folder)
    if not folder.is_dir():
        raise CohortError(f"{folder}: not a folder. How to fix: pass a folder holding exams.(csv|parquet) and patients.(csv|parquet)")
    meta_path = folder / "cohort.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    kwargs = {"name": meta.get("name", folder.name), "calendar_dates": meta.get("calendar_dates", True),
              "units": meta.get("units", {}), "description": meta.get("description", "")}
    if "indicators" in meta:
        kwargs["indicators"] = meta["indicators"]
    if not meta.get("calendar_dates", True):
        kwargs.setdefault("allow_future_dates", True)
    kwargs.update(options)
    return load_tables(_find(folder, "exams"), _find(folder, "patients"), **kwargs)
