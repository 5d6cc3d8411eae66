"""llama.cpp on a GGUF file through xllamacpp: the default responder on a CPU.

The server decodes several sequences at once (`n_parallel` slots with continuous batching);
requests are sent from as many threads, so that all slots stay busy. "bundled" is SmolLM2-135M
re-encoded as Q8_0 (models.smollm2_q8_gguf_path); "bundled-q4_1" is the file as shipped. On this
2-core CPU (no AVX2) it decodes about 65 tokens/s in all, about 0.7 answers of 96 tokens per second
(`pmlm bench` measures it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..models import file_sha256, smollm2_gguf_path, smollm2_q8_gguf_path
from .base import Decoding, Responder, run_parallel


class LlamaCppResponder(Responder):
    def __init__(self, model: str = "bundled", n_parallel: int = 4, ctx_per_slot: int = 2048, threads: int | None = None,
                 lora: str | None = None, cache=None, use_cache: bool = True, allow_raw_data: bool = False, verbose: bool = False):
        super().__init__(cache=cache, use_cache=use_cache, allow_raw_data=allow_raw_data)
        bundled = {"bundled": smollm2_q8_gguf_path, "bundled-q4_1": smollm2_gguf_path}
        self.model_path = bundled[model]() if model in bundled else Path(model).expanduser()
        if not self.model_path.exists():
            raise FileNotFoundError(f"GGUF model {self.model_path} not found: pass 'bundled', 'bundled-q4_1' or the path of a .gguf file")
        self.n_parallel, self.ctx_per_slot = n_parallel, ctx_per_slot
        self.threads = threads or min(os.cpu_count() or 2, 8)
        self.verbose = verbose
        self._server = None
        self._identity = {"backend": "llama.cpp", "model": self.model_path.name, "sha256": file_sha256(self.model_path)[:16]}
        self.lora = Path(lora).expanduser() if lora else None  # a llama.cpp LoRA adapter GGUF applied on top
        if self.lora is not None:
            if not self.lora.exists():
                raise FileNotFoundError(f"LoRA adapter {self.lora} not found (a llama.cpp adapter .gguf)")
            self._identity["lora_sha256"] = file_sha256(self.lora)[:16]
        self.last_timings: list[dict] = []

    @property
    def identity(self) -> dict:
        return self._identity

    @property
    def server(self):
        """The llama.cpp server, started on first use (loading takes about half a second)."""
        if self._server is None:
            import xllamacpp as xlc

            params = xlc.CommonParams()
            params.model.path = str(self.model_path)
            params.n_parallel = self.n_parallel
            params.n_ctx = self.ctx_per_slot * self.n_parallel
            params.cont_batching = True
            if self.lora is not None:
                params.lora_adapters = [xlc.CommonAdapterLoraInfo(str(self.lora), 1.0)]
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = self.threads
            if not self.verbose:
                params.verbosity = -1
            self._server = xlc.Server(params)
        return self._server

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible HTTP address the same server listens on (127.0.0.1)."""
        return self.server.listening_address

    def chat(self, prompt: str, decoding: Decoding) -> dict:
        request = {"messages": [{"role": "user", "content": prompt}], "max_tokens": decoding.max_tokens,
                   "temperature": decoding.temperature, "top_p": decoding.top_p, "seed": decoding.seed}
        result = self.server.handle_chat_completions(request)
        if not isinstance(result, dict) or "choices" not in result:
            raise RuntimeError(f"llama.cpp refused the request: {str(result)[:300]}")
        return result

    def _generate(self, prompts: list[str], decoding: Decoding, on_answer) -> None:
        self.server  # start it before the threads do

        def one(j: int):
            start = time.perf_counter()
            result = self.chat(prompts[j], decoding)
            self.last_timings.append(result.get("timings", {}))
            return result["choices"][0]["message"]["content"] or "", time.perf_counter() - start

        run_parallel(len(prompts), self.n_parallel, one, on_answer)

    def close(self) -> None:
        self._server = None
