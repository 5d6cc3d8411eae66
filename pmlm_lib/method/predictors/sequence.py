"""LSTM, 1-D CNN and Transformer encoder on the zero-padded visit tables (the paper's A.3 baselines)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from pmlm_lib.common.weights import device as pick_device
from pmlm_lib.data.cohort import Cohort
from pmlm_lib.data.representation import Standardizer, padded_tensor
from pmlm_lib.data.sampling import labels_of
from pmlm_lib.method.predictors.base import Predictor, encode_labels


class _LSTM(nn.Module):
    def __init__(self, n_in, n_out, hidden=128):
        super().__init__()
        self.rnn = nn.LSTM(n_in, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(hidden, n_out))

    def forward(self, x, mask):
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)
        return self.head(h[-1])


class _CNN(nn.Module):
    def __init__(self, n_in, n_out, hidden=128):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(n_in, hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(hidden, n_out))

    def forward(self, x, mask):
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # [B, T, H]
        m = mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1).clamp(min=1))


class _Transformer(nn.Module):
    def __init__(self, n_in, n_out, hidden=64, max_len=64):
        super().__init__()
        self.inp = nn.Linear(n_in, hidden)
        self.pos = nn.Parameter(torch.zeros(1, max_len, hidden))
        layer = nn.TransformerEncoderLayer(hidden, nhead=4, dim_feedforward=2 * hidden, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x, mask):
        h = self.inp(x) + self.pos[:, : x.shape[1]]
        h = self.enc(h, src_key_padding_mask=~mask)
        m = mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1).clamp(min=1))


ARCHS = {"lstm": _LSTM, "cnn": _CNN, "transformer": _Transformer}


class SequencePredictor(Predictor):
    """A torch sequence classifier; the epoch with the best validation macro-F1 is kept when
    validation patients are given to `fit`, else the last epoch."""

    def __init__(
        self,
        arch: str = "lstm",
        seed: int = 0,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        max_visits: int = 45,
        device: str = "auto",
    ):
        super().__init__(
            seed=seed, arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, max_visits=max_visits, device=device
        )
        self.family = arch
        self.arch, self.epochs, self.batch_size, self.lr, self.max_visits = arch, epochs, batch_size, lr, max_visits
        self.device = pick_device(device)
        self.net: nn.Module | None = None
        self.standardizer: Standardizer | None = None
        self.n_features = 0

    def _build(self):
        torch.manual_seed(self.seed)
        return ARCHS[self.arch](self.n_features, len(self.classes_)).to(self.device)

    def _tensors(self, cohort, ids):
        x, mask, _ = padded_tensor(cohort, ids, self.max_visits, self.standardizer)
        return torch.from_numpy(x).to(self.device), torch.from_numpy(mask).to(self.device)

    def fit(self, cohort: Cohort, patient_ids, validation_ids=None):
        from sklearn.metrics import f1_score

        self.classes_ = list(cohort.labels)
        self.n_features = len(cohort.indicators)
        train_rows = cohort.exams[cohort.exams["patient_id"].isin(set(patient_ids))]
        self.standardizer = Standardizer().fit(train_rows[cohort.indicators].to_numpy(dtype=float))
        x, mask = self._tensors(cohort, list(patient_ids))
        y = torch.tensor(encode_labels(labels_of(cohort, patient_ids), self.classes_), device=self.device)
        if validation_ids is not None:
            xv, mv = self._tensors(cohort, list(validation_ids))
            yv = encode_labels(labels_of(cohort, validation_ids), self.classes_)
        self.net = self._build()
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        best, best_state = -1.0, None
        for _epoch in range(self.epochs):
            self.net.train()
            for idx in torch.randperm(len(y), generator=gen).split(self.batch_size):
                idx = idx.to(self.device)
                loss = nn.functional.cross_entropy(self.net(x[idx], mask[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if validation_ids is not None:
                pred = self._logits(xv, mv).argmax(1).cpu().numpy()
                score = f1_score(yv, pred, average="macro")
                if score > best:
                    best, best_state = score, {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        if best_state is not None:
            self.net.load_state_dict(best_state)
        return self

    @torch.no_grad()
    def _logits(self, x, mask):
        self.net.eval()
        return torch.cat([self.net(x[i : i + 256], mask[i : i + 256]) for i in range(0, len(x), 256)])

    def _predict_proba(self, cohort, patient_ids):
        x, mask = self._tensors(cohort, patient_ids)
        return torch.softmax(self._logits(x, mask), dim=1).cpu().numpy()

    def _save_state(self, folder: Path):
        torch.save(self.net.state_dict(), folder / "weights.pt")
        (folder / "standardizer.json").write_text(
            json.dumps({**self.standardizer.state(), "n_features": self.n_features})
        )

    def _load_state(self, folder: Path):
        state = json.loads((folder / "standardizer.json").read_text())
        self.standardizer, self.n_features = Standardizer.from_state(state), state["n_features"]
        self.net = self._build()
        self.net.load_state_dict(torch.load(folder / "weights.pt", map_location=self.device))
