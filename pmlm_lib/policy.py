"""The word-level policy network f (the paper's Eqs. 5, 7 and 8).

For a prompt state s with word embeddings E = (e_1 .. e_N), global mean Ē and patient vector x̂,
each word is scored by an MLP on [e_i ‖ Ē ‖ x̂] (3 layers, hidden 256, dropout 0.4, output 1), and
π(e|s) = softmax over the words of that state.
"""

from __future__ import annotations

import torch
from torch import nn


class WordPolicy(nn.Module):
    def __init__(self, word_dim: int = 384, patient_dim: int = 128, hidden: int = 256, dropout: float = 0.4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * word_dim + patient_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, words: torch.Tensor, patient: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities over the words of one state: words [N, d], patient [p] -> [N].

        `allowed` (bool [N]) masks words that may not be chosen (none is masked by default).
        """
        mean = words.mean(dim=0, keepdim=True).expand_as(words)
        features = torch.cat([words, mean, patient.unsqueeze(0).expand(words.shape[0], -1)], dim=1)
        scores = self.net(features).squeeze(-1)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.log_softmax(scores, dim=0)
