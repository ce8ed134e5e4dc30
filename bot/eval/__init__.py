"""Benchmarks of membot's memory: `membot eval locomo` (retrieval quality offline, answer quality
with any OpenAI-compatible endpoint). See docs/eval.md."""
