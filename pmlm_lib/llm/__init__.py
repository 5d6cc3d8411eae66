"""The LLMs that answer prompts (responders: llama.cpp, transformers, OpenAI-compatible endpoints), their answer
log, LoRA and the fine-tuned reply model."""
