"""Edit sets: what one rollout edited in s_0, named so that the same edit of two patients' prompts is one edit.

An edit is (operation, word type, occurrence, new word): ("delete", "similarity", 3, None) deletes the third
"similarity" of the prompt, whatever the prompt's other words. `edit_set` names a rollout's edits,
`apply_edit_set` applies a set to any patient's s_0, and the two personalization controls build on them: the
consensus template (`consensus_template`, the edits made most often, for everyone) and the shuffled edit
(`shuffled_edit_sets`, each patient given another patient's set).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from pmlm_lib.data.prompts import clinical_kinds, join, segment
from pmlm_lib.method.refine.word_edits import apply_edit, word_type

if TYPE_CHECKING:
    import pandas as pd

Edit = tuple  # (operation, word type, occurrence, new word or None)


def _occurrences(words: list[str]) -> list[tuple[str, int]]:
    seen: Counter = Counter()
    out = []
    for w in words:
        t = word_type(w)
        seen[t] += 1
        out.append((t, seen[t]))
    return out


def edit_set(prompt: str, positions: list[int], operations: list | None = None, words: list | None = None):
    """The edits of one rollout as a frozenset of (operation, type, occurrence, new word) of s_0's words,
    and the s_0 word indices that were deleted or replaced."""
    state = segment(prompt)
    names = _occurrences(state)
    alive: list[int | None] = list(range(len(state)))  # s_0 index of each word of the state (None: a new word)
    edits, touched = set(), []
    for j, operation, new in zip(
        positions, operations or ["delete"] * len(positions), words or [None] * len(positions)
    ):
        origin = alive[j]
        name = names[origin] if origin is not None else ("<new word>", 0)
        edits.add((operation, *name, new))
        if origin is not None and operation in ("delete", "replace"):
            touched.append(origin)
        state = apply_edit(state, j, operation, new)
        if operation == "delete":
            alive.pop(j)
        elif operation == "replace":
            alive[j] = None
        else:
            alive.insert(j + 1, None)
    return frozenset(edits), touched


def apply_edit_set(prompt: str, edits, protect: tuple[str, ...] = ()) -> str:
    """The same edits on another s_0: each named word that this prompt has is deleted, replaced, or has a
    word inserted after it; names it lacks (a prompt with fewer peers) are skipped, and so are words of the
    clinical content in `protect` ("prediction", "peers"), which the policy itself could not have cut here."""
    state = segment(prompt)
    index = {name: i for i, name in enumerate(_occurrences(state))}
    kinds = clinical_kinds(prompt) if protect else [None] * len(state)
    named = [(index[(t, k)], op, new) for op, t, k, new in edits if (t, k) in index]
    planned = sorted(((i, op, new) for i, op, new in named if kinds[i] not in protect), reverse=True)
    for i, op, new in planned:  # from the end, so that earlier indices stay valid
        state = apply_edit(state, i, op, new)
    return join(state)


def describe(edits) -> str:
    """An edit set for people: 'delete the, medical, similarity (1st, 3rd)'."""
    by_word: dict[tuple[str, str | None], list[int]] = {}
    for op, t, k, new in sorted(edits, key=lambda e: (e[0], e[1], e[2])):
        by_word.setdefault((op, t, new), []).append(k)
    parts = []
    for (op, t, new), ks in by_word.items():
        where = "" if ks == [1] else f" ({', '.join(_ordinal(k) for k in ks)})"
        parts.append(f"{op} {t!r}{where}" + (f" → {new!r}" if new else ""))
    return "; ".join(parts) if parts else "no edit"


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def consensus_template(edit_sets, n: int) -> frozenset:
    """The n edits (word occurrences, with their operation) made most often over these edit sets, as one edit
    set for everyone (ties: the edit met first). Unlike the most common edit set, it is a template however
    spread the edits are: when every prompt got its own sampled set, it is what the policy's frequencies agree
    on."""
    counts = Counter(e for s in edit_sets for e in sorted(s, key=str))
    return frozenset(e for e, _ in counts.most_common(n))


def shuffled_edit_sets(edit_sets: pd.Series, seed: int) -> pd.Series:
    """Each patient's edit set given to another patient of the same series: a seeded derangement (Sattolo's
    shuffle, one cycle through all patients, so that nobody keeps her own). Index: the receiving patient;
    value: (the giving patient, her edit set). Fewer than two patients have no one to swap with: empty."""
    import numpy as np
    import pandas as pd

    ids = list(edit_sets.index)
    if len(ids) < 2:
        return pd.Series(dtype=object)
    order = list(range(len(ids)))
    rng = np.random.default_rng([seed, 40])
    for i in range(len(order) - 1, 0, -1):  # Sattolo: j < i, never i itself
        j = int(rng.integers(i))
        order[i], order[j] = order[j], order[i]
    return pd.Series({ids[i]: (ids[order[i]], edit_sets.iloc[order[i]]) for i in range(len(ids))}, dtype=object)


def deleting_positions(prompt: str, edits, protect: tuple[str, ...] = ()) -> list[int]:
    """The positions (in the state of each step, as a rollout records them) that delete this set's words from
    `prompt`, last word first, so that each position is an index of s_0 too (`word_edits.mark_edits` reads them).
    Only deletions: a set with another operation has no such positions."""
    if any(op != "delete" for op, *_ in edits):
        raise ValueError("deleting_positions reads sets of deletions only")
    state = segment(prompt)
    index = {name: i for i, name in enumerate(_occurrences(state))}
    kinds = clinical_kinds(prompt) if protect else [None] * len(state)
    named = {index[(t, k)] for _, t, k, _ in edits if (t, k) in index}
    return sorted((i for i in named if kinds[i] not in protect), reverse=True)


def as_lists(edits) -> list | None:
    """An edit set as JSON and checkpoints keep it (lists, sorted); None stays None."""
    return None if edits is None else sorted(map(list, edits), key=str)


def from_lists(saved) -> frozenset | None:
    """The edit set that `as_lists` saved."""
    return None if saved is None else frozenset(tuple(e) for e in saved)
