"""Predictors: one interface, real training, save/load gives the same predictions, honest study."""

import numpy as np
import pytest

from pmlm_lib.data import filtering, synthetic
from pmlm_lib.data.representation import padded_tensor
from pmlm_lib.data.sampling import labels_of
from pmlm_lib.method.predictors import load_predictor, make_predictor
from pmlm_lib.method.predictors.study import fit_cached, run_study
from pmlm_lib.method.predictors.summary import summary_features


@pytest.fixture(scope="module")
def data():
    raw = synthetic.generate(n_patients=400, seed=2, raw=False)
    result = filtering.filter_and_split(raw, min_patients=10)
    s = result.split
    return result.cohort, s, list(s[s == "train"].index), list(s[s == "test"].index)


def test_padded_tensor_keeps_newest_visits_and_masks_padding(data):
    cohort, _, train, _ = data
    pid = cohort.exams.groupby("patient_id").size().idxmax()
    x, mask, measured = padded_tensor(cohort, [pid, train[0]], max_visits=5, keep_missing_mask=True)
    assert x.shape == (2, 5, len(cohort.indicators)) and mask[0].all()
    newest = cohort.history(pid).iloc[-1][cohort.indicators].to_numpy(dtype=float)
    assert np.allclose(x[0, -1], np.nan_to_num(newest))
    assert (measured[0, -1] == ~np.isnan(newest)).all()


def test_summary_features_leave_unmeasured_missing(data):
    cohort, _, train, _ = data
    feats = summary_features(cohort, train[:50])
    assert list(feats.index) == train[:50]
    h = cohort.history(train[0])
    assert feats.loc[train[0], "n_visits"] == len(h)
    assert (
        feats.loc[train[0], "hemoglobin__last"] == h["hemoglobin"].dropna().iloc[-1]
        if h["hemoglobin"].notna().any()
        else True
    )
    assert feats.isna().to_numpy().any()  # "not measured" stays missing, never 0


@pytest.mark.parametrize(
    "family,options",
    [
        ("summary_gbm", {}),
        ("lstm", {"epochs": 2}),
        ("cnn", {"epochs": 2}),
        ("transformer", {"epochs": 2}),
        ("rocket", {"n_kernels": 100}),
    ],
)
def test_interface_and_save_load_roundtrip(tmp_path, data, family, options):
    cohort, _, train, test = data
    predictor = make_predictor(family, seed=1, **options).fit(cohort, train)
    proba = predictor.predict_proba(cohort, test)
    assert list(proba.columns) == cohort.labels and list(proba.index) == test
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert (predictor.predict(cohort, test) == proba.idxmax(axis=1)).all()
    again = load_predictor(predictor.save(tmp_path / family))
    assert np.allclose(again.predict_proba(cohort, test).to_numpy(), proba.to_numpy(), atol=1e-6)


def test_summary_predictor_learns_the_labels_with_a_signature(data):
    cohort, _, train, test = data
    predictor = make_predictor("summary_gbm").fit(cohort, train)
    pred = predictor.predict(cohort, test)
    truth = labels_of(cohort, test)
    thal = truth == "thalassemia"
    assert thal.sum() > 0 and (pred[thal.to_numpy()] == "thalassemia").mean() > 0.6
    assert (pred == truth.to_numpy()).mean() > 0.3  # far above the 1/12 of guessing


def test_study_predicts_every_patient_out_of_fold_for_training(data):
    cohort, split, train, _ = data
    result = run_study(
        cohort, split, {"summary_gbm": {}, "cnn": {"epochs": 2}}, cross_fit_folds=3, progress=lambda *_: None
    )
    p = result.predictions
    assert set(p.index) == set(cohort.patient_ids)
    assert (p.loc[train, "how"] == "out of fold").all() and (p.loc[p["split"] != "train", "how"] == "held out").all()
    assert result.chosen == result.table["validation_macro_f1"].idxmax()
    assert result.confusion.to_numpy().sum() == (split == "test").sum()
    # out-of-fold predictions are honest: worse than predicting the training patients in-sample
    full = fit_cached("summary_gbm", {}, 0, cohort, train)[0]
    in_sample = (full.predict(cohort, train) == labels_of(cohort, train).to_numpy()).mean()
    oof = (p.loc[train, "predicted"] == p.loc[train, "label"]).mean()
    assert oof < in_sample


@pytest.mark.slow
def test_lora_lm_scores_every_label_and_reloads(tmp_path, data):
    cohort, _, train, test = data
    predictor = make_predictor("lora_lm", train_patients=6, max_tokens=128, batch_size=2).fit(cohort, train)
    assert len(predictor.train_log) == 3 and all(np.isfinite(r["loss"]) for r in predictor.train_log)
    proba = predictor.predict_proba(cohort, test[:3])
    assert list(proba.columns) == cohort.labels and np.allclose(proba.sum(axis=1), 1)
    again = load_predictor(predictor.save(tmp_path / "lm"))
    assert np.allclose(again.predict_proba(cohort, test[:3]).to_numpy(), proba.to_numpy(), atol=1e-4)
