"""Algorithm 1: the word policy and its embeddings, the prompt editor and its word edits, the reward, the
training loop (refiner) and the controls it is compared with."""
