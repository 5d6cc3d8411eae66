"""Benchmark: responder speed on the same prompts (writes reports/bench/responders.json and .md).

- llama.cpp backend (bundled SmolLM2 Q4_1), one slot: our wall time per answer against llama.cpp's
  own time for the same work (its prompt + decode timings), i.e. the wrapper's overhead;
- answers per second with 1, 4 and 8 parallel slots (continuous batching), same prompts;
- the transformers backend on the same model (converted), batched, for comparison.
No cache is used: every answer is generated. Run: .venv/bin/python benchmarks/responders.py
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pmlm_lib.prompts import coarse_prompt  # noqa: E402
from pmlm_lib.responders import Decoding  # noqa: E402
from pmlm_lib.responders.llamacpp import LlamaCppResponder  # noqa: E402

LABELS = ["normal", "gestational diabetes", "thalassemia", "gestational hypertension", "premature rupture of membranes",
          "hypothyroidism", "uterine scar", "placental dysfunction"]


def prompts(n: int) -> list[str]:
    return [coarse_prompt(LABELS[i % len(LABELS)], [(LABELS[(i + j) % len(LABELS)], 0.9 - 0.02 * j) for j in range(10)])
            + f"\n(Case {i}.)" for i in range(n)]


def llamacpp_run(n_parallel: int, batch: list[str], decoding: Decoding) -> dict:
    r = LlamaCppResponder(n_parallel=n_parallel, use_cache=False, threads=os.cpu_count())
    r.answer(batch[:1], decoding)  # load and warm up
    r.last_timings.clear()
    start = time.perf_counter()
    r.answer(batch, decoding)
    wall = time.perf_counter() - start
    t = r.last_timings
    tokens = sum(x["predicted_n"] for x in t)
    own_seconds = sum((x["prompt_ms"] + x["predicted_ms"]) / 1000 for x in t)
    r.close()
    return {"backend": "llama.cpp", "n_parallel": n_parallel, "answers": len(batch), "wall_seconds": round(wall, 2),
            "answers_per_second": round(len(batch) / wall, 3), "generated_tokens": tokens,
            "tokens_per_second": round(tokens / wall, 1),
            "llamacpp_own_tokens_per_second": round(tokens / own_seconds, 1) if n_parallel == 1 else None,
            "llamacpp_decode_only_tokens_per_second": round(sum(x["predicted_per_second"] for x in t) / len(t), 1)}


def transformers_run(batch: list[str], decoding: Decoding) -> dict:
    from pmlm_lib.responders.local import TransformersResponder

    r = TransformersResponder(batch_size=8, use_cache=False)
    r.answer(batch[:1], Decoding(max_tokens=4))
    start = time.perf_counter()
    answers = r.answer(batch, decoding)
    wall = time.perf_counter() - start
    _, tok = r._load()
    tokens = sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return {"backend": "transformers", "n_parallel": 8, "answers": len(batch), "wall_seconds": round(wall, 2),
            "answers_per_second": round(len(batch) / wall, 3), "generated_tokens": tokens, "tokens_per_second": round(tokens / wall, 1)}


def main(out_dir: str = "reports/bench", n: int = 16) -> list[dict]:
    decoding = Decoding(max_tokens=96)
    batch = prompts(n)
    rows = [llamacpp_run(p, batch, decoding) for p in (1, 4, 8)]
    rows.append(transformers_run(batch[:8], decoding))
    seq = rows[0]
    summary = {"wrapper_vs_llamacpp_own_speed": round(seq["tokens_per_second"] / seq["llamacpp_own_tokens_per_second"], 3),
               "parallel4_vs_sequential_answers_per_second": round(rows[1]["answers_per_second"] / seq["answers_per_second"], 2),
               "parallel8_vs_sequential_answers_per_second": round(rows[2]["answers_per_second"] / seq["answers_per_second"], 2),
               "llamacpp_vs_transformers_tokens_per_second": round(seq["tokens_per_second"] / rows[3]["tokens_per_second"], 2),
               "cpus": os.cpu_count()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "responders.json").write_text(json.dumps({"runs": rows, "summary": summary}, indent=2) + "\n")
    cols = ["backend", "n_parallel", "answers", "wall_seconds", "answers_per_second", "generated_tokens", "tokens_per_second",
            "llamacpp_own_tokens_per_second", "llamacpp_decode_only_tokens_per_second"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    text = "Responder speed, 96-token greedy answers to coarse prompts\n\n" + "\n".join(lines) + "\n\n" + \
        "\n".join(f"- {k}: {v}" for k, v in summary.items()) + "\n"
    (out / "responders.md").write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main(*sys.argv[1:])
