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

TARGETS = {"report_minutes": 20.0, "peak_memory_gib": 6.0, "refinement_share_outside_answers": 0.10, "second_run_speedup": 5.0}


def _timed_report(profile: str, run: str, reports_dir: Path) -> dict:
    from .pipeline import run_report

    start = time.perf_counter()
    run_dir = run_report(profile=profile, run=run, reports_dir=reports_dir)
    wall = time.perf_counter() - start
    record = json.loads((run_dir / "run.json").read_text())
    notebooks = [{"notebook": n["notebook"], "wall_seconds": n["wall_seconds"], "peak_memory_mb": n["peak_memory_mb"]}
                 for n in record["notebooks"]]
    return {"run_dir": str(run_dir), "wall_seconds": round(wall, 1), "notebooks": notebooks,
            "peak_memory_mb": max(n["peak_memory_mb"] or 0 for n in notebooks)}


def report(profile: str, reports_dir: Path) -> dict:
    """The report from empty caches, then again from the caches it filled. The bench's own run
    folders are emptied first: a run folder keeps the RL checkpoint, and a resumed training is not a
    first run."""
    import shutil

    for run in (f"bench-{profile}-first", f"bench-{profile}-second"):
        shutil.rmtree(Path(reports_dir) / run, ignore_errors=True)
    previous = os.environ.get("PMLM_CACHE")
    with tempfile.TemporaryDirectory(prefix="pmlm-bench-cache-") as cold:
        os.environ["PMLM_CACHE"] = cold
        try:
            first = _timed_report(profile, f"bench-{profile}-first", reports_dir)
            second = _timed_report(profile, f"bench-{profile}-second", reports_dir)
        finally:
            if previous is None:
                os.environ.pop("PMLM_CACHE", None)
            else:
                os.environ["PMLM_CACHE"] = previous
    refinement = json.loads((Path(first["run_dir"]) / "results" / "rl_refinement.json").read_text()).get("time_split", {})
    return {"profile": profile, "first": first, "second": second,
            "second_run_speedup": round(first["wall_seconds"] / second["wall_seconds"], 2), "refinement_time_split": refinement}


def responders(n: int = 16, slots=(1, 4, 8), answer_tokens: int = 96, default_slots: int = 8) -> dict:
    """Answers per second with 1, 4 and 8 slots on the same coarse prompts (no cache), against
    llama.cpp's own prompt+decode time and its decode-only speed; then the Q4_1 file as shipped
    with the default slots, against the default Q8_0 re-encoding."""
    slots = tuple(sorted({*slots, default_slots}))
    from .prompts import coarse_prompt
    from .responders import Decoding
    from .responders.llamacpp import LlamaCppResponder

    labels = ["normal", "gestational diabetes", "thalassemia", "gestational hypertension", "premature rupture of membranes",
              "hypothyroidism", "uterine scar", "placental dysfunction"]
    batch = [coarse_prompt(labels[i % 8], [(labels[(i + j) % 8], 0.9 - 0.02 * j) for j in range(10)]) + f"\n(Case {i}.)" for i in range(n)]
    decoding = Decoding(max_tokens=answer_tokens)
    def measure(model: str, n_parallel: int) -> dict:
        r = LlamaCppResponder(model=model, n_parallel=n_parallel, use_cache=False)
        r.answer(batch[:1], decoding)  # load and warm up
        r.last_timings.clear()
        start = time.perf_counter()
        r.answer(batch, decoding)
        wall = time.perf_counter() - start
        t = r.last_timings
        tokens = sum(x["predicted_n"] for x in t)
        own = sum((x["prompt_ms"] + x["predicted_ms"]) / 1000 for x in t)
        r.close()
        return {"model": r.model_path.name, "n_parallel": n_parallel, "threads": r.threads, "answers": n, "wall_seconds": round(wall, 2),
                "answers_per_second": round(n / wall, 3), "tokens_per_second": round(tokens / wall, 1),
                "llamacpp_own_tokens_per_second": round(tokens / own, 1),
                "llamacpp_decode_only_tokens_per_second": round(float(np.mean([x["predicted_per_second"] for x in t])), 1)}

    rows = [measure("bundled", k) for k in slots]
    shipped = measure("bundled-q4_1", default_slots)
    by = {row["n_parallel"]: row for row in rows}
    sequential = by[slots[0]]
    return {"runs": rows + [shipped],
            "default_slots": default_slots,
            "q8_0_vs_shipped_q4_1": round(by[default_slots]["answers_per_second"] / shipped["answers_per_second"], 3),
            "wrapper_vs_llamacpp_own_speed_sequential": round(sequential["tokens_per_second"] / sequential["llamacpp_own_tokens_per_second"], 3),
            "default_answers_per_second": by[default_slots]["answers_per_second"],
            "default_tokens_per_second_vs_llamacpp_decode_only_sequential":
                round(by[default_slots]["tokens_per_second"] / sequential["llamacpp_decode_only_tokens_per_second"], 3),
            "slots_speedup": {str(k): round(v["answers_per_second"] / sequential["answers_per_second"], 2) for k, v in by.items()}}


def retrieval(sizes=(1_000, 10_000, 100_000, 1_000_000), dim: int = 128, k: int = 10, repeats: int = 3) -> list[dict]:
    from .retrieval import top_k

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

    from .reward import BERTScoreReward
    from .synthetic import generate

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
            enc = tokenizer(texts[i:i + 32], return_tensors="pt", padding=True, truncation=True, max_length=510)
            model(**enc)
    forward = time.perf_counter() - start
    return {"pairs": pairs, "bertscore_pairs_per_second": round(pairs / scored, 1),
            "encoder_forward_pairs_per_second": round(pairs / forward, 1), "bertscore_vs_forward": round(forward / scored, 3)}


def targets(result: dict) -> list[dict]:
    rows = []
    rep = result.get("report")
    if rep:
        rows.append({"target": "whole report (first run) under 20 minutes", "value": f"{rep['first']['wall_seconds'] / 60:.1f} min",
                     "met": rep["first"]["wall_seconds"] / 60 < TARGETS["report_minutes"]})
        peak = max(rep["first"]["peak_memory_mb"], rep["second"]["peak_memory_mb"]) / 1024
        rows.append({"target": "peak memory under 6 GiB", "value": f"{peak:.2f} GiB", "met": peak < TARGETS["peak_memory_gib"]})
        share = rep["refinement_time_split"].get("share_outside_answers")
        if share is not None:
            rows.append({"target": "refinement under 10% of its time outside answer generation", "value": f"{100 * share:.1f}%",
                         "met": share < TARGETS["refinement_share_outside_answers"]})
        rows.append({"target": "second run at least 5x faster", "value": f"{rep['second_run_speedup']:.1f}x",
                     "met": rep["second_run_speedup"] >= TARGETS["second_run_speedup"]})
    return rows


def markdown(result: dict) -> str:
    lines = [f"# pmlm bench ({result['machine']['cpus']} CPUs, {result['machine']['memory_gib']} GiB, {result['started']})", ""]
    if result.get("targets"):
        lines += ["| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} |" for t in result["targets"]] + [""]
    rep = result.get("report")
    if rep:
        lines += [f"## Report ({rep['profile']} profile)", "", "| notebook | first run s | peak MB | second run s | peak MB |",
                  "|---|---:|---:|---:|---:|"]
        for a, b in zip(rep["first"]["notebooks"], rep["second"]["notebooks"]):
            lines.append(f"| {a['notebook']} | {a['wall_seconds']:.1f} | {a['peak_memory_mb']:.0f} | {b['wall_seconds']:.1f} | {b['peak_memory_mb']:.0f} |")
        lines += [f"| **whole report** | **{rep['first']['wall_seconds']:.1f}** | | **{rep['second']['wall_seconds']:.1f}** | |", "",
                  f"Second run speed-up: {rep['second_run_speedup']}x. Refinement time split (seconds): "
                  + ", ".join(f"{k} {v}" for k, v in rep["refinement_time_split"].items()), ""]
    if result.get("responders"):
        r = result["responders"]
        lines += ["## Responders (llama.cpp, bundled SmolLM2, 96-token greedy answers, no cache)", "",
                  "| model | slots | answers/s | tokens/s | llama.cpp own tokens/s | llama.cpp decode-only tokens/s |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {x.get('model', '')} | {x['n_parallel']} | {x['answers_per_second']} | {x['tokens_per_second']} | {x['llamacpp_own_tokens_per_second']} | "
                  f"{x['llamacpp_decode_only_tokens_per_second']} |" for x in r["runs"]]
        lines += ["", f"Wrapper against llama.cpp's own speed (1 slot): {r['wrapper_vs_llamacpp_own_speed_sequential']}; "
                  f"default ({r['default_slots']} slots) tokens/s against llama.cpp's sequential decode-only speed: "
                  f"{r['default_tokens_per_second_vs_llamacpp_decode_only_sequential']}; slots speed-up: {r['slots_speedup']}; "
                  f"Q8_0 (default) against the shipped Q4_1, {r['default_slots']} slots: {r['q8_0_vs_shipped_q4_1']}x", ""]
    if result.get("retrieval"):
        lines += ["## Retrieval (cosine top-10, 128 dimensions)", "", "| pool patients | seconds per query |", "|---:|---:|"]
        lines += [f"| {x['pool']:,} | {x['seconds_per_query']} |" for x in result["retrieval"]] + [""]
    if result.get("bertscore"):
        b = result["bertscore"]
        lines += ["## BERTScore", "", f"{b['bertscore_pairs_per_second']} pairs/s against {b['encoder_forward_pairs_per_second']} pairs/s "
                  f"for the encoder's forward pass alone on the same texts (ratio {b['bertscore_vs_forward']}).", ""]
    return "\n".join(lines)


def run_bench(parts: list[str], profile: str = "default", out_dir: Path | None = None, reports_dir: Path | None = None) -> Path:
    import datetime as dt

    import psutil

    from .pipeline import default_reports_dir, load_profile

    reports_dir = Path(reports_dir or default_reports_dir())
    out = Path(out_dir or reports_dir / "bench")
    out.mkdir(parents=True, exist_ok=True)
    result = {"started": dt.datetime.now().isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}}
    slots = load_profile(profile)["parameters"].get("common", {}).get("n_parallel", 4)
    steps = {"responders": lambda: responders(default_slots=slots), "retrieval": retrieval, "bertscore": bertscore,
             "report": lambda: report(profile, reports_dir)}
    for part in parts:
        if part not in steps:
            raise ValueError(f"unknown bench part {part!r}: choose from {', '.join(steps)}")
        print(f"[bench] {part} ...", flush=True)
        result[part] = steps[part]()
        result["targets"] = targets(result)
        (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")  # each part kept as soon as it is measured
        (out / "bench.md").write_text(markdown(result))
    print(markdown(result))
    return out
