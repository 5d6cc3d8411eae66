"""Step 3, peer-informed personalization (the paper's Eqs. 2-4).

x' is the zero-padded concatenation of a patient's examinations (Eq. 3); an MLP encoder (2 layers,
hidden 256, dropout 0.4, output 128) maps it to x̂ (Eq. 2); peers are the k training patients with
the highest cosine similarity (Eq. 4), never the patient herself and never a validation or test
patient. Their true diagnoses and similarities enter the coarse prompt (Figure 4).

The encoder can be trained three ways (`mode`):
- "paper": left at its seeded initialization here and trained only through the refinement loss
  (notebook 04), as in the paper;
- "supervised": pre-trained with a classification head on the training labels;
- "contrastive": pre-trained with a supervised contrastive loss (Khosla et al., 2020), so that
  patients with the same condition lie close together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from pmlm_lib.common.weights import device as pick_device
from pmlm_lib.data.cohort import Cohort
from pmlm_lib.data.representation import Standardizer, concatenated

ENCODER_MODES = ("paper", "supervised", "contrastive")


class PatientEncoder(nn.Module):
    """Eq. 2: x̂ = MLP(x'), 2 layers, hidden 256, dropout 0.4, output 128 (the paper's 5.1)."""

    def __init__(self, n_in: int, hidden: int = 256, out: int = 128, dropout: float = 0.4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out))

    @property
    def out_dim(self) -> int:
        """The size of x̂ (the policy's patient input)."""
        return self.net[-1].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _supcon_loss(z: torch.Tensor, y: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    z = nn.functional.normalize(z, dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(len(y), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, -1e9)
    positives = (y[:, None] == y[None, :]) & ~self_mask
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    has_pos = positives.any(1)
    mean_pos = (log_prob * positives).sum(1)[has_pos] / positives.sum(1)[has_pos]
    return -mean_pos.mean()


def train_encoder(
    encoder: PatientEncoder,
    x: np.ndarray,
    labels: np.ndarray,
    mode: str,
    *,
    epochs: int = 40,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "auto",
) -> list[float]:
    """Pre-train the encoder on training patients ("supervised" or "contrastive") on `device` ("auto": CUDA
    when present); returns the loss per epoch. The encoder is left on the CPU (it is saved and shared)."""
    if mode == "paper":
        return []
    if mode not in ENCODER_MODES:
        raise ValueError(f"encoder mode must be one of {ENCODER_MODES}, not {mode!r}")
    torch.manual_seed(seed)
    device = pick_device(device)
    classes = {c: i for i, c in enumerate(sorted(set(labels)))}
    y = torch.tensor([classes[c] for c in labels], device=device)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    encoder.to(device)
    head = nn.Linear(encoder.out_dim, len(classes)).to(device) if mode == "supervised" else None
    params = list(encoder.parameters()) + (list(head.parameters()) if head is not None else [])
    opt = torch.optim.Adam(params, lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    encoder.train()
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(y), generator=gen).split(batch_size):
            idx = idx.to(device)
            z = encoder(xt[idx])
            loss = nn.functional.cross_entropy(head(z), y[idx]) if head is not None else _supcon_loss(z, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(y))
    encoder.eval()
    encoder.to("cpu")
    return losses


@torch.no_grad()
def encode(encoder: PatientEncoder, x: np.ndarray) -> np.ndarray:
    encoder.eval()
    device = next(encoder.parameters()).device
    return encoder(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)).cpu().numpy()


def top_k(
    queries: np.ndarray, pool: np.ndarray, k: int, exclude: np.ndarray | None = None, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4: indices and cosine similarities of the k most similar pool rows for each query.

    `exclude[i]` is a pool index that query i may not retrieve (herself), or -1. Vectorized in
    chunks of queries: one matrix product and one partial sort per chunk.
    """
    k = min(k, len(pool) - (1 if exclude is not None else 0))
    pool_n = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    q_n = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    idx_out = np.empty((len(queries), k), dtype=np.int64)
    sim_out = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        sims = (q_n[start : start + chunk] @ pool_n.T).astype(np.float32)
        if exclude is not None:
            rows = np.arange(sims.shape[0])
            ex = exclude[start : start + chunk]
            sims[rows[ex >= 0], ex[ex >= 0]] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        idx_out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
        sim_out[start : start + chunk] = np.take_along_axis(part_sims, order, axis=1)
    return idx_out, sim_out


@dataclass
class PeerIndex:
    """Training patients' vectors and labels: the pool that every query searches."""

    ids: np.ndarray
    vectors: np.ndarray
    labels: np.ndarray

    def search(self, query_ids: list[str], query_vectors: np.ndarray, k: int) -> pd.DataFrame:
        """Long table: patient_id, rank (1 = most similar), peer_id, peer_label, similarity."""
        position = {pid: i for i, pid in enumerate(self.ids)}
        exclude = np.array([position.get(pid, -1) for pid in query_ids])
        idx, sims = top_k(query_vectors, self.vectors, k, exclude)
        kk = idx.shape[1]
        return pd.DataFrame(
            {
                "patient_id": np.repeat(np.asarray(query_ids), kk),
                "rank": np.tile(np.arange(1, kk + 1), len(query_ids)),
                "peer_id": self.ids[idx.ravel()],
                "peer_label": self.labels[idx.ravel()],
                "similarity": sims.ravel(),
            }
        )


def label_agreement(peers: pd.DataFrame, true_labels: pd.Series, ks) -> pd.Series:
    """Share of the top-k peers whose diagnosis equals the patient's own, for each k."""
    same = peers["peer_label"].to_numpy() == true_labels.reindex(peers["patient_id"]).to_numpy()
    frame = peers.assign(same=same)
    return pd.Series({k: frame.loc[frame["rank"] <= k, "same"].mean() for k in ks}, name="agreement")


@dataclass
class Representation:
    """One way to turn patients into vectors for retrieval."""

    name: str
    ids: list[str]
    vectors: np.ndarray


def build_representations(
    cohort: Cohort,
    split: pd.Series,
    *,
    max_visits: int = 45,
    seed: int = 0,
    modes=("paper", "supervised", "contrastive"),
    epochs: int = 40,
    device: str = "auto",
):
    """x' (standardized, zero-padded) and x̂ under each encoder mode, for every patient.

    Returns the representations, the encoders by mode, the standardizer and the pre-training losses.
    """
    train = list(split[split == "train"].index)
    ids = list(cohort.patient_ids)
    standardizer = Standardizer.of_patients(cohort, train)
    x = concatenated(cohort, ids, max_visits, standardizer)
    reps = [Representation("raw standardized x'", ids, x)]
    position = {p: i for i, p in enumerate(ids)}
    train_rows = np.array([position[p] for p in train])
    labels = cohort.by_patient("label").loc[train].to_numpy()
    encoders, losses = {}, {}
    for mode in modes:
        torch.manual_seed(seed)
        encoder = PatientEncoder(x.shape[1])
        losses[mode] = train_encoder(encoder, x[train_rows], labels, mode, epochs=epochs, seed=seed, device=device)
        encoders[mode] = encoder
        reps.append(Representation(f"encoder ({mode})", ids, encode(encoder, x)))
    return reps, encoders, standardizer, losses


def peer_table(rep: Representation, cohort: Cohort, split: pd.Series, k: int) -> pd.DataFrame:
    """Top-k training peers of every patient under one representation."""
    train = split[split == "train"].index
    position = {p: i for i, p in enumerate(rep.ids)}
    train_idx = np.array([position[p] for p in train])
    labels = cohort.by_patient("label")
    index = PeerIndex(np.asarray(train), rep.vectors[train_idx], labels.loc[train].to_numpy())
    return index.search(rep.ids, rep.vectors, k)


def agreement_table(reps: list[Representation], cohort: Cohort, split: pd.Series, ks) -> pd.DataFrame:
    """Label agreement at each k for every representation, on validation and test patients, with chance."""
    labels = cohort.by_patient("label")
    held_out = set(split[split != "train"].index)
    rows = {}
    for rep in reps:
        peers = peer_table(rep, cohort, split, max(ks))
        rows[rep.name] = label_agreement(peers[peers["patient_id"].isin(held_out)], labels, ks)
    train_shares = labels.loc[split[split == "train"].index].value_counts(normalize=True)
    held_labels = labels.loc[list(held_out)]
    rows["chance (random training patients)"] = pd.Series(
        {k: float(train_shares.reindex(held_labels).fillna(0).mean()) for k in ks}
    )
    table = pd.DataFrame(rows).T
    table.columns = [f"k={k}" for k in ks]
    return table


def peer_drift(before: Representation, after: Representation, cohort: Cohort, split: pd.Series, k: int) -> pd.DataFrame:
    """How far the peers move when the patients are encoded again (`after`, e.g. by the encoder that the RL loss
    trained: Algorithm 1's lines 7-9) instead of as they were retrieved (`before`). For the validation and test
    patients: how many of each one's k peers both retrieve (mean share), the share of patients who keep all k,
    and the label agreement at k under each, beside chance (random training patients)."""
    first, second = (peer_table(rep, cohort, split, k) for rep in (before, after))
    labels = cohort.by_patient("label")
    train_shares = labels.loc[split[split == "train"].index].value_counts(normalize=True)
    rows = {}
    for name in ("validation", "test"):
        who = split[split == name].index
        if not len(who):
            continue
        peers = [table[table["patient_id"].isin(who)] for table in (first, second)]
        sets = [table.groupby("patient_id")["peer_id"].agg(frozenset) for table in peers]
        kept = np.array([len(sets[0][p] & sets[1][p]) / len(sets[0][p]) for p in sets[0].index])
        rows[name] = {
            "patients": len(kept),
            "share of peers kept": float(kept.mean()),
            "patients keeping all peers": float((kept == 1).mean()),
            f"label agreement at k={k}, as retrieved": float(label_agreement(peers[0], labels, [k])[k]),
            f"label agreement at k={k}, encoded again": float(label_agreement(peers[1], labels, [k])[k]),
            "chance": float(train_shares.reindex(labels.loc[who]).fillna(0).mean()),
        }
    return pd.DataFrame(rows).T


def save_encoder(path, encoder: PatientEncoder, standardizer: Standardizer, mode: str, max_visits: int) -> None:
    """The encoder with what it needs to encode new patients (the refinement step trains it further)."""
    n_in = encoder.net[0].in_features
    torch.save(
        {
            "state": encoder.state_dict(),
            "n_in": n_in,
            "mode": mode,
            "max_visits": max_visits,
            "standardizer": standardizer.state(),
        },
        path,
    )


def load_encoder(path) -> tuple[PatientEncoder, Standardizer, dict]:
    saved = torch.load(path, map_location="cpu")
    encoder = PatientEncoder(saved["n_in"])
    encoder.load_state_dict(saved["state"])
    encoder.eval()
    return (
        encoder,
        Standardizer.from_state(saved["standardizer"]),
        {"mode": saved["mode"], "max_visits": saved["max_visits"]},
    )
