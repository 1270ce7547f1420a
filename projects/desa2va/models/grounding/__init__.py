"""SAM-2 grounding: build/load, shared frame features, prompt-token decoding, decoder copies, video memory."""
from .sam2_grounding import (DecoderOutput, FrameFeatures, LazySAM2Frames, SAM2Grounding, build_sam2_model,
                             resolve_config)

__all__ = ["SAM2Grounding", "FrameFeatures", "DecoderOutput", "LazySAM2Frames", "build_sam2_model",
           "resolve_config"]
