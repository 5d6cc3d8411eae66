"""The policy side of step 5 (the paper's Eqs. 5-8): a prompt editor that needs neither a
responder nor the doctors' replies.

At each state s_i the editor embeds the words (E = BERT(s_i), Eq. 6), the policy scores each word
from [e_i ‖ Ē ‖ x̂] (Eqs. 7-8, x̂ = encoder(x'), Eq. 2) and one word is chosen and edited (the paper
deletes it). `rollout` is what training samples; `edit` is inference on new prompts, in one of
several modes, chosen on validation patients by notebook 04:

- "greedy": the most probable word at every step;
- "sampled": a sample from π at every step (what training saw);
- "best_of": `samples` sampled rollouts, keep the one the policy finds most likely (the sum of
  its log-probabilities; no reference or answer is needed);
- "greedy_distinct": the most probable word whose type (lower-cased, without punctuation) this
  rollout has not edited yet, so that one favourite word type ("similarity", once per peer) is not
  deleted everywhere;
- "consensus": one learned edit for everyone: the n word occurrences the trained policy's sampled edits of
  its training prompts delete most often (`learn_consensus`, kept with the checkpoint), applied to every
  prompt. Deterministic, cheap, and the same for a patient edited alone or among others; what the policy
  learned minus its per-patient variation.

`protect` names clinical content the policy may not edit ("prediction": the predicted condition;
"peers": the peers' diagnoses; `prompts.clinical_kinds` finds them): π is a softmax over the other words
only, in training and at inference, so a protected word is never chosen and costs no probability.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pmlm_lib.common.timing import Timer
from pmlm_lib.common.weights import device as pick_device
from pmlm_lib.data.prompts import CLINICAL, clinical_kinds, join, segment
from pmlm_lib.method.refine.edit_sets import (
    apply_edit_set,
    consensus_template,
    deleting_positions,
    edit_set,
    from_lists,
)
from pmlm_lib.method.refine.embedding import WordEmbedder
from pmlm_lib.method.refine.policy import WordPolicy
from pmlm_lib.method.refine.word_edits import apply_edit, edit_rows, word_type

if TYPE_CHECKING:
    import pandas as pd

INFERENCE_MODES = ("greedy", "sampled", "best_of", "greedy_distinct", "consensus")
CHOICES = ("sample", "argmax", "argmax_distinct")


@dataclass
class EditTask:
    """One prompt to edit: whose it is, the coarse prompt s_0, and x' (the encoder's input)."""

    patient_id: str
    prompt: str
    x_prime: np.ndarray


@dataclass
class Rollout:
    final: str  # P = s_n
    positions: list  # the edited word's index in the state it was chosen from, per step
    operations: list  # "delete", "replace" or "insert", per step
    words: list  # the new word of a replace or insert (None for a delete), per step
    logp: torch.Tensor  # sum of the chosen actions' log-probabilities (differentiable in training)
    entropy: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # sum over steps of H(π(·|s_i)) over words


def tasks_for(patient_ids: list[str], prompts, x_prime: np.ndarray) -> list[EditTask]:
    """Edit tasks of these patients (x_prime rows in patient_ids' order)."""
    return [EditTask(patient_id=p, prompt=prompts[p], x_prime=x_prime[i]) for i, p in enumerate(patient_ids)]


def patient_generator(seed: int, patient_id: str) -> torch.Generator:
    """The generator of one patient's sampled edits at inference: from the seed and her id only, so that her
    refined prompt is the same whether she is edited alone (the explorer) or among all test patients."""
    state = np.random.SeedSequence([seed, zlib.crc32(str(patient_id).encode())]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


class PromptEditor:
    def __init__(
        self,
        embedder,
        policy,
        encoder,
        n_steps: int = 10,
        min_words: int = 5,
        embed: str = "every_step",
        vocabulary: list[str] | None = None,
        train_encoder: bool = True,
        timer: Timer | None = None,
        device: str = "auto",
        protect: tuple[str, ...] | list[str] = (),
    ):
        if embed not in ("every_step", "once"):
            raise ValueError(f"embed must be 'every_step' or 'once', not {embed!r}")
        unknown = set(protect) - set(CLINICAL)
        if unknown:
            raise ValueError(f"protect may name {', '.join(CLINICAL)}, not {', '.join(sorted(unknown))}")
        self.protect = tuple(k for k in CLINICAL if k in protect)
        if policy.edits_words and not vocabulary:
            raise ValueError(
                "replace and insert need a vocabulary (edits.vocabulary_from_replies of the training replies)"
            )
        self.device = pick_device(device)  # the policy and the encoder live there ("auto": CUDA when present)
        self.embedder, self.policy, self.encoder = embedder, policy.to(self.device), encoder.to(self.device)
        self.n_steps, self.min_words, self.embed = n_steps, min_words, embed
        self.train_encoder = train_encoder
        self.vocabulary = list(vocabulary or [])
        self.vocabulary_embeddings = (
            torch.cat(embedder.embed([[w] for w in self.vocabulary])).to(self.device) if policy.edits_words else None
        )
        self.timer = timer or Timer(("embedding", "policy"))
        self.consensus: frozenset | None = None  # the "consensus" mode's edit set (learn_consensus)

    def parameters(self) -> list:
        """What REINFORCE trains: the policy, and the patient encoder in the paper's mode."""
        return list(self.policy.parameters()) + (list(self.encoder.parameters()) if self.train_encoder else [])

    def restarted(self) -> PromptEditor:
        """This editor with a new policy, its weights drawn from torch's generator as a new WordPolicy's are
        (on the CPU, so that a seed gives the same start on any device), and a copy of the patient encoder as
        it is now; the word embedder is shared. One restart of the training starts from it."""
        policy = copy.deepcopy(self.policy).cpu()
        for module in policy.modules():  # in construction order: the draws of a newly built policy
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        clone = copy.copy(self)
        clone.policy, clone.encoder = policy.to(self.device), copy.deepcopy(self.encoder)
        clone.timer = Timer(("embedding", "policy"))
        return clone

    def train(self, mode: bool = True) -> None:
        self.policy.train(mode)
        self.encoder.train(mode and self.train_encoder)

    # ---- one batch of rollouts, in lockstep so that each step embeds every state in one batch -------
    def rollout(
        self,
        tasks: list[EditTask],
        choice: str = "sample",
        generator: torch.Generator | list[torch.Generator] | None = None,
        n_steps: int | None = None,
    ) -> list[Rollout]:
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, not {choice!r}")
        policy, n_steps = self.policy, self.n_steps if n_steps is None else n_steps
        states = [segment(t.prompt) for t in tasks]
        x_hat = self.encoder(
            torch.as_tensor(np.stack([t.x_prime for t in tasks]), dtype=torch.float32, device=self.device)
        )
        if not self.train_encoder:
            x_hat = x_hat.detach()
        logps = [torch.zeros((), device=self.device) for _ in tasks]
        entropies = [torch.zeros((), device=self.device) for _ in tasks]
        traces = [([], [], []) for _ in tasks]
        deleted_types: list[set[str]] = [set() for _ in tasks]
        editable = [self.editable(state) for state in states]  # None: every word may be chosen
        rows: list[torch.Tensor] = []  # embed="once": each state's rows, edited along with its words
        if self.embed == "once":
            with self.timer("embedding"):
                rows = [r.to(self.device) for r in self.embedder.embed(states)]

        # one generator for the batch (training), or one per task (inference: a patient's draws do not depend on
        # which other prompts are edited beside hers)
        generators = generator if isinstance(generator, list) else [generator] * len(tasks)

        def choose(logp: torch.Tensor, allowed: torch.Tensor | None = None, draw: torch.Generator | None = None) -> int:
            if choice == "sample":  # drawn on the CPU with a CPU generator: the same edits on any device
                return int(torch.multinomial(logp.detach().exp().cpu(), 1, generator=draw))
            if allowed is not None and bool(allowed.any()):
                logp = logp.masked_fill(~allowed, float("-inf"))
            return int(torch.argmax(logp))

        for _ in range(n_steps):
            active = [  # guard: never empty a prompt, and stop where only protected words are left
                i
                for i, words in enumerate(states)
                if len(words) > self.min_words and (editable[i] is None or any(editable[i]))
            ]
            if not active:
                break
            with self.timer("embedding"):
                embeddings = (
                    [rows[i] for i in active]
                    if self.embed == "once"
                    else [e.to(self.device) for e in self.embedder.embed([states[i] for i in active])]
                )
            with self.timer("policy"):
                for i, E in zip(active, embeddings):
                    mask = None if editable[i] is None else torch.tensor(editable[i], device=self.device)
                    logp_words, h = policy.position_and_hidden(E, x_hat[i], mask)
                    allowed = None
                    if choice == "argmax_distinct":
                        allowed = torch.tensor(
                            [word_type(w) not in deleted_types[i] for w in states[i]], device=self.device
                        )
                        allowed = allowed if mask is None else allowed & mask
                    j = choose(logp_words, allowed, generators[i])
                    logp = logp_words[j]
                    finite = logp_words if mask is None else logp_words.masked_fill(~mask, 0.0)  # 0 · log 0 = 0
                    entropies[i] = entropies[i] - (finite.exp() * finite * (1.0 if mask is None else mask)).sum()
                    logp_ops = policy.operation_logp(h[j])
                    o = choose(logp_ops, None, generators[i]) if len(policy.operations) > 1 else 0
                    operation, new = policy.operations[o], None
                    logp = logp + logp_ops[o]
                    if operation != "delete":
                        logp_new = policy.word_logp(h[j], self.vocabulary_embeddings)
                        w = choose(logp_new, None, generators[i])
                        logp, new = logp + logp_new[w], self.vocabulary[w]
                    if operation == "delete":
                        deleted_types[i].add(word_type(states[i][j]))
                    states[i] = apply_edit(states[i], j, operation, new)
                    if editable[i] is not None:  # the flags follow the words (a new word is editable)
                        flags = editable[i]
                        editable[i] = (
                            flags[:j] + flags[j + 1 :]
                            if operation == "delete"
                            else flags[: j + 1] + ([True] if operation == "insert" else []) + flags[j + 1 :]
                        )
                    if self.embed == "once":
                        rows[i] = edit_rows(E, j, operation, None if new is None else self.vocabulary_embeddings[w])
                    for trace, value in zip(traces[i], (j, operation, new)):
                        trace.append(value)
                    logps[i] = logps[i] + logp
        return [Rollout(join(s), *t, lp, h) for s, t, lp, h in zip(states, traces, logps, entropies)]

    def editable(self, words: list[str]) -> list[bool] | None:
        """Which words of a state the policy may choose (None when nothing is protected)."""
        if not self.protect:
            return None
        return [kind not in self.protect for kind in clinical_kinds("".join(words))]

    # ---- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def edit(
        self,
        tasks: list[EditTask],
        mode: str = "greedy",
        seed: int = 0,
        samples: int = 8,
        n_steps: int | None = None,
        batch: int = 32,
    ) -> list[Rollout]:
        """The trained policy edits prompts in one of INFERENCE_MODES (n_steps edits; the trained n by default)."""
        if mode not in INFERENCE_MODES:
            raise ValueError(f"inference mode must be one of {', '.join(INFERENCE_MODES)}, not {mode!r}")
        if mode == "consensus":
            return [self.consensus_rollout(t.prompt) for t in tasks]
        self.train(False)
        choice = {"greedy": "argmax", "sampled": "sample", "best_of": "sample", "greedy_distinct": "argmax_distinct"}[
            mode
        ]
        copies = samples if mode == "best_of" else 1
        out = []
        for start in range(0, len(tasks), batch):
            part = tasks[start : start + batch]
            generators = [patient_generator(seed, t.patient_id) for t in part]
            tries = [self.rollout(part, choice, generators, n_steps) for _ in range(copies)]
            out += [max(candidates, key=lambda r: float(r.logp)) for candidates in zip(*tries)]
        return out

    @torch.no_grad()
    def learn_consensus(self, tasks: list[EditTask], seed: int = 0, samples: int = 4) -> frozenset:
        """The "consensus" mode's edit set: the n edits made most often by `samples` sampled rollouts of each of
        these prompts (the training pool's: no reference is read). Kept in `self.consensus` and the checkpoint."""
        if any(op != "delete" for op in self.policy.operations):
            raise ValueError("the consensus mode applies deletions only: train with operations ['delete']")
        sets = [
            edit_set(t.prompt, r.positions)[0]
            for copy in range(samples)  # each copy: every patient's own draw under another seed
            for t, r in zip(tasks, self.edit(tasks, "sampled", seed * 1000 + copy))
        ]
        self.consensus = consensus_template(sets, self.n_steps)
        return self.consensus

    def consensus_rollout(self, prompt: str) -> Rollout:
        """`prompt` with the consensus edit set applied (protected words kept), as a rollout of deletions."""
        if self.consensus is None:
            raise ValueError("this policy has no consensus edit: it was trained before the consensus mode existed")
        positions = deleting_positions(prompt, self.consensus, self.protect)
        return Rollout(
            final=apply_edit_set(prompt, self.consensus, self.protect),
            positions=positions,
            operations=["delete"] * len(positions),
            words=[None] * len(positions),
            logp=torch.zeros(()),
        )

    def patient_vector(self, x_prime: np.ndarray) -> torch.Tensor:
        """x̂ of one patient (Eq. 2): the patient encoder's output for her x'."""
        return self.encoder(torch.as_tensor(x_prime[None], dtype=torch.float32, device=self.device))[0]

    def word_logp(self, E: torch.Tensor, x_hat: torch.Tensor, flags: list[bool] | None) -> torch.Tensor:
        """log π(e | s) over a state's words (Eqs. 5-8) from their rows E, with protected words (flags False) masked."""
        mask = None if flags is None else torch.tensor(flags, device=self.device)
        return self.policy.position_and_hidden(E, x_hat, mask)[0]

    @torch.no_grad()
    def word_probabilities(self, prompt: str, x_prime: np.ndarray) -> pd.DataFrame:
        """π(e | s) of the policy's first step on this prompt: one row per word with its probability of being chosen
        and whether it may be chosen at all (protected words may not)."""
        import pandas as pd

        self.train(False)
        words = segment(prompt)
        flags = self.editable(words)
        logp = self.word_logp(self.embedder.embed([words])[0].to(self.device), self.patient_vector(x_prime), flags)
        return pd.DataFrame({"word": words, "pi": logp.exp().cpu().numpy(), "editable": flags or [True] * len(words)})

    def edit_table(
        self, tasks: list[EditTask], mode: str = "greedy", seed: int = 0, samples: int = 8, n_steps: int | None = None
    ) -> pd.DataFrame:
        """One row per patient: s_0, the edited prompt, its trace and the policy's log-probability of it."""
        import pandas as pd

        rows = [
            {
                "patient_id": t.patient_id,
                "coarse_prompt": t.prompt,
                "refined_prompt": r.final,
                "positions": r.positions,
                "operations": r.operations,
                "words": r.words,
                "logp": float(r.logp),
            }
            for t, r in zip(tasks, self.edit(tasks, mode, seed, samples, n_steps))
        ]
        return pd.DataFrame(rows).set_index("patient_id")

    def edit_prompts(
        self,
        patient_ids: list[str],
        prompts,
        x_prime: np.ndarray,
        mode: str = "greedy",
        seed: int = 0,
        samples: int = 8,
        n_steps: int | None = None,
    ) -> pd.Series:
        """The edited prompts of these patients, by patient (for the ablations' and sweeps' coarse prompts)."""
        return self.edit_table(tasks_for(patient_ids, prompts, x_prime), mode, seed, samples, n_steps)["refined_prompt"]

    # ---- saved with the training checkpoint -------------------------------------------------------
    def settings(self) -> dict:
        return {
            "n_steps": self.n_steps,
            "min_words": self.min_words,
            "embed": self.embed,
            "operations": list(self.policy.operations),
            "train_encoder": self.train_encoder,
            "protect": list(self.protect),
        }


def load_editor(checkpoint: str | Path, encoder, embedder=None, device: str = "auto") -> PromptEditor:
    """The trained policy (and its RL-trained patient encoder) from a refinement checkpoint, on `device`."""

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    settings = state["editor"]
    policy = WordPolicy(patient_dim=encoder.out_dim, operations=tuple(settings["operations"]))
    policy.load_state_dict(state["policy"])
    encoder.load_state_dict(state["encoder"])
    editor = PromptEditor(
        embedder or WordEmbedder(device=device),
        policy,
        encoder,
        n_steps=settings["n_steps"],
        min_words=settings["min_words"],
        embed=settings["embed"],
        vocabulary=state["vocabulary"],
        train_encoder=settings["train_encoder"],
        device=device,
        protect=settings.get("protect", ()),  # checkpoints made before protection existed protect nothing
    )
    editor.consensus = from_lists(state.get("consensus"))  # None in checkpoints made before the consensus mode
    editor.train(False)
    return editor
