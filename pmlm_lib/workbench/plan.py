"""`pmlm plan`: before a run, what it will ask of the LLMs and how long it will take here.

For each notebook of a profile: the LLM answers it will request (and how many an earlier run of the
same parameters left in the answer cache), the prompt and answer tokens, the minutes it should take on
this machine, and the cost of remote responders at the profile's prices per 1,000 tokens. The counts
follow from the parameters (the design of each notebook, written out below); the rates come from the
answer logs of earlier runs on this machine (`reports/*/logs/*.answers.jsonl`), so the estimate improves
as the machine is used. Tokens are counted with the bundled SmolLM2 tokenizer (another model's
tokenizer counts somewhat differently).

After a run, `actual(run_dir)` reads the same logs back: the report shows the plan beside what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pmlm_lib.common.weights import cache_dir, token_counter
from pmlm_lib.data.prompts import coarse_prompt
from pmlm_lib.evaluation import systems as ev
from pmlm_lib.llm.answer_log import read_answer_log
from pmlm_lib.llm.responders.base import AnswerCache
from pmlm_lib.workbench.handrun import notebook_defaults
from pmlm_lib.workbench.headroom import PATIENTS as HEADROOM_PATIENTS
from pmlm_lib.workbench.headroom import planned_answers
from pmlm_lib.workbench.profiles import (
    default_notebooks_dir,
    default_reports_dir,
    discover_notebooks,
    expand_responders,
    load_profile,
    parameters_for,
)
from pmlm_lib.workbench.record import RECORD_FILE, RunRecord

# Time outside answer generation per notebook (seconds), used only until this machine has a run of the
# profile to measure it from: measured on the 2-core development machine, default profile, 2026-11-23.
DEFAULT_OVERHEAD = {
    "01_data_filtering": 20,
    "02_predictor_study": 180,
    "03_peer_retrieval": 20,
    "04_rl_refinement": 60,
    "05_evaluation": 150,
    "06_figures": 30,
    "07_case_study": 15,
}
DEFAULT_TOKENS_PER_SECOND = 330.0  # llama.cpp, SmolLM2 Q8_0, 8 slots, 2 cores: until an answer log measures it here
BUNDLED = "bundled (llama.cpp)"


@dataclass
class Requests:
    """A group of answer requests of one notebook."""

    what: str
    answers: int
    prompt_tokens: int  # per answer
    answer_tokens: int  # per answer (the limit; answers may stop earlier)
    responder: str = BUNDLED
    local: bool = True  # computed on this machine by llama.cpp (counted in minutes), not by a remote endpoint
    # the same prompts were answered earlier in the run with another decoding: llama.cpp's prompt cache
    # holds them, so here only the answers are computed
    prompt_reused: bool = False

    @property
    def computed_tokens(self) -> int:
        """Tokens the local responder computes for these requests."""
        return self.answers * ((0 if self.prompt_reused else self.prompt_tokens) + self.answer_tokens)


@dataclass
class NotebookPlan:
    notebook: str
    requests: list[Requests] = field(default_factory=list)
    cached: int = 0
    minutes: float = 0.0
    cost: float = 0.0
    basis: str = ""


def _typical_prompts(count, k: int, raw_tokens: int) -> dict[str, int]:
    """Token counts of the prompts the notebooks send (chat template overhead included)."""

    peers = [("acute fetal distress (heart type)", 0.93 - 0.01 * i) for i in range(k)]
    template = 12  # the chat template's own tokens around a user turn
    return {
        "coarse": count(coarse_prompt("gestational hypertension", peers)) + template,
        "no_prediction": count(coarse_prompt(None, peers)) + template,
        "no_peers": count(coarse_prompt("gestational hypertension", [])) + template,
        "raw": raw_tokens + template,
    }


def _is_local(spec) -> bool:
    return spec in (None, "bundled") or (isinstance(spec, dict) and spec.get("backend") == "llamacpp")


def _refinement_requests(p: dict, tokens: dict) -> list[Requests]:
    """Notebook 04 (for one responder): s_0 and random deletion of the training pool, the RL episodes, the validation
    comparison."""
    out = _refinement_answers(p, tokens)
    who, local = p.get("responder_name") or BUNDLED, _is_local(p.get("responder"))
    for r in out:
        r.responder, r.local = who, local
    return out


def _refinement_answers(p: dict, tokens: dict) -> list[Requests]:
    coarse, refined = tokens["coarse"], tokens["refined"]
    pool = p.get("train_patients") or 1000
    per_epoch = min(p.get("patients_per_epoch") or pool, pool) * (p.get("group_size") or 1)
    out = [Requests("s_0 of the training pool", pool, coarse, p["answer_tokens"])]
    if p.get("random_control", True):
        out.append(Requests("random deletion of the pool (the control)", pool, refined, p["answer_tokens"]))
    out.append(Requests("RL episodes", p["epochs"] * per_epoch, refined, p["answer_tokens"]))
    restarts = p.get("restarts") or 1
    if restarts > 1:  # the first training judged; each training turned down costs its episodes and judging again
        judged = p.get("selection_patients") or 100
        out.append(
            Requests(
                f"validation: random deletion and the training judged (each training turned down: "
                f"{p['epochs'] * per_epoch + judged} answers more, up to {restarts - 1} times; not counted)",
                2 * judged,
                refined,
                p["answer_tokens"],
            )
        )
    modes = len(p.get("inference_modes") or [])
    if p.get("inference", "auto") == "auto" and modes:
        out.append(
            Requests(
                f"validation: {modes} inference modes, s_0, random deletion",
                (p.get("validation_patients") or 200) * (modes + 2),
                refined,
                p["answer_tokens"],
            )
        )
    return out


def _evaluation_requests(p: dict, tokens: dict) -> list[Requests]:
    """Notebook 05: every system of Tables 1 and 3 matched, the sampled seeds, the oracle, Table 2, extra rows."""
    coarse, refined, n = tokens["coarse"], tokens["refined"], tokens["n_steps"]
    n_eval, answer = p.get("eval_patients") or 300, p.get("answer_tokens_matched", 96)
    matched = {  # each system's prompt length
        ev.BEFORE: tokens["raw"],
        ev.PMLM: refined,
        ev.WITHOUT_SP: tokens["no_prediction"] - n,
        ev.WITHOUT_PP: tokens["no_peers"],
        ev.WITHOUT_PR: coarse,
        ev.RANDOM: refined,
        ev.CONSENSUS: refined,
        ev.SHUFFLED: refined,
    }
    out = [Requests(f"matched: {system}", n_eval, t, answer) for system, t in matched.items()]
    seeds = p.get("sampled_seeds") or []
    out += [
        Requests(
            f"sampled: {system} × {len(seeds)} seeds",
            n_eval * len(seeds),
            matched.get(system, coarse),
            p.get("sampled_answer_tokens", 64),
            prompt_reused=system in matched,
        )
        for system in (p.get("sampled_systems") or list(matched))
        if seeds
    ]
    if p.get("greedy_patients"):
        out.append(Requests("greedy-search oracle", p["greedy_patients"] * (p["greedy_budget"] + 1), coarse, answer))
    if p.get("finetune_patients") != 0 and p.get("finetune_eval_patients"):
        out.append(
            Requests("fine-tuned LM (Table 2)", p["finetune_eval_patients"], tokens["raw"], answer, "bundled + LoRA")
        )
    for name, spec in (p.get("responders") or {}).items():
        out.append(
            Requests(
                f"{name}: before and PMLM",
                2 * n_eval * (1 + len(seeds)),
                (tokens["raw"] + refined) // 2,
                answer,
                name,
                _is_local(spec),
            )
        )
    others = p.get("refinements") or []
    if others:  # each other refinement: before and its own PMLM in every setting, and every other refinement, matched
        out.append(Requests("the other refinements' PMLM prompts (transfer)", n_eval * len(others), refined, answer))
        for name in others:
            out.append(
                Requests(
                    f"{name}: before, its own PMLM and the {len(others)} other refinement(s)",
                    n_eval * (2 * (1 + len(seeds)) + len(others)),
                    (tokens["raw"] + refined) // 2,
                    answer,
                    name,
                )
            )
    return out


def _figure_requests(p: dict, tokens: dict) -> list[Requests]:
    """Notebook 06: the k and n sweeps (settings shared with 05 come from the cache)."""
    settings = len(p.get("k_grid", [])) + len(p.get("n_grid", []))
    n = tokens["n_steps"]
    shared = int(10 in p.get("k_grid", [])) + int(0 in p.get("n_grid", [])) + int(n in p.get("n_grid", []))
    return [
        Requests(
            "k and n sweeps (settings shared with 05 come from the cache)",
            p.get("sweep_patients", 8) * max(0, settings - shared),
            tokens["coarse"],
            p.get("answer_tokens_matched", 96),
        )
    ]


REQUESTS_BY_NOTEBOOK = {"04": _refinement_requests, "05": _evaluation_requests, "06": _figure_requests}


def requests_of(stem: str, p: dict, tokens: dict) -> list[Requests]:
    """The answer requests a notebook makes with parameters p (its design, written out); none for a notebook
    that asks no LLM."""
    n = p.get("n_steps", 10)
    counted = {**tokens, "n_steps": n, "refined": max(1, tokens["coarse"] - n)}  # a deleted word is about a token
    requests = REQUESTS_BY_NOTEBOOK.get(stem[:2])
    return requests(p, counted) if requests else []


def _answer_logs(reports_dir: Path) -> list[tuple[Path, RunRecord]]:
    """Earlier runs' records with their answer logs, newest first."""
    out = []
    for path in sorted(reports_dir.glob(f"*/{RECORD_FILE}"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            out.append((path.parent, RunRecord.read(path.parent)))
        except (OSError, ValueError, TypeError):  # unreadable or not a record: not a run to learn from
            continue
    return out


def measured_rate(reports_dir: Path) -> tuple[float | None, str]:
    """Tokens per second of wall time of the bundled responder on this machine: the median over the
    latest runs' answer logs (a run made while the machine was busy with something else does not set
    the plan), each counted as the plan counts them: the prompt tokens computed and each answer at its
    limit (answers that stop earlier make the rate higher, so that the plan's upper-limit token counts
    give the time they took)."""
    rates = []
    for run_dir, _ in _answer_logs(reports_dir)[:10]:
        tokens = seconds = 0.0
        for path in (run_dir / "logs").glob("*.answers.jsonl"):
            for row in read_answer_log(path):
                if row.get("backend") == "llama.cpp" and row.get("generated") and row.get("prompt_tokens"):
                    tokens += row["prompt_tokens"] + row["generated"] * row.get("max_tokens", 0)
                    seconds += row["wall_seconds"]
        if seconds >= 30:
            rates.append(tokens / seconds)
    if not rates:
        return None, f"no answers measured on this machine yet: assumed {DEFAULT_TOKENS_PER_SECOND:.0f} tokens/s"
    rate = float(np.median(rates))
    return rate, f"{rate:.0f} tokens/s: the median of {len(rates)} earlier run(s) here"


def actual(run_dir: Path) -> dict[str, dict]:
    """What each notebook of a run asked: answers requested, from the cache, generated, tokens, seconds."""
    out = {}
    for path in sorted((Path(run_dir) / "logs").glob("*.answers.jsonl")):
        rows = read_answer_log(path)
        out[path.name.split(".")[0]] = {
            k: sum(r[k] for r in rows)
            for k in ("requested", "from_cache", "generated", "prompt_tokens", "answer_tokens", "wall_seconds")
        }
    return out


def make_plan(
    profile: str, data: str | None = None, overrides: dict | None = None, reports_dir: Path | None = None
) -> dict:
    prof = load_profile(profile)
    reports_dir = Path(reports_dir or default_reports_dir())
    effective = {**(overrides or {})}
    if data is not None:
        effective.setdefault("01_data_filtering", {})["data_source"] = data
    notebooks = discover_notebooks(default_notebooks_dir())
    # one notebook-04 entry per responder of the profile ("04_rl_refinement@NAME"), as `pmlm report` runs them
    asked_full = expand_responders(
        {nb.stem: parameters_for(nb, prof, reports_dir / "plan", effective) for nb in notebooks}, prof.get("responders")
    )
    defaults = {nb.stem: notebook_defaults(nb) for nb in notebooks}
    params = {key: {**defaults[key.split("@")[0]], **p} for key, p in asked_full.items()}
    refine = params.get("04_rl_refinement", {})
    for stem in ("05_evaluation", "06_figures"):  # they answer with the refinement's decoding
        params.get(stem, {})["answer_tokens_matched"] = refine.get("answer_tokens", 96)
    tokens = _typical_prompts(
        token_counter(),
        params.get("03_peer_retrieval", {}).get("k", 10),
        params.get("05_evaluation", {}).get("raw_max_tokens", 512),
    )
    rate, basis = measured_rate(reports_dir)
    rate = rate or DEFAULT_TOKENS_PER_SECOND
    asked = {k: {n: v for n, v in ps.items() if n != "run_dir"} for k, ps in asked_full.items()}
    same = next(
        (
            d
            for d, r in _answer_logs(reports_dir)
            if r.status == "ok"
            and {k: {n: v for n, v in ps.items() if n != "run_dir"} for k, ps in r.parameters.items()} == asked
        ),
        None,
    )
    cached_keys = set()
    if same is not None:
        logged = {
            key
            for path in (same / "logs").glob("*.answers.jsonl")
            for row in read_answer_log(path)
            for key in row["keys"]
        }
        cached_keys = set(AnswerCache().get_many(sorted(logged)))
    prices = prof.get("prices") or {}
    plans = []
    main = params.get("04_rl_refinement", {}).get("responder_name") or BUNDLED  # 05 and 06 answer with 04's responder
    for key in params:
        plan = NotebookPlan(key, requests_of(key, params[key], tokens))
        for r in plan.requests:
            r.responder = main if r.responder == BUNDLED else r.responder
        if same is not None:
            rows = [row for path in (same / "logs").glob(f"{key}.answers.jsonl") for row in read_answer_log(path)]
            plan.cached = len({key for row in rows for key in row["keys"]} & cached_keys)
        total = sum(r.answers for r in plan.requests)
        share_new = 1 - min(1.0, plan.cached / total) if total else 0.0
        local = sum(r.computed_tokens for r in plan.requests if r.local)
        overhead, plan.basis = DEFAULT_OVERHEAD.get(key.split("@")[0], 15), "default overhead"
        for run_dir, record in _answer_logs(reports_dir):  # the newest run of this profile that measured this notebook
            done = {n["notebook"]: n for n in record.notebooks if n.get("status") == "ok"}
            logged = (run_dir / "logs" / f"{key}.answers.jsonl").exists()
            if record.profile == prof["name"] and key in done and (logged or not plan.requests):
                spent = actual(run_dir).get(key, {}).get("wall_seconds", 0.0)
                overhead, plan.basis = (
                    max(0.0, done[key]["wall_seconds"] - spent),
                    f"overhead of run {run_dir.name}",
                )
                break
        plan.minutes = (overhead + share_new * local / rate) / 60
        for r in plan.requests:
            price = prices.get(r.responder)
            if price:
                plan.cost += (
                    r.answers
                    * (
                        r.prompt_tokens * price.get("prompt_per_1k", 0)
                        + r.answer_tokens * price.get("answer_per_1k", 0)
                    )
                    / 1000
                )
        plans.append(plan)
    k, answer_tokens = params.get("03_peer_retrieval", {}).get("k", 10), refine.get("answer_tokens", 96)
    room = planned_answers(k, HEADROOM_PATIENTS, with_policy=True)
    studies = {
        f"pmlm headroom --patients {HEADROOM_PATIENTS}": {
            "answers": room,
            "minutes": room * (tokens["coarse"] + answer_tokens) / rate / 60,
        }
    }
    return {
        "profile": prof["name"],
        "studies": studies,
        "data": data or params.get("01_data_filtering", {}).get("data_source"),
        "rate": basis,
        "tokens_per_second": rate,
        "cache": str(cache_dir()),
        "same_parameters_run": same.name if same else None,
        "notebooks": plans,
    }


def format_plan(plan: dict) -> str:
    lines = [f"Plan of profile {plan['profile']} on data {plan['data']} ({plan['rate']}; answer cache {plan['cache']})"]
    if plan["same_parameters_run"]:
        lines.append(
            f"An earlier run with the same parameters ({plan['same_parameters_run']}) left answers in the cache."
        )
    lines += [
        "",
        f"{'notebook':<20} {'answers':>8} {'cached':>7} {'prompt tok':>11} {'answer tok':>11} {'minutes':>8} "
        f"{'cost':>8}",
    ]
    total_minutes = total_cost = 0.0
    for p in plan["notebooks"]:
        answers = sum(r.answers for r in p.requests)
        prompt = sum(r.answers * r.prompt_tokens for r in p.requests)
        answer = sum(r.answers * r.answer_tokens for r in p.requests)
        total_minutes += p.minutes
        total_cost += p.cost
        lines.append(
            f"{p.notebook:<20} {answers:>8} {p.cached:>7} {prompt:>11,} {answer:>11,} {p.minutes:>8.1f} "
            f"{f'${p.cost:.2f}' if p.cost else '-':>8}"
        )
        lines += [
            f"    {r.answers:>6} × {r.what} ({r.responder}, ~{r.prompt_tokens} + {r.answer_tokens} tokens)"
            for r in p.requests
        ]
    by_responder: dict[str, list[int]] = {}
    for r in (r for p in plan["notebooks"] for r in p.requests):
        counts = by_responder.setdefault(r.responder, [0, 0, 0, 0])
        counts[0] += r.answers
        counts[1] += r.answers * r.prompt_tokens
        counts[2] += r.answers * r.answer_tokens
        counts[3] += r.computed_tokens if r.local else 0
    if len(by_responder) > 1:
        rate = plan.get("tokens_per_second") or DEFAULT_TOKENS_PER_SECOND
        lines += ["", "Per responder (minutes: local answers at the bundled model's rate, none cached):"] + [
            f"    {name}: {a:,} answers, {pt:,} prompt + {at:,} answer tokens"
            + (f", ~{local / rate / 60:.1f} min" if local else ", remote")
            for name, (a, pt, at, local) in by_responder.items()
        ]
    lines += [
        "",
        f"Estimated: {total_minutes:.1f} minutes on this machine"
        + (f", ${total_cost:.2f} of API use" if total_cost else "")
        + ". Answer tokens are upper limits: answers that end earlier cost less.",
    ]
    if plan.get("studies"):
        lines += ["", "Studies of a finished run (not part of the report; answers not yet cached):"] + [
            f"    {name}: {s['answers']:,} answers, ~{s['minutes']:.0f} min" for name, s in plan["studies"].items()
        ]
    return "\n".join(lines)
