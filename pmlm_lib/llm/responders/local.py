"""transformers on a local model folder: batched generation with the chat template (a GPU when present)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pmlm_lib.common.weights import device as pick_device
from pmlm_lib.common.weights import smollm2_transformers_path
from pmlm_lib.llm.responders.base import Decoding, Responder


class TransformersResponder(Responder):
    def __init__(
        self,
        model: str = "bundled",
        batch_size: int = 8,
        device: str = "auto",
        cache=None,
        use_cache: bool = True,
        allow_raw_data: bool = False,
    ):
        super().__init__(cache=cache, use_cache=use_cache, allow_raw_data=allow_raw_data)
        self.path = smollm2_transformers_path() if model == "bundled" else Path(model).expanduser()
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"{self.path} is not a transformers model folder (config.json missing)")
        self.batch_size, self.device = batch_size, pick_device(device)
        self._model = self._tokenizer = None

    @property
    def identity(self) -> dict:
        return {"backend": "transformers", "model": self.path.name}

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path, padding_side="left")
            if self._tokenizer.pad_token is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token
            dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
            self._model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        return self._model, self._tokenizer

    @torch.no_grad()
    def _generate(self, prompts: list[str], decoding: Decoding, on_answer, groups: list | None = None) -> None:
        model, tok = self._load()
        torch.manual_seed(decoding.seed)
        sample = decoding.temperature > 0
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            texts = [
                tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
                for p in batch
            ]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            t0 = time.perf_counter()
            out = model.generate(
                **enc,
                max_new_tokens=decoding.max_tokens,
                do_sample=sample,
                temperature=decoding.temperature if sample else None,
                top_p=decoding.top_p if sample else None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
            )
            seconds = (time.perf_counter() - t0) / len(batch)
            for j, row in enumerate(out[:, enc["input_ids"].shape[1] :]):
                on_answer(start + j, tok.decode(row, skip_special_tokens=True).strip(), seconds)

    def close(self) -> None:
        self._model = self._tokenizer = None
