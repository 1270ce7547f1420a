"""Using a trained or imported model: the predict paths (image.py, video.py), `DeSa2VAPredictor`
(predictor.py) and its inputs (media.py)."""
from .image import predict_image
from .media import InputError, VideoFrames, load_image, load_video
from .predictor import DeSa2VAPredictor, Prediction
from .video import keyframe_indices, predict, predict_video

__all__ = ["DeSa2VAPredictor", "Prediction", "InputError", "VideoFrames", "load_image", "load_video", "predict",
           "predict_image", "predict_video", "keyframe_indices"]
