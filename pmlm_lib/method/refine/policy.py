"""The word-level policy network f (the paper's Eqs. 5, 7 and 8), with optional edit operations.

For a prompt state s with word embeddings E = (e_1 .. e_N), global mean Ē and patient vector x̂,
each word is scored by an MLP on [e_i ‖ Ē ‖ x̂] (3 layers, hidden 256, dropout 0.4, output 1), and
π(e|s) = softmax over the words of that state: the word to edit (the paper: to delete).

Beyond the paper (its own stated limitation), an action can also replace the chosen word or insert
a word after it. Then two small heads read the chosen word's hidden features h_j: one gives
π(operation | j, s) over the allowed operations, one gives π(word | j, s) over a fixed vocabulary
(scores h_j · W v for the vocabulary's embeddings v). With operations=("delete",) the network and
its probabilities are exactly the paper's.
"""

from __future__ import annotations

import torch
from torch import nn

OPERATIONS = ("delete", "replace", "insert")


class WordPolicy(nn.Module):
    def __init__(
        self,
        word_dim: int = 384,
        patient_dim: int = 128,
        hidden: int = 256,
        dropout: float = 0.4,
        operations: tuple[str, ...] = ("delete",),
    ):
        super().__init__()
        unknown = set(operations) - set(OPERATIONS)
        if unknown or not operations:
            raise ValueError(f"operations must be a non-empty subset of {OPERATIONS}, not {operations!r}")
        self.operations = tuple(op for op in OPERATIONS if op in operations)
        self.net = nn.Sequential(
            nn.Linear(2 * word_dim + patient_dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        self.edits_words = len(self.operations) > 1 or self.operations != ("delete",)
        if len(self.operations) > 1:
            self.operation_head = nn.Linear(hidden, len(self.operations))
        if self.edits_words:
            self.word_head = nn.Linear(word_dim, hidden, bias=False)

    def hidden(self, words: torch.Tensor, patient: torch.Tensor) -> torch.Tensor:
        mean = words.mean(dim=0, keepdim=True).expand_as(words)
        features = torch.cat([words, mean, patient.unsqueeze(0).expand(words.shape[0], -1)], dim=1)
        return self.net[:-1](features)

    def forward(self, words: torch.Tensor, patient: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities over the words of one state: words [N, d], patient [p] -> [N].

        `allowed` (bool [N]) masks words that may not be chosen (none is masked by default).
        """
        return self.position_and_hidden(words, patient, allowed)[0]

    def position_and_hidden(self, words, patient, allowed=None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(words, patient)
        scores = self.net[-1](h).squeeze(-1)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.log_softmax(scores, dim=0), h

    def operation_logp(self, h_j: torch.Tensor) -> torch.Tensor:
        """log π(operation | chosen word), over self.operations."""
        if len(self.operations) == 1:
            return torch.zeros(1)
        return torch.log_softmax(self.operation_head(h_j), dim=0)

    def word_logp(self, h_j: torch.Tensor, vocabulary: torch.Tensor) -> torch.Tensor:
        """log π(new word | chosen word) over the vocabulary's embeddings [V, d]."""
        return torch.log_softmax(self.word_head(vocabulary) @ h_j, dim=0)
