"""Paired statistics: two systems compared patient by patient (notebooks 04 and 05, trainings)."""

from __future__ import annotations

import numpy as np


def min_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.80) -> float:
    """The smallest true mean difference a paired t-test on n patients detects with the given power
    (two-sided alpha), for differences with standard deviation sd: (t_{1-α/2} + t_{power}) · sd / √n,
    with n − 1 degrees of freedom. Unknown (NaN) where the differences showed no spread at all (every
    patient's difference the same, such as BLEU 0 for both systems): zero would read as "any difference
    shows", which n such patients cannot tell."""
    from scipy import stats

    if n < 2 or not np.isfinite(sd) or sd == 0:
        return float("nan")
    return float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / np.sqrt(n))


def paired_test(after: np.ndarray, before: np.ndarray) -> dict:
    """Patient-by-patient comparison of two systems on the same patients: mean difference, its 95%
    confidence interval, the Wilcoxon signed-rank p-value, the paired t-test p-value, the effect size
    (Cohen's d_z = mean difference / sd of the differences), the share of patients improved, and the
    minimum difference detectable at 80% power (alpha 0.05) given the observed spread."""
    from scipy import stats

    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    n = len(diff)
    if n < 2:
        raise ValueError("a paired test needs at least two patients")
    # equal differences (BLEU 0 for both systems on every patient, averaged over seeds) can leave a
    # rounding-sized spread: that is no spread
    if np.ptp(diff) <= 1e-9 * max(1.0, float(np.abs(diff).max())):
        diff = np.full(n, round(float(diff.mean()), 9))
    sd = diff.std(ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) if sd > 0 else 0.0
    nonzero = diff[diff != 0]
    wilcoxon = stats.wilcoxon(nonzero).pvalue if len(nonzero) >= 1 else 1.0
    t = stats.ttest_1samp(diff, 0.0).pvalue if sd > 0 else (1.0 if diff.mean() == 0 else 0.0)
    return {
        "n": n,
        "mean_difference": float(diff.mean()),
        "ci95_low": float(diff.mean() - half),
        "ci95_high": float(diff.mean() + half),
        "t_test_p": float(t),
        "wilcoxon_p": float(wilcoxon),
        "cohens_dz": float(diff.mean() / sd) if sd > 0 else float("nan"),
        "share_improved": float((diff > 0).mean()),
        "min_detectable_80": min_detectable_difference(sd, n),
    }
