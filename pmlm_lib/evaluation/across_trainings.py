"""Statistics across trainings: PMLM's paired differences d[patient, training] from k trainings of the
refinement on the same test patients, combined.

- one row per training and comparison: the mean difference with its CI over patients;
- one row per comparison across the trainings: the mean of the trainings' means, their spread, and a 95%
  interval that counts both the trainings and the patients. In a model d = mu + patient + training +
  noise, the variance of the grand mean is var_patient/n + var_training/k + var_noise/(nk); the interval
  adds the variance of the patients' means over trainings (/n) to that of the trainings' means (/k),
  which counts the noise term twice: conservative, never narrower than the truth it estimates.
  Degrees of freedom by Welch-Satterthwaite. Beside it, a two-level bootstrap: trainings drawn with
  replacement, then patients drawn with replacement, the grand mean of each draw; its 2.5 and 97.5
  percentiles. With few trainings the bootstrap is too narrow (3 trainings give 10 distinct draws and
  (k - 1)/k of their variance), which is why the sentence quotes the analytic interval and both are kept.
- how many trainings hurt: a mean below zero, and a CI of their own below zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from pmlm_lib.common.stats import paired_test
from pmlm_lib.evaluation import systems as ev


def combined(d: pd.DataFrame) -> dict:
    """One comparison across trainings: the mean of the trainings' means, their sd, and a 95% interval
    that counts the trainings and the patients (see the module's text)."""
    wide = d.pivot_table(index="patient_id", columns="training", values="d")
    n, k = wide.shape
    per_training = wide.mean(axis=0)
    per_patient = wide.mean(axis=1)
    a = per_training.var(ddof=1) / k if k > 1 else np.nan
    b = per_patient.var(ddof=1) / n if n > 1 else np.nan
    se = float(np.sqrt(a + b))
    df = (a + b) ** 2 / ((a**2 / (k - 1) if k > 1 else 0) + (b**2 / (n - 1) if n > 1 else 0)) if se > 0 else np.inf
    half = float(stats.t.ppf(0.975, df) * se) if se > 0 else 0.0
    mean = float(per_training.mean())
    own = [training_ci(wide[c]) for c in wide]  # each training's CI over its patients
    boot_low, boot_high = two_level_bootstrap(wide.to_numpy())
    return {
        "n": n,
        "trainings": k,
        "mean_difference": mean,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        "sd_between_trainings": float(per_training.std(ddof=1)) if k > 1 else np.nan,
        "lowest_training": float(per_training.min()),
        "highest_training": float(per_training.max()),
        "bootstrap_low": boot_low,
        "bootstrap_high": boot_high,
        "trainings_above_zero": sum(low > 0 for low, _ in own),
        "trainings_below_zero": sum(high < 0 for _, high in own),
        "trainings_mean_below_zero": int((per_training < 0).sum()),
    }


def two_level_bootstrap(d: np.ndarray, draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the grand mean of d [patients, trainings]: trainings resampled, then
    patients resampled, in each draw."""
    n, k = d.shape
    rng = np.random.default_rng(seed)
    trainings = rng.integers(k, size=(draws, k))
    patients = rng.integers(n, size=(draws, n))
    means = np.array([d[np.ix_(p, t)].mean() for p, t in zip(patients, trainings)])
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def training_ci(diffs: pd.Series) -> tuple[float, float]:
    test = paired_test(diffs.to_numpy(), np.zeros(len(diffs)))
    return test["ci95_low"], test["ci95_high"]


def table(d: pd.DataFrame) -> pd.DataFrame:
    """Per setting and comparison of `d` (rows setting, against, training, run, patient_id, d): each training's
    paired difference with its CI (rows 'training N'), and the trainings combined (row 'across trainings')."""
    rows = []
    for (setting, other), part in d.groupby(["setting", "against"], sort=False):
        for seed, one in part.groupby("training", sort=False):
            low, high = training_ci(one.set_index("patient_id")["d"])
            rows.append(
                {
                    "setting": setting,
                    "PMLM against": other,
                    "training": f"training_seed {seed}",
                    "run": one["run"].iloc[0],
                    "n": len(one),
                    "mean_difference": one["d"].mean(),
                    "ci95_low": low,
                    "ci95_high": high,
                }
            )
        both = combined(part)
        rows.append(
            {
                "setting": setting,
                "PMLM against": other,
                "training": f"across {both['trainings']} trainings",
                "run": "",
                **both,
            }
        )
    return pd.DataFrame(rows)


def sentence(row: dict, metric: str = ev.HEADLINE) -> str:
    """One finding across trainings, with its interval, its sample and how the trainings agreed."""
    sample = f"n = {int(row['n'])} patients × {int(row['trainings'])} trainings"
    text = ev.finding(row, ev.PMLM, row["PMLM against"], metric, sample=sample)
    agreed = (
        f" Trainings: {row['lowest_training']:+.1f} to {row['highest_training']:+.1f} "
        f"(sd {row['sd_between_trainings']:.1f}); "
        f"{int(row['trainings_above_zero'])} of {int(row['trainings'])} with their own CI above zero, "
        f"{int(row['trainings_below_zero'])} below; two-level bootstrap {row['bootstrap_low']:+.1f} to "
        f"{row['bootstrap_high']:+.1f}."
    )
    return text + agreed
