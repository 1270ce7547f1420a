"""`DeSa2VAPredictor`: load a saved model folder and ask it about images and videos.

    from projects.desa2va.inference import DeSa2VAPredictor
    p = DeSa2VAPredictor.from_pretrained("exports/desa2va_4b")          # or an imported Sa2VA folder
    out = p.segment("street.jpg", "the man in red")                      # out.text, out.masks[0]: (H, W) bool
    outs = p.segment("clip.mp4", ["the dog", "the ball"])                # one decoding, one SAM-2 state
    out = p.chat(frames_folder, "What is the dog doing?")                # answer text (+ masks if [SEG])

An image is a path, a PIL image or an (H, W, 3) uint8 array; a video is a list of frames, a folder of
frames or a video file (decoded lazily with decord). Each `[SEG]` of the answer gives one boolean mask:
(H, W) for an image, (T, H, W) for a video. bf16 on GPU, fp32 on CPU unless told otherwise.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..datasets.template import referring_question
from ..models.builder import load_pretrained
from ..models.checkpoint_io import SAVED_CONFIG, CheckpointError
from ..models.desa2va import DeSa2VAModel
from .image import predict_image
from .media import DEFAULT_MAX_PIXELS, InputError, is_video, load_image, load_video
from .video import predict, predict_video

History = List[Tuple[str, str]]


@dataclass
class Prediction:
    text: str                                   # the answer
    masks: List[np.ndarray]                     # one bool array per [SEG]: (H, W) image, (T, H, W) video
    prompt: str                                 # what the model was asked
    history: History = field(default_factory=list)  # the conversation including this turn (for chat)


class DeSa2VAPredictor:
    def __init__(self, model: DeSa2VAModel, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        if model.stage == 1:
            raise ValueError("a stage-1 (text pre-training) model does not answer questions; load a stage-2 or Sa2VA model")
        self.model = model.eval()
        self.max_pixels = max_pixels

    @classmethod
    def from_pretrained(cls, folder: str, device: Optional[str] = None, dtype: Optional[str] = None,
                        max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, **overrides) -> "DeSa2VAPredictor":
        """A `save_pretrained` folder (tools/convert_to_hf.py) or an imported Sa2VA folder
        (tools/import_sa2va.py). device: default cuda when available; dtype: default bfloat16 on GPU,
        float32 on CPU. `overrides` replace saved settings (reprompt_iters=0, keyframes='first', ...)."""
        folder = os.fspath(folder)
        if not os.path.isfile(os.path.join(folder, SAVED_CONFIG)):
            hint = ""
            cfg = os.path.join(folder, "config.json")
            if os.path.isfile(cfg):
                with open(cfg) as f:
                    if "sa2va" in json.dumps(json.load(f).get("architectures", "")).lower():
                        hint = f"; it is a Sa2VA checkpoint: convert it with tools/import_sa2va.py {folder} --save-path OUT"
            raise CheckpointError(f"{folder} is not a saved DeSa2VA/Sa2VA model folder (no {SAVED_CONFIG}){hint}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or ("bfloat16" if str(device).startswith("cuda") else "float32")
        return cls(load_pretrained(folder, torch_dtype=dtype, device=device, **overrides), max_pixels)

    # ------------------------------------------------------------------ public API
    def chat(self, media, text: str, history: Optional[History] = None) -> Prediction:
        """Ask `text` (verbatim) about an image or a video; `history` holds earlier (question, answer)
        turns of the same conversation. Returns the answer, a mask per [SEG], and the new history."""
        text = self._check_text(text)
        history = list(history or [])
        if is_video(media):
            out = self._video([text], media, history)[0]
        else:
            out = predict(self.model, text, image=load_image(media, self.max_pixels), history=history)
        return Prediction(out["text"], out["masks"], text, history + [(text, out["text"])])

    def segment(self, media, text: Union[str, Sequence[str]]) -> Union[Prediction, List[Prediction]]:
        """Segment a referring expression ("the man in red") or several: asked as "Please segment ... in this
        image/video." (a question ending in '?' is asked as it is). Several expressions on one image share
        its SAM-2 features; on one video, one decoding of the frames and one SAM-2 state. Returns a
        Prediction, or a list for a list."""
        single = isinstance(text, str)
        texts = [self._check_text(t) for t in ([text] if single else list(text))]
        if not texts:
            raise InputError("no expression given")
        if is_video(media):
            qs = [referring_question(t, video=True) for t in texts]
            preds = [Prediction(o["text"], o["masks"], q) for o, q in zip(self._video(qs, media), qs)]
        else:
            qs = [referring_question(t) for t in texts]
            outs = predict_image(self.model, qs, load_image(media, self.max_pixels))
            preds = [Prediction(o["text"], o["masks"], q) for o, q in zip(outs, qs)]
        return preds[0] if single else preds

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_text(text) -> str:
        if not isinstance(text, str):
            raise InputError(f"the prompt must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InputError("the prompt is empty")
        return text.strip()

    def _video(self, questions: List[str], media, history: History = ()):
        frames = load_video(media, self.max_pixels)
        if len(frames) == 1:
            warnings.warn(f"video {frames.source} has a single frame: it is segmented as a one-frame clip "
                          "(masks (1, H, W)); pass it as an image for image inference", stacklevel=3)
        return predict_video(self.model, questions, frames, history)
