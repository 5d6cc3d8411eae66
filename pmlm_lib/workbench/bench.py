"""`pmlm bench`: the workbench's speed and memory, measured side by side in one run.

Writes reports/bench/bench.json and bench.md. Each figure is a ratio or a measurement taken in the
same run on the same machine (the machine is shared and noisy: compare within a run, not across):
- report: the profile's whole report from empty caches (a fresh cache folder: models converted,
  cohorts generated, predictors trained, answers generated), then again from those caches; wall
  time and peak memory per notebook, and the second run's speed-up;
- refinement: the share of the RL training time spent outside waiting for answers (embedding,
  policy, BERTScore, updates), from the first report run's notebook 04;
- responders: answers per second of the default responder (llama.cpp, the profile's slots) against
  llama.cpp's own decoding speed for the same model and threads, and 1 / 4 / 8 slots; the default
  Q8_0 re-encoding against the Q4_1 file as shipped (same slots);
- retrieval: seconds per query against pools of 10^3 to 10^6 patients;
- BERTScore: scored pairs per second against the encoder's raw forward speed on the same texts.
The targets of the default profile are checked and written beside the figures.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pmlm_lib.workbench.record import RunRecord

TARGETS = {
    "report_minutes": 20.0,
    "peak_memory_gib": 6.0,
    "refinement_share_outside_answers": 0.10,
    "second_run_speedup": 5.0,
}


def _timed_report(profile: str, run: str, reports_dir: Path) -> dict:
    from pmlm_lib.workbench.pipeline import run_report

    start = time.perf_counter()
    run_dir = run_report(profile=profile, run=run, reports_dir=reports_dir)
    wall = time.perf_counter() - start
    notebooks = [
        {"notebook": n["notebook"], "wall_seconds": n["wall_seconds"], "peak_memory_mb": n["peak_memory_mb"]}
        for n in RunRecord.read(run_dir).notebooks
    ]
    return {
        "run_dir": str(run_dir),
        "wall_seconds": round(wall, 1),
        "notebooks": notebooks,
        "peak_memory_mb": max(n["peak_memory_mb"] or 0 for n in notebooks),
    }


def report(profile: str, reports_dir: Path) -> dict:
    """The report from empty caches, then again from the caches it filled. The bench's own run
    folders are emptied first: a run folder keeps the RL checkpoint, and a resumed training is not a
    first run."""
    import shutil

    name = Path(profile).stem  # a profile file's name, not its path
    for run in (f"bench-{name}-first", f"bench-{name}-second"):
        shutil.rmtree(Path(reports_dir) / run, ignore_errors=True)
    previous = os.environ.get("PMLM_CACHE")
    with tempfile.TemporaryDirectory(prefix="pmlm-bench-cache-") as cold:
        os.environ["PMLM_CACHE"] = cold
        try:
            first = _timed_report(profile, f"bench-{name}-first", reports_dir)
            second = _timed_report(profile, f"bench-{name}-second", reports_dir)
        finally:
            if previous is None:
                os.environ.pop("PMLM_CACHE", None)
            else:
                os.environ["PMLM_CACHE"] = previous
    refinement = json.loads((Path(first["run_dir"]) / "results" / "rl_refinement.json").read_text()).get(
        "time_split", {}
    )
    return {
        "profile": profile,
        "first": first,
        "second": second,
        "second_run_speedup": round(first["wall_seconds"] / second["wall_seconds"], 2),
        "refinement_time_split": refinement,
    }


def workloads(patients: int = 24, eval_patients: int = 8, seed: int = 5) -> dict[str, list]:
    """The responder's two real workloads, built from a synthetic cohort: RL episodes (coarse prompts
    with n = 10 random deletions, in update batches of 8) and the evaluation's systems × patients (the
    raw-data prompt, s_0, two edited versions, without SP, without PP), each with its patient."""
    from pmlm_lib.common.weights import token_counter
    from pmlm_lib.data.prompts import coarse_prompt
    from pmlm_lib.data.serialize import raw_prompts
    from pmlm_lib.data.synthetic import generate
    from pmlm_lib.method.refine.controls import random_deletion

    cohort = generate(n_patients=patients + eval_patients, seed=seed)
    labels = cohort.by_patient("label")
    ids = list(labels.index)
    rng = np.random.default_rng(seed)

    def s0(pid, prediction=True, k=10):
        peers = [
            (labels[ids[int(j)]], round(0.95 - 0.01 * r, 2))
            for r, j in enumerate(rng.choice(len(ids), k, replace=False))
        ]
        return coarse_prompt(labels[pid] if prediction else None, peers)

    rl = [(random_deletion(s0(pid), 10, rng)[0], pid) for pid in ids[:patients]]
    held = ids[patients:]
    raw = raw_prompts(cohort, held, 512, token_counter())
    evaluation = []
    for pid in held:
        coarse = s0(pid)
        evaluation += [
            (raw[pid], pid),
            (coarse, pid),
            (random_deletion(coarse, 10, rng)[0], pid),
            (random_deletion(coarse, 10, rng)[0], pid),
            (s0(pid, prediction=False), pid),
            (s0(pid, k=0), pid),
        ]
    return {"rl": [rl[i : i + 8] for i in range(0, len(rl), 8)], "evaluation": [evaluation]}


def _measure(
    workload: list[list[tuple[str, str]]], decoding, grouped: bool = False, torch_between: bool = False, **options
) -> dict:
    """One responder configuration on one workload (a fresh server, no answer cache): answers per
    second, and tokens per second processed (prompt tokens computed + answer tokens) and served (the
    prompt tokens taken from llama.cpp's prompt cache counted too). `torch_between` scores each batch's
    answers with BERTScore before the next batch, as the RL training does (only answering is timed)."""
    from pmlm_lib.llm.responders.llamacpp import LlamaCppResponder

    scorer = None
    if torch_between:
        from pmlm_lib.method.refine.reward import BERTScoreReward

        scorer = BERTScoreReward()
    r = LlamaCppResponder(use_cache=False, **options)
    r.answer(["Hello."], decoding)  # load and warm up
    r.last_timings.clear()
    wall = 0.0
    for batch in workload:
        start = time.perf_counter()
        answers = r.answer([p for p, _ in batch], decoding, groups=[g for _, g in batch] if grouped else None)
        wall += time.perf_counter() - start
        if scorer is not None:
            scorer(answers, [p for p, _ in batch])
    t = r.last_timings
    computed = sum(x["prompt_n"] + x["predicted_n"] for x in t)
    cached = sum(x.get("cache_n", 0) for x in t)
    r.close()
    answers = sum(len(b) for b in workload)
    return {
        "answers": answers,
        "wall_seconds": round(wall, 1),
        "answers_per_second": round(answers / wall, 3),
        "tokens_computed_per_second": round(computed / wall, 1),
        "tokens_served_per_second": round((computed + cached) / wall, 1),
        "prompt_tokens_from_cache": cached,
        "prompt_tokens": sum(x["prompt_n"] for x in t) + cached,
        "answer_tokens": sum(x["predicted_n"] for x in t),
    }


def compute_limit(threads: int | None = None) -> dict:
    """llama.cpp's own prefill speed for one prompt as long as the workloads' (about 550 tokens, one slot)
    and its decoding speed for one sequence, on the same threads: what this CPU can do with this model."""
    from pmlm_lib.llm.responders import Decoding
    from pmlm_lib.llm.responders.llamacpp import LlamaCppResponder

    r = LlamaCppResponder(n_parallel=1, ctx_per_slot=4096, use_cache=False, threads=threads)
    text = " ".join(
        f"Examination {i}: haemoglobin 112 g/L, platelets 158, white cells 11.2, ALT 41 U/L." for i in range(14)
    )
    r.answer(["Hello."], Decoding(max_tokens=4))
    prefill = r.chat(text, Decoding(max_tokens=1))["timings"]
    decode = r.chat("Write a long letter to a pregnant patient about her diet.", Decoding(max_tokens=256))["timings"]
    r.close()
    return {
        "prefill_tokens": prefill["prompt_n"],
        "prefill_tokens_per_second": round(prefill["prompt_per_second"], 1),
        "decode_tokens_per_second": round(decode["predicted_per_second"], 1),
        "threads": r.threads,
    }


def responders(default_slots: int = 8, answer_tokens: int = 96) -> dict:
    """The responder at this machine's limit: llama.cpp's own prefill and decode speed, then the two
    real workloads under the default configuration and one change at a time: slots, llama.cpp's prompt
    cache (per request, and its host-memory copy of earlier prompts), one patient's prompts grouped on one
    slot, and the Q4_1 file as shipped against the Q8_0 re-encoding."""
    from pmlm_lib.llm.responders import Decoding

    limit = compute_limit()
    jobs = workloads()
    decoding = Decoding(max_tokens=answer_tokens, temperature=0.0)
    configurations = {
        "default (Q8_0, prompt cache on)": {"n_parallel": default_slots},
        "4 slots": {"n_parallel": 4},
        "prompt cache off": {"n_parallel": default_slots, "cache_prompt": False},
        "no host-memory prompt cache": {"n_parallel": default_slots, "cache_ram_mib": 0},
        "one patient's prompts grouped on one slot": {"n_parallel": default_slots, "grouped": True},
        "Q4_1 as shipped": {"n_parallel": default_slots, "model": "bundled-q4_1"},
        "server in the notebook's process": {"n_parallel": default_slots, "in_process": True},
        # last: once PyTorch has run with two threads in this process, an in-process server stays slow
        "BERTScore between batches (as notebook 04)": {"n_parallel": default_slots, "torch_between": True},
        "server in the notebook's process, BERTScore between batches": {
            "n_parallel": default_slots,
            "in_process": True,
            "torch_between": True,
        },
    }
    rows = []
    for name, options in configurations.items():
        for workload, batches in jobs.items():
            if options.get("grouped") and workload == "rl":
                continue  # an RL batch holds one prompt per patient: nothing to group
            if options.get("torch_between") and workload != "rl":
                continue  # only the RL alternates answering and PyTorch work
            row = _measure(batches, decoding, **options)
            row.update(
                {
                    "configuration": name,
                    "workload": workload,
                    "vs_prefill_limit": round(
                        row["tokens_computed_per_second"] / limit["prefill_tokens_per_second"], 3
                    ),
                }
            )
            rows.append(row)
            print(f"[bench] {name}, {workload}: {row['answers_per_second']} answers/s", flush=True)
    default = {r["workload"]: r for r in rows if r["configuration"].startswith("default")}
    effects = {
        f"{r['configuration']} · {r['workload']}": round(
            r["answers_per_second"] / default[r["workload"]]["answers_per_second"], 3
        )
        for r in rows
        if not r["configuration"].startswith("default")
    }
    return {
        "limit": limit,
        "runs": rows,
        "effect_vs_default": effects,
        "default_slots": default_slots,
        "answer_tokens": answer_tokens,
    }


def devices(
    device: str = "auto", prompts: int = 16, pairs: int = 64, lora_examples: int = 8, answer_tokens: int = 64
) -> dict:
    """What a GPU user runs, measured on one device ("auto": CUDA when present): the transformers responder
    (the bundled SmolLM2, converted) answering coarse prompts in batches of 8, BERTScore, the word
    embeddings of prompt states, and LoRA training steps of the bundled LM (as the LM predictor and the
    reply model train). `pmlm bench --parts devices` measures CUDA beside the CPU when a GPU is present."""
    import torch

    from pmlm_lib.common.weights import device as pick_device
    from pmlm_lib.data.prompts import coarse_prompt, segment
    from pmlm_lib.data.synthetic import generate
    from pmlm_lib.llm.lora import add_lora, example, load_causal_lm, train_lora
    from pmlm_lib.llm.responders import Decoding
    from pmlm_lib.llm.responders.local import TransformersResponder
    from pmlm_lib.method.refine.embedding import WordEmbedder
    from pmlm_lib.method.refine.reward import BERTScoreReward

    device = pick_device(device)
    cohort = generate(n_patients=max(pairs, prompts, lora_examples), seed=2)
    replies = cohort.patients["reference_reply"].tolist()
    labels = cohort.patients["label"].tolist()
    batch = [
        coarse_prompt(labels[i], [(labels[(i + j) % len(labels)], 0.9 - 0.01 * j) for j in range(10)])
        for i in range(prompts)
    ]
    out = {"device": device, "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}

    responder = TransformersResponder(batch_size=8, device=device, use_cache=False)
    responder.answer(batch[:1], Decoding(max_tokens=4))
    start = time.perf_counter()
    responder.answer(batch, Decoding(max_tokens=answer_tokens))
    out["transformers_answers_per_second"] = round(prompts / (time.perf_counter() - start), 3)
    responder.close()

    reward = BERTScoreReward(device=device)
    answers = [r[: len(r) // 2] for r in replies[1:pairs] + replies[:1]]
    reward.all_scores(answers[:2], replies[:2])
    start = time.perf_counter()
    reward.all_scores(answers[:pairs], replies[:pairs])
    out["bertscore_pairs_per_second"] = round(pairs / (time.perf_counter() - start), 1)

    embedder = WordEmbedder(device=device)
    states = [segment(p) for p in batch]
    embedder.embed(states[:1])
    start = time.perf_counter()
    embedder.embed([s[: len(s) - k] for s in states for k in (1, 2)])  # new states: nothing remembered
    out["embedding_states_per_second"] = round(2 * prompts / (time.perf_counter() - start), 1)

    model, tokenizer = load_causal_lm("bundled", device)
    model = add_lora(model)
    examples = [
        example(tokenizer, tokenizer(p, add_special_tokens=False)["input_ids"][:256], r[:300])
        for p, r in zip(batch[:lora_examples], replies[:lora_examples])
    ]
    # one step first: on a GPU the first step pays for kernel loading and allocations (10 s on an H100)
    train_lora(model, tokenizer.pad_token_id, examples[:4], epochs=1, batch_size=4, lr=1e-3, seed=0, device=device)
    start = time.perf_counter()
    log = train_lora(model, tokenizer.pad_token_id, examples, epochs=1, batch_size=4, lr=1e-3, seed=0, device=device)
    out["lora_steps_per_second"] = round(len(log) / (time.perf_counter() - start), 3)
    out["lora_examples_per_second"] = round(len(examples) / (time.perf_counter() - start), 3)
    return out


def devices_side_by_side() -> dict:
    """CUDA and the CPU on the same work (for the README's GPU section); an error without a GPU."""
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            "no CUDA device here: `pmlm bench --parts devices` measures a GPU beside the CPU; on this machine "
            "every model already runs on the CPU (see the responders and report parts)"
        )
    return {"cuda": devices("cuda", prompts=64, pairs=256, lora_examples=64), "cpu": devices("cpu")}


def retrieval(sizes=(1_000, 10_000, 100_000, 1_000_000), dim: int = 128, k: int = 10, repeats: int = 3) -> list[dict]:
    from pmlm_lib.method.retrieval import top_k

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        pool = rng.normal(size=(n, dim)).astype(np.float32)
        query = rng.normal(size=(1, dim)).astype(np.float32)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            top_k(query, pool, k)
            times.append(time.perf_counter() - start)
        rows.append({"pool": n, "seconds_per_query": round(float(np.median(times)), 5)})
    return rows


def bertscore(pairs: int = 64) -> dict:
    """BERTScore pairs per second against the raw encoder forward on the same texts (both batched
    32 at a time): the share of time bert-score spends beyond the encoder."""
    import torch

    from pmlm_lib.data.synthetic import generate
    from pmlm_lib.method.refine.reward import BERTScoreReward

    cohort = generate(n_patients=pairs, seed=1)
    replies = cohort.patients["reference_reply"].tolist()[:pairs]
    answers = [r[: len(r) // 2] for r in replies[1:] + replies[:1]]  # other patients' half replies: realistic lengths
    reward = BERTScoreReward(batch_size=32)
    reward.all_scores(answers[:2], replies[:2])  # warm up
    start = time.perf_counter()
    reward.all_scores(answers, replies)
    scored = time.perf_counter() - start
    model, tokenizer = reward.scorer._model, reward.scorer._tokenizer
    texts = answers + replies
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            enc = tokenizer(texts[i : i + 32], return_tensors="pt", padding=True, truncation=True, max_length=510)
            model(**enc)
    forward = time.perf_counter() - start
    return {
        "pairs": pairs,
        "bertscore_pairs_per_second": round(pairs / scored, 1),
        "encoder_forward_pairs_per_second": round(pairs / forward, 1),
        "bertscore_vs_forward": round(forward / scored, 3),
    }


def targets(result: dict) -> list[dict]:
    rows = []
    rep = result.get("report")
    if rep:
        rows.append(
            {
                "target": "whole report (first run) under 20 minutes",
                "value": f"{rep['first']['wall_seconds'] / 60:.1f} min",
                "met": rep["first"]["wall_seconds"] / 60 < TARGETS["report_minutes"],
            }
        )
        peak = max(rep["first"]["peak_memory_mb"], rep["second"]["peak_memory_mb"]) / 1024
        rows.append(
            {"target": "peak memory under 6 GiB", "value": f"{peak:.2f} GiB", "met": peak < TARGETS["peak_memory_gib"]}
        )
        share = rep["refinement_time_split"].get("share_outside_answers")
        if share is not None:
            rows.append(
                {
                    "target": "refinement under 10% of its time outside answer generation",
                    "value": f"{100 * share:.1f}%",
                    "met": share < TARGETS["refinement_share_outside_answers"],
                }
            )
        rows.append(
            {
                "target": "second run at least 5x faster",
                "value": f"{rep['second_run_speedup']:.1f}x",
                "met": rep["second_run_speedup"] >= TARGETS["second_run_speedup"],
            }
        )
    return rows


def _when(result: dict, part: str) -> str:
    when = result.get("measured", {}).get(part)
    return f" — measured {when}" if when else ""


def markdown(result: dict) -> str:
    lines = [
        f"# pmlm bench ({result['machine']['cpus']} CPUs, {result['machine']['memory_gib']} GiB, {result['started']})",
        "",
    ]
    if result.get("targets"):
        lines += ["| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} |" for t in result["targets"]] + [""]
    rep = result.get("report")
    if rep:
        lines += [
            f"## Report ({rep['profile']} profile){_when(result, 'report')}",
            "",
            "| notebook | first run s | peak MB | second run s | peak MB |",
            "|---|---:|---:|---:|---:|",
        ]
        for a, b in zip(rep["first"]["notebooks"], rep["second"]["notebooks"]):
            lines.append(
                f"| {a['notebook']} | {a['wall_seconds']:.1f} | {a['peak_memory_mb']:.0f} | {b['wall_seconds']:.1f} | "
                f"{b['peak_memory_mb']:.0f} |"
            )
        lines += [
            f"| **whole report** | **{rep['first']['wall_seconds']:.1f}** | | **{rep['second']['wall_seconds']:.1f}** "
            "| |",
            "",
            f"Second run speed-up: {rep['second_run_speedup']}x. Refinement time split (seconds): "
            + ", ".join(f"{k} {v}" for k, v in rep["refinement_time_split"].items()),
            "",
        ]
    if result.get("responders"):
        r = result["responders"]
        lim = r["limit"]
        lines += [
            f"## Responder (llama.cpp, bundled SmolLM2, {r['answer_tokens']}-token deterministic answers, no answer "
            f"cache){_when(result, 'responders')}",
            "",
            f"This CPU's limit for this model ({lim['threads']} threads): llama.cpp prefills one "
            f"{lim['prefill_tokens']}-token "
            f"prompt at {lim['prefill_tokens_per_second']} tokens/s and decodes one sequence at "
            f"{lim['decode_tokens_per_second']} "
            "tokens/s.",
            "",
            "| configuration | workload | answers | answers/s | tokens computed/s | share of the prefill limit | "
            "prompt tokens from cache | effect vs default |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for x in r["runs"]:
            effect = r["effect_vs_default"].get(f"{x['configuration']} · {x['workload']}", 1.0)
            lines.append(
                f"| {x['configuration']} | {x['workload']} | {x['answers']} | {x['answers_per_second']} | "
                f"{x['tokens_computed_per_second']} | {x['vs_prefill_limit']} | {x['prompt_tokens_from_cache']} of "
                f"{x['prompt_tokens']} | {effect}x |"
            )
        lines.append("")
    if result.get("retrieval"):
        lines += [
            f"## Retrieval (cosine top-10, 128 dimensions){_when(result, 'retrieval')}",
            "",
            "| pool patients | seconds per query |",
            "|---:|---:|",
        ]
        lines += [f"| {x['pool']:,} | {x['seconds_per_query']} |" for x in result["retrieval"]] + [""]
    if result.get("devices"):
        d = result["devices"]
        lines += [
            f"## Devices (the same work on a GPU and on the CPU){_when(result, 'devices')}",
            "",
            "| figure | cuda | cpu |",
            "|---|---:|---:|",
        ]
        for key in (
            "transformers_answers_per_second",
            "bertscore_pairs_per_second",
            "embedding_states_per_second",
            "lora_steps_per_second",
            "lora_examples_per_second",
        ):
            lines.append(f"| {key.replace('_', ' ')} | {d['cuda'][key]} | {d['cpu'][key]} |")
        lines += ["", f"GPU: {d['cuda']['gpu']}", ""]
    if result.get("bertscore"):
        b = result["bertscore"]
        lines += [
            f"## BERTScore{_when(result, 'bertscore')}",
            "",
            f"{b['bertscore_pairs_per_second']} pairs/s against {b['encoder_forward_pairs_per_second']} pairs/s "
            f"for the encoder's forward pass alone on the same texts (ratio {b['bertscore_vs_forward']}).",
            "",
        ]
    return "\n".join(lines)


def _earlier_parts(path: Path, machine: dict, parts) -> dict[str, tuple]:
    """The parts of an earlier bench.json measured on a machine like this one (CPUs and memory): part ->
    (figures, when measured). Figures from another machine are never shown beside this one's."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if earlier.get("machine") != machine:
        return {}
    when = earlier.get("measured", {})
    return {p: (earlier[p], when.get(p, earlier.get("started"))) for p in parts if p in earlier}


def run_bench(
    parts: list[str], profile: str = "default", out_dir: Path | None = None, reports_dir: Path | None = None
) -> Path:
    import datetime as dt

    import psutil

    from pmlm_lib.workbench.profiles import default_reports_dir, load_profile

    reports_dir = Path(reports_dir or default_reports_dir())
    out = Path(out_dir or reports_dir / "bench")
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
    }
    slots = load_profile(profile)["parameters"].get("common", {}).get("n_parallel", 4)
    steps = {
        "responders": lambda: responders(default_slots=slots),
        "retrieval": retrieval,
        "bertscore": bertscore,
        "report": lambda: report(profile, reports_dir),
        "devices": devices_side_by_side,
    }
    # parts measured earlier on this machine and not measured again now stay, each with its own date:
    # `--parts report` after a whole bench updates the report and keeps the responder figures
    result["measured"] = {}
    for part, (value, when) in _earlier_parts(out / "bench.json", result["machine"], steps).items():
        if part not in parts:
            result[part], result["measured"][part] = value, when
    for part in parts:
        if part not in steps:
            raise ValueError(f"unknown bench part {part!r}: choose from {', '.join(steps)}")
        print(f"[bench] {part} ...", flush=True)
        result["measured"][part] = dt.datetime.now().isoformat(timespec="seconds")
        result[part] = steps[part]()
        result["targets"] = targets(result)
        (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")  # each part kept as soon as it is measured
        (out / "bench.md").write_text(markdown(result))
    print(markdown(result))
    return out
