"""Steps 6 and 7: answer each system's prompts, score them, and summarize as the paper's tables.

A *system* is a way of prompting (or a model) whose answers are compared with the doctors'
replies: "before" (Figure 5, raw data), "PMLM" (the refined prompt), the ablations, the controls,
the fine-tuned lightweight LM. Each is answered once per seed (the seed of the responder's
sampling; a control's own randomness uses it too), every answer is scored with the seven metrics,
and tables are the mean over patients per seed, then the mean and standard deviation over seeds.
Systems are also compared patient by patient (each patient's scores averaged over seeds) with
`metrics.paired_test`.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from .metrics import COLUMNS, Metrics, paired_test
from .responders import Decoding, RawDataRefused, contains_raw_values


def prompt_rows(system: str, prompts: dict[str, str] | pd.Series, seeds: list[int], per_seed=None) -> pd.DataFrame:
    """Long rows (system, seed, patient_id, prompt): the same prompts for every seed, or
    per_seed(seed) -> {patient_id: prompt} when the system's prompts depend on the seed."""
    rows = []
    for seed in seeds:
        chosen = per_seed(seed) if per_seed is not None else prompts
        rows += [{"system": system, "seed": seed, "patient_id": pid, "prompt": p} for pid, p in dict(chosen).items()]
    return pd.DataFrame(rows, columns=["system", "seed", "patient_id", "prompt"])


def answer_rows(rows: pd.DataFrame, responder, decoding: Decoding, responder_name: str) -> pd.DataFrame:
    """Answers for every row, one responder call per seed (all systems together, so that the
    responder's parallel slots stay busy). Rows whose prompts the responder refuses (raw data to a
    remote endpoint without opt-in) are dropped with a message, not sent."""
    out = []
    for seed, part in rows.groupby("seed", sort=True):
        print(f"{responder_name}, seed {seed}: {len(part)} prompts", flush=True)
        part = part.copy()
        settings = Decoding(**{**asdict(decoding), "seed": int(seed)})
        try:
            part["answer"] = responder.answer(part["prompt"].tolist(), settings, progress=True)
        except RawDataRefused as refused:
            keep = ~part["prompt"].map(contains_raw_values)
            print(f"{responder_name}: {int((~keep).sum())} raw-data prompt(s) not sent ({refused.__class__.__name__}); "
                  "set allow_raw_data in the responder spec to include the 'before' row")
            part = part[keep].copy()
            part["answer"] = responder.answer(part["prompt"].tolist(), settings, progress=True)
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


def summary(scored: pd.DataFrame, by: list[str] = ("responder", "system")) -> pd.DataFrame:
    """Mean over patients within each seed, then mean and sd over seeds; one row per system."""
    by = list(by)
    per_seed = scored.groupby(by + ["seed"])[COLUMNS].mean()
    mean = per_seed.groupby(level=by).mean()
    sd = per_seed.groupby(level=by).std(ddof=1).fillna(0.0)
    counts = scored.groupby(by).agg(patients=("patient_id", "nunique"), seeds=("seed", "nunique"))
    return pd.concat({"mean": mean, "sd": sd}, axis=1).join(pd.concat({"n": counts}, axis=1))


def flat(table: pd.DataFrame) -> pd.DataFrame:
    """Rows named by one readable string ("responder · system") instead of a tuple."""
    out = table.copy()
    if isinstance(out.index, pd.MultiIndex):
        out.index = pd.Index([" · ".join(map(str, i)) for i in out.index], name=" · ".join(map(str, out.index.names)))
    return out


def formatted(table: pd.DataFrame, order: list | None = None) -> pd.DataFrame:
    """'mean ± sd' strings in the paper's column order, for people to read."""
    out = pd.DataFrame(index=table.index)
    for c in COLUMNS:
        out[c] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(table[("mean", c)], table[("sd", c)])]
    out["patients × seeds"] = [f"{p} × {s}" for p, s in zip(table[("n", "patients")], table[("n", "seeds")])]
    return flat(out.reindex(order) if order is not None else out)


def paired(scored: pd.DataFrame, system: str, against: str, metrics: list[str] = COLUMNS) -> pd.DataFrame:
    """Patient-by-patient comparison of two systems on the patients both answered (scores averaged
    over seeds first): one row per metric with the paired tests and effect size."""
    means = scored.groupby(["system", "patient_id"])[metrics].mean()
    a, b = means.loc[system], means.loc[against]
    common = a.index.intersection(b.index)
    rows = {m: paired_test(a.loc[common, m].to_numpy(), b.loc[common, m].to_numpy()) for m in metrics}
    out = pd.DataFrame(rows).T
    out.index.name = f"{system} − {against}"
    return out


def paired_by_responder(scored: pd.DataFrame, system: str, against: str, metrics: list[str] = COLUMNS) -> pd.DataFrame:
    """`paired` for each responder separately, rows "responder · metric"."""
    parts = {r: paired(part, system, against, metrics) for r, part in scored.groupby("responder")}
    return flat(pd.concat(parts, names=["responder", "metric"]))


def beside_paper(ours: pd.DataFrame, paper: pd.DataFrame, label_ours: str = "ours", label_paper: str = "paper") -> pd.DataFrame:
    """Our means and the paper's figures in one table (rows tagged by source)."""
    mine = ours[[("mean", c) for c in COLUMNS]].droplevel(0, axis=1).round(2)
    theirs = paper[COLUMNS].copy()
    for table in (mine, theirs):  # rows named by one string (our (responder, system) pairs, the paper's (model, before|after))
        table.index = [" · ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in table.index]
    return pd.concat({label_ours: mine, label_paper: theirs}, names=["source", "row"])
