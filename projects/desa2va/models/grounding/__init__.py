"""SAM-2 grounding: build/load (build.py), shared frame features and prompt-token decoding
(sam2_grounding.py), video memory (video_memory.py)."""
from .build import build_sam2_model, resolve_config
from .sam2_grounding import DecoderOutput, FrameFeatures, SAM2Grounding
from .video_memory import LazySAM2Frames

__all__ = ["SAM2Grounding", "FrameFeatures", "DecoderOutput", "LazySAM2Frames", "build_sam2_model",
           "resolve_config"]
