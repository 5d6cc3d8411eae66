"""The responder that answers refined prompts is the one they were refined for, or the notebook stops."""

import pandas as pd
import pytest

from pmlm_lib.evaluation import systems as ev
from pmlm_lib.llm.responders import make_responder
from pmlm_lib.workbench.inputs import ResponderMismatch, RunInputs


def _inputs(refinement: dict) -> RunInputs:
    empty = pd.Series(dtype=object)
    return RunInputs(None, None, empty, pd.DataFrame(), pd.DataFrame(), empty, 10, None, None, 1, "", refinement)


def test_prompts_refined_for_one_llm_are_answered_by_it_and_another_is_refused():
    bundled = make_responder("bundled").identity
    inputs = _inputs({"responder": bundled, "responder_spec": "bundled"})
    assert inputs.responder_label == ev.BUNDLED
    answering = inputs.responder(None, n_parallel=2)  # no spec: the refinement's own LLM, this notebook's slots
    assert answering.identity == bundled and answering.n_parallel == 2
    answering.close()
    with pytest.raises(ResponderMismatch) as refused:
        inputs.responder({"backend": "llamacpp", "model": "bundled-q4_1"})
    message = str(refused.value)
    assert message.startswith(f"notebook 04 refined these prompts for {ev.BUNDLED}, and this notebook was asked")
    assert "Q4_1.gguf (llama.cpp)" in message and "04_rl_refinement.responder" in message


def test_a_responder_is_named_by_model_and_backend_unless_it_is_the_bundled_one():
    assert ev.responder_label({"backend": "llama.cpp", "model": "smollm2-135m-instruct-q8_0-abc.gguf"}) == ev.BUNDLED
    tuned = {"backend": "llama.cpp", "model": "smollm2-135m-instruct-q8_0-abc.gguf", "lora_sha256": "12"}
    assert ev.responder_label(tuned) == "smollm2-135m-instruct-q8_0-abc.gguf (llama.cpp)"
    remote = {"backend": "openai-compatible", "base_url": "https://api.example.org/v1", "model": "gpt-4o"}
    assert ev.responder_label(remote) == "gpt-4o (openai-compatible at https://api.example.org/v1)"


def test_prompts_refined_for_smollm2_are_refused_to_gemma_with_one_sentence_naming_both():
    """Another LLM for real (Gemma 3 270M, `make setup-gemma`), not the same model under two names."""
    inputs = _inputs({"responder": make_responder("bundled").identity, "responder_spec": "bundled"})
    with pytest.raises(ResponderMismatch) as refused:
        inputs.responder({"backend": "llamacpp", "model": "gemma3-270m"})
    message = str(refused.value)
    assert f"refined these prompts for {ev.BUNDLED}" in message and "gemma-3-270m-q4_k_m" in message
    assert "`responders`" in message and message.count("\n") == 0


def test_a_named_refinement_is_labelled_by_its_profile_name():
    bundled = make_responder("bundled").identity
    assert _inputs({"responder": bundled, "responder_name": "SmolLM2-135M"}).responder_label == "SmolLM2-135M"
    assert _inputs({"responder": bundled, "responder_name": None}).responder_label == ev.BUNDLED
