"""Models: the InternVL2.5 MLLM wrapper (`mllm`), the SAM-2 grounding wrapper (`grounding`)."""
