"""Step 2, self-informed personalization: predictors of a patient's label from the patient's history.

Every predictor has one interface (`base.Predictor`): fit, predict, predict_proba, save, load.
Families: sequence models on zero-padded tables (`sequence`: LSTM, CNN, Transformer), ROCKET
(`rocket`, with aeon), a LoRA-tuned causal LM scoring each label's likelihood (`lm`), and a
lightweight gradient-boosting model on per-indicator summaries (`summary`). `study` selects one on
validation and produces cross-fitted predictions for every patient.
"""

from pmlm_lib.method.predictors.base import Predictor, load_predictor

FAMILIES = ("lstm", "cnn", "transformer", "rocket", "summary_gbm", "lora_lm")


def make_predictor(name: str, seed: int = 0, **options) -> Predictor:
    """A fresh predictor of one family, by name, with its options."""
    if name in ("lstm", "cnn", "transformer"):
        from pmlm_lib.method.predictors.sequence import SequencePredictor

        return SequencePredictor(arch=name, seed=seed, **options)
    if name == "rocket":
        from pmlm_lib.method.predictors.rocket import RocketPredictor

        return RocketPredictor(seed=seed, **options)
    if name == "summary_gbm":
        from pmlm_lib.method.predictors.summary import SummaryPredictor

        return SummaryPredictor(seed=seed, **options)
    if name == "lora_lm":
        from pmlm_lib.method.predictors.lm import LoraLMPredictor

        return LoraLMPredictor(seed=seed, **options)
    raise ValueError(f"unknown predictor {name!r}: choose from {', '.join(FAMILIES)}")


__all__ = ["FAMILIES", "Predictor", "load_predictor", "make_predictor"]
