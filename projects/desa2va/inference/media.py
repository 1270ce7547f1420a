"""Inputs of the predictor: images and videos from paths, arrays or PIL images, checked with clear errors.

A video is a `VideoFrames` sequence of PIL frames, whatever it came from: a list of frames, a folder of
JPEG/PNG frames (sorted by name) or a video file decoded with decord. Folder and file frames are decoded
lazily (runs of consecutive frames when they are read in order), each frame once when the frames are read
once (`num_decoded` counts them): the model reads the key frames first, then SAM-2 reads every other frame
once, forward and then backward, so a video is decoded once however many expressions are asked about it.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: a (H, W) float mask per object stays well under a GiB


class InputError(ValueError):
    """Bad user input (unreadable file, empty prompt, oversized image): the message says what and where."""


def check_size(width: int, height: int, what: str, max_pixels: Optional[int]) -> None:
    if width < 1 or height < 1:
        raise InputError(f"{what} is empty ({width}x{height})")
    if max_pixels and width * height > max_pixels:
        raise InputError(f"{what} is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit of "
                         f"{max_pixels / 1e6:.1f} MP; resize it or raise max_pixels")


def load_image(image: ImageInput, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An RGB PIL image from a path, a PIL image or an (H, W, 3) / (H, W) uint8 array."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise InputError(f"image not found: {path}")
        try:
            with Image.open(path) as im:
                check_size(im.width, im.height, f"image {path}", max_pixels)  # before decoding the pixels
                return im.convert("RGB")
        except InputError:
            raise
        except Exception as e:  # PIL's UnidentifiedImageError, DecompressionBombError, truncated files
            raise InputError(f"cannot read image {path}: {e}") from e
    if isinstance(image, Image.Image):
        check_size(image.width, image.height, "the image", max_pixels)
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise InputError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4) uint8, got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    check_size(arr.shape[1], arr.shape[0], "the image", max_pixels)
    return Image.fromarray(arr).convert("RGB")


class VideoFrames(Sequence):
    """A video as a sequence of RGB PIL frames, decoded on access (see the module docstring).

    `decode(indices)` returns the frames at `indices` (ascending); `run` is how many frames one decode
    call reads ahead (forward) or behind (backward) of the requested one when frames are read in order.
    """

    def __init__(self, decode: Callable[[List[int]], List[Image.Image]], num_frames: int, size, source: str,
                 run: int = 16):
        if num_frames < 1:
            raise InputError(f"video {source} has no frames")
        self._decode, self._n, self.size, self.source, self.run = decode, num_frames, tuple(size), source, run
        self._buffer: Dict[int, Image.Image] = {}
        self._seen = set()
        self._last = -1
        self.num_decoded = 0

    def __len__(self) -> int:
        return self._n

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"frame {i} outside video {self.source} ({self._n} frames)")
        if i in self._buffer:
            frame = self._buffer.pop(i)
        else:
            # Sequential access (the next or the previous frame) reads a run ahead in that direction, among
            # frames not decoded yet; a jump (e.g. to a key frame) decodes that frame alone, keeping the run.
            step = 1 if i == self._last + 1 else -1 if i == self._last - 1 else 0
            todo = [i]
            j = i + step
            while step and len(todo) < self.run and 0 <= j < self._n and j not in self._seen:
                todo.append(j)
                j += step
            todo.sort()
            try:
                frames = self._decode(todo)
            except InputError:
                raise
            except Exception as e:
                raise InputError(f"cannot decode frames {todo[0]}..{todo[-1]} of {self.source}: {e}") from e
            self.num_decoded += len(todo)
            self._seen.update(todo)
            decoded = dict(zip(todo, frames))
            frame = decoded.pop(i)
            if step:
                self._buffer = decoded  # unread frames of an earlier run are dropped
        self._last = i
        return frame


def _check_frames(frames: List[Image.Image], source: str, max_pixels: Optional[int]) -> List[Image.Image]:
    if not frames:
        raise InputError(f"video {source} has no frames")
    size = frames[0].size
    for k, f in enumerate(frames):
        if f.size != size:
            raise InputError(f"frame {k} of {source} is {f.size[0]}x{f.size[1]}, frame 0 is {size[0]}x{size[1]}: "
                             "all frames of a video must have one size")
    check_size(size[0], size[1], f"the frames of {source}", max_pixels)
    return frames


def frames_from_list(frames: Sequence[ImageInput], max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> VideoFrames:
    pil = _check_frames([load_image(f, None) for f in frames], "the frame list", max_pixels)
    return VideoFrames(lambda idx: [pil[k] for k in idx], len(pil), pil[0].size, "the frame list")


def frames_from_folder(folder: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> VideoFrames:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(FRAME_EXTENSIONS))
    if not names:
        raise InputError(f"no frames ({'/'.join(FRAME_EXTENSIONS)}) in folder {folder}")
    paths = [os.path.join(folder, n) for n in names]
    first = load_image(paths[0], None)
    check_size(first.width, first.height, f"the frames of {folder}", max_pixels)

    def decode(idx: List[int]) -> List[Image.Image]:
        out = []
        for k in idx:
            im = load_image(paths[k], None)
            if im.size != first.size:
                raise InputError(f"frame {paths[k]} is {im.width}x{im.height}, the first frame is "
                                 f"{first.width}x{first.height}: all frames of a video must have one size")
            out.append(im)
        return out

    return VideoFrames(decode, len(paths), first.size, folder)


def frames_from_file(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> VideoFrames:
    if not os.path.isfile(path):
        raise InputError(f"video not found: {path}")
    try:
        import decord

        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        n = len(reader)
    except Exception as e:
        raise InputError(f"cannot read video {path}: {e}") from e
    if n == 0:
        raise InputError(f"video {path} has no frames")
    h, w = reader[0].shape[:2]  # the first frame only, to know the size
    reader.seek(0)
    check_size(w, h, f"video {path}", max_pixels)

    def decode(idx: List[int]) -> List[Image.Image]:
        return [Image.fromarray(np.ascontiguousarray(a)) for a in reader.get_batch(idx).asnumpy()]

    return VideoFrames(decode, n, (w, h), path)


def load_video(video, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> VideoFrames:
    """`VideoFrames` from a list of frames, a folder of frames, a video file, or `VideoFrames` (as is)."""
    if isinstance(video, VideoFrames):
        return video
    if isinstance(video, (str, os.PathLike)):
        path = os.fspath(video)
        if os.path.isdir(path):
            return frames_from_folder(path, max_pixels)
        return frames_from_file(path, max_pixels)
    if isinstance(video, np.ndarray) and video.ndim == 4:
        return frames_from_list(list(video), max_pixels)
    if isinstance(video, (list, tuple)):
        return frames_from_list(video, max_pixels)
    raise InputError(f"a video must be a list of frames, a folder of frames or a video file, got {type(video).__name__}")


def is_video(media) -> bool:
    """Whether `media` is a video (frame list, frame folder, video file, 4-d array) rather than one image."""
    if isinstance(media, VideoFrames) or isinstance(media, (list, tuple)):
        return True
    if isinstance(media, np.ndarray):
        return media.ndim == 4
    if isinstance(media, (str, os.PathLike)):
        path = os.fspath(media)
        return os.path.isdir(path) or path.lower().endswith(VIDEO_EXTENSIONS)
    return False
