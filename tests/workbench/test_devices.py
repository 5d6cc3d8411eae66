"""The device is one parameter of every object that holds a model: "auto" (CUDA when present, else
the CPU) or given explicitly. These tests give it explicitly and check that it reaches the model."""

import numpy as np
import torch

from pmlm_lib.common.weights import device


def test_auto_is_cuda_only_when_present_and_a_given_device_is_kept():
    assert device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device("cpu") == "cpu" and device("cuda") == "cuda"


def test_every_model_holder_puts_its_model_on_the_given_device(tmp_path):
    from pmlm_lib.evaluation.metrics import Metrics
    from pmlm_lib.method.predictors.sequence import SequencePredictor
    from pmlm_lib.method.refine.editor import PromptEditor
    from pmlm_lib.method.refine.embedding import WordEmbedder
    from pmlm_lib.method.refine.policy import WordPolicy
    from pmlm_lib.method.refine.reward import BERTScoreReward
    from pmlm_lib.method.retrieval import PatientEncoder, train_encoder

    embedder = WordEmbedder(device="cpu")
    assert next(embedder.model.parameters()).device.type == "cpu"
    assert BERTScoreReward(device="cpu").scorer.device == "cpu"
    assert Metrics(device="cpu").bertscore.scorer.device == "cpu"
    editor = PromptEditor(embedder, WordPolicy(), PatientEncoder(30), n_steps=1, device="cpu")
    assert editor.device == "cpu" and next(editor.policy.parameters()).device.type == "cpu"
    assert SequencePredictor(arch="lstm", device="cpu").device == "cpu"
    encoder = PatientEncoder(6)
    losses = train_encoder(
        encoder,
        np.random.default_rng(0).normal(size=(20, 6)),
        np.array(["a", "b"] * 10),
        "supervised",
        epochs=2,
        device="cpu",
    )
    assert len(losses) == 2 and next(encoder.parameters()).device.type == "cpu"


def test_the_gpu_measurement_runs_its_code_path_on_the_cpu(tmp_path):
    """`pmlm bench --parts devices` measures this on CUDA beside the CPU; here, the same code on the CPU."""
    import pytest

    from pmlm_lib.workbench.bench import devices, devices_side_by_side, run_bench

    figures = devices("cpu", prompts=2, pairs=4, lora_examples=4, answer_tokens=4)
    assert figures["device"] == "cpu" and figures["gpu"] is None
    assert all(
        figures[k] > 0
        for k in (
            "transformers_answers_per_second",
            "bertscore_pairs_per_second",
            "embedding_states_per_second",
            "lora_steps_per_second",
        )
    )
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            devices_side_by_side()
        # the command the README gives for a GPU reaches that measurement (not "unknown bench part")
        with pytest.raises(ValueError, match="no CUDA device"):
            run_bench(["devices"], out_dir=tmp_path)
