"""The predictor study (the paper's Appendix A.3, Table A1) and the predictions later steps use.

Every family is trained on the training patients and scored on validation and test (micro- and
macro-F1). One is chosen by a validation metric (macro-F1 by default: every label counts). The
chosen family then predicts every patient: validation and test patients from the model trained on
all training patients, training patients out of fold (cross-fitting), so that the prompts of
training patients carry prediction errors as realistic as those of test patients.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, f1_score
from sklearn.model_selection import StratifiedKFold

from pmlm_lib.common import disk_cache, paper
from pmlm_lib.data.cohort import Cohort
from pmlm_lib.data.sampling import labels_of, stratified_sample
from pmlm_lib.llm import lora
from pmlm_lib.method.predictors import base, lm, make_predictor, rocket, sequence, summary
from pmlm_lib.method.predictors.base import load_predictor

CODE = disk_cache.code_fingerprint(base, lm, lora, rocket, sequence, summary)


def f1_scores(y_true, y_pred) -> dict:
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro")),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def fit_cached(family: str, options: dict, seed: int, cohort: Cohort, train_ids: list[str], validation_ids=None):
    """Train (or load from the cache) one predictor; returns it and whether it came from the cache."""
    key = disk_cache.key_of(
        family,
        options,
        seed,
        CODE,
        disk_cache.cohort_fingerprint(cohort, list(train_ids) + list(validation_ids or [])),
        sorted(train_ids),
        sorted(validation_ids or []),
    )
    entry = disk_cache.CacheEntry("predictors", key)
    if entry.ready:
        return load_predictor(entry.path), True
    predictor = make_predictor(family, seed=seed, **options)
    predictor.fit(cohort, list(train_ids), validation_ids=list(validation_ids) if validation_ids is not None else None)
    predictor.save(entry.begin())
    entry.commit()
    return predictor, False


def predict_cached(predictor, family_key: str, cohort: Cohort, ids: list[str]) -> pd.DataFrame:
    key = disk_cache.key_of(family_key, disk_cache.cohort_fingerprint(cohort, ids), list(ids))
    entry = disk_cache.CacheEntry("predictions", key)
    if entry.ready:
        return pd.read_parquet(entry.path / "proba.parquet")
    proba = predictor.predict_proba(cohort, ids)
    proba.to_parquet(entry.begin() / "proba.parquet")
    entry.commit()
    return proba


@dataclass
class StudyResult:
    table: pd.DataFrame  # one row per predictor: F1 on validation and test, sizes, seconds
    chosen: str
    predictions: pd.DataFrame  # every patient: split, label, predicted, how, one probability column per label
    per_class: pd.DataFrame  # the chosen predictor's per-label precision, recall, F1 on test
    confusion: pd.DataFrame  # the chosen predictor's confusion matrix on test (rows: true)
    predictor: object = None
    timings: dict = field(default_factory=dict)


def run_study(
    cohort: Cohort,
    split: pd.Series,
    families: dict[str, dict],
    *,
    seed: int = 0,
    eval_patients: dict[str, int | None] | None = None,
    selection_metric: str = "macro_f1",
    cross_fit_folds: int = 5,
    progress=print,
) -> StudyResult:
    """Train every family, choose one on validation, predict every patient with it."""
    ids = {s: list(split[split == s].index) for s in ("train", "validation", "test")}
    eval_patients = eval_patients or {}
    rows, models, keys = [], {}, {}
    for family, options in families.items():
        start = time.perf_counter()
        uses_validation = family in ("lstm", "cnn", "transformer")
        predictor, cached = fit_cached(
            family, options, seed, cohort, ids["train"], ids["validation"] if uses_validation else None
        )
        row = {"predictor": family, "cached": cached}
        n = eval_patients.get(family)
        for part in ("validation", "test"):
            part_ids = stratified_sample(cohort, ids[part], n, seed)
            family_key = disk_cache.key_of(family, options, seed, CODE, sorted(ids["train"]))
            proba = predict_cached(predictor, family_key, cohort, part_ids)
            scores = f1_scores(labels_of(cohort, part_ids), proba.idxmax(axis=1))
            row.update({f"{part}_{k}": v for k, v in scores.items()})
            row[f"{part}_patients"] = len(part_ids)
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        models[family], keys[family] = predictor, family_key
        progress(
            f"{family}: validation macro-F1 {row['validation_macro_f1']:.3f}, test macro-F1 {row['test_macro_f1']:.3f} "
            f"({row['seconds']} s{', cached' if cached else ''})"
        )
    table = pd.DataFrame(rows).set_index("predictor")
    # a family scored on a sub-sample cannot be ranked beside the others: the choice is among full-sample rows
    full = table[table["validation_patients"] == table["validation_patients"].max()]
    chosen = str(full[f"validation_{selection_metric}"].idxmax())

    # predictions for every patient from the chosen family
    predictor = models[chosen]
    options = families[chosen]
    held_out = predict_cached(predictor, keys[chosen], cohort, ids["validation"] + ids["test"])
    oof = []
    if ids["train"]:
        labels = labels_of(cohort, ids["train"])
        k = max(2, min(cross_fit_folds, int(labels.value_counts().min()) if labels.value_counts().min() >= 2 else 2))
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        train = np.array(ids["train"])
        strat = labels.where(labels.map(labels.value_counts()) >= k, "rare").to_numpy()
        for fold, (fit_idx, out_idx) in enumerate(folds.split(train, strat)):
            fold_model, _ = fit_cached(
                chosen,
                options,
                seed + fold + 1,
                cohort,
                list(train[fit_idx]),
                ids["validation"] if chosen in ("lstm", "cnn", "transformer") else None,
            )
            fold_key = disk_cache.key_of(chosen, options, seed + fold + 1, CODE, sorted(train[fit_idx]))
            oof.append(predict_cached(fold_model, fold_key, cohort, list(train[out_idx])))
            progress(f"cross-fitting {chosen}: fold {fold + 1}/{k}")
    proba = pd.concat(oof + [held_out])
    proba = proba.reindex(cohort.patients["patient_id"])
    how = pd.Series("held out", index=proba.index)
    how[ids["train"]] = "out of fold"
    predictions = pd.DataFrame(
        {
            "split": split.reindex(proba.index),
            "label": labels_of(cohort, list(proba.index)).to_numpy(),
            "predicted": proba.idxmax(axis=1),
            "confidence": proba.max(axis=1),
            "how": how,
        }
    )
    predictions = pd.concat([predictions, proba.add_prefix("p: ")], axis=1)
    predictions.index.name = "patient_id"

    test = predictions[predictions["split"] == "test"]
    report = classification_report(
        test["label"], test["predicted"], labels=cohort.labels, output_dict=True, zero_division=0
    )
    per_class = pd.DataFrame({label: report[label] for label in cohort.labels}).T.rename(columns={"f1-score": "f1"})
    per_class["support"] = per_class["support"].astype(int)
    per_class = per_class.sort_values("f1", ascending=False)
    cm = pd.DataFrame(
        confusion_matrix(test["label"], test["predicted"], labels=cohort.labels),
        index=cohort.labels,
        columns=cohort.labels,
    )
    return StudyResult(
        table=table, chosen=chosen, predictions=predictions, per_class=per_class, confusion=cm, predictor=predictor
    )


def table_a1(result: StudyResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table A1 for this run: micro- and macro-F1 (percent) on validation and test, per predictor; the
    rows scored on every validation and test patient, and apart from them the rows scored on a
    sub-sample (a CPU budget for the LM row), which are not ranked beside the others."""
    t = result.table
    out = pd.DataFrame(
        {
            "micro-F1 (test)": t["test_micro_f1"] * 100,
            "macro-F1 (test)": t["test_macro_f1"] * 100,
            "micro-F1 (validation)": t["validation_micro_f1"] * 100,
            "macro-F1 (validation)": t["validation_macro_f1"] * 100,
            "validation patients": t["validation_patients"],
            "test patients": t["test_patients"],
            "train + predict (s)": t["seconds"],
        }
    )
    out["chosen"] = ["yes" if name == result.chosen else "" for name in out.index]
    full = (t["test_patients"] == t["test_patients"].max()) & (
        t["validation_patients"] == t["validation_patients"].max()
    )
    return out[full].round(2), out[~full].drop(columns="chosen").round(2)


def paper_table_a1() -> pd.DataFrame:
    return pd.DataFrame(paper.TABLE_A1, index=["micro-F1", "macro-F1"]).T
