"""The reward of Eq. 9: BERTScore of an answer against the doctor's reply, with one reused scorer.

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

from collections import OrderedDict, defaultdict

import numpy as np
import torch

from .models import device as pick_device
from .models import minilm_path

METRICS = {"precision": 0, "recall": 1, "f1": 2}


class BERTScoreReward:
    def __init__(self, model: str = "bundled", num_layers: int = 6, metric: str = "f1", device: str = "auto", batch_size: int = 32,
                 memory: int = 1000):
        from bert_score import BERTScorer

        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        path = str(minilm_path()) if model == "bundled" else model
        self.metric = metric
        self.scorer = BERTScorer(model_type=path, num_layers=num_layers, idf=False, batch_size=batch_size,
                                 device=pick_device(device), lang="en")
        self.batch_size = batch_size
        # bert-score's weights when idf is off: 1 for every token, 0 for [CLS] and [SEP] (as BERTScorer.score)
        self._idf = defaultdict(lambda: 1.0)
        self._idf[self.scorer._tokenizer.sep_token_id] = 0
        self._idf[self.scorer._tokenizer.cls_token_id] = 0
        self._memory: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._capacity = memory
        self.encoded = 0  # texts actually run through the encoder

    @property
    def hash(self) -> str:
        # bert-score's hash holds the model's full path; the folder name identifies it
        return self.scorer.hash.split("/")[-1]

    def _embeddings(self, texts: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        from bert_score.utils import get_bert_embedding

        scorer = self.scorer
        wanted = list(dict.fromkeys(texts))
        todo = sorted((t for t in wanted if t not in self._memory), key=lambda t: len(t.split(" ")), reverse=True)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            embs, masks, idf = get_bert_embedding(batch, scorer._model, scorer._tokenizer, self._idf, device=scorer.device)
            for i, text in enumerate(batch):
                n = int(masks[i].sum())
                self._memory[text] = (embs[i, :n].cpu(), idf[i, :n].cpu())
            self.encoded += len(batch)
        found = {}
        for text in wanted:
            self._memory.move_to_end(text)
            found[text] = self._memory[text]
        while len(self._memory) > max(self._capacity, len(wanted)):
            self._memory.popitem(last=False)
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
            return pad_sequence(list(emb), batch_first=True, padding_value=2.0), mask, pad_sequence(list(idf), batch_first=True)

        for start in range(0, len(keep), self.batch_size):
            part = keep[start:start + self.batch_size]
            p, r, f = greedy_cos_idf(*padded([references[i] for i in part]), *padded([candidates[i] for i in part]), False)
            out[part] = torch.stack([p, r, f], dim=1).numpy()
        return out

    def __call__(self, candidates: list[str], references: list[str]) -> np.ndarray:
        scores = self.all_scores(candidates, references)[:, METRICS[self.metric]]
        if np.isnan(scores).any():
            raise FloatingPointError("BERTScore returned NaN; check the answers and references for unusual text")
        return scores
