"""InternVL2.5 MLLM: InternViT vision encoder, pixel shuffle + mlp1 projector, Qwen2 LLM."""
from .intern_vit import InternVisionConfig, InternVisionModel
from .internvl import (GenerationOutput, ImageTokenMismatchError, InternVLMLLM, MLLMOutput, pixel_shuffle,
                       read_internvl_config)

__all__ = ["InternVisionConfig", "InternVisionModel", "InternVLMLLM", "MLLMOutput", "GenerationOutput",
           "ImageTokenMismatchError", "pixel_shuffle", "read_internvl_config"]
