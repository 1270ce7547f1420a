"""Models: the InternVL2.5 MLLM wrapper (`mllm`), the SAM-2 grounding wrapper (`grounding`), the heads,
objectives and text prompts of the method, and `builder` (the one place a config becomes a model)."""
