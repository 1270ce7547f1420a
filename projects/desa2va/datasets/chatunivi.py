"""ChatUniVi video QA (`video_datas/chat_univi/video_chat.json`, videos under `Activity_Videos/`).

`[{"video", "conversations": [{"from": "human"|"gpt", "value"}]}]`. Frames are sampled one per equal
segment (random within it for training), so a clip always has exactly `num_frames` frames, the number
the prompt announces; the `<video>` (or single `<image>`) placeholder becomes one `<image>` per frame.
"""
from __future__ import annotations

import os
import random

from ..common import special_tokens as st
from ..common.chat_template import media_placeholder
from .base import GroundingDataset, RawSample, read_json
from .records import PackedRecords
from .template import pair_turns
from .video_io import open_video, read_frames, segment_indices

VIDEO_PLACEHOLDER = "<video>"


class ChatUniViDataset(GroundingDataset):
    kind = "video"

    def __init__(self, data_file: str, video_folder: str, num_frames: int = 5, **kwargs):
        super().__init__(**kwargs)
        data = read_json(data_file)
        self.video_folder, self.num_frames = video_folder, num_frames
        self.items = PackedRecords(data)

    def num_items(self) -> int:
        return len(self.items)

    def load(self, index: int, rng: random.Random) -> RawSample:
        d = self.items[index]
        sid = str(d.get("id", d.get("video", index)))
        frames_text = media_placeholder(self.num_frames)
        turns = []
        for q, a in pair_turns(d.get("conversations") or [], sid):
            q = q.replace(VIDEO_PLACEHOLDER, frames_text)
            if q.count(st.IMAGE_PLACEHOLDER) == 1:
                q = q.replace(st.IMAGE_PLACEHOLDER, frames_text)
            turns.append((q, a))
        if sum(q.count(st.IMAGE_PLACEHOLDER) for q, _ in turns) == 0:
            turns[0] = (frames_text + "\n" + turns[0][0], turns[0][1])
        path = os.path.join(self.video_folder, d["video"])
        reader = open_video(path, sid)
        frames = read_frames(reader, segment_indices(len(reader), self.num_frames, rng), path, sid)
        return RawSample(sample_id=sid, kind="video", images=frames, turns=turns)
