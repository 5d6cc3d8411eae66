"""The headroom study's figures: (a) the best single candidate, (b) the per-patient oracle, (c) the cross-fitted
selector, on scores whose answer is known."""

import numpy as np
import pandas as pd

from pmlm_lib.evaluation import headroom

CANDIDATES = ["s_0", "drop the prediction sentence", "drop peer 1", "random deletion"]


def _features(patients, flag):
    rows = []
    for p, f in zip(patients, flag):
        for c in CANDIDATES:
            rows.append(
                {
                    "patient_id": p,
                    "candidate": c,
                    "patient_confidence": float(f),
                    "patient_agree_share": 0.5,
                    "drops_prediction": float(c == "drop the prediction sentence"),
                    "drops_peers_share": 0.1 * (c == "drop peer 1"),
                    "drops_similarity": 0.0,
                    "edits_words": float(c == "random deletion"),
                }
            )
    return pd.DataFrame(rows)


def _scores(n, seed, informative):
    """Dropping the prediction gains 6 points for unsure patients (flag 1) and loses 6 for sure ones; the flag
    is a feature the selector sees (informative) or not (a constant)."""
    rng = np.random.default_rng(seed)
    flag = rng.integers(0, 2, n)
    base = rng.normal(50, 5, n)
    scores = pd.DataFrame(
        {
            "s_0": base,
            "drop the prediction sentence": base + np.where(flag == 1, 6.0, -6.0) + rng.normal(0, 1, n),
            "drop peer 1": base + 1.0 + rng.normal(0, 1, n),
            "random deletion": base - 2.0 + rng.normal(0, 1, n),
        },
        index=[f"P{i}" for i in range(n)],
    )
    return scores, _features(scores.index, flag if informative else np.zeros(n))


def test_a_selector_that_sees_what_decides_beats_the_best_single_edit_and_the_oracle_bounds_it():
    scores, features = _scores(120, 0, informative=True)
    result = headroom.study_table(scores, features, repeats=5, seed=0)
    t = result["table"]
    assert result["best_single"] == "drop peer 1" and result["patients"] == 120 and result["candidates"] == 4
    h = result["headroom"]
    assert h["ci95_low"] > 2 and h["n"] == 120  # about +2.5 on the unsure half, +0 on the sure half
    assert t[headroom.ORACLE]["mean"] >= t[headroom.SELECTOR]["mean"] >= t[headroom.BEST_SINGLE_CROSS]["mean"]
    assert "beats one edit for everyone" in headroom.sentence(result)
    assert set(result["per_patient"]["selector's commonest choice"]) <= set(CANDIDATES)


def test_without_the_deciding_feature_there_is_no_headroom_though_the_oracle_shows_a_large_one():
    scores, features = _scores(120, 1, informative=False)
    result = headroom.study_table(scores, features, repeats=5, seed=0)
    h = result["headroom"]
    assert h["ci95_low"] < 0.5 and h["mean_difference"] < 1.0
    assert result["table"][headroom.ORACLE]["− " + headroom.BEST_SINGLE_CROSS] > 2  # reads the reference
    assert "no per-patient headroom shows" in headroom.sentence(result) or h["ci95_high"] < 0
