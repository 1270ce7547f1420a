"""InternVL2.5 MLLM: build, load and forward (internvl.py), generation (generation.py), visual prompts
(visual_prompts.py), saving (saving.py); InternViT (intern_vit.py)."""
from .generation import GenerationOutput
from .intern_vit import InternVisionConfig, InternVisionModel
from .internvl import InternVLMLLM, MLLMOutput, pixel_shuffle, read_internvl_config
from .visual_prompts import ImageTokenMismatchError

__all__ = ["InternVisionConfig", "InternVisionModel", "InternVLMLLM", "MLLMOutput", "GenerationOutput",
           "ImageTokenMismatchError", "pixel_shuffle", "read_internvl_config"]
