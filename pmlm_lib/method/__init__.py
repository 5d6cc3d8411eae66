"""PMLM itself: self-informed prediction (predictors), peer-informed retrieval and the RL refinement of the
prompt (refine)."""
