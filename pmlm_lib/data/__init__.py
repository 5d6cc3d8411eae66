"""H = {X, Y, R}: the cohort type and its checks, reading and adapters, the synthetic cohort and replies,
filtering, sampling, representation, serialization and the prompt templates."""
