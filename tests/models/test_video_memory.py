"""Video inference memory is flat in the video's length (tiny SAM-2): the tracked frames' outputs are released
once SAM-2's memory window has passed them, without changing a single mask, and frames are read one at a
time."""
import numpy as np
import torch

from projects.desa2va.models.grounding.video_memory import VideoMemory


def _clip(n, size=64):
    """A blob moving right 1 px a frame, as uint8 frames (read lazily through `Frames`)."""
    yy, xx = np.mgrid[:size, :size]
    return [((((yy - 32) ** 2 + (xx - 12 - t % 40) ** 2) <= 64)[..., None] * np.array([200, 60, 60])
             + 20).astype(np.uint8) for t in range(n)]


class Frames:
    """A video read on access that counts its reads."""

    def __init__(self, frames):
        self.frames, self.reads = frames, 0

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        self.reads += 1
        return self.frames[i]


def _state_bytes(state):
    """Bytes of the tensors SAM-2's state holds per frame (outputs of tracked and key frames)."""
    total = 0
    for per_obj in state["output_dict_per_obj"].values():
        for outs in per_obj.values():
            for out in outs.values():
                total += sum(v.numel() * v.element_size() for v in out.values() if isinstance(v, torch.Tensor))
    return total


def _propagate(sam2, n, start, monkeypatch, release=True):
    states = []
    orig = VideoMemory.init_video_state

    def keep(self, *a, **k):
        states.append(orig(self, *a, **k))
        return states[-1]
    monkeypatch.setattr(VideoMemory, "init_video_state", keep)
    if not release:
        monkeypatch.setattr(VideoMemory, "release_frames", staticmethod(lambda *a, **k: None))
    frames = _clip(n)
    key = torch.from_numpy(frames[start][..., 0] > 100)
    peak = [0]
    it = sam2.propagate_iter(Frames(frames), (64, 64), {1: {start: key}, 2: {start: key.roll(5, 0)}})
    out = {}
    for f, obj_ids, logits in it:
        out[f] = (logits > 0).numpy()
        peak[0] = max(peak[0], _state_bytes(states[-1]))
    monkeypatch.undo()
    return out, peak[0], states[-1]


def test_released_frames_change_no_mask(sam2, monkeypatch):
    start = 30  # forward to the end, then backward from the key frame: both directions read the memory
    kept, _, _ = _propagate(sam2, 70, start, monkeypatch, release=False)
    released, _, state = _propagate(sam2, 70, start, monkeypatch)
    assert sorted(kept) == sorted(released) == list(range(70))
    for f in kept:
        assert np.array_equal(kept[f], released[f]), f
    window = sam2.memory_window()
    assert window == 16  # max(num_maskmem 7 x stride 1 + 2, 16 object pointers)
    left = sorted(state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
    assert left and max(left) <= start + window and len(left) <= 2 * window + 1, left


def test_state_memory_does_not_grow_with_the_video(sam2, monkeypatch):
    _, short, _ = _propagate(sam2, 40, 0, monkeypatch)
    _, long, _ = _propagate(sam2, 120, 0, monkeypatch)
    _, unreleased, _ = _propagate(sam2, 120, 0, monkeypatch, release=False)
    assert long == short  # the window's worth of frames, whatever the length
    assert unreleased > 2.5 * long  # (what SAM-2's state would hold: every tracked frame)


def test_frames_are_read_once_each(sam2):
    frames = Frames(_clip(12))
    key = torch.from_numpy(frames.frames[5][..., 0] > 100)
    list(sam2.propagate_iter(frames, (64, 64), {1: {5: key}}))
    assert frames.reads <= 12 + 1  # each frame once (the key frame's features are computed once more at most)
