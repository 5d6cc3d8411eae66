"""Any OpenAI-compatible chat endpoint: GPT-4, GLM-4, Gemini through a gateway, vLLM, Ollama, llama.cpp.

The key is read from an environment variable (named by `api_key_env`) at request time and is never
stored: not in the identity (cache keys), the cache, the run record, or any message: every error text
is redacted (the key's value, and any `Authorization`/`Bearer` text an endpoint echoes back).

Faults, and what happens:
- each request has one overall deadline (`timeout` seconds from sending to the last byte), however
  slowly the server drips its answer;
- 408, 409, 429 and 5xx are retried with exponential back-off, or after the server's `Retry-After`
  (bounded by `max_retry_after`);
- an answer that is not the expected JSON (an HTML page, malformed JSON, no `choices`, an `error`
  object, `content: null`) is retried, then reported;
- a refusal (401, 403, 404, ...) stops at once;
- every failure ends as one `EndpointError` naming the URL, and the batch stops early (the answers
  already received are cached; see `base.run_parallel`).
Prompts with raw examination values are refused for an endpoint that is not on this machine unless
`allow_raw_data` is set; "on this machine" is decided on the parsed host (`base.is_local_url`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from pmlm_lib.llm.responders.base import Decoding, Responder, is_local_url, run_parallel

RETRYABLE = {408, 409, 429, 500, 502, 503, 504}
_BEARER = re.compile(r"(?i)\b(bearer|token|api[_-]?key)(\s*[:=]?\s*)[\"']?[A-Za-z0-9._~+/=\-]{6,}")
_SECRET_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")


class EndpointError(RuntimeError):
    """The endpoint could not be reached or refused the request; the message says which and why."""


class _Transient(Exception):
    """A failure worth another attempt (network, 5xx, malformed answer); `wait` overrides the back-off."""

    def __init__(self, what: str, wait: float | None = None, deadline: bool = False):
        super().__init__(what)
        self.wait, self.deadline = wait, deadline


def redact(text: str, secret: str | None = None) -> str:
    """The text without the key's value and without anything that looks like a bearer token."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _SECRET_LIKE.sub("[redacted]", _BEARER.sub(lambda m: m.group(1) + m.group(2) + "[redacted]", text))


def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, cap))


class OpenAICompatibleResponder(Responder):
    remote = True

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 90.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_retry_after: float = 60.0,
        concurrency: int = 4,
        cache=None,
        use_cache: bool = True,
        allow_raw_data: bool = False,
        local: bool | None = None,
    ):
        super().__init__(cache=cache, use_cache=use_cache, allow_raw_data=allow_raw_data)
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {base_url!r} is not an http(s) address (for example https://api.openai.com/v1)")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout, self.max_retries, self.backoff, self.concurrency = timeout, max_retries, backoff, concurrency
        self.max_retry_after = max_retry_after
        # an endpoint on this machine keeps the data here; say local=True to treat another host as local
        self.remote = not (is_local_url(self.base_url) if local is None else local)
        self.requests_sent = 0

    @property
    def identity(self) -> dict:
        return {"backend": "openai-compatible", "base_url": self.base_url, "model": self.model}

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleResponder(base_url={self.base_url!r}, model={self.model!r}, key from ${self.api_key_env})"
        )

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def _url(self) -> str:
        return self.base_url + ("/chat/completions" if self.base_url.endswith("/v1") else "/v1/chat/completions")

    def _post(self, body: bytes) -> tuple[int, dict, bytes]:
        """One POST with one overall deadline: a watchdog shuts the socket when it passes."""
        import http.client

        url = urlsplit(self._url())
        connection_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = connection_class(url.hostname, url.port, timeout=self.timeout)
        expired, sockets = threading.Event(), []

        def expire():
            expired.set()
            for sock in sockets + ([conn.sock] if conn.sock is not None else []):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(self.timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        headers = {"Content-Type": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            conn.connect()
            sockets.append(conn.sock)  # the response keeps reading from it after the connection lets go of it
            conn.request("POST", url.path + (f"?{url.query}" if url.query else ""), body=body, headers=headers)
            response = conn.getresponse()
            chunks = []
            while True:
                chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            if expired.is_set():  # the watchdog shut the socket: what came is a fragment
                raise OSError("deadline")
            return response.status, {k.lower(): v for k, v in response.getheaders()}, b"".join(chunks)
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise _Transient(f"no complete answer within the {self.timeout:g} s deadline", deadline=True) from None
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        finally:
            watchdog.cancel()
            conn.close()

    def _content(self, status: int, headers: dict, payload: bytes) -> str:
        text = payload.decode("utf-8", "replace")
        if status in RETRYABLE:
            raise _Transient(
                f"HTTP {status}: {text[:200]}", _retry_after(headers.get("retry-after"), self.max_retry_after)
            )
        if status >= 400:
            raise EndpointError(
                f"{self._url()} refused the request with HTTP {status}: {redact(text[:300], self._key())} "
                f"(check the model name {self.model!r} and the key in ${self.api_key_env})"
            )
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            kind = "an HTML page" if text.lstrip().lower().startswith(("<!doctype", "<html")) else "malformed JSON"
            raise _Transient(f"HTTP {status} with {kind} instead of a chat completion: {text[:120]!r}") from None
        if not isinstance(data, dict) or "error" in data:
            detail = data.get("error") if isinstance(data, dict) else data
            raise _Transient(f"an error object instead of a chat completion: {str(detail)[:200]}")
        choices = data.get("choices")
        if not choices or not isinstance(choices, list):
            raise _Transient("a chat completion without choices")
        content = (choices[0].get("message") or {}).get("content") if isinstance(choices[0], dict) else None
        if content is None:
            raise _Transient("a chat completion whose content is null")
        return content

    def chat(self, prompt: str, decoding: Decoding) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": decoding.max_tokens,
                "temperature": decoding.temperature,
                "top_p": decoding.top_p,
                "seed": decoding.seed,
            }
        ).encode("utf-8")
        last, deadlines = "", 0
        for attempt in range(self.max_retries + 1):
            self.requests_sent += 1
            try:
                return self._content(*self._post(body))
            except _Transient as transient:
                last = str(transient)
                deadlines += transient.deadline
                if attempt == self.max_retries or deadlines > 1:  # a server that hangs twice will hang again
                    break
                time.sleep(transient.wait if transient.wait is not None else self.backoff * 2**attempt)
        raise EndpointError(
            f"{self._url()} gave no usable answer after {attempt + 1} attempt(s) (last: "
            f"{redact(last, self._key())}); check that the server runs, the base URL and the model name"
        )

    def _generate(self, prompts: list[str], decoding: Decoding, on_answer, groups: list | None = None) -> None:
        def one(j):
            start = time.perf_counter()
            return self.chat(prompts[j], decoding), time.perf_counter() - start

        try:
            run_parallel(len(prompts), self.concurrency, one, on_answer)
        except EndpointError:
            raise
        except Exception as exc:  # anything else from the network layer, redacted and named
            raise EndpointError(f"{self._url()}: {type(exc).__name__}: {redact(str(exc), self._key())}") from None
