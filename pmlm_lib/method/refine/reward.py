"""The reward of Eq. 9: BERTScore of an answer against the doctor's reply, with one reused scorer
(`BERTScoreReward`), and the reward object of the refinement (`AnswerReward`).

bert-score's pitfalls handled here: the scorer is built once (loading is slow); idf is off for
per-sample rewards; an empty answer scores 0 (bert-score would warn and return 0 anyway); inputs
longer than the encoder's limit are truncated by bert-score (said in its docs); no baseline
rescaling for a local model; the scorer's hash is recorded with the results.

Speed: the doctors' replies are scored again at every epoch, and they are the longer side of each
pair. So the contextual embeddings of each text are remembered (a bounded memory of recent texts)
and only new texts go through the encoder; the greedy matching is bert-score's own function, so
the figures are bert-score's (a test checks them against `bert_score.score`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from pmlm_lib.common.lru import Recent
from pmlm_lib.common.timing import Timer
from pmlm_lib.common.weights import device as pick_device
from pmlm_lib.common.weights import minilm_path

METRICS = {"precision": 0, "recall": 1, "f1": 2}


class BERTScoreReward:
    def __init__(
        self,
        model: str = "bundled",
        num_layers: int = 6,
        metric: str = "f1",
        device: str = "auto",
        batch_size: int = 32,
        memory: int = 1000,
    ):
        from bert_score import BERTScorer

        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        path = str(minilm_path()) if model == "bundled" else model
        self.metric = metric
        self.scorer = BERTScorer(
            model_type=path,
            num_layers=num_layers,
            idf=False,
            batch_size=batch_size,
            device=pick_device(device),
            lang="en",
        )
        self.batch_size = batch_size
        # bert-score's weights when idf is off: 1 for every token, 0 for [CLS] and [SEP] (as BERTScorer.score)
        self._idf = defaultdict(lambda: 1.0)
        self._idf[self.scorer._tokenizer.sep_token_id] = 0
        self._idf[self.scorer._tokenizer.cls_token_id] = 0
        self._memory = Recent(memory)
        self.encoded = 0  # texts actually run through the encoder

    @property
    def hash(self) -> str:
        # bert-score's hash holds the model's full path; the folder name identifies it
        return self.scorer.hash.split("/")[-1]

    def _embeddings(self, texts: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        # bert-score's internals (`_model`, `_tokenizer`, `get_bert_embedding`, `greedy_cos_idf`) are used so
        # that each text is encoded once; they are safe because bert-score is pinned (bert-score==0.3.13 in
        # pyproject.toml) and tests/method/test_refine.py::test_reward_matches_bert_score_and_guards_empty_answers
        # checks the figures against bert_score.score itself.
        from bert_score.utils import get_bert_embedding

        scorer = self.scorer
        wanted = list(dict.fromkeys(texts))
        found = {t: self._memory.get(t) for t in wanted if t in self._memory}
        todo = sorted((t for t in wanted if t not in found), key=lambda t: len(t.split(" ")), reverse=True)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            embs, masks, idf = get_bert_embedding(
                batch, scorer._model, scorer._tokenizer, self._idf, device=scorer.device
            )
            for i, text in enumerate(batch):
                n = int(masks[i].sum())
                found[text] = (embs[i, :n].cpu(), idf[i, :n].cpu())
                self._memory.put(text, found[text])
            self.encoded += len(batch)
        return found

    @torch.no_grad()
    def all_scores(self, candidates: list[str], references: list[str]) -> np.ndarray:
        """[n, 3]: precision, recall, F1; an empty candidate scores 0 on all three."""
        from bert_score.utils import greedy_cos_idf
        from torch.nn.utils.rnn import pad_sequence

        out = np.zeros((len(candidates), 3))
        keep = [i for i, c in enumerate(candidates) if c and c.strip()]
        if not keep:
            return out
        stats = self._embeddings([candidates[i] for i in keep] + [references[i] for i in keep])

        def padded(texts):
            emb, idf = zip(*(stats[t] for t in texts))
            lengths = torch.tensor([e.shape[0] for e in emb])
            mask = torch.arange(int(lengths.max())).expand(len(texts), -1) < lengths[:, None]
            return (
                pad_sequence(list(emb), batch_first=True, padding_value=2.0),
                mask,
                pad_sequence(list(idf), batch_first=True),
            )

        for start in range(0, len(keep), self.batch_size):
            part = keep[start : start + self.batch_size]
            p, r, f = greedy_cos_idf(
                *padded([references[i] for i in part]), *padded([candidates[i] for i in part]), False
            )
            out[part] = torch.stack([p, r, f], dim=1).numpy()
        return out

    def __call__(self, candidates: list[str], references: list[str]) -> np.ndarray:
        scores = self.all_scores(candidates, references)[:, METRICS[self.metric]]
        if np.isnan(scores).any():
            raise FloatingPointError("BERTScore returned NaN; check the answers and references for unusual text")
        return scores


@dataclass
class RewardResult:
    """Eq. 9 for a batch of episodes: reward = after − before."""

    reward: np.ndarray
    after: np.ndarray  # BS(LLM_r(P), r)
    before: np.ndarray  # BS(LLM_r(s_0), r)


class AnswerReward:
    """The reward of Eq. 9 as one object: Reward = BS(LLM_r(P), r) − BS(LLM_r(s_0), r).

    It answers the final prompt P and the coarse prompt s_0 with the responder (decoding fixed for
    the run) and scores both against the doctor's reply r with `scorer` (BERTScoreReward, or any
    callable(candidates, references) -> scores). The score of each s_0 answer is computed once and
    kept, exactly as computed, so that a resumed run scores as an uninterrupted one.
    """

    def __init__(self, responder, scorer, decoding, timer: Timer | None = None):
        self.responder, self.scorer, self.decoding = responder, scorer, decoding
        self.timer = timer or Timer(("answers", "reward"))
        self.scored_before: dict[tuple[str, str], float] = {}

    def answer(self, prompts: list[str]) -> list[str]:
        with self.timer("answers"):  # a progress bar for the big batches (every s_0 of the pool, the inference modes)
            return self.responder.answer(prompts, self.decoding, progress=len(prompts) > 16)

    def prepare(self, prompts: list[str]) -> None:
        """Answer many prompts up front in one batch (every s_0 of the pool): the responder's slots
        stay busy, and later calls find the answers in the cache."""
        self.answer(prompts)

    def scores(self, prompts: list[str], references: list[str]) -> np.ndarray:
        """BS(LLM_r(prompt), r) for each prompt (a control's prompts, for instance)."""
        answers = self.answer(prompts)
        with self.timer("reward"):
            return np.asarray(self.scorer(answers, references), dtype=float)

    def __call__(self, finals: list[str], initials: list[str], references: list[str]) -> RewardResult:
        answers = self.answer(finals + initials)  # s_0 answers come from the cache after the first time
        with self.timer("reward"):
            # BS(LLM_r(s_0), r) is the same every epoch: scored once per (answer, reply)
            unscored = sorted({(a, r) for a, r in zip(answers[len(finals) :], references)} - self.scored_before.keys())
            scores = self.scorer(
                answers[: len(finals)] + [a for a, _ in unscored], references + [r for _, r in unscored]
            )
            self.scored_before.update(zip(unscored, (float(s) for s in scores[len(finals) :])))
        after = np.asarray(scores[: len(finals)], dtype=float)
        before = np.array([self.scored_before[(a, r)] for a, r in zip(answers[len(finals) :], references)])
        return RewardResult(after - before, after, before)

    def state_dict(self) -> dict:
        return {"scored_before": [[a, r, v] for (a, r), v in self.scored_before.items()]}

    def load_state_dict(self, state: dict) -> None:
        self.scored_before = {(a, r): v for a, r, v in state.get("scored_before", [])}
