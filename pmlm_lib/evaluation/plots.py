"""Figures of the notebooks: each function takes data and returns a matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from pmlm_lib.data.cohort import Cohort
from pmlm_lib.data.indicators import INDICATOR_BY_NAME

SPLIT_COLORS = {"train": "#4C72B0", "validation": "#DD8452", "test": "#55A868"}


def indicator_coverage(coverage: pd.Series, threshold: float, kept: list[str]):
    """Share of examinations measuring each indicator, with the coverage threshold."""
    fig, ax = plt.subplots(figsize=(10, max(4, 0.22 * len(coverage))))
    colors = ["#4C72B0" if name in kept else "#C44E52" for name in coverage.index]
    ax.barh(coverage.index[::-1], coverage.to_numpy()[::-1], color=colors[::-1])
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.text(threshold, len(coverage) - 0.5, f" threshold {threshold:.0%}", va="top")
    ax.set_xlabel("share of examinations in which the indicator was measured")
    ax.set_xlim(0, 1)
    ax.set_title("Indicator coverage (blue: kept, red: dropped)")
    fig.tight_layout()
    return fig


def visits_per_patient(cohort: Cohort):
    counts = cohort.exams.groupby("patient_id").size()
    labels = cohort.by_patient("label")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].hist(counts, bins=np.arange(0.5, counts.max() + 1.5, 1), color="#4C72B0")
    axes[0].set_xlabel("examinations per patient")
    axes[0].set_ylabel("patients")
    axes[0].set_title(f"Visits per patient (median {counts.median():.0f}, max {counts.max()})")
    by_label = pd.DataFrame({"visits": counts, "label": labels.reindex(counts.index)})
    order = by_label.groupby("label")["visits"].median().sort_values().index
    sns.boxplot(data=by_label, y="label", x="visits", order=order, ax=axes[1], color="#8fb0d9", fliersize=2)
    axes[1].set_title("Sicker patients are examined more often")
    axes[1].set_ylabel("")
    fig.tight_layout()
    return fig


def label_distribution(counts: pd.DataFrame):
    """Patients per label, stacked by split (counts from filtering.split_label_counts)."""
    table = counts.drop(index="all labels", errors="ignore").drop(columns="total", errors="ignore")
    table = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(table) + 1.5))
    left = np.zeros(len(table))
    for split in table.columns:
        ax.barh(table.index, table[split], left=left, label=split, color=SPLIT_COLORS.get(split))
        left += table[split].to_numpy()
    ax.set_xlabel("patients")
    ax.legend(loc="lower right")
    ax.set_title("Label distribution by split (skewed: 'normal' is the largest class)")
    fig.tight_layout()
    return fig


def missingness(cohort: Cohort, max_patients: int = 60, seed: int = 0):
    """Which values are present, examination by examination, for a sample of patients."""
    rng = np.random.default_rng(seed)
    ids = cohort.patients["patient_id"].to_numpy()
    sample = set(rng.choice(ids, size=min(max_patients, len(ids)), replace=False))
    exams = cohort.exams[cohort.exams["patient_id"].isin(sample)]
    present = exams[cohort.indicators].notna().to_numpy().T.astype(float)
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.2 * len(cohort.indicators) + 2), gridspec_kw={"width_ratios": [4, 1]})
    axes[0].imshow(present, aspect="auto", interpolation="nearest", cmap="Blues", vmin=0, vmax=1.3)
    axes[0].set_yticks(range(len(cohort.indicators)), cohort.indicators, fontsize=7)
    axes[0].set_xlabel(f"examinations of {len(sample)} random patients (patients one after another)")
    axes[0].set_title("Present (blue) and missing (white) values: whole panels go missing together")
    share = cohort.exams[cohort.indicators].notna().mean()
    axes[1].barh(range(len(share)), share.to_numpy(), color="#4C72B0")
    axes[1].set_ylim(len(share) - 0.5, -0.5)
    axes[1].set_yticks([])
    axes[1].set_xlim(0, 1)
    axes[1].set_xlabel("share present, all patients")
    fig.tight_layout()
    return fig


def admissions_over_time(cohort: Cohort, split: pd.Series):
    adm = cohort.patients.assign(split=cohort.patients["patient_id"].map(split))
    adm["month"] = adm["admission_date"].dt.to_period("M").dt.to_timestamp()
    table = adm.pivot_table(index="month", columns="split", values="patient_id", aggfunc="count", fill_value=0)
    fig, ax = plt.subplots(figsize=(11, 3.5))
    bottom = np.zeros(len(table))
    for split_name in [s for s in SPLIT_COLORS if s in table.columns]:
        ax.bar(
            table.index, table[split_name], width=25, bottom=bottom, label=split_name, color=SPLIT_COLORS[split_name]
        )
        bottom += table[split_name].to_numpy()
    ax.set_ylabel("patients admitted")
    ax.legend()
    ax.set_title("Admissions per month, coloured by split")
    fig.tight_layout()
    return fig


def confusion(matrix: pd.DataFrame, title: str):
    """Confusion matrix (rows: true label, columns: predicted), counts and row shares."""
    shares = matrix.div(matrix.sum(axis=1).replace(0, 1), axis=0)
    fig, ax = plt.subplots(figsize=(10, 8))
    sns.heatmap(
        shares,
        annot=matrix,
        fmt="d",
        cmap="Blues",
        vmin=0,
        vmax=1,
        cbar_kws={"label": "share of the true label"},
        ax=ax,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def predictor_scores(table: pd.DataFrame, paper_table: pd.DataFrame | None = None):
    """Micro- and macro-F1 on test for each predictor, ours beside the paper's; a row scored on fewer test
    patients than the others says so in its name."""
    fig, axes = plt.subplots(1, 2 if paper_table is not None else 1, figsize=(13, 4), squeeze=False)
    ours = (
        table[["test_micro_f1", "test_macro_f1"]].rename(
            columns={"test_micro_f1": "micro-F1", "test_macro_f1": "macro-F1"}
        )
        * 100
    )
    most = table["test_patients"].max()
    ours.index = [
        f"{name} (only {n} test patients)" if n < most else name for name, n in zip(table.index, table["test_patients"])
    ]
    ours.plot.barh(ax=axes[0, 0], color=["#4C72B0", "#DD8452"])
    axes[0, 0].set_title("This run (test set)")
    axes[0, 0].set_xlim(0, 100)
    if paper_table is not None:
        paper_table.plot.barh(ax=axes[0, 1], color=["#4C72B0", "#DD8452"])
        axes[0, 1].set_title("Paper, Table A1 (private hospital data)")
        axes[0, 1].set_xlim(0, 100)
    for ax in axes[0]:
        ax.set_xlabel("F1 (%)")
    fig.tight_layout()
    return fig


def label_agreement_curves(table: pd.DataFrame):
    """Share of top-k peers with the patient's own label, as k grows, for each representation."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ks = [int(c.split("=")[1]) for c in table.columns]
    for name, row in table.iterrows():
        style = {"ls": "--", "color": "grey"} if name.startswith("chance") else {"marker": "o", "ms": 3}
        ax.plot(ks, row.to_numpy() * 100, label=name, **style)
    ax.set_xlabel("k (number of peers)")
    ax.set_ylabel("peers sharing the patient's label (%)")
    ax.set_title("Do the retrieved peers share the patient's condition? (validation and test patients)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def similarity_distribution(peers: pd.DataFrame, labels: pd.Series, k: int):
    """Cosine similarity of the top-k peers, split by whether the peer shares the patient's label."""
    top = peers[peers["rank"] <= k]
    same = top["peer_label"].to_numpy() == labels.reindex(top["patient_id"]).to_numpy()
    fig, ax = plt.subplots(figsize=(9, 4))
    bins = np.linspace(float(top["similarity"].min()), 1.0, 40)
    ax.hist(top.loc[same, "similarity"], bins=bins, alpha=0.7, label="same label as the patient", color="#55A868")
    ax.hist(top.loc[~same, "similarity"], bins=bins, alpha=0.7, label="different label", color="#C44E52")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel(f"peers (top {k} of every patient)")
    ax.legend()
    ax.set_title("Similarity of retrieved peers")
    fig.tight_layout()
    return fig


def refinement_curves(history: pd.DataFrame):
    """Per epoch of REINFORCE: the policy's mean gain over s_0 and over random deletion of the same
    patients (bands: one standard error over the epoch's episodes), and the loss."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    curves = [("mean_reward", "reward_se", "policy − s_0 (the reward)", "#4C72B0")]
    if "minus_random" in history:
        curves.append(("minus_random", "minus_random_se", "policy − random deletion", "#55A868"))
    for column, se_column, label, colour in curves:
        axes[0].plot(history["epoch"], history[column], marker="o", color=colour, label=label)
        if se_column in history:
            se = history[se_column]
            axes[0].fill_between(history["epoch"], history[column] - se, history[column] + se, alpha=0.2, color=colour)
    axes[0].axhline(0, color="grey", lw=1, ls="--")
    axes[0].legend(loc="best", fontsize=9)
    axes[0].set_title("BERTScore-F1 gain of the sampled episodes per epoch")
    axes[1].plot(history["epoch"], history["loss"], marker="o", color="#DD8452")
    axes[1].set_title("REINFORCE loss per epoch")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def system_scores(scored: pd.DataFrame, metric: str = "BERTScore-F1"):
    """One metric per system: each patient's score (averaged over seeds) as a point, the mean as a bar."""
    per_patient = scored.groupby(["responder", "system", "patient_id"])[metric].mean().reset_index()
    per_patient["row"] = per_patient["system"].where(
        per_patient["responder"] == per_patient["responder"].iloc[0],
        per_patient["system"] + " · " + per_patient["responder"],
    )
    order = per_patient.groupby("row")[metric].mean().sort_values().index.tolist()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(order) + 1.2))
    sns.barplot(data=per_patient, y="row", x=metric, order=order, color="#C9D6E8", errorbar=None, ax=ax)
    sns.stripplot(data=per_patient, y="row", x=metric, order=order, size=3, color="#4C72B0", alpha=0.6, ax=ax)
    ax.set_ylabel("")
    ax.set_xlabel(f"{metric} (per patient, mean over seeds)")
    fig.tight_layout()
    return fig


def edit_heatmap(positions: pd.Series, n_steps: int, n_indices: int = 100):
    """The paper's Figure 6: how often each word index (the first n_indices) was edited at each of
    the n steps, counted over the prompts (an index counts words in the state at that step)."""
    counts = np.zeros((n_steps, n_indices), dtype=int)
    for trace in positions:
        for step, j in enumerate(list(trace)[:n_steps]):
            if j < n_indices:
                counts[step, j] += 1
    fig, ax = plt.subplots(figsize=(14, 0.35 * n_steps + 1.6))
    sns.heatmap(
        pd.DataFrame(counts, index=range(1, n_steps + 1), columns=range(n_indices)),
        cmap="rocket_r",
        ax=ax,
        cbar_kws={"label": "prompts"},
        xticklabels=10,
    )
    ax.set_xlabel("word index in the prompt state")
    ax.set_ylabel("step")
    fig.tight_layout()
    return fig, counts


SWEEP_MIN_PATIENTS = 10  # below this, a 95% interval of a mean is more than twice as wide as the normal one's


def small_sample_warning(n: int, minimum: int = SWEEP_MIN_PATIENTS) -> str:
    """A sentence for a figure of means over only `n` patients (empty when n reaches `minimum`)."""
    if n >= minimum:
        return ""
    from scipy import stats

    t = stats.t.ppf(0.975, max(n - 1, 1))
    return (
        f"Only {n} patient(s): each 95% interval is the standard error times t = {t:.1f} (1.96 for many patients), "
        f"and the curve shows what these patients got, not a trend; give the sweep at least {minimum} patients "
        "(sweep_patients) before reading one."
    )


def sweep_curves(
    summary: pd.DataFrame, parameter: str, metrics=("BERTScore-P", "BERTScore-R", "BERTScore-F1"), patients=None
):
    """The paper's Figure 7: each metric as a parameter varies, mean ± half-width of its 95% CI over
    patients (an `evaluation.summary` table indexed by the parameter's value). With `patients` (how many), the
    title says so, and warns in red below SWEEP_MIN_PATIENTS."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), sharex=True)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        x = summary.index.to_numpy()
        mean, half = summary[("mean", metric)].to_numpy(), summary[("ci95", metric)].to_numpy()
        ax.errorbar(x, mean, yerr=half, marker="o", capsize=3)
        ax.set_title(metric)
        ax.set_xlabel(parameter)
        ax.set_xticks(x)
    if patients is not None:
        few = patients < SWEEP_MIN_PATIENTS
        fig.suptitle(
            f"{patients} patients" + (f": too few to read a trend (fewer than {SWEEP_MIN_PATIENTS})" if few else ""),
            color="#C44E52" if few else "black",
            fontsize=10,
        )
    fig.tight_layout()
    return fig


ORDINAL = {1: "first", 2: "second", 3: "third"}


def patient_trajectories(cohort: Cohort, patient_id: str, indicators: list[str], columns: int = 4, trimester: int = 3):
    """One patient's indicators over time, every panel on one shared time axis with one date format; the shaded
    band is the reference range of the given trimester (default the third: most examinations are late in
    pregnancy, and the data carries no gestational age to choose by), drawn across the whole panel when the
    indicator is in the catalogue and in the catalogue's unit. The figure's title says which range it draws."""
    import matplotlib.dates as mdates

    exams = cohort.exams[cohort.exams["patient_id"] == patient_id].sort_values("exam_date")
    shown = [i for i in indicators if i in exams and exams[i].notna().any()]
    rows = max(1, int(np.ceil(len(shown) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.5 * rows), squeeze=False, sharex=True)
    first, last = exams["exam_date"].min(), exams["exam_date"].max()
    pad = max(pd.Timedelta(days=2), (last - first) * 0.05)
    for ax, name in zip(axes.ravel(), shown):
        values = exams[["exam_date", name]].dropna()
        spec = INDICATOR_BY_NAME.get(name)
        unit = cohort.units.get(name) or (spec.unit if spec else "")
        outside = pd.Series(False, index=values.index)
        if spec is not None and unit == spec.unit:
            low, high = spec.range_for(trimester)
            ax.axhspan(low, high, color="#55A868", alpha=0.15, zorder=0)
            outside = (values[name] < low) | (values[name] > high)
            span = [values[name].min(), values[name].max(), low, high]
            margin = 0.08 * (max(span) - min(span) or 1.0)
            ax.set_ylim(min(span) - margin, max(span) + margin)  # the whole band and every value in view
        ax.plot(values["exam_date"], values[name], color="#4C72B0", marker="o", ms=3)
        ax.scatter(values.loc[outside, "exam_date"], values.loc[outside, name], color="#C44E52", zorder=3, s=14)
        ax.set_title(f"{spec.label if spec else name.replace('_', ' ')}" + (f" ({unit})" if unit else ""), fontsize=9)
    for ax in axes.ravel()[len(shown) :]:
        ax.set_visible(False)
    axes[0, 0].set_xlim(first - pad, last + pad)
    fig.suptitle(
        f"{patient_id}: green band, the {ORDINAL[trimester]}-trimester reference range; red, outside it",
        fontsize=9,
        x=0.01,
        ha="left",
    )
    locator = mdates.AutoDateLocator(minticks=2, maxticks=4)
    for ax in axes.ravel():
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        ax.tick_params(axis="x", labelrotation=45, labelsize=7, labelbottom=True)
    fig.tight_layout()
    return fig


def across_trainings(table: pd.DataFrame, metric: str = "BERTScore-F1"):
    """A forest plot per decoding setting: PMLM minus each system, one line per training (95% CI over its
    patients) and the trainings combined in black (95% interval counting trainings and patients)."""
    settings = list(dict.fromkeys(table["setting"]))
    rows = [(s, a) for s in settings for a in dict.fromkeys(table.loc[table["setting"] == s, "PMLM against"])]
    per_row = table.groupby(["setting", "PMLM against"], sort=False)["training"].count().max()
    fig, axes = plt.subplots(
        1, len(settings), figsize=(6.5 * len(settings), 0.3 * per_row * len(rows) / len(settings) + 1.6), squeeze=False
    )
    for ax, setting in zip(axes[0], settings):
        part = table[table["setting"] == setting]
        labels, y = [], 0.0
        for against, group in part.groupby("PMLM against", sort=False):
            for _, r in group.iterrows():
                joint = r["training"].startswith("across")
                ax.errorbar(
                    r["mean_difference"],
                    y,
                    xerr=[[r["mean_difference"] - r["ci95_low"]], [r["ci95_high"] - r["mean_difference"]]],
                    fmt="s" if joint else "o",
                    color="black" if joint else "#4C72B0",
                    ms=6 if joint else 4,
                    capsize=2,
                )
                labels.append((y, f"− {against} · {r['training']}" if joint else r["training"]))
                y += 1
            y += 0.8
        ax.set_yticks([p for p, _ in labels], [t for _, t in labels], fontsize=8)
        ax.invert_yaxis()  # the first comparison on top, each training above the trainings combined
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_xlabel(f"PMLM − system, {metric} (x100)")
        ax.set_title(f"{setting} decoding")
    fig.tight_layout()
    return fig
