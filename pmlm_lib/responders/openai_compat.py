"""Any OpenAI-compatible chat endpoint: GPT-4, GLM-4, Gemini through a gateway, vLLM, Ollama, llama.cpp.

The key is read from an environment variable (named by `api_key_env`) at request time and is never
stored: not in the identity (cache keys), the cache, the run record, error messages or logs.
Requests have a timeout, are retried with exponential back-off on 429, 5xx and dropped
connections, and run at most `concurrency` at a time. An endpoint that cannot be reached, or that
refuses a request (401, 404, ...), stops with one clear error.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

from .base import Decoding, Responder, run_parallel

RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """The endpoint could not be reached or refused the request; the message says which and why."""


class OpenAICompatibleResponder(Responder):
    remote = True

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 120.0,
                 max_retries: int = 5, backoff: float = 1.0, concurrency: int = 4, cache=None, use_cache: bool = True,
                 allow_raw_data: bool = False, local: bool | None = None):
        super().__init__(cache=cache, use_cache=use_cache, allow_raw_data=allow_raw_data)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout, self.max_retries, self.backoff, self.concurrency = timeout, max_retries, backoff, concurrency
        # an endpoint on this machine keeps the data here; say local=True to treat another host as local
        loopback = any(h in self.base_url for h in ("://127.", "://localhost", "://[::1]"))
        self.remote = not (loopback if local is None else local)
        self.requests_sent = 0

    @property
    def identity(self) -> dict:
        return {"backend": "openai-compatible", "base_url": self.base_url, "model": self.model}

    def __repr__(self) -> str:
        return f"OpenAICompatibleResponder(base_url={self.base_url!r}, model={self.model!r}, key from ${self.api_key_env})"

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def _url(self) -> str:
        return self.base_url + ("/chat/completions" if self.base_url.endswith("/v1") else "/v1/chat/completions")

    def chat(self, prompt: str, decoding: Decoding) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "max_tokens": decoding.max_tokens, "temperature": decoding.temperature,
                           "top_p": decoding.top_p, "seed": decoding.seed}).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self._url(), data=body, headers=self._headers(), method="POST")
            self.requests_sent += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                return payload["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:300]
                if exc.code not in RETRYABLE:
                    raise EndpointError(f"{self._url()} refused the request with HTTP {exc.code}: {detail} "
                                        f"(check the model name {self.model!r} and the key in ${self.api_key_env})") from None
                last = f"HTTP {exc.code}: {detail}"
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        raise EndpointError(f"{self._url()} did not answer after {self.max_retries + 1} attempts ({last}); "
                            "check that the server runs and the base URL is right")

    def _generate(self, prompts: list[str], decoding: Decoding, on_answer) -> None:
        def one(j):
            start = time.perf_counter()
            return self.chat(prompts[j], decoding), time.perf_counter() - start

        run_parallel(len(prompts), self.concurrency, one, on_answer)
