"""Steps 6 and 7: answer each system's prompts, score them, and turn the scores into evidence.

A *system* is a way of prompting (or a model) whose answers are compared with the doctors' replies:
"before" (Figure 5, raw data), "PMLM" (the refined prompt), the ablations, the controls, the
fine-tuned lightweight LM. A *setting* is how the responder decodes: "matched" is the decoding the
prompts were refined for (notebook 04's), "sampled" the paper's runs at a temperature, one answer per
seed. Within a setting every system of a patient is answered with the same seed (common random
numbers), so that two systems differ by their prompts, not by their luck.

Evidence is paired: two systems are compared patient by patient on the patients both answered
(each patient's scores averaged over seeds), with the mean difference, its 95% CI, p-values, and
the smallest difference the sample could detect at 80% power. A table ranks only rows measured on
the same patients; a system measured on a sub-sample (the oracle, the fine-tuned LM) is compared in
its own table with the systems it is set against, on its patients. `findings` turns the paired
tables into sentences, each with its interval and sample size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from pmlm_lib.common.stats import paired_test
from pmlm_lib.evaluation.metrics import COLUMNS, Metrics
from pmlm_lib.llm.responders import Decoding, RawDataRefused

BEFORE = "before (Figure 5, raw data)"
PMLM = "PMLM"
WITHOUT_SP = "without SP"
WITHOUT_PP = "without PP"
WITHOUT_PR = "without PR (s_0)"
RANDOM = "random deletion"
CONSENSUS = "consensus template"  # the n word occurrences the policy edits most often, applied to every patient
SHUFFLED = "shuffled edit"  # each patient's s_0 with another evaluated patient's edit set (a seeded derangement)
GREEDY = "greedy search (oracle)"
FINE_TUNED = "SmolLM2-135M + LoRA (Figure 5 → reply)"
BUNDLED = "SmolLM2-135M (bundled)"  # the responder of the main tables
FINE_TUNED_RESPONDER = "SmolLM2-135M + LoRA"
# Table 3's rows, measured on the main sample
ABLATIONS = [WITHOUT_SP, WITHOUT_PP, WITHOUT_PR, RANDOM, CONSENSUS, SHUFFLED]
MATCHED, SAMPLED = "matched", "sampled"
SPOKEN = {
    BEFORE: "the raw-data prompt (before)",
    WITHOUT_PR: "s_0 (no refinement)",
    WITHOUT_SP: "the prompt without the prediction (SP)",
    WITHOUT_PP: "the prompt without peers (PP)",
    RANDOM: "random deletion of as many words",
    CONSENSUS: "the consensus template (the policy's most frequent edits, applied to every patient)",
    SHUFFLED: "the shuffled edit (each patient given another patient's edits)",
    GREEDY: "the greedy-search oracle",
    FINE_TUNED: "the LoRA-fine-tuned SmolLM2",
}  # how findings name the systems
HEADLINE = "BERTScore-F1"


def responder_label(identity: dict) -> str:
    """How the tables name a responder: the bundled SmolLM2 (no adapter) as BUNDLED, any other by model and backend."""
    bundled = identity.get("backend") == "llama.cpp" and str(identity.get("model", "")).startswith("smollm2-135m")
    if bundled and not identity.get("lora_sha256"):
        return BUNDLED
    where = f" at {identity['base_url']}" if identity.get("base_url") else ""
    return f"{identity.get('model')} ({identity.get('backend')}{where})"


def refinement_label(refinement: dict) -> str:
    """How the tables name the responder a refinement (notebook 04's record) was made for: its name in the
    profile's `responders`, else `responder_label` of its identity."""
    return refinement.get("responder_name") or responder_label(refinement["responder"])


def transferred(source: str) -> str:
    """The system of PMLM prompts refined for another responder (`source`), answered by this one."""
    return f"PMLM refined for {source}"


@dataclass(frozen=True)
class Setting:
    """How the responder decodes in one part of the evaluation, and with which seeds."""

    name: str
    decoding: Decoding
    seeds: tuple[int, ...]

    def describe(self) -> str:
        d = self.decoding
        how = "deterministic (T = 0)" if d.temperature == 0 else f"T = {d.temperature:g}, top-p {d.top_p:g}"
        seeds = "" if d.temperature == 0 else f", {len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''}"
        return f"{self.name} decoding: {how}, {d.max_tokens} tokens{seeds}"


def prompt_rows(system: str, prompts, setting: Setting, per_seed=None) -> pd.DataFrame:
    """Long rows (setting, system, seed, patient_id, prompt): the same prompts for every seed, or
    per_seed(seed) -> {patient_id: prompt} when the system's prompts depend on the seed."""
    rows = []
    for seed in setting.seeds:
        chosen = per_seed(seed) if per_seed is not None else prompts
        rows += [
            {"setting": setting.name, "system": system, "seed": seed, "patient_id": pid, "prompt": p}
            for pid, p in dict(chosen).items()
        ]
    return pd.DataFrame(rows, columns=["setting", "system", "seed", "patient_id", "prompt"])


def transfer_rows(own: dict[str, pd.Series], matched: Setting, answering: str) -> pd.DataFrame:
    """The refined prompts of every other responder (`own`: name -> its refined prompts), for `answering` to
    answer with matched decoding: the transfer table's rows."""
    parts = [prompt_rows(transferred(name), prompts, matched) for name, prompts in own.items() if name != answering]
    return pd.concat(parts, ignore_index=True) if parts else prompt_rows(PMLM, {}, matched)


def own_refinement_rows(
    rows: pd.DataFrame, own: dict[str, pd.Series], settings: dict[str, Setting], answering: str
) -> pd.DataFrame:
    """What a responder with its own refinement answers besides the main responder: the raw-data prompt (from
    `rows`) and its own refined prompts in every setting (Table 1), and the others' refined prompts (transfer)."""
    mine = [rows[rows["system"] == BEFORE]] + [prompt_rows(PMLM, own[answering], s) for s in settings.values()]
    return pd.concat(mine + [transfer_rows(own, settings[MATCHED], answering)], ignore_index=True)


def answer_rows(
    rows: pd.DataFrame, responder, settings: dict[str, Setting], responder_name: str, progress=print
) -> pd.DataFrame:
    """Answers for every row, one responder call per setting and seed (all systems together, so that
    the responder's parallel slots stay busy). Rows whose prompts the responder refuses (raw data to a
    remote endpoint without opt-in) are dropped with a message, not sent."""
    out = []
    for (setting, seed), part in rows.groupby(["setting", "seed"], sort=True):
        progress(f"{responder_name}, {setting} decoding, seed {seed}: {len(part)} prompts")
        part = part.copy()
        decoding = Decoding(**{**asdict(settings[setting].decoding), "seed": int(seed)})
        try:
            part["answer"] = responder.answer(part["prompt"].tolist(), decoding, progress=True)
        except RawDataRefused as refused:
            keep = ~part["prompt"].map(responder.guard)
            progress(
                f"{responder_name}: {int((~keep).sum())} raw-data prompt(s) not sent ({refused.__class__.__name__}); "
                "set allow_raw_data in the responder spec to include the 'before' row"
            )
            part = part[keep].copy()
            part["answer"] = responder.answer(part["prompt"].tolist(), decoding, progress=True)
        out.append(part)
    answered = pd.concat(out, ignore_index=True) if out else rows.assign(answer=[])
    return answered.assign(responder=responder_name)


def score_rows(answered: pd.DataFrame, references: pd.Series, metrics: Metrics) -> pd.DataFrame:
    """The seven metrics for every answer (identical answer/reference pairs are scored once)."""
    refs = answered["patient_id"].map(references)
    if refs.isna().any():
        raise KeyError(f"no reference reply for {answered.loc[refs.isna(), 'patient_id'].iloc[0]}")
    pairs = pd.DataFrame({"answer": answered["answer"].to_numpy(), "reference": refs.to_numpy()})
    unique = pairs.drop_duplicates().reset_index(drop=True)
    scored = pd.concat([unique, metrics.per_answer(unique["answer"].tolist(), unique["reference"].tolist())], axis=1)
    merged = pairs.merge(scored, on=["answer", "reference"], how="left")
    return pd.concat([answered.reset_index(drop=True), merged[COLUMNS]], axis=1)


# ---- tables ---------------------------------------------------------------------------------------
def per_patient(scored: pd.DataFrame, by: list[str], metrics: list[str] = COLUMNS) -> pd.DataFrame:
    """Each patient's scores averaged over seeds, per group."""
    return scored.groupby(list(by) + ["patient_id"])[metrics].mean()


def summary(scored: pd.DataFrame, by: list[str] = ("responder", "system")) -> pd.DataFrame:
    """One row per group: the mean over patients (of each patient's mean over seeds), the half-width
    of its 95% CI over patients, the sd over seeds of the per-seed means, and the sample: patients and
    seeds. Rows of one table must share their patients (see `require_same_patients`)."""
    from scipy import stats

    by = list(by)
    patients = per_patient(scored, by)
    mean = patients.groupby(level=by).mean()
    n = patients.groupby(level=by).size()
    t = n.map(lambda k: stats.t.ppf(0.975, k - 1) if k > 1 else np.nan)
    ci = patients.groupby(level=by).std(ddof=1).mul(t / np.sqrt(n), axis=0)
    per_seed = scored.groupby(by + ["seed"])[COLUMNS].mean()
    sd = per_seed.groupby(level=by).std(ddof=1)
    counts = scored.groupby(by).agg(patients=("patient_id", "nunique"), seeds=("seed", "nunique"))
    return pd.concat({"mean": mean, "ci95": ci, "sd_seeds": sd}, axis=1).join(pd.concat({"n": counts}, axis=1))


def require_same_patients(scored: pd.DataFrame, by: list[str] = ("responder", "system")) -> None:
    """A table ranks its rows; rows measured on different patients cannot be ranked (raise)."""
    sets = scored.groupby(list(by))["patient_id"].agg(frozenset)
    if sets.nunique() > 1:
        sizes = ", ".join(
            f"{' · '.join(map(str, k)) if isinstance(k, tuple) else k}: {len(v)}" for k, v in sets.items()
        )
        raise ValueError(
            f"the rows of this table were measured on different patients ({sizes}); compare them in separate tables"
        )


def flat(table: pd.DataFrame) -> pd.DataFrame:
    """Rows named by one readable string ("responder · system") instead of a tuple."""
    out = table.copy()
    if isinstance(out.index, pd.MultiIndex):
        out.index = pd.Index([" · ".join(map(str, i)) for i in out.index], name=" · ".join(map(str, out.index.names)))
    return out


def formatted(table: pd.DataFrame, order: list | None = None) -> pd.DataFrame:
    """'mean ± half-width of the 95% CI over patients' strings in the paper's column order, and the
    sample; the sd over seeds of BERTScore-F1 where there are several seeds."""
    out = pd.DataFrame(index=table.index)
    for c in COLUMNS:
        out[c] = [
            f"{m:.2f} ± {h:.2f}" if np.isfinite(h) else f"{m:.2f}"
            for m, h in zip(table[("mean", c)], table[("ci95", c)])
        ]
    if (table[("n", "seeds")] > 1).any():
        out[f"{HEADLINE}: sd over seeds"] = [
            f"{s:.2f}" if np.isfinite(s) else "" for s in table[("sd_seeds", HEADLINE)]
        ]
    out["patients × seeds"] = [f"{p} × {s}" for p, s in zip(table[("n", "patients")], table[("n", "seeds")])]
    return flat(out.reindex(order) if order is not None else out)


def paired(scored: pd.DataFrame, system: str, against: str, metrics: list[str] = COLUMNS) -> pd.DataFrame:
    """Patient-by-patient comparison of two systems on the patients both answered (scores averaged
    over seeds first): one row per metric with the paired tests, effect size and detectable difference."""
    means = scored.groupby(["system", "patient_id"])[metrics].mean()
    a, b = means.loc[system], means.loc[against]
    common = a.index.intersection(b.index)
    rows = {m: paired_test(a.loc[common, m].to_numpy(), b.loc[common, m].to_numpy()) for m in metrics}
    out = pd.DataFrame(rows).T
    out["n"] = out["n"].astype(int)
    out.index.name = f"{system} − {against}"
    return out


def paired_table(scored: pd.DataFrame, system: str, against: list[str], metrics: list[str] = COLUMNS) -> pd.DataFrame:
    """`paired` of one system against several, rows "against · metric"."""
    return flat(
        pd.concat(
            {other: paired(scored, system, other, metrics) for other in against}, names=[f"{system} against", "metric"]
        )
    )


def paired_by_responder(scored: pd.DataFrame, system: str, against: str, metrics: list[str] = COLUMNS) -> pd.DataFrame:
    """`paired` for each responder separately, rows "responder · metric"."""
    parts = {r: paired(part, system, against, metrics) for r, part in scored.groupby("responder")}
    return flat(pd.concat(parts, names=["responder", "metric"]))


def beside_paper(
    ours: pd.DataFrame, paper: pd.DataFrame, label_ours: str = "ours", label_paper: str = "paper"
) -> pd.DataFrame:
    """Our means and the paper's figures in one table (rows tagged by source)."""
    mine = ours[[("mean", c) for c in COLUMNS]].droplevel(0, axis=1).round(2)
    theirs = paper[COLUMNS].copy()
    for table in (
        mine,
        theirs,
    ):  # rows named by one string (our (responder, system) pairs, the paper's (model, before|after))
        table.index = [" · ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in table.index]
    return pd.concat({label_ours: mine, label_paper: theirs}, names=["source", "row"])


# ---- findings --------------------------------------------------------------------------------------
def finding(test: dict, system: str, against: str, metric: str = HEADLINE, sample: str | None = None) -> str:
    """One sentence for one paired comparison, never a verdict without its interval and sample size
    (`sample`: how the sample is told, "n = 60 patients" unless given)."""
    d, low, high = test["mean_difference"], test["ci95_low"], test["ci95_high"]
    system, against = SPOKEN.get(system, system), SPOKEN.get(against, against)
    if high < 0:  # told from the winner's side: its lead, and the interval of its lead
        system, against, d, low, high = against[0].upper() + against[1:], system, -d, -high, -low
    sample = sample or f"n = {int(test['n'])} patients"
    interval = f"95% CI {low:+.1f} to {high:+.1f}, {sample}"
    if low > 0:
        return f"{system} beats {against} by {d:+.1f} {metric} points ({interval})."
    bound = max(abs(low), abs(high))
    return f"{system} and {against} do not differ by more than {bound:.1f} {metric} points ({interval})."


def findings(scored: pd.DataFrame, system: str, against: list[str], metric: str = HEADLINE) -> list[str]:
    """`finding` for one system against each other system answered by the same responder."""
    present = set(scored["system"])
    return [
        finding(paired(scored, system, other, [metric]).loc[metric].to_dict(), system, other, metric)
        for other in against
        if other in present
    ]


# ---- the design ------------------------------------------------------------------------------------
def variance_components(scored: pd.DataFrame, metric: str = HEADLINE) -> pd.DataFrame:
    """Where the spread of one metric comes from, per system of a sampled setting with several seeds:
    the variance between patients (of their means over seeds) and between seeds of one patient, and
    what it implies for a paired comparison with one more seed or one more patient."""
    rows = {}
    for system, part in scored.groupby("system"):
        wide = part.pivot_table(index="patient_id", columns="seed", values=metric)
        if wide.shape[1] < 2:
            continue
        within = float(wide.var(axis=1, ddof=1).mean())
        between = float(wide.mean(axis=1).var(ddof=1) - within / wide.shape[1])
        rows[system] = {
            "patients": len(wide),
            "seeds": wide.shape[1],
            "between patients": between,
            "between seeds": within,
            "share between seeds": within / (within + max(between, 0.0)) if within + max(between, 0.0) > 0 else np.nan,
        }
    return pd.DataFrame(rows).T


# ---- the paper's tables, per decoding setting --------------------------------------------------------
Tables = dict[str, tuple[pd.DataFrame, str]]  # file name -> (table, caption)


def table1(main: pd.DataFrame, settings: dict[str, Setting]) -> Tables:
    """Table 1 (before and after, per responder) and its paired comparisons, for each setting that
    answered the raw-data prompt."""
    out: Tables = {}
    for name, setting in settings.items():
        part = main[(main["setting"] == name) & main["system"].isin([BEFORE, PMLM])]
        if BEFORE not in set(part["system"]):
            continue
        out[f"table1_{name}"] = (
            formatted(summary(part)),
            f"Table 1, {setting.describe()}: answers to the Figure 5 prompt (before) "
            "and to the PMLM prompt (after); mean ± half-width of the 95% CI over patients.",
        )
        out[f"table1_paired_{name}"] = (
            paired_by_responder(part, PMLM, BEFORE).round(4),
            f"PMLM − before, patient by patient ({name} decoding): mean difference, 95% CI, p-values, "
            "effect size d_z, share of patients improved, and the smallest difference detectable "
            "at 80% power.",
        )
    return out


def table3(main: pd.DataFrame, settings: dict[str, Setting], responder: str = BUNDLED) -> Tables:
    """Table 3 (ablations and random deletion beside PMLM, on the same patients) and PMLM's paired
    comparisons against each, for each setting."""
    order = [*ABLATIONS, PMLM]
    out: Tables = {}
    for name, setting in settings.items():
        part = main[(main["setting"] == name) & (main["responder"] == responder) & main["system"].isin(order)]
        require_same_patients(part, by=["system"])
        present = [s for s in order if s in set(part["system"])]
        out[f"table3_{name}"] = (
            formatted(summary(part, by=["system"]), present),
            f"Table 3, {setting.describe()}: ablations (without the prediction SP, the peers PP, the "
            "refinement PR), random deletion, the consensus template (the policy's most frequent edits applied to "
            "every patient) and the shuffled edit (each patient given another's edits: PMLM − shuffled is what "
            "her own edits add), mean ± half-width of the 95% CI over patients.",
        )
        out[f"table3_paired_{name}"] = (
            paired_table(part, PMLM, present[:-1], [HEADLINE, "ROUGE-L", "BLEU-4"]).round(4),
            f"PMLM − each ablation or control, patient by patient ({name} decoding).",
        )
    return out


def transfer_table(matched: pd.DataFrame, metric: str = HEADLINE) -> pd.DataFrame:
    """Does a refinement carry over to another LLM? For each responder B and each other responder A whose
    prompts B answered: B's mean on its own refined prompts (PMLM), on A's (transferred) and on the raw-data
    prompt, and two paired differences on the same patients: transferred − before, and own − transferred
    (positive: B's own refinement beats A's). Rows: "B answers · prompts refined for A"."""
    rows = []
    for responder, part in matched.groupby("responder", sort=False):
        sources = sorted(s for s in set(part["system"]) if s.startswith(transferred("")))
        for system in sources:
            source = system[len(transferred("")) :]
            on = part[part["system"].isin([PMLM, system, BEFORE])]
            row = {"answers": responder, "prompts refined for": source}
            means = on.groupby(["system", "patient_id"])[metric].mean().groupby(level=0).mean()
            row.update(
                {
                    f"{metric}: own": means.get(PMLM),
                    f"{metric}: transferred": means.get(system),
                    f"{metric}: before": means.get(BEFORE),
                }
            )
            for label, (a, b) in {
                "transferred − before": (system, BEFORE),
                "own − transferred": (PMLM, system),
            }.items():
                if {a, b} <= set(on["system"]):
                    test = paired(on, a, b, [metric]).loc[metric]
                    row.update(
                        {
                            label: test["mean_difference"],
                            f"{label} CI low": test["ci95_low"],
                            f"{label} CI high": test["ci95_high"],
                        }
                    )
                    row["patients"] = int(test["n"])
            rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).set_index(["answers", "prompts refined for"])
    return table[[c for c in table.columns if c != "patients"] + ["patients"]]


def transfer_findings(table: pd.DataFrame, metric: str = HEADLINE) -> list[str]:
    """One sentence per row of the transfer table: own refinement against the transferred prompts."""
    out = []
    for (answers, source), row in table.iterrows():
        if pd.isna(row.get("own − transferred")):
            continue
        test = {
            "mean_difference": row["own − transferred"],
            "ci95_low": row["own − transferred CI low"],
            "ci95_high": row["own − transferred CI high"],
            "n": row["patients"],
        }
        out.append(
            f"{answers}: " + finding(test, "its own refined prompts", f"the prompts refined for {source}", metric)
        )
    return out


def setting_findings(main: pd.DataFrame, settings: dict[str, Setting], data_name: str) -> list[tuple[str, list[str]]]:
    """(heading, sentences) per responder and setting: PMLM against every other system it was answered with."""
    out = []
    for name, setting in settings.items():
        for responder, part in main[main["setting"] == name].groupby("responder", sort=False):
            out.append(
                (
                    f"{responder} on the {data_name} cohort, {setting.describe()}",
                    findings(part, PMLM, [BEFORE, WITHOUT_PR, RANDOM, SHUFFLED, CONSENSUS, WITHOUT_SP, WITHOUT_PP]),
                )
            )
    return out
