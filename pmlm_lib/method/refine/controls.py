"""The two controls the paper lacks, so that a reader sees whether RL beats cheaper choices:
random deletion of n words (no training, no reference), and a greedy search that keeps, at each
step, the deletion whose answer scores best against the doctor's reply (an oracle: no deployed
system could read the reference).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pmlm_lib.data.prompts import join, segment
from pmlm_lib.llm.responders import Decoding
from pmlm_lib.method.refine.word_edits import apply_edit

if TYPE_CHECKING:
    import pandas as pd


def random_deletion(prompt: str, n: int, rng: np.random.Generator, min_words: int = 5) -> tuple[str, list[int]]:
    """Delete n words chosen uniformly at random (never below `min_words` words)."""
    words = segment(prompt)
    deleted = []
    for _ in range(n):
        if len(words) <= min_words:
            break
        j = int(rng.integers(len(words)))
        deleted.append(j)
        words = apply_edit(words, j, "delete", None)
    return join(words), deleted


def random_deletion_prompts(prompts: pd.Series | dict, n: int, seed: int, min_words: int = 5) -> dict[str, str]:
    """The random-deletion control for many patients; each patient's draw depends on (seed, position)."""
    return {
        pid: random_deletion(p, n, np.random.default_rng([seed, i]), min_words)[0]
        for i, (pid, p) in enumerate(dict(prompts).items())
    }


def greedy_deletion(
    prompts: list[str],
    references: list[str],
    responder,
    scorer,
    n: int,
    budget: int = 20,
    seed: int = 0,
    decoding: Decoding | None = None,
    min_words: int = 5,
    progress=print,
) -> list[tuple[str, list[int]]]:
    """Oracle control: at each of n steps, try deleting budget // n random candidate words and keep
    the one whose answer scores best against the reference. About `budget` answers per prompt; all
    prompts of a step are answered in one batch."""
    decoding = decoding or Decoding()
    rng = np.random.default_rng(seed)
    per_step = max(1, budget // n)
    states = [segment(p) for p in prompts]
    traces: list[list[int]] = [[] for _ in prompts]
    for step in range(n):
        progress(f"greedy search: step {step + 1} of {n}")
        options, owners = [], []
        for i, words in enumerate(states):
            if len(words) <= min_words:
                continue
            for j in rng.choice(len(words), size=min(per_step, len(words)), replace=False):
                options.append(int(j))
                owners.append(i)
        if not options:
            break
        texts = [join(apply_edit(states[i], j, "delete", None)) for i, j in zip(owners, options)]
        scores = scorer(responder.answer(texts, decoding), [references[i] for i in owners])
        best: dict[int, tuple[float, int]] = {}
        for i, j, s in zip(owners, options, scores):
            if i not in best or s > best[i][0]:
                best[i] = (float(s), j)
        for i, (_, j) in best.items():
            states[i] = apply_edit(states[i], j, "delete", None)
            traces[i].append(j)
    return [(join(s), t) for s, t in zip(states, traces)]
