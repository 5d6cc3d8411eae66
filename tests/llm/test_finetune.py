"""Table 2's fine-tuned reply model: LoRA training on the real SmolLM2, served by llama.cpp."""

import pytest

from pmlm_lib.llm.responders import AnswerCache, Decoding

REPLY = "Drink plenty of water, rest on your left side and come back to the clinic on Monday."
PROMPTS = [f"I am a patient. My hemoglobin is {v} g/L. Please provide advice." for v in (101, 108, 112, 117, 121, 125)]


@pytest.mark.slow
def test_adapter_learned_in_transformers_is_applied_by_llama_cpp(tmp_path, monkeypatch):
    from rouge_score import rouge_scorer

    from pmlm_lib.llm.finetune import fine_tune_reply_model
    from pmlm_lib.llm.responders.llamacpp import LlamaCppResponder

    monkeypatch.setenv("PMLM_CACHE", str(tmp_path / "cache"))
    trained = fine_tune_reply_model(PROMPTS, [REPLY] * len(PROMPTS), epochs=6, lr=3e-3, batch_size=2, seed=0)
    assert trained["gguf"].exists() and trained["log"][-1]["loss"] < trained["log"][0]["loss"]
    again = fine_tune_reply_model(PROMPTS, [REPLY] * len(PROMPTS), epochs=6, lr=3e-3, batch_size=2, seed=0)
    assert again["folder"] == trained["folder"]  # the cache: not trained twice

    question = ["I am a patient. My hemoglobin is 110 g/L. Please provide advice."]
    decoding = Decoding(max_tokens=32)
    rouge = rouge_scorer.RougeScorer(["rougeL"])
    scores = {}
    for name, lora in (("base", None), ("tuned", trained["gguf"])):
        responder = LlamaCppResponder(
            n_parallel=1, ctx_per_slot=512, lora=lora, cache=AnswerCache(tmp_path / f"{name}.sqlite")
        )
        scores[name] = rouge.score(REPLY, responder.answer(question, decoding)[0])["rougeL"].fmeasure
        identity = responder.identity
        responder.close()
    assert "lora_sha256" in identity
    assert scores["tuned"] > 0.6 > scores["base"]  # the adapter, as llama.cpp applies it, says the learned reply
