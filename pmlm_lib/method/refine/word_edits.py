"""Edits of a prompt's words: the actions of the refinement (delete, replace, insert), the same edit
on a state's embedding rows, the vocabulary that replace and insert write from, the marked prompt that
people read, and what a log of episodes says the policy learned to edit.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

import torch

from pmlm_lib.data.prompts import segment

if TYPE_CHECKING:  # pandas is imported where tables are made, not at import time
    import pandas as pd

_CJK = re.compile(r"[\u3400-\u9fff]")


def word_type(word: str) -> str:
    """A word as a type: lower-cased, without its trailing space and punctuation ("Similarity," -> "similarity")."""
    return word.strip().strip(".,;:()").lower()


def apply_edit(words: list[str], j: int, operation: str, new: str | None) -> list[str]:
    """One edit of a state: delete word j, replace it by `new`, or insert `new` after it."""
    if operation == "delete":
        return words[:j] + words[j + 1 :]
    cjk = bool(_CJK.match(new))
    spacing = words[j][len(words[j].rstrip()) :] or ("" if cjk else " ")
    if operation == "replace":
        return words[:j] + [new + spacing] + words[j + 1 :]
    before = words[j] if words[j] != words[j].rstrip() or cjk else words[j] + " "  # "end" + "word" -> "end word"
    return words[:j] + [before, new + spacing] + words[j + 1 :]


def edit_rows(E: torch.Tensor, j: int, operation: str, new: torch.Tensor | None) -> torch.Tensor:
    """The same edit on a state's embedding rows (embed="once"): drop row j, replace it, or insert after it."""
    if operation == "delete":
        return torch.cat([E[:j], E[j + 1 :]])
    if operation == "replace":
        return torch.cat([E[:j], new[None], E[j + 1 :]])
    return torch.cat([E[: j + 1], new[None], E[j + 1 :]])


_STOPWORDS = set(
    """a an and are as at be been but by can do does for from has have her his i if in into is it its
me my not of on or our she so than that the their them then there these they this to was we were which while who
will with you your yours also any more most other should such""".split()
)


def vocabulary_from_replies(replies: list[str], size: int = 60) -> list[str]:
    """The words that replace/insert may write: the most frequent content words of the training
    replies (doctors' words; no test reply is read)."""
    counts = Counter(word_type(w) for r in replies for w in segment(r))
    return [w for w, _ in counts.most_common() if w and w not in _STOPWORDS and not w.replace(".", "").isdigit()][:size]


def mark_edits(
    prompt: str, positions: list[int], operations: list[str] | None = None, words: list | None = None
) -> str:
    """s_0 with each edit shown for people to read: a deleted word as [-word-], an inserted one as
    {+word+}, a replacement as both; each followed by the number of the step that made it."""
    operations = operations or ["delete"] * len(positions)
    words = words or [None] * len(positions)
    tokens = [[w, ""] for w in segment(prompt)]  # [text, mark]
    alive = list(tokens)
    for step, (j, op, new) in enumerate(zip(positions, operations, words), start=1):
        token = alive[j]
        if op in ("delete", "replace"):
            token[1] = f"[-{token[0].rstrip()}-]{step}" + token[0][len(token[0].rstrip()) :]
        if op != "delete":
            added = [new + " ", f"{{+{new}+}}{step} "]
            at = next(k for k, t in enumerate(tokens) if t is token)
            tokens.insert(at + 1, added)
            if op == "replace":
                alive[j] = added
            else:
                alive.insert(j + 1, added)
        else:
            alive.pop(j)
    return "".join(mark or text for text, mark in tokens).strip()


def edited_sequence(
    prompt: str, positions: list[int], operations: list[str] | None = None, words: list | None = None
) -> list[str]:
    """The word types one episode edited, step by step (the word in the state each step chose)."""
    state, edited = segment(prompt), []
    for j, operation, new in zip(
        positions, operations or ["delete"] * len(positions), words or [None] * len(positions)
    ):
        edited.append(word_type(state[j]))
        state = apply_edit(state, j, operation, new)
    return edited


def edited_types(
    prompt: str, positions: list[int], operations: list[str] | None = None, words: list | None = None
) -> set[str]:
    """The word types one episode edited (each counted once)."""
    return set(edited_sequence(prompt, positions, operations, words))


def row_edits(row) -> tuple[list[int], list[str] | None, list | None]:
    """One refined prompt's edits from notebook 04's table (a row with positions and, where recorded, operations
    and words): (positions, operations, words), as mark_edits and edited_sequence take them."""
    ops = row["operations"] if "operations" in row else None
    new = row["words"] if "words" in row else None
    return list(row["positions"]), None if ops is None else list(ops), None if new is None else list(new)


def words_edited_at_step(refined, step: int):
    """How often each word type was edited at `step` (1 = the first edit) over refined prompts (a table with
    coarse_prompt, positions and, where recorded, operations and words), commonest first."""
    import pandas as pd

    at_step = []
    for _, row in refined.iterrows():
        at_step += edited_sequence(row["coarse_prompt"], *row_edits(row))[step - 1 : step]
    return pd.Series(at_step, dtype=object).value_counts().rename(f"edited at step {step} ({len(at_step)} prompts)")


def edited_words_by_epoch(log: list[dict], prompts: dict | pd.Series, top: int = 10) -> pd.DataFrame:
    """What the policy learned: for each epoch, the share of its episodes that edited each word
    (words lower-cased, punctuation stripped); the `top` words of the last epoch, epochs as columns."""
    import pandas as pd

    counts: dict[int, Counter] = {}
    episodes = Counter(row["epoch"] for row in log)
    for row in log:
        counts.setdefault(row["epoch"], Counter()).update(
            edited_types(prompts[row["patient_id"]], row["positions"], row.get("operations"), row.get("words"))
        )
    table = pd.DataFrame(
        {f"epoch {e}": {w: n / episodes[e] for w, n in c.items()} for e, c in sorted(counts.items())}
    ).fillna(0.0)
    return table.sort_values(table.columns[-1], ascending=False).head(top) if len(table) else table
