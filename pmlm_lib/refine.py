"""Step 5, fine-grained personalization: the RL refinement of the coarse prompt (Algorithm 1).

The MDP: the state is the prompt's words; an action deletes one word; after n deletions the
responder LLM_r answers the final prompt P, and the reward is BS(LLM_r(P), r) − BS(LLM_r(s_0), r)
(Eq. 9). The policy is trained with REINFORCE: L = −Σ_i log π(e_j|s_i) · Reward (Eq. 11), Adam.
In the paper's mode the patient encoder is trained through the same loss (x̂ is in the graph).

Beyond the paper: a reward baseline (running mean) for variance reduction; two controls that need
no training (random deletion, greedy search with a budget of answers). Every episode is logged
(deleted indices per step, reward, loss); a checkpoint is written after each epoch and training
resumes from it with the same result as an uninterrupted run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .prompts import join, segment
from .responders import Decoding


@dataclass
class RefineConfig:
    n_steps: int = 10  # deletions per prompt (the paper's n)
    lr: float = 0.005  # Adam, the paper's learning rate
    epochs: int = 5
    patients_per_epoch: int | None = None  # a sample of training patients per epoch (None: all)
    baseline: str = "none"  # "none" (the paper) or "mean" (running mean of rewards)
    min_words: int = 5  # never delete below this many words
    seed: int = 0
    decoding: dict = field(default_factory=lambda: asdict(Decoding()))


@dataclass
class Episode:
    patient_id: str
    prompt: str  # s_0
    reference: str  # the doctor's reply r
    x_prime: np.ndarray  # the patient's zero-padded concatenation (the encoder's input)


class Refiner:
    def __init__(self, embedder, policy, encoder, responder, reward, config: RefineConfig, train_encoder: bool = True):
        self.embedder, self.policy, self.encoder = embedder, policy, encoder
        self.responder, self.reward, self.config = responder, reward, config
        self.train_encoder = train_encoder
        params = list(policy.parameters()) + (list(encoder.parameters()) if train_encoder else [])
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        self.decoding = Decoding(**config.decoding)
        self.log: list[dict] = []
        self.epoch = 0
        self.baseline_value = 0.0

    # ---- one episode -------------------------------------------------------------------------
    def rollout(self, prompt: str, x_prime: np.ndarray, sample: bool, generator: torch.Generator | None = None):
        """Delete n words; returns the final prompt, the deleted indices (in the state they were
        deleted from) and the sum of their log-probabilities (differentiable)."""
        words = segment(prompt)
        x_hat = self.encoder(torch.as_tensor(x_prime, dtype=torch.float32).unsqueeze(0))[0]
        if not self.train_encoder:
            x_hat = x_hat.detach()
        total_logp = torch.zeros(())
        deleted = []
        for _ in range(self.config.n_steps):
            if len(words) <= self.config.min_words:
                break  # guard: a prompt is never emptied
            embeddings = self.embedder.embed([words])[0]
            logp = self.policy(embeddings, x_hat)
            j = int(torch.multinomial(logp.exp(), 1, generator=generator)) if sample else int(torch.argmax(logp))
            total_logp = total_logp + logp[j]
            deleted.append(j)
            words = words[:j] + words[j + 1:]
        return join(words), deleted, total_logp

    # ---- training -------------------------------------------------------------------------------
    def _rewards(self, finals: list[str], initials: list[str], references: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        answers = self.responder.answer(finals + initials, self.decoding)  # s_0 answers come from the cache after the first epoch
        after = self.reward(answers[: len(finals)], references)
        before = self.reward(answers[len(finals):], references)
        return after - before, after, before

    def train_epoch(self, episodes: list[Episode]) -> dict:
        cfg = self.config
        epoch_seed = cfg.seed * 1000 + self.epoch
        torch.manual_seed(epoch_seed)  # dropout and sampling depend only on (seed, epoch): resumable
        generator = torch.Generator().manual_seed(epoch_seed)
        rng = np.random.default_rng(epoch_seed)
        chosen = episodes if cfg.patients_per_epoch is None or cfg.patients_per_epoch >= len(episodes) else \
            [episodes[i] for i in sorted(rng.choice(len(episodes), cfg.patients_per_epoch, replace=False))]
        self.policy.train()
        self.encoder.train(self.train_encoder)
        rollouts = [self.rollout(e.prompt, e.x_prime, sample=True, generator=generator) for e in chosen]
        reward, after, before = self._rewards([r[0] for r in rollouts], [e.prompt for e in chosen], [e.reference for e in chosen])
        advantage = reward - (self.baseline_value if cfg.baseline == "mean" else 0.0)
        loss = -sum(r[2] * float(a) for r, a in zip(rollouts, advantage)) / len(chosen)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if cfg.baseline == "mean":
            self.baseline_value = 0.9 * self.baseline_value + 0.1 * float(reward.mean()) if self.epoch else float(reward.mean())
        for e, r, rew, a, b in zip(chosen, rollouts, reward, after, before):
            self.log.append({"epoch": self.epoch, "patient_id": e.patient_id, "deleted": r[1], "reward": float(rew),
                             "score_after": float(a), "score_before": float(b)})
        summary = {"epoch": self.epoch, "patients": len(chosen), "mean_reward": float(reward.mean()), "loss": loss.item()}
        self.epoch += 1
        return summary

    def train(self, episodes: list[Episode], checkpoint: str | Path | None = None, progress=print) -> list[dict]:
        """Algorithm 1 over `config.epochs`, resuming from `checkpoint` when it holds earlier epochs."""
        history = []
        if checkpoint is not None and Path(checkpoint).exists():
            history = self.load_checkpoint(checkpoint)
            progress(f"resumed after epoch {self.epoch - 1}")
        while self.epoch < self.config.epochs:
            summary = self.train_epoch(episodes)
            history.append(summary)
            progress(f"epoch {summary['epoch']}: mean reward {summary['mean_reward']:+.4f}, loss {summary['loss']:+.4f}")
            if checkpoint is not None:
                self.save_checkpoint(checkpoint, history)
        return history

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path, history: list[dict]) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        torch.save({"policy": self.policy.state_dict(), "encoder": self.encoder.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "baseline": self.baseline_value,
                    "history": history, "log": self.log, "config": asdict(self.config)}, tmp)
        tmp.replace(path)  # atomic: a crash while saving keeps the previous checkpoint

    def load_checkpoint(self, path: str | Path) -> list[dict]:
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.policy.load_state_dict(state["policy"])
        self.encoder.load_state_dict(state["encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.baseline_value, self.log = state["epoch"], state["baseline"], state["log"]
        return state["history"]

    # ---- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def refine(self, prompt: str, x_prime: np.ndarray, sample: bool = False, seed: int = 0) -> tuple[str, list[int]]:
        """The trained policy edits one prompt: greedy (most probable word) or sampled."""
        self.policy.eval()
        self.encoder.eval()
        final, deleted, _ = self.rollout(prompt, x_prime, sample=sample, generator=torch.Generator().manual_seed(seed))
        return final, deleted


def random_deletion(prompt: str, n: int, rng: np.random.Generator, min_words: int = 5) -> tuple[str, list[int]]:
    """Control: delete n words chosen uniformly at random."""
    words = segment(prompt)
    deleted = []
    for _ in range(n):
        if len(words) <= min_words:
            break
        j = int(rng.integers(len(words)))
        deleted.append(j)
        words = words[:j] + words[j + 1:]
    return join(words), deleted


def greedy_deletion(prompt: str, reference: str, responder, reward, n: int, budget: int = 8, seed: int = 0,
                    decoding: Decoding = Decoding(), min_words: int = 5) -> tuple[str, list[int]]:
    """Control: at each step try deleting `budget` random candidate words, keep the one whose answer
    scores best against the reference (budget x n answers per prompt)."""
    rng = np.random.default_rng(seed)
    words = segment(prompt)
    deleted = []
    for _ in range(n):
        if len(words) <= min_words:
            break
        candidates = rng.choice(len(words), size=min(budget, len(words)), replace=False)
        options = [join(words[:j] + words[j + 1:]) for j in candidates]
        scores = reward(responder.answer(options, decoding), [reference] * len(options))
        j = int(candidates[int(np.argmax(scores))])
        deleted.append(j)
        words = words[:j] + words[j + 1:]
    return join(words), deleted


def save_log(log: list[dict], path: str | Path) -> None:
    Path(path).write_text("\n".join(json.dumps(row) for row in log) + "\n")


def episodes_for(cohort, patient_ids: list[str], prompts: "pd.Series", x_prime: np.ndarray) -> list[Episode]:
    """Episodes of these patients: coarse prompt, the doctor's reply, x' (rows in patient_ids' order)."""
    cohort.require_replies("RL refinement (the reward compares answers with the doctors' replies)")
    replies = cohort.patients.set_index("patient_id")["reference_reply"]
    return [Episode(p, prompts[p], replies[p], x_prime[i]) for i, p in enumerate(patient_ids)]


def refine_all(refiner: Refiner, episodes: list[Episode], sample: bool = False, seed: int = 0) -> "pd.DataFrame":
    """The trained policy edits every prompt; one row per patient with the refined prompt and its trace."""
    import pandas as pd

    rows = []
    for i, e in enumerate(episodes):
        final, deleted = refiner.refine(e.prompt, e.x_prime, sample=sample, seed=seed + i)
        rows.append({"patient_id": e.patient_id, "coarse_prompt": e.prompt, "refined_prompt": final, "deleted": deleted})
    return pd.DataFrame(rows).set_index("patient_id")


def original_positions(n_words: int, deleted: list[int]) -> list[int]:
    """Indices in s_0 of the words deleted step by step (each step's index counts the words left)."""
    alive = list(range(n_words))
    return [alive.pop(j) for j in deleted]


def mark_deletions(prompt: str, deleted: list[int]) -> str:
    """s_0 with each deleted word shown as [-word-] and its step number, for people to read."""
    words = segment(prompt)
    step_of = {pos: step for step, pos in enumerate(original_positions(len(words), deleted), start=1)}
    out = [f"[-{w.rstrip()}-]{step_of[i]}" + w[len(w.rstrip()):] if i in step_of else w for i, w in enumerate(words)]
    return "".join(out).strip()
