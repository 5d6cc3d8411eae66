"""Step 5, fine-grained personalization: the RL refinement of the coarse prompt (Algorithm 1).

The MDP: the state is the prompt's words; an action deletes one word; after n deletions the
responder LLM_r answers the final prompt P, and the reward is BS(LLM_r(P), r) − BS(LLM_r(s_0), r)
(Eq. 9). The policy is trained with REINFORCE: L = −Σ_i log π(e_j|s_i) · Reward (Eq. 11), Adam.
In the paper's mode the patient encoder is trained through the same loss (x̂ is in the graph).

Beyond the paper, each a RefineConfig field: policy updates per mini-batch of episodes instead of
once per epoch; a reward baseline for variance reduction (a running mean, or a per-patient
baseline predicted from the s_0 answer's own score); replace and insert besides
delete (words from a vocabulary of the training replies); embedding s_0 once and letting its rows
follow the edits (ten times fewer encoder passes). Two controls need no training: random deletion,
and greedy search with a budget of answers (an oracle: it reads the reference). Every episode is
logged (edited indices and operations per step, reward); a checkpoint is written after each epoch
and training resumes from it with the same result as an uninterrupted run; the training time is
split into waiting for answers, BERTScore, embedding, policy and updates.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .prompts import join, segment
from .responders import Decoding

if TYPE_CHECKING:  # pandas is imported where tables are made, not at import time
    import pandas as pd

TIMED = ("answers", "reward", "embedding", "policy", "update")  # where training time goes
BASELINES = ("none", "mean", "s0_score")


@dataclass
class RefineConfig:
    n_steps: int = 10  # edits per prompt (the paper's n)
    lr: float = 0.005  # Adam, the paper's learning rate
    epochs: int = 5
    patients_per_epoch: int | None = None  # a sample of training patients per epoch (None: all)
    batch_size: int | None = None  # episodes per policy update (None: one update per epoch, as Algorithm 1)
    baseline: str = "none"  # "none" (the paper), "mean" (running mean of rewards) or "s0_score" (see Refiner.reward_baseline)
    operations: tuple = ("delete",)  # the paper deletes; "replace" and "insert" may be added
    min_words: int = 5  # never edit a prompt of this many words or fewer
    embed: str = "every_step"  # "every_step": E = BERT(s_i) at each step (the paper); "once": BERT(s_0), rows follow the edits
    seed: int = 0
    decoding: dict = field(default_factory=lambda: asdict(Decoding()))

    def __post_init__(self):
        self.operations = tuple(self.operations)
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, not {self.baseline!r}")
        if self.embed not in ("every_step", "once"):
            raise ValueError(f"embed must be 'every_step' or 'once', not {self.embed!r}")


@dataclass
class Episode:
    patient_id: str
    prompt: str  # s_0
    reference: str  # the doctor's reply r
    x_prime: np.ndarray  # the patient's zero-padded concatenation (the encoder's input)


@dataclass
class Rollout:
    final: str
    positions: list  # the edited word's index in the state it was chosen from, per step
    operations: list  # "delete", "replace" or "insert", per step
    words: list  # the new word of a replace or insert (None for a delete), per step
    logp: torch.Tensor  # sum of the chosen actions' log-probabilities (differentiable in training)


def apply_edit(words: list[str], j: int, operation: str, new: str | None) -> list[str]:
    """One edit of a state: delete word j, replace it by `new`, or insert `new` after it."""
    if operation == "delete":
        return words[:j] + words[j + 1:]
    cjk = bool(re.match(r"[\u3400-\u9fff]", new))
    spacing = words[j][len(words[j].rstrip()):] or ("" if cjk else " ")
    if operation == "replace":
        return words[:j] + [new + spacing] + words[j + 1:]
    before = words[j] if words[j] != words[j].rstrip() or cjk else words[j] + " "  # "end" + "word" -> "end word"
    return words[:j] + [before, new + spacing] + words[j + 1:]


def edit_rows(E: torch.Tensor, j: int, operation: str, new: torch.Tensor | None) -> torch.Tensor:
    """The same edit on a state's embedding rows (embed="once"): drop row j, replace it, or insert after it."""
    if operation == "delete":
        return torch.cat([E[:j], E[j + 1:]])
    if operation == "replace":
        return torch.cat([E[:j], new[None], E[j + 1:]])
    return torch.cat([E[:j + 1], new[None], E[j + 1:]])


_STOPWORDS = set("""a an and are as at be been but by can do does for from has have her his i if in into is it its
me my not of on or our she so than that the their them then there these they this to was we were which while who
will with you your yours also any more most other should such""".split())


def vocabulary_from_replies(replies: list[str], size: int = 60) -> list[str]:
    """The words that replace/insert may write: the most frequent content words of the training
    replies (doctors' words; no test reply is read)."""
    counts = Counter(w.strip().strip(".,;:()").lower() for r in replies for w in segment(r))
    return [w for w, _ in counts.most_common() if w and w not in _STOPWORDS and not w.replace(".", "").isdigit()][:size]


class Refiner:
    def __init__(self, embedder, policy, encoder, responder, reward, config: RefineConfig, train_encoder: bool = True,
                 vocabulary: list[str] | None = None):
        if tuple(policy.operations) != config.operations:
            raise ValueError(f"the policy was built for operations {policy.operations}, the config asks {config.operations}")
        if policy.edits_words and not vocabulary:
            raise ValueError("replace and insert need a vocabulary (refine.vocabulary_from_replies of the training replies)")
        self.embedder, self.policy, self.encoder = embedder, policy, encoder
        self.responder, self.reward, self.config = responder, reward, config
        self.train_encoder = train_encoder
        self.vocabulary = list(vocabulary or [])
        self.vocabulary_embeddings = torch.cat(embedder.embed([[w] for w in self.vocabulary])) if policy.edits_words else None
        params = list(policy.parameters()) + (list(encoder.parameters()) if train_encoder else [])
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        self.decoding = Decoding(**config.decoding)
        self.log: list[dict] = []
        self.epoch = 0
        self.baseline_value: float | None = None
        self.seconds = dict.fromkeys(TIMED, 0.0)
        self._scored_before: dict[tuple[str, str], float] = {}

    def _timed(self, part: str, start: float) -> None:
        self.seconds[part] += time.perf_counter() - start

    # ---- episodes, in lockstep so that each step embeds every prompt state in one batch ----------
    def rollout(self, episodes: list[Episode], sample: bool, generator: torch.Generator | None = None,
                n_steps: int | None = None) -> list[Rollout]:
        cfg, policy = self.config, self.policy
        n_steps = cfg.n_steps if n_steps is None else n_steps
        states = [segment(e.prompt) for e in episodes]
        x_hat = self.encoder(torch.as_tensor(np.stack([e.x_prime for e in episodes]), dtype=torch.float32))
        if not self.train_encoder:
            x_hat = x_hat.detach()

        def choose(logp: torch.Tensor) -> int:
            return int(torch.multinomial(logp.exp(), 1, generator=generator)) if sample else int(torch.argmax(logp))

        logps = [torch.zeros(()) for _ in episodes]
        traces = [([], [], []) for _ in episodes]
        rows: list[torch.Tensor] = []  # embed="once": each state's rows, edited along with its words
        if cfg.embed == "once":
            start = time.perf_counter()
            rows = self.embedder.embed(states)
            self._timed("embedding", start)
        for _ in range(n_steps):
            active = [i for i, words in enumerate(states) if len(words) > cfg.min_words]  # guard: never empty a prompt
            if not active:
                break
            start = time.perf_counter()
            embeddings = [rows[i] for i in active] if cfg.embed == "once" else self.embedder.embed([states[i] for i in active])
            self._timed("embedding", start)
            start = time.perf_counter()
            for i, E in zip(active, embeddings):
                logp_words, h = policy.position_and_hidden(E, x_hat[i])
                j = choose(logp_words)
                logp = logp_words[j]
                logp_ops = policy.operation_logp(h[j])
                o = choose(logp_ops) if len(policy.operations) > 1 else 0
                operation, new = policy.operations[o], None
                logp = logp + logp_ops[o]
                if operation != "delete":
                    logp_new = policy.word_logp(h[j], self.vocabulary_embeddings)
                    w = choose(logp_new)
                    logp, new = logp + logp_new[w], self.vocabulary[w]
                states[i] = apply_edit(states[i], j, operation, new)
                if cfg.embed == "once":
                    rows[i] = edit_rows(E, j, operation, None if new is None else self.vocabulary_embeddings[w])
                for trace, value in zip(traces[i], (j, operation, new)):
                    trace.append(value)
                logps[i] = logps[i] + logp
            self._timed("policy", start)
        return [Rollout(join(s), *t, lp) for s, t, lp in zip(states, traces, logps)]

    # ---- training -------------------------------------------------------------------------------
    def _rewards(self, finals: list[str], initials: list[str], references: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start = time.perf_counter()
        answers = self.responder.answer(finals + initials, self.decoding)  # s_0 answers come from the cache after the first time
        self._timed("answers", start)
        start = time.perf_counter()
        # BS(LLM_r(s_0), r) is the same every epoch: scored once per (s_0, r)
        unscored = sorted({(a, r) for a, r in zip(answers[len(finals):], references)} - self._scored_before.keys())
        scores = self.reward(answers[: len(finals)] + [a for a, _ in unscored], references + [r for _, r in unscored])
        self._scored_before.update(zip(unscored, scores[len(finals):]))
        self._timed("reward", start)
        after = scores[: len(finals)]
        before = np.array([self._scored_before[(a, r)] for a, r in zip(answers[len(finals):], references)])
        return after - before, after, before

    def reward_baseline(self, before: np.ndarray) -> np.ndarray | float:
        """What each episode's reward is compared with in the loss (any value that does not depend on
        the episode's own actions keeps the gradient unbiased and may lower its variance).
        "mean": a running mean of the rewards. "s0_score": a per-patient prediction, linear in the
        s_0 answer's score BS(LLM_r(s_0), r), fitted on all earlier episodes (from the log, so a
        resumed run computes the same). Why: about half of the reward's variance is between patients,
        and a patient whose s_0 answer scored low gains from almost any edit (correlation of reward and
        s_0 score about -0.55 in the default runs); this baseline removes that part."""
        cfg = self.config
        if cfg.baseline == "mean":
            return self.baseline_value if self.baseline_value is not None else 0.0
        if cfg.baseline == "s0_score" and len(self.log) >= 2:
            x = np.array([row["score_before"] for row in self.log])
            y = np.array([row["reward"] for row in self.log])
            slope = float(np.cov(x, y)[0, 1] / x.var(ddof=1)) if x.var() > 0 else 0.0
            return y.mean() + slope * (before - x.mean())
        return 0.0

    def _update(self, chosen: list[Episode], generator: torch.Generator) -> tuple[np.ndarray, float]:
        cfg = self.config
        rollouts = self.rollout(chosen, sample=True, generator=generator)
        reward, after, before = self._rewards([r.final for r in rollouts], [e.prompt for e in chosen], [e.reference for e in chosen])
        baseline = self.reward_baseline(before)
        start = time.perf_counter()
        loss = -sum(r.logp * float(a) for r, a in zip(rollouts, reward - baseline)) / len(chosen)  # Eq. 11
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self._timed("update", start)
        if cfg.baseline == "mean":
            mean = float(reward.mean())
            self.baseline_value = mean if self.baseline_value is None else 0.8 * self.baseline_value + 0.2 * mean
        for e, r, rew, a, b in zip(chosen, rollouts, reward, after, before):
            self.log.append({"epoch": self.epoch, "patient_id": e.patient_id, "positions": r.positions, "operations": r.operations,
                             "words": r.words, "reward": float(rew), "score_after": float(a), "score_before": float(b)})
        return reward, loss.item()

    def train_epoch(self, episodes: list[Episode]) -> dict:
        cfg = self.config
        epoch_seed = cfg.seed * 1000 + self.epoch
        torch.manual_seed(epoch_seed)  # dropout and sampling depend only on (seed, epoch): resumable
        generator = torch.Generator().manual_seed(epoch_seed)
        rng = np.random.default_rng(epoch_seed)
        chosen = episodes if cfg.patients_per_epoch is None or cfg.patients_per_epoch >= len(episodes) else \
            [episodes[i] for i in rng.permutation(len(episodes))[: cfg.patients_per_epoch]]
        self.policy.train()
        self.encoder.train(self.train_encoder)
        size = cfg.batch_size or len(chosen)
        rewards, losses = [], []
        for start in range(0, len(chosen), size):
            reward, loss = self._update(chosen[start:start + size], generator)
            rewards.append(reward)
            losses.append(loss)
        reward = np.concatenate(rewards)
        summary = {"epoch": self.epoch, "patients": len(chosen), "updates": len(losses), "mean_reward": float(reward.mean()),
                   "reward_sd": float(reward.std()), "loss": float(np.mean(losses))}
        self.epoch += 1
        return summary

    def train(self, episodes: list[Episode], checkpoint: str | Path | None = None, progress=print) -> list[dict]:
        """Algorithm 1 over `config.epochs`, resuming from `checkpoint` when it holds earlier epochs
        of the same configuration."""
        history = []
        if checkpoint is not None and Path(checkpoint).exists():
            history = self.load_checkpoint(checkpoint, progress)
        if self.epoch < self.config.epochs:
            # every s_0 answer in one call up front: a big batch keeps the responder's slots busy, and
            # each epoch then waits only for its new prompts (the answers are identical: same cache key)
            start = time.perf_counter()
            self.responder.answer([e.prompt for e in episodes], self.decoding)
            self._timed("answers", start)
        while self.epoch < self.config.epochs:
            summary = self.train_epoch(episodes)
            summary.update({f"seconds_{k}": round(v, 2) for k, v in self.seconds.items()})
            history.append(summary)
            progress(f"epoch {summary['epoch']}: mean reward {summary['mean_reward']:+.4f} (sd {summary['reward_sd']:.4f}), "
                     f"loss {summary['loss']:+.4f}, {summary['seconds_answers']:.0f} s answering so far")
            if checkpoint is not None:
                self.save_checkpoint(checkpoint, history)
        return history

    def time_split(self) -> dict:
        """Training seconds per part, and the share spent outside waiting for answers."""
        total = sum(self.seconds.values())
        return {**{k: round(v, 2) for k, v in self.seconds.items()}, "total": round(total, 2),
                "share_outside_answers": round(1 - self.seconds["answers"] / total, 4) if total else None}

    # ---- checkpoints ---------------------------------------------------------------------------
    def _comparable_config(self) -> dict:
        return {k: v for k, v in asdict(self.config).items() if k != "epochs"}  # more epochs may continue a run

    def save_checkpoint(self, path: str | Path, history: list[dict]) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        torch.save({"policy": self.policy.state_dict(), "encoder": self.encoder.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "baseline": self.baseline_value,
                    "history": history, "log": self.log, "seconds": self.seconds, "config": self._comparable_config(),
                    # the s_0 scores as computed: re-scoring in other BERTScore batches may differ in the last digits
                    "scored_before": [[a, r, float(v)] for (a, r), v in self._scored_before.items()],
                    "vocabulary": self.vocabulary}, tmp)
        tmp.replace(path)  # atomic: a crash while saving keeps the previous checkpoint

    def load_checkpoint(self, path: str | Path, progress=print) -> list[dict]:
        path = Path(path)
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("config") != self._comparable_config() or state.get("vocabulary", []) != self.vocabulary:
            aside = path.with_name(path.name + ".previous")
            path.replace(aside)  # kept, not deleted: it was someone's computation
            progress(f"{path.name} was trained with another configuration; moved to {aside.name}, training from the start")
            return []
        self.policy.load_state_dict(state["policy"])
        self.encoder.load_state_dict(state["encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.baseline_value, self.log = state["epoch"], state["baseline"], state["log"]
        self.seconds = state["seconds"]
        self._scored_before = {(a, r): v for a, r, v in state.get("scored_before", [])}
        progress(f"resumed after epoch {self.epoch - 1}")
        return state["history"]

    # ---- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def refine(self, episodes: list[Episode], sample: bool = False, seed: int = 0, batch: int = 32,
               n_steps: int | None = None) -> list[Rollout]:
        """The trained policy edits prompts: greedy (most probable action) or sampled; n_steps edits
        (the trained n by default; notebook 06 varies it)."""
        self.policy.eval()
        self.encoder.eval()
        generator = torch.Generator().manual_seed(seed)
        out = []
        for start in range(0, len(episodes), batch):
            out += self.rollout(episodes[start:start + batch], sample=sample, generator=generator, n_steps=n_steps)
        return out


def load_refiner(checkpoint: str | Path, encoder, embedder=None) -> Refiner:
    """The trained policy (and its RL-trained patient encoder) from a checkpoint, for inference:
    it edits prompts; it cannot train (no responder or reward)."""
    from .embedding import WordEmbedder
    from .policy import WordPolicy

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = RefineConfig(**state["config"], epochs=state["epoch"])
    policy = WordPolicy(patient_dim=encoder.net[-1].out_features, operations=config.operations)
    refiner = Refiner(embedder or WordEmbedder(), policy, encoder, None, None, config, vocabulary=state["vocabulary"])
    refiner.load_checkpoint(checkpoint, progress=lambda *_: None)
    return refiner


def random_deletion(prompt: str, n: int, rng: np.random.Generator, min_words: int = 5) -> tuple[str, list[int]]:
    """Control: delete n words chosen uniformly at random."""
    words = segment(prompt)
    deleted = []
    for _ in range(n):
        if len(words) <= min_words:
            break
        j = int(rng.integers(len(words)))
        deleted.append(j)
        words = apply_edit(words, j, "delete", None)
    return join(words), deleted


def greedy_deletion(prompts: list[str], references: list[str], responder, reward, n: int, budget: int = 20, seed: int = 0,
                    decoding: Decoding = Decoding(), min_words: int = 5) -> list[tuple[str, list[int]]]:
    """Control (an oracle: it reads the reference reply): at each of n steps, try deleting
    budget // n random candidate words and keep the one whose answer scores best against the
    reference. About `budget` answers per prompt; all prompts of a step are answered in one batch."""
    rng = np.random.default_rng(seed)
    per_step = max(1, budget // n)
    states = [segment(p) for p in prompts]
    traces: list[list[int]] = [[] for _ in prompts]
    for step in range(n):
        print(f"greedy search: step {step + 1} of {n}", flush=True)
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
        scores = reward(responder.answer(texts, decoding), [references[i] for i in owners])
        best: dict[int, tuple[float, int]] = {}
        for i, j, s in zip(owners, options, scores):
            if i not in best or s > best[i][0]:
                best[i] = (float(s), j)
        for i, (_, j) in best.items():
            states[i] = apply_edit(states[i], j, "delete", None)
            traces[i].append(j)
    return [(join(s), t) for s, t in zip(states, traces)]


def edited_words_by_epoch(log: list[dict], prompts: dict | "pd.Series", top: int = 10) -> "pd.DataFrame":
    """What the policy learned: for each epoch, the share of its episodes that edited each word
    (words lower-cased, punctuation stripped); the `top` words of the last epoch, epochs as columns."""
    import pandas as pd

    counts: dict[int, Counter] = {}
    episodes = Counter(row["epoch"] for row in log)
    for row in log:
        words, edited = segment(prompts[row["patient_id"]]), set()
        for j, operation, new in zip(row["positions"], row.get("operations") or ["delete"] * len(row["positions"]),
                                     row.get("words") or [None] * len(row["positions"])):
            edited.add(words[j].strip().strip(".,;:()").lower())
            words = apply_edit(words, j, operation, new)
        counts.setdefault(row["epoch"], Counter()).update(edited)
    table = pd.DataFrame({f"epoch {e}": {w: n / episodes[e] for w, n in c.items()} for e, c in sorted(counts.items())}).fillna(0.0)
    return table.sort_values(table.columns[-1], ascending=False).head(top) if len(table) else table


def save_log(log: list[dict], path: str | Path) -> None:
    Path(path).write_text("\n".join(json.dumps(row) for row in log) + "\n")


def episodes_for(cohort, patient_ids: list[str], prompts: "pd.Series", x_prime: np.ndarray) -> list[Episode]:
    """Episodes of these patients: coarse prompt, the doctor's reply, x' (rows in patient_ids' order)."""
    cohort.require_replies("RL refinement (the reward compares answers with the doctors' replies)")
    replies = cohort.patients.set_index("patient_id")["reference_reply"]
    return [Episode(p, prompts[p], replies[p], x_prime[i]) for i, p in enumerate(patient_ids)]


def refine_all(refiner: Refiner, episodes: list[Episode], sample: bool = False, seed: int = 0,
               n_steps: int | None = None) -> "pd.DataFrame":
    """The trained policy edits every prompt; one row per patient with the refined prompt and its trace."""
    import pandas as pd

    rows = [{"patient_id": e.patient_id, "coarse_prompt": e.prompt, "refined_prompt": r.final, "positions": r.positions,
             "operations": r.operations, "words": r.words} for e, r in zip(episodes, refiner.refine(episodes, sample, seed, n_steps=n_steps))]
    return pd.DataFrame(rows).set_index("patient_id")


def refine_prompts(refiner: Refiner, cohort, patient_ids: list[str], prompts: "pd.Series", x_prime: np.ndarray,
                   sample: bool = False, seed: int = 0, n_steps: int | None = None) -> "pd.Series":
    """The trained policy's edit of other prompts (the ablations' coarse prompts), by patient."""
    refined = refine_all(refiner, episodes_for(cohort, patient_ids, prompts, x_prime), sample=sample, seed=seed, n_steps=n_steps)
    return refined["refined_prompt"]


def random_deletion_prompts(prompts: "pd.Series", n: int, seed: int, min_words: int = 5) -> dict[str, str]:
    """The random-deletion control for many patients; each patient's draw depends on (seed, position)."""
    return {pid: random_deletion(p, n, np.random.default_rng([seed, i]), min_words)[0] for i, (pid, p) in enumerate(prompts.items())}


def mark_edits(prompt: str, positions: list[int], operations: list[str] | None = None, words: list | None = None) -> str:
    """s_0 with each edit shown for people to read: a deleted word as [-word-], an inserted one as
    {+word+}, a replacement as both; each followed by the number of the step that made it."""
    operations = operations or ["delete"] * len(positions)
    words = words or [None] * len(positions)
    tokens = [[w, ""] for w in segment(prompt)]  # [text, mark]
    alive = list(tokens)
    for step, (j, op, new) in enumerate(zip(positions, operations, words), start=1):
        token = alive[j]
        if op in ("delete", "replace"):
            token[1] = f"[-{token[0].rstrip()}-]{step}" + token[0][len(token[0].rstrip()):]
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
