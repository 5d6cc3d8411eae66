"""How much a per-patient choice of prompt could add over one prompt for everyone, with this responder.

Each patient's s_0 is answered under K candidate edits (`scores`: patients × candidates, BERTScore-F1
points, one deterministic answer each). Three figures, as Prompt-OIRL measures per-query prompts:

- (a) the **best single candidate**: one edit applied to everyone. Chosen on the same patients it reads
  their references (optimistic); *cross-fitted* it is chosen on half the patients and scored on the other
  half, as a deployed choice would be;
- (b) the **per-patient oracle**: each patient's best candidate. It reads her reference: an upper bound
  that no deployed system reaches, and that grows with K by luck alone;
- (c) a **cross-fitted selector**: a ridge model of each candidate's gain over s_0 from what a deployed system
  knows (the predictor's confidence, the peers' similarities, how many share the predicted label, what the
  candidate drops), fitted on half the patients and choosing for the other half.

(c) − (a, cross-fitted), patient by patient, is the headroom a deployable per-patient policy could reach; its
interval is over patients (each patient's figure averaged over `repeats` random halvings), so it does not
count the choice of the halving itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmlm_lib.common.stats import paired_test

S0 = "s_0"
BEST_SINGLE = "(a) best single candidate, chosen on these patients"
BEST_SINGLE_CROSS = "(a) best single candidate, cross-fitted"
ORACLE = "(b) per-patient oracle (reads the reference)"
SELECTOR = "(c) cross-fitted selector"


def design(features: pd.DataFrame, candidates: list[str]) -> np.ndarray:
    """The selector's inputs per (patient, candidate) row: the candidate (one-hot), what it drops (the
    descriptor columns), and the patient's own features crossed with whether the candidate drops the
    prediction, drops peers or edits words, so that "drop the disagreeing peers" can pay for one patient and
    not another."""
    kind = pd.get_dummies(pd.Categorical(features["candidate"], categories=candidates)).to_numpy(float)
    described = features[[c for c in features.columns if c.startswith("drops")]].to_numpy(float)
    patient = features[[c for c in features.columns if c.startswith("patient_") and c != "patient_id"]].to_numpy(float)
    groups = features[["drops_prediction", "drops_peers_share", "edits_words"]].to_numpy(float)
    crossed = (patient[:, :, None] * groups[:, None, :]).reshape(len(features), -1)
    return np.hstack([kind, described, features[["edits_words"]].to_numpy(float), crossed])


def _ridge(X: np.ndarray, y: np.ndarray, alpha: float):
    mean, scale = X.mean(0), X.std(0)
    scale[scale == 0] = 1.0
    Z = (X - mean) / scale
    coef = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))
    return lambda Xn: ((Xn - mean) / scale) @ coef + y.mean()


def cross_fitted(
    scores: pd.DataFrame, features: pd.DataFrame, repeats: int = 20, seed: int = 0, alpha: float = 10.0
) -> pd.DataFrame:
    """Per patient, averaged over `repeats` random halvings: the score of the best single candidate chosen on the
    other half, and of the selector's choice fitted on the other half; and the candidates they chose."""
    candidates = list(scores.columns)
    patients = list(scores.index)
    gains = scores.sub(scores[S0], axis=0)
    long = features.set_index(["patient_id", "candidate"]).loc[[(p, c) for p in patients for c in candidates]]
    X = design(long.reset_index(), candidates).reshape(len(patients), len(candidates), -1)
    y = gains.to_numpy()
    rng = np.random.default_rng([seed, 7])
    single, chosen = np.zeros(len(patients)), np.zeros(len(patients))
    picks: dict[str, list[str]] = {p: [] for p in patients}
    for _ in range(repeats):
        half = rng.permutation(len(patients)) < len(patients) // 2
        for fit, apply in ((half, ~half), (~half, half)):
            best = int(np.argmax(y[fit].mean(0)))
            single[apply] += scores.to_numpy()[apply, best]
            model = _ridge(X[fit].reshape(-1, X.shape[2]), y[fit].ravel(), alpha)
            predicted = model(X[apply].reshape(-1, X.shape[2])).reshape(int(apply.sum()), len(candidates))
            choice = predicted.argmax(1)
            chosen[apply] += scores.to_numpy()[apply][np.arange(len(choice)), choice]
            for i, c in zip(np.flatnonzero(apply), choice):
                picks[patients[i]].append(candidates[c])
    return pd.DataFrame(
        {
            BEST_SINGLE_CROSS: single / repeats,
            SELECTOR: chosen / repeats,
            "selector's commonest choice": [pd.Series(picks[p]).mode().iloc[0] for p in patients],
        },
        index=scores.index,
    )


def study_table(scores: pd.DataFrame, features: pd.DataFrame, repeats: int = 20, seed: int = 0) -> dict:
    """The headroom figures: each row's mean, and its paired difference (95% CI over patients) from s_0 and
    from the cross-fitted best single candidate; the per-candidate table; the headline (c) − (a)."""
    best = scores.mean().idxmax()
    fitted = cross_fitted(scores, features, repeats, seed)
    rows = {
        S0: scores[S0],
        BEST_SINGLE: scores[best],
        BEST_SINGLE_CROSS: fitted[BEST_SINGLE_CROSS],
        ORACLE: scores.max(axis=1),
        SELECTOR: fitted[SELECTOR],
    }
    table = {}
    for name, values in rows.items():
        entry = {"mean": float(values.mean()), "patients": len(values)}
        for against in (S0, BEST_SINGLE_CROSS):
            if name != against:
                test = paired_test(values.to_numpy(), rows[against].to_numpy())
                entry[f"− {against}"] = test["mean_difference"]
                entry[f"− {against} CI"] = (test["ci95_low"], test["ci95_high"])
        table[name] = entry
    per_candidate = pd.DataFrame(
        {
            "mean": scores.mean(),
            "− s_0": scores.sub(scores[S0], axis=0).mean(),
            "oracle's pick (share of patients)": scores.idxmax(axis=1).value_counts(normalize=True),
        }
    ).fillna({"oracle's pick (share of patients)": 0.0})
    per_candidate = per_candidate.sort_values("mean", ascending=False)
    headline = paired_test(fitted[SELECTOR].to_numpy(), fitted[BEST_SINGLE_CROSS].to_numpy())
    return {
        "best_single": best,
        "table": table,
        "per_candidate": per_candidate,
        "per_patient": fitted,
        "headroom": headline,
        "patients": len(scores),
        "candidates": len(scores.columns),
    }


def sentence(result: dict) -> str:
    """The headline for the report and the Findings."""
    h, t = result["headroom"], result["table"]
    oracle = t[ORACLE]
    verdict = (
        "a per-patient choice from what a deployed system knows beats one edit for everyone"
        if h["ci95_low"] > 0
        else "one edit for everyone beats a per-patient choice"
        if h["ci95_high"] < 0
        else "no per-patient headroom shows"
    )
    return (
        f"Over {result['candidates']} candidate edits of s_0 on {result['patients']} validation patients, "
        f"{verdict}: the cross-fitted selector − the cross-fitted best single candidate is "
        f"{h['mean_difference']:+.1f} BERTScore-F1 points (95% CI {h['ci95_low']:+.1f} to {h['ci95_high']:+.1f}, "
        f"n = {h['n']} patients). The best single candidate ({result['best_single']}) is "
        f"{t[BEST_SINGLE]['− s_0']:+.1f} over s_0 chosen on these patients; the per-patient oracle, which reads "
        f"the reference, {oracle['− ' + BEST_SINGLE_CROSS]:+.1f} over the cross-fitted best single: an upper bound."
    )
