"""Plumbing with no pmlm imports: atomic writes, the disk cache, an LRU memory, timing, the bundled weights
and the device, paired statistics and the paper's published numbers."""
