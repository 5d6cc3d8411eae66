"""LLM_r: the model that answers a prompt (the paper's responders, Table 1).

One interface (`base.Responder.answer`): a batch of prompts and decoding settings in, answers out,
in order, through a durable on-disk cache. Backends: llama.cpp on the bundled GGUF (`llamacpp`,
the default here), transformers on a local folder (`local`, a GPU when present), and any
OpenAI-compatible chat endpoint (`openai_compat`: GPT-4, GLM-4, Gemini through a gateway, vLLM,
Ollama, a llama.cpp server).
"""

from pmlm_lib.llm.responders.base import (
    AnswerCache,
    Decoding,
    RawDataRefused,
    RawValueGuard,
    Responder,
    contains_raw_values,
    is_local_url,
)


def make_responder(spec: dict | str, cache: AnswerCache | None = None, raw_names=()) -> Responder:
    """A responder from a spec: "bundled", or {"backend": "llamacpp" | "transformers" | "openai", ...}.
    `raw_names` (a cohort's indicator names) extend what its raw-data guard recognizes."""
    responder = _make(spec, cache)
    responder.guard.extend(raw_names)
    return responder


def _make(spec: dict | str, cache: AnswerCache | None) -> Responder:
    if spec in ("bundled", None) or (isinstance(spec, dict) and spec.get("backend") == "llamacpp"):
        from pmlm_lib.llm.responders.llamacpp import LlamaCppResponder

        options = {} if not isinstance(spec, dict) else {k: v for k, v in spec.items() if k != "backend"}
        return LlamaCppResponder(cache=cache, **options)
    if isinstance(spec, dict) and spec.get("backend") == "transformers":
        from pmlm_lib.llm.responders.local import TransformersResponder

        return TransformersResponder(cache=cache, **{k: v for k, v in spec.items() if k != "backend"})
    if isinstance(spec, dict) and spec.get("backend") == "openai":
        from pmlm_lib.llm.responders.openai_compat import OpenAICompatibleResponder

        return OpenAICompatibleResponder(cache=cache, **{k: v for k, v in spec.items() if k != "backend"})
    raise ValueError(
        f"unknown responder {spec!r}: use 'bundled' or a dict with backend llamacpp, transformers or openai"
    )


__all__ = [
    "AnswerCache",
    "Decoding",
    "RawDataRefused",
    "RawValueGuard",
    "Responder",
    "contains_raw_values",
    "is_local_url",
    "make_responder",
]
