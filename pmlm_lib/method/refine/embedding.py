"""Word embeddings E = BERT(s) of a prompt (the paper's Eq. 6), from the bundled MiniLM encoder.

Each word of `prompts.segment` gets the mean of its sub-word vectors from the encoder's last layer.
A prompt longer than the encoder's 512-token limit is embedded in consecutive windows of whole
words, so that no word is silently cut off. The most recent `memory` states are remembered by text
(about 0.3 MB each), so the same prompt state is not encoded twice while it is still in use.
"""

from __future__ import annotations

import torch

from pmlm_lib.common.lru import Recent
from pmlm_lib.common.weights import device as pick_device
from pmlm_lib.common.weights import minilm_path


class WordEmbedder:
    def __init__(self, model: str = "bundled", device: str = "auto", max_tokens: int = 510, memory: int = 1000):
        from transformers import AutoModel, AutoTokenizer

        path = str(minilm_path()) if model == "bundled" else model
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.dim = self.model.config.hidden_size
        self.max_tokens = max_tokens
        self._memory = Recent(memory)
        self.encoded = 0  # windows actually run through the encoder

    def _windows(self, words: list[str]) -> list[list[str]]:
        lengths = [max(1, len(self.tokenizer(w, add_special_tokens=False)["input_ids"])) for w in words]
        windows, current, used = [], [], 0
        for w, n in zip(words, lengths):
            if current and used + n > self.max_tokens:
                windows.append(current)
                current, used = [], 0
            current.append(w)
            used += n
        if current:
            windows.append(current)
        return windows

    @torch.no_grad()
    def _encode_batch(self, batch: list[list[str]]) -> list[torch.Tensor]:
        enc = self.tokenizer(
            batch,
            is_split_into_words=True,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_tokens + 2,
        ).to(self.device)
        hidden = self.model(**enc).last_hidden_state
        self.encoded += len(batch)
        out = []
        for b, words in enumerate(batch):
            ids = enc.word_ids(b)
            vectors = torch.zeros(len(words), self.dim, device=self.device)
            counts = torch.zeros(len(words), 1, device=self.device)
            for t, w in enumerate(ids):
                if w is not None:
                    vectors[w] += hidden[b, t]
                    counts[w] += 1
            out.append((vectors / counts.clamp(min=1)).cpu())
        return out

    def embed(self, prompts_words: list[list[str]]) -> list[torch.Tensor]:
        """[n_words, dim] for each prompt given as its words (trailing spaces are ignored)."""
        results: list[torch.Tensor | None] = [None] * len(prompts_words)
        todo: dict[str, list[int]] = {}
        for i, words in enumerate(prompts_words):
            key = "\u241f".join(words)
            if key in self._memory:
                results[i] = self._memory.get(key)
            else:
                todo.setdefault(key, []).append(i)
        jobs = []  # (key, window index, words)
        for key, idxs in todo.items():
            clean = [w.strip() or "_" for w in prompts_words[idxs[0]]]
            for k, window in enumerate(self._windows(clean)):
                jobs.append((key, k, window))
        pieces: dict[str, list[torch.Tensor]] = {key: [] for key in todo}
        for start in range(0, len(jobs), 16):
            chunk = jobs[start : start + 16]
            for (key, _k, _w), vec in zip(chunk, self._encode_batch([w for _, _, w in chunk])):
                pieces[key].append(vec)
        for key, idxs in todo.items():
            full = torch.cat(pieces[key]) if pieces[key] else torch.zeros(0, self.dim)
            self._memory.put(key, full)
            for i in idxs:
                results[i] = full
        return results  # type: ignore[return-value]
