"""`pmlm headroom`: the per-patient headroom of a run's prompts, measured before any new RL.

For each of `patients` validation patients (never test), her s_0 is answered under a fixed set of candidate
edits with the refinement's decoding (deterministic answers): item-level ones (drop the prediction sentence,
drop all peers, drop peer j for each shown peer, drop the peers below a similarity, keep only the peers that
agree with the prediction), word-level ones from the run's trained policy where notebook 04 ran (the consensus
template of its refined test prompts), and random deletion of n words. `evaluation.headroom` turns the scores
into (a) the best single candidate, (b) the per-patient oracle and (c) a cross-fitted selector; (c) − (a) is the
headroom a deployable per-patient policy could reach with this responder.

The results go to `reports/<run>-headroom/` (headroom.json, headroom.md, the per-patient scores), never into the
run itself; the report of any run of the same profile quotes the newest, dated. Answers are cached: an
interrupted study resumes where it stopped, and a rerun costs no answer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pmlm_lib.common.atomic import write_json
from pmlm_lib.data.sampling import stratified_sample
from pmlm_lib.evaluation import headroom, personalization
from pmlm_lib.llm.responders import Decoding, make_responder
from pmlm_lib.method.refine.controls import random_deletion_prompts
from pmlm_lib.method.refine.items import PromptItems, items_for
from pmlm_lib.workbench.artifacts import RunReader
from pmlm_lib.workbench.inputs import RunInputs
from pmlm_lib.workbench.record import RunRecord

RESULT = "headroom.json"
PATIENTS = 100  # validation patients of a study unless told: the "at least 100", about 1,700 answers
KEPT = ("01", "02", "03")
DROP_PREDICTION, DROP_PEERS, AGREEING = "drop the prediction sentence", "drop all peers", "keep the agreeing peers"
CONSENSUS, RANDOM = "consensus template (the policy's)", "random deletion"


class HeadroomError(RuntimeError):
    """A run the headroom study cannot read."""


def folder_of(base: Path) -> Path:
    return base.parent / f"{base.name}-headroom"


def similarity_floor(inputs: RunInputs) -> float:
    """The median similarity of the shown peers of the training patients: 'drop the peers below it' reads no reply."""
    train = set(inputs.ids("train"))
    shown = inputs.peers[(inputs.peers["rank"] <= inputs.k) & inputs.peers["patient_id"].isin(train)]
    return float(shown["similarity"].median())


def candidate_items(items: PromptItems, floor: float) -> dict[str, PromptItems]:
    """The item-level candidates of one patient's s_0 (s_0 itself first)."""
    out = {headroom.S0: items, DROP_PREDICTION: items.without_prediction(), DROP_PEERS: items.drop_peers(range(1, 99))}
    out.update({f"drop peer {r}": items.drop_peers([r]) for r in range(1, len(items.peers) + 1)})
    out[f"drop the peers below {floor:.2f}"] = items.drop_peers(items.ranks_below(floor))
    out[AGREEING] = items.drop_peers(items.disagreeing_ranks())
    return out


def _features(pid: str, name: str, items: PromptItems, edited: PromptItems | None, confidence: float) -> dict:
    """What a deployed system knows about the patient and the candidate (no reference reply)."""
    sims = [s for _, s in items.peers] or [0.0]
    k = max(len(items.peers), 1)
    row = {
        "patient_id": pid,
        "candidate": name,
        "patient_confidence": confidence,
        "patient_agree_share": sum(items.agrees(r) for r in range(1, len(items.peers) + 1)) / k,
        "patient_top_similarity": sims[0],
        "patient_similarity_spread": sims[0] - sims[-1],
        "drops_prediction": 0.0,
        "drops_peers_share": 0.0,
        "drops_similarity": 0.0,
        "drops_disagreeing_share": 0.0,
        "edits_words": float(edited is None),
    }
    if edited is not None:
        dropped = [r for r, p in enumerate(items.peers, start=1) if p not in edited.peers]
        row["drops_prediction"] = float(items.prediction is not None and edited.prediction is None)
        row["drops_peers_share"] = len(dropped) / k
        if dropped:
            row["drops_similarity"] = float(np.mean([items.peers[r - 1][1] for r in dropped]) - np.mean(sims))
            row["drops_disagreeing_share"] = float(np.mean([not items.agrees(r) for r in dropped]))
    return row


def build_candidates(inputs: RunInputs, patient_ids: list[str], seed: int, n_steps: int) -> tuple[pd.DataFrame, dict]:
    """Long tables of the candidates' prompts and features, and what the candidates are."""
    items = items_for(inputs.predictions.loc[patient_ids, "predicted"], inputs.peers, inputs.k)
    floor = similarity_floor(inputs)
    confidence = inputs.predictions.loc[patient_ids, "confidence"].astype(float)
    rows, features = [], []
    for pid in patient_ids:
        built = items[pid].prompt()
        if built != inputs.coarse[pid]:
            raise HeadroomError(
                f"patient {pid}: s_0 rebuilt from the prediction and peers differs from notebook 03's coarse prompt; "
                "the run was made with another template: run notebook 03 again"
            )
        for name, edited in candidate_items(items[pid], floor).items():
            rows.append({"patient_id": pid, "candidate": name, "prompt": edited.prompt()})
            features.append(_features(pid, name, items[pid], edited, confidence[pid]))
    word_level = {RANDOM: pd.Series(random_deletion_prompts(inputs.coarse[patient_ids], n_steps, seed))}
    consensus = None
    if inputs.refined is not None:
        edits = personalization.profile(inputs.refined)
        consensus = personalization.consensus_template(edits["edit_set"], n_steps)
        protect = tuple(inputs.refinement.get("protect") or ())
        word_level[CONSENSUS] = pd.Series(
            {p: personalization.apply_edit_set(inputs.coarse[p], consensus, protect) for p in patient_ids}
        )
    for name, prompts in word_level.items():
        for pid in patient_ids:
            rows.append({"patient_id": pid, "candidate": name, "prompt": prompts[pid]})
            features.append(_features(pid, name, items[pid], None, confidence[pid]))
    about = {
        "similarity_floor": round(floor, 4),
        "consensus_template": personalization.describe(consensus) if consensus is not None else None,
        "random_deletion": {"n": n_steps, "seed": seed},
    }
    return pd.DataFrame(rows), pd.DataFrame(features), about


def planned_answers(k: int, patients: int, with_policy: bool) -> int:
    """Answers the study asks for: s_0, drop the prediction, drop all peers, drop each of k peers, the peers below
    the floor, the agreeing peers, random deletion, and the consensus template where a policy was trained."""
    return patients * (k + 6 + int(with_policy))


def plan_of(base: Path) -> tuple[int, bool]:
    """(k, whether a policy was trained) of a run, as `planned_answers` takes them."""
    record = _finished(base)
    return int(record.parameters_of("03_peer_retrieval").get("k", 10)), not record.missing(("04",))


def _finished(base: Path) -> RunRecord:
    record = RunRecord.read_if_any(base)
    if record is None or record.missing(KEPT):
        raise HeadroomError(f"{base} has no finished notebooks 01-03: give --run of a report that ran them")
    return record


def run_study(
    base: str | Path, patients: int = PATIENTS, seed: int | None = None, repeats: int = 20, console=sys.stderr
) -> Path:
    """The study on a run whose notebooks 01-03 finished (and 04, for the policy's candidates): its folder."""
    base = Path(base).resolve()
    record = _finished(base)
    has_policy = not record.missing(("04",))
    inputs = RunInputs.load(RunReader(base), refinement=has_policy)
    seed = int(record.seeds.get("04_rl_refinement") or 0) if seed is None else seed
    inputs.cohort.require_replies("the headroom study (answers are scored against the doctors' replies)")
    ids = stratified_sample(inputs.cohort, inputs.ids("validation", with_reply=True), patients, seed)
    refine = record.parameters_of("04_rl_refinement")
    n_steps = int(refine.get("n_steps", 10))
    decoding = (
        inputs.decoding
        if has_policy
        else Decoding(max_tokens=int(refine.get("answer_tokens", 96)), temperature=0.0, top_p=1.0, seed=seed)
    )
    prompts, features, about = build_candidates(inputs, ids, seed, n_steps)
    console.write(
        f"[pmlm] headroom on {base.name}: {len(ids)} validation patients × {prompts['candidate'].nunique()} candidates "
        f"= {len(prompts)} answers (cached ones are free)\n"
    )
    responder = (
        inputs.responder(None, int(refine.get("n_parallel", 8)))
        if has_policy
        else make_responder({"backend": "llamacpp", "n_parallel": int(refine.get("n_parallel", 8))})
    )
    try:
        answers = responder.answer(prompts["prompt"].tolist(), decoding, progress=True)
        stats = dict(responder.stats)
        identity = dict(responder.identity)
    finally:
        responder.close()
    # bert-score loads here, not when the report reads a result
    from pmlm_lib.method.refine.reward import BERTScoreReward

    scorer = BERTScoreReward(metric="f1", device="auto")
    replies = inputs.replies
    prompts["answer"] = answers
    prompts["BERTScore-F1"] = 100 * np.asarray(scorer(answers, replies[prompts["patient_id"]].tolist()), dtype=float)
    scores = prompts.pivot(index="patient_id", columns="candidate", values="BERTScore-F1").loc[ids]
    scores = scores[list(dict.fromkeys(prompts["candidate"]))]
    result = headroom.study_table(scores, features, repeats=repeats, seed=seed)
    return _write(base, record, result, prompts, about, decoding, identity, stats, seed, repeats)


def _write(base, record, result, prompts, about, decoding, identity, stats, seed, repeats) -> Path:
    out = folder_of(base)
    out.mkdir(exist_ok=True)
    prompts.to_parquet(out / "answers.parquet")
    result["per_candidate"].round(3).to_csv(out / "candidates.csv")
    result["per_patient"].round(3).to_csv(out / "per_patient.csv")
    summary = {
        "run": base.name,
        "profile": record.profile,
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}, {os.cpu_count()} cores",
        "patients": result["patients"],
        "candidates": result["candidates"],
        "answers": {"asked": len(prompts), "new": stats.get("answered"), "from_cache": stats.get("from_cache")},
        "responder": identity,
        "decoding": decoding.as_dict(),
        "seed": seed,
        "repeats": repeats,
        "best_single": result["best_single"],
        "table": result["table"],
        "headroom": result["headroom"],
        "sentence": headroom.sentence(result),
        **about,
    }
    write_json(out / RESULT, summary)
    (out / "headroom.md").write_text(markdown(summary, result["per_candidate"]), encoding="utf-8")
    return out


def _ci(pair) -> str:
    return f"[{pair[0]:+.1f}, {pair[1]:+.1f}]"


def markdown(summary: dict, per_candidate: pd.DataFrame) -> str:
    """The study's page: the headroom table, then the candidates."""
    against = headroom.BEST_SINGLE_CROSS
    lines = [
        f"# Per-patient headroom: run {summary['run']} (profile {summary['profile']}, {summary['date']})",
        "",
        summary["sentence"],
        "",
        f"{summary['patients']} validation patients, K = {summary['candidates']} candidates, "
        f"{summary['answers']['asked']} prompts answered ({summary['answers']['new']} answers generated: the rest from "
        f"the cache, or the same prompt as another candidate's); {summary['machine']}.",
        "",
        "| row | mean BERTScore-F1 | − s_0 [95% CI] | − (a) cross-fitted [95% CI] |",
        "|---|---|---|---|",
    ]
    for name, row in summary["table"].items():
        vs_s0 = f"{row['− s_0']:+.1f} {_ci(row['− s_0 CI'])}" if "− s_0" in row else ""
        vs_a = f"{row['− ' + against]:+.1f} {_ci(row['− ' + against + ' CI'])}" if "− " + against in row else ""
        label = f"{name}: {summary['best_single']}" if name == headroom.BEST_SINGLE else name
        lines.append(f"| {label} | {row['mean']:.1f} | {vs_s0} | {vs_a} |")
    lines += ["", "Candidates (mean over the patients, gain over s_0, and how often each is a patient's best):", ""]
    lines.append(per_candidate.round(2).to_markdown())
    return "\n".join(lines) + "\n"


def newest_for(profile: str, reports_dir: Path) -> dict | None:
    """The newest headroom study of runs of this profile beside `reports_dir`'s runs, or None."""
    found = []
    for path in Path(reports_dir).glob(f"*-headroom/{RESULT}"):
        summary = json.loads(path.read_text(encoding="utf-8"))
        if summary.get("profile") == profile:
            found.append((path.stat().st_mtime, summary))
    return max(found, key=lambda f: f[0])[1] if found else None
