"""Step 5, fine-grained personalization: the RL refinement of the coarse prompt (Algorithm 1).

The MDP: the state is the prompt's words; an action deletes one word; after n deletions the
responder LLM_r answers the final prompt P, and the reward is BS(LLM_r(P), r) − BS(LLM_r(s_0), r)
(Eq. 9). The policy is trained with REINFORCE: L = −Σ_i log π(e_j|s_i) · Reward (Eq. 11), Adam.
In the paper's mode the patient encoder is trained through the same loss (x̂ is in the graph).

The parts, each in its own module: the editor (`editor.PromptEditor`: embeddings, policy, rollouts,
Eqs. 5-8; also inference), the reward (`reward.AnswerReward`: answers P and s_0, scores both, Eq. 9),
the controls (`controls`), the edit helpers (`edits`). This module holds the training loop
(`Refiner.train`, Algorithm 1 in the paper's order), the baseline, and checkpoints.

Beyond the paper, each a RefineConfig field: policy updates per mini-batch of episodes instead of
once per epoch; a reward baseline (a running mean; a per-patient expectation from the s_0 answer's
score; the patient's own random-deletion reward; or, with several rollouts of each patient per
update, the mean reward of her other rollouts, as RLOO); an entropy bonus; random deletion of n words
scored on the same patients, so that each epoch shows the policy's gain over random deletion, not
only over s_0. Every episode is logged; a checkpoint is written after each epoch, and training
resumes from it with the same result as an uninterrupted run; the training time is split into
waiting for answers, BERTScore, embedding, policy and updates.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pmlm_lib.common.timing import Timer
from pmlm_lib.method.refine.controls import random_deletion
from pmlm_lib.method.refine.edit_sets import as_lists, from_lists
from pmlm_lib.method.refine.editor import EditTask, PromptEditor, Rollout
from pmlm_lib.method.refine.reward import AnswerReward, RewardResult

TIMED = ("answers", "reward", "embedding", "policy", "update")  # where training time goes
BASELINES = ("none", "mean", "s0_score", "random", "group")


@dataclass
class RefineConfig:
    lr: float = 0.005  # Adam, the paper's learning rate
    epochs: int = 5
    patients_per_epoch: int | None = None  # a sample of training patients per epoch (None: all)
    batch_size: int | None = None  # episodes per policy update (None: one update per epoch, as Algorithm 1)
    group_size: int = 1  # rollouts of each sampled patient per epoch (episodes per epoch: patients × group_size)
    baseline: str = "none"  # one of BASELINES (see Baseline)
    entropy_bonus: float = 0.0  # weight of the policy's entropy in the loss (keeps it exploring)
    random_control: bool = True  # score random deletion of n words once per pool patient: policy − random per epoch
    seed: int = 0
    control_seed: int | None = None  # the random control's deletions (None: seed); a training's restarts share them

    def __post_init__(self):
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, not {self.baseline!r}")
        if self.baseline == "random" and not self.random_control:
            raise ValueError("baseline 'random' needs random_control=True (the patient's random-deletion reward)")
        if self.group_size < 1:
            raise ValueError(f"group_size must be at least 1, not {self.group_size}")
        if self.baseline == "group" and self.group_size < 2:
            raise ValueError("baseline 'group' compares each rollout with the patient's others: group_size must be ≥ 2")
        if self.batch_size and self.batch_size % self.group_size:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of group_size {self.group_size} "
                "(a patient's rollouts are one group of one update)"
            )


@dataclass
class Episode(EditTask):
    """An edit task with the doctor's reply r that the reward compares answers with."""

    reference: str = ""


class Baseline:
    """What each episode's reward is compared with in the loss. Any value that does not depend on the
    episode's own actions keeps the gradient unbiased and may lower its variance.
    - "none": 0 (the paper);
    - "mean": a running mean of the rewards;
    - "s0_score": a per-patient expectation, linear in the s_0 answer's score BS(LLM_r(s_0), r),
      fitted on all earlier episodes (from the log, so a resumed run computes the same): a patient
      whose s_0 answer scored low gains from almost any edit, and this removes that part;
    - "random": the patient's own reward for random deletion of n words (the random control), so
      that the policy is pushed to beat random deletion rather than s_0;
    - "group": with group_size rollouts of each patient in the update, the mean reward of the patient's
      other rollouts (leave-one-out, as RLOO): what the patient and the s_0 answer contribute cancels,
      and only which words this rollout edited, compared with her other rollouts, moves the policy.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self.running: float | None = None

    def __call__(
        self, result: RewardResult, episodes: list[Episode], log: list[dict], random_reward: dict
    ) -> np.ndarray:
        if self.kind == "mean":
            return np.full(len(episodes), self.running or 0.0)
        if self.kind == "s0_score" and len(log) >= 2:
            x = np.array([row["score_before"] for row in log])
            y = np.array([row["reward"] for row in log])
            slope = float(np.cov(x, y)[0, 1] / x.var(ddof=1)) if x.var() > 0 else 0.0
            return y.mean() + slope * (result.before - x.mean())
        if self.kind == "random":
            return np.array([random_reward[e.patient_id] for e in episodes])
        if self.kind == "group":
            return leave_one_out([e.patient_id for e in episodes], result.reward)
        return np.zeros(len(episodes))

    def update(self, result: RewardResult) -> None:
        mean = float(result.reward.mean())
        self.running = mean if self.running is None else 0.8 * self.running + 0.2 * mean


def leave_one_out(groups: list, values: np.ndarray) -> np.ndarray:
    """For each value, the mean of the other values of its group (0 for a group of one)."""
    values = np.asarray(values, dtype=float)
    out = np.zeros(len(values))
    for g in set(groups):
        members = [i for i, x in enumerate(groups) if x == g]
        if len(members) > 1:
            total = values[members].sum()
            out[members] = (total - values[members]) / (len(members) - 1)
    return out


def batches(items: list, size: int | None) -> list[list]:
    size = size or len(items)
    return [items[start : start + size] for start in range(0, len(items), size)]


class Refiner:
    """Trains the editor's policy with REINFORCE against the reward (Algorithm 1)."""

    def __init__(self, editor: PromptEditor, reward: AnswerReward, config: RefineConfig):
        self.editor, self.reward, self.config = editor, reward, config
        self.timer = Timer(TIMED)
        editor.timer = reward.timer = self.timer  # one stopwatch for the whole loop
        self.optimizer = torch.optim.Adam(editor.parameters(), lr=config.lr)
        self.baseline = Baseline(config.baseline)
        self.log: list[dict] = []
        self.epoch = 0
        self.updates = 0
        self.random_reward: dict[str, float] = {}
        self.history: list[dict] = []  # one summary per epoch (`train` returns it too)

    def train(self, episodes: list[Episode], checkpoint: str | Path | None = None, progress=print) -> list[dict]:
        """Algorithm 1 over `config.epochs`, resuming from `checkpoint` when it holds earlier epochs
        of the same configuration."""
        history = self.load_checkpoint(checkpoint, progress) if checkpoint and Path(checkpoint).exists() else []
        if self.epoch < self.config.epochs:
            self.prepare(episodes)  # every s_0 (and the random control) answered in one batch up front
        while self.epoch < self.config.epochs:
            generator, chosen = self.start_epoch(episodes)
            for batch in batches(chosen, self.config.batch_size):
                # 1. roll out (Eqs. 5-8): n edits sampled from π(e|s_i) = softmax(f(E ‖ Ē ‖ x̂))
                rollouts = self.editor.rollout(batch, "sample", generator)
                # 2. reward (Eq. 9): BS(LLM_r(P), r) − BS(LLM_r(s_0), r)
                result = self.reward(
                    [r.final for r in rollouts], [e.prompt for e in batch], [e.reference for e in batch]
                )
                # 3. baseline: what each reward is compared with (0 in the paper)
                expected = self.baseline(result, batch, self.log, self.random_reward)
                advantage = torch.as_tensor(result.reward - expected, dtype=torch.float32, device=self.editor.device)
                # 4. loss (Eq. 11), with an optional entropy bonus, and the update
                with self.timer("update"):
                    logp, entropy = torch.stack([r.logp for r in rollouts]), torch.stack([r.entropy for r in rollouts])
                    loss = -(logp * advantage).mean() - self.config.entropy_bonus * entropy.mean()
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
                self.baseline.update(result)
                self.updates += 1
                self.record(batch, rollouts, result, float(loss.detach()))
            history.append(self.end_epoch(progress))
            if checkpoint:
                self.save_checkpoint(checkpoint, history)
        if self.editor.consensus is None and self.editor.policy.operations == ("delete",):
            # the "consensus" inference mode's one edit for everyone, from the training prompts (no reply read)
            self.editor.learn_consensus(episodes, self.config.seed)
            if checkpoint:
                self.save_checkpoint(checkpoint, history)
        self.history = history
        return history

    # ---- the parts of the loop ------------------------------------------------------------------
    def prepare(self, episodes: list[Episode]) -> None:
        initials = [e.prompt for e in episodes]
        if not self.config.random_control:
            self.reward.prepare(initials)
            return
        n = self.editor.n_steps
        randoms = [
            random_deletion(e.prompt, n, np.random.default_rng([self.control_seed, i]), self.editor.min_words)[0]
            for i, e in enumerate(episodes)
        ]
        self.reward.prepare(initials + randoms)
        missing = [i for i, e in enumerate(episodes) if e.patient_id not in self.random_reward]
        if missing:
            result = self.reward(
                [randoms[i] for i in missing], [initials[i] for i in missing], [episodes[i].reference for i in missing]
            )
            self.random_reward.update({episodes[i].patient_id: float(r) for i, r in zip(missing, result.reward)})

    def start_epoch(self, episodes: list[Episode]) -> tuple[torch.Generator, list[Episode]]:
        cfg = self.config
        epoch_seed = cfg.seed * 1000 + self.epoch
        torch.manual_seed(epoch_seed)  # dropout and sampling depend only on (seed, epoch): resumable
        rng = np.random.default_rng(epoch_seed)
        chosen = (
            episodes
            if cfg.patients_per_epoch is None or cfg.patients_per_epoch >= len(episodes)
            else [episodes[i] for i in rng.permutation(len(episodes))[: cfg.patients_per_epoch]]
        )
        chosen = [e for e in chosen for _ in range(cfg.group_size)]  # a patient's rollouts side by side
        self.editor.train(True)
        return torch.Generator().manual_seed(epoch_seed), chosen

    def record(self, batch: list[Episode], rollouts: list[Rollout], result: RewardResult, loss: float) -> None:
        for e, r, rew, a, b in zip(batch, rollouts, result.reward, result.after, result.before):
            self.log.append(
                {
                    "epoch": self.epoch,
                    "patient_id": e.patient_id,
                    "positions": r.positions,
                    "operations": r.operations,
                    "words": r.words,
                    "reward": float(rew),
                    "score_after": float(a),
                    "score_before": float(b),
                    "random_reward": self.random_reward.get(e.patient_id),
                    "entropy": float(r.entropy.detach()),
                    "loss": loss,
                    "update": self.updates,
                }
            )

    def end_epoch(self, progress) -> dict:
        rows = [row for row in self.log if row["epoch"] == self.epoch]
        reward = np.array([row["reward"] for row in rows])
        summary = {
            "epoch": self.epoch,
            "patients": len(rows),
            "updates": len({row["update"] for row in rows}),
            "mean_reward": float(reward.mean()),
            "reward_sd": float(reward.std()),
            "reward_se": float(reward.std(ddof=1) / np.sqrt(len(rows))) if len(rows) > 1 else float("nan"),
            "loss": float(np.mean([row["loss"] for row in rows])),
            "entropy": float(np.mean([row["entropy"] for row in rows]) / max(1, self.editor.n_steps)),
        }
        if self.random_reward:
            gain = reward - np.array([row["random_reward"] for row in rows])
            summary.update(
                {
                    "minus_random": float(gain.mean()),
                    "minus_random_se": float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else float("nan"),
                }
            )
        summary.update({f"seconds_{k}": round(v, 2) for k, v in self.timer.seconds.items()})
        progress(
            f"epoch {self.epoch}: mean reward {summary['mean_reward']:+.4f} (sd {summary['reward_sd']:.4f})"
            + (f", policy − random {summary['minus_random']:+.4f}" if "minus_random" in summary else "")
            + f", loss {summary['loss']:+.4f}, {summary['seconds_answers']:.0f} s answering so far"
        )
        self.epoch += 1
        return summary

    @property
    def control_seed(self) -> int:
        return self.config.seed if self.config.control_seed is None else self.config.control_seed

    def time_split(self) -> dict:
        """Training seconds per part, and the share spent outside waiting for answers."""
        return self.timer.split("answers")

    # ---- checkpoints ---------------------------------------------------------------------------
    def _identity(self) -> dict:
        """What a checkpoint must match to be resumed (more epochs may continue a run)."""
        config = {k: v for k, v in asdict(self.config).items() if k not in ("epochs", "control_seed")}
        if self.control_seed != self.config.seed:  # absent otherwise: checkpoints made before it existed resume
            config["control_seed"] = self.control_seed
        return {
            "config": config,
            "editor": self.editor.settings(),
            "decoding": self.reward.decoding.as_dict(),
            "vocabulary": self.editor.vocabulary,
        }

    def save_checkpoint(self, path: str | Path, history: list[dict]) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        torch.save(
            {
                "policy": self.editor.policy.state_dict(),
                "encoder": self.editor.encoder.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch,
                "updates": self.updates,
                "baseline": self.baseline.running,
                "history": history,
                "log": self.log,
                "seconds": self.timer.seconds,
                "identity": self._identity(),
                "editor": self.editor.settings(),
                "vocabulary": self.editor.vocabulary,
                "reward": self.reward.state_dict(),
                "random_reward": self.random_reward,
                "consensus": as_lists(self.editor.consensus),
            },
            tmp,
        )
        tmp.replace(path)  # atomic: a crash while saving keeps the previous checkpoint

    def load_checkpoint(self, path: str | Path, progress=print) -> list[dict]:
        path = Path(path)
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("identity") != self._identity():
            aside = path.with_name(path.name + ".previous")
            path.replace(aside)  # kept, not deleted: it was someone's computation
            progress(
                f"{path.name} was trained with another configuration; moved to {aside.name}, training from the start"
            )
            return []
        self.editor.policy.load_state_dict(state["policy"])
        self.editor.encoder.load_state_dict(state["encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.updates, self.baseline.running, self.log = (
            state["epoch"],
            state["updates"],
            state["baseline"],
            state["log"],
        )
        self.timer.seconds = state["seconds"]
        self.reward.load_state_dict(state["reward"])
        self.random_reward = state["random_reward"]
        self.editor.consensus = from_lists(state.get("consensus"))
        progress(f"resumed after epoch {self.epoch - 1}")
        return state["history"]


def save_log(log: list[dict], path: str | Path) -> None:
    Path(path).write_text("\n".join(json.dumps(row) for row in log) + "\n")


def episodes_for(cohort, patient_ids: list[str], prompts, x_prime: np.ndarray) -> list[Episode]:
    """Training episodes of these patients: coarse prompt, x' (rows in patient_ids' order) and the doctor's reply."""
    cohort.require_replies("RL refinement (the reward compares answers with the doctors' replies)")
    replies = cohort.by_patient("reference_reply")
    return [
        Episode(patient_id=p, prompt=prompts[p], x_prime=x_prime[i], reference=replies[p])
        for i, p in enumerate(patient_ids)
    ]


def restart_seed(training_seed: int, restart: int) -> int:
    """Restart r's seed: the training's own for r = 0 (one restart is the single training), then the next
    integers (epochs are seeded seed * 1000 + epoch, and `pmlm trainings` steps training seeds by 10^6)."""
    return training_seed + restart


def restart_checkpoint(checkpoint: Path, restart: int, restarts: int) -> Path:
    """The checkpoint of restart r: `checkpoint` itself when there is one restart, else policy-restart{r}.pt
    beside it (`checkpoint` then holds the chosen restart's copy)."""
    return (
        checkpoint if restarts == 1 else checkpoint.with_name(f"{checkpoint.stem}-restart{restart}{checkpoint.suffix}")
    )


def train_restarts(
    untrained: PromptEditor,
    reward: AnswerReward,
    config: RefineConfig,
    episodes: list[Episode],
    restarts: int = 1,
    checkpoint: Path | None = None,
    progress=print,
    accept: Callable[[Refiner], bool] | None = None,
) -> list[Refiner]:
    """Up to `restarts` trainings on the same episodes, each from its own initial policy (`untrained.restarted()`
    after seeding torch with the restart's seed; `untrained` itself is not trained) and its own sampling, each
    with its own checkpoint (resumed as one training's). The next restart is trained only while `accept` (a
    judge of a trained refiner: `selection.RestartJudge`) turns the last one down; without a judge every
    restart is trained. They share the random control (restart 0's deletions, answered once), and restart 0
    is exactly the single training of that seed."""
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, not {restarts}")
    refiners = []
    for r in range(restarts):
        seed = restart_seed(config.seed, r)
        if restarts > 1:
            progress(f"restart {r} (seed {seed}), at most {restarts}")
        torch.manual_seed(seed)  # the policy's initial weights
        refiner = Refiner(
            untrained.restarted(), reward, replace(config, seed=seed, control_seed=config.seed if r else None)
        )
        path = restart_checkpoint(Path(checkpoint), r, restarts) if checkpoint else None
        refiner.train(episodes, path, progress)
        refiners.append(refiner)
        if accept is not None and accept(refiner):
            break
    return refiners


def keep_restart(checkpoint: Path, restart: int, restarts: int) -> None:
    """`checkpoint` (what later notebooks load) becomes a copy of the chosen restart's."""
    if restarts > 1:
        partial = checkpoint.with_name(checkpoint.name + ".partial")
        shutil.copyfile(restart_checkpoint(checkpoint, restart, restarts), partial)
        partial.replace(checkpoint)
