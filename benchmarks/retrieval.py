"""Benchmark: cosine top-k retrieval (Eq. 4) against pools of 10^3 to 10^6 patients.

Writes reports/bench/retrieval.json and .md: seconds to search a batch of queries, per pool size,
with 128-dimensional vectors (the encoder's output). Run: .venv/bin/python benchmarks/retrieval.py
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pmlm_lib.retrieval import top_k  # noqa: E402


def measure(pool_size: int, queries: int, dim: int = 128, k: int = 10, repeats: int = 3) -> dict:
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(pool_size, dim)).astype(np.float32)
    q = rng.normal(size=(queries, dim)).astype(np.float32)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        top_k(q, pool, k)
        times.append(time.perf_counter() - start)
    return {"pool": pool_size, "queries": queries, "dim": dim, "k": k, "median_seconds": float(np.median(times)),
            "seconds_per_query": float(np.median(times) / queries)}


def main(out_dir: str = "reports/bench") -> list[dict]:
    rows = [measure(n, 1) for n in (1_000, 10_000, 100_000, 1_000_000)]
    rows += [measure(100_000, 1_000)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrieval.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| pool patients | queries | median seconds | seconds per query |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['pool']:,} | {r['queries']:,} | {r['median_seconds']:.4f} | {r['seconds_per_query']:.6f} |" for r in rows]
    (out / "retrieval.md").write_text("Cosine top-10 retrieval, 128-dimensional vectors\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main(*sys.argv[1:])
