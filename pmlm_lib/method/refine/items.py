"""Item-level edits of the coarse prompt s_0: whole sentences and peer lines, never a cut inside them.

Word deletion with the clinical content protected leaves the policy only the template's own words, which
every prompt shares; what is *personal* in s_0 is its items: the prediction sentence (the predicted condition,
with the predictor's confidence behind it) and the k peer lines (each a past patient's diagnosis and its
similarity). An item-level edit drops a peer line, keeps only the peers that agree with the prediction, swaps a
peer for the next one retrieved, or drops the prediction sentence: each is a prompt a clinician can read and
accept, as TEMPERA edits whole exemplars rather than words. `PromptItems` holds one patient's items and
rebuilds s_0 (and any edit of it) from the Figure 4 template, so an edited prompt is always well formed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pmlm_lib.data.prompts import coarse_prompt

if TYPE_CHECKING:
    import pandas as pd

Peer = tuple[str, float]  # (diagnosis, similarity)


@dataclass(frozen=True)
class PromptItems:
    """One patient's items of s_0: the prediction (None: its sentence dropped), the peers shown (most similar
    first), and the next peers of the retrieved pool (what a swap brings in)."""

    prediction: str | None
    peers: tuple[Peer, ...]
    pool: tuple[Peer, ...] = ()

    def prompt(self) -> str:
        return coarse_prompt(self.prediction, list(self.peers))

    def drop_peers(self, ranks) -> PromptItems:
        """Without the peers at these ranks (1 = the most similar shown)."""
        gone = set(ranks)
        return replace(self, peers=tuple(p for r, p in enumerate(self.peers, start=1) if r not in gone))

    def without_prediction(self) -> PromptItems:
        return replace(self, prediction=None)

    def swap_peer(self, rank: int) -> PromptItems:
        """The peer at `rank` replaced by the next retrieved one (the pool's first), the order by similarity kept."""
        if not self.pool:
            raise ValueError("no retrieved peer is left to swap in: save more peers in notebook 03 (peers_saved)")
        kept = [p for r, p in enumerate(self.peers, start=1) if r != rank] + [self.pool[0]]
        return PromptItems(self.prediction, tuple(sorted(kept, key=lambda p: -p[1])), self.pool[1:])

    # ---- what a deployed system knows about the items (no reference reply) -------------------------------
    def agrees(self, rank: int) -> bool:
        """Whether the peer at `rank` has the predicted diagnosis."""
        return self.prediction is not None and self.peers[rank - 1][0] == self.prediction

    def disagreeing_ranks(self) -> list[int]:
        return [r for r in range(1, len(self.peers) + 1) if not self.agrees(r)]

    def ranks_below(self, similarity: float) -> list[int]:
        return [r for r, (_, s) in enumerate(self.peers, start=1) if s < similarity]


def items_for(predicted: pd.Series, peers: pd.DataFrame, k: int) -> dict[str, PromptItems]:
    """Each patient's items: her predicted label (`predicted`, by patient id) and her peers from notebook 03's
    peer table (patient_id, rank, peer_label, similarity; ranks past k form the pool), as s_0 was built."""
    ordered = peers.sort_values(["patient_id", "rank"])
    grouped = {
        pid: [(str(label), float(sim)) for label, sim in zip(g["peer_label"], g["similarity"])]
        for pid, g in ordered.groupby("patient_id", sort=False)
    }
    return {
        pid: PromptItems(label, tuple(grouped.get(pid, [])[:k]), tuple(grouped.get(pid, [])[k:]))
        for pid, label in predicted.items()
    }


def describe(items: PromptItems, edited: PromptItems) -> str:
    """An item-level edit in words: 'dropped peer 7: placenta previa, 0.71; dropped the prediction sentence'."""
    parts = []
    if items.prediction is not None and edited.prediction is None:
        parts.append(f"dropped the prediction sentence ({items.prediction})")
    for rank, (label, sim) in enumerate(items.peers, start=1):
        if (label, sim) not in edited.peers:
            parts.append(f"dropped peer {rank}: {label}, {sim:.2f}")
    for label, sim in edited.peers:
        if (label, sim) not in items.peers:
            parts.append(f"brought in peer {label}, {sim:.2f}")
    return "; ".join(parts) or "no item edited"
