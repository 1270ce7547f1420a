"""Using a trained or imported model: `DeSa2VAPredictor` (predictor.py) and its inputs (media.py)."""
from .media import InputError, VideoFrames, load_image, load_video
from .predictor import DeSa2VAPredictor, Prediction

__all__ = ["DeSa2VAPredictor", "Prediction", "InputError", "VideoFrames", "load_image", "load_video"]
