"""The reward of Eq. 9: BERTScore of an answer against the doctor's reply, with one reused scorer.

bert-score's pitfalls handled here: the scorer is built once (loading is slow); idf is off for
per-sample rewards; an empty answer scores 0 (bert-score would warn and return 0 anyway); inputs
longer than the encoder's limit are truncated by bert-score (said in its docs); no baseline
rescaling for a local model; the scorer's hash is recorded with the results.
"""

from __future__ import annotations

import numpy as np

from .models import device as pick_device
from .models import minilm_path

METRICS = {"precision": 0, "recall": 1, "f1": 2}


class BERTScoreReward:
    def __init__(self, model: str = "bundled", num_layers: int = 6, metric: str = "f1", device: str = "auto", batch_size: int = 32):
        from bert_score import BERTScorer

        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        path = str(minilm_path()) if model == "bundled" else model
        self.metric = metric
        self.scorer = BERTScorer(model_type=path, num_layers=num_layers, idf=False, batch_size=batch_size,
                                 device=pick_device(device), lang="en")

    @property
    def hash(self) -> str:
        # bert-score's hash holds the model's full path; the folder name identifies it
        return self.scorer.hash.split("/")[-1]

    def all_scores(self, candidates: list[str], references: list[str]) -> np.ndarray:
        """[n, 3]: precision, recall, F1; an empty candidate scores 0 on all three."""
        out = np.zeros((len(candidates), 3))
        keep = [i for i, c in enumerate(candidates) if c and c.strip()]
        if keep:
            p, r, f = self.scorer.score([candidates[i] for i in keep], [references[i] for i in keep])
            out[keep] = np.stack([p.numpy(), r.numpy(), f.numpy()], axis=1)
        return out

    def __call__(self, candidates: list[str], references: list[str]) -> np.ndarray:
        scores = self.all_scores(candidates, references)[:, METRICS[self.metric]]
        if np.isnan(scores).any():
            raise FloatingPointError("BERTScore returned NaN; check the answers and references for unusual text")
        return scores
