"""Tokenisation of conversations with the InternVL2.5 template (`common/chat_template.py`).

- labels are -100 on system/user text and on image tokens, the token ids on every assistant answer
  (answer + `<|im_end|>\n`);
- `<image>` placeholders become `<img>` + `<IMG_CONTEXT>` x n + `</img>` as token ids (never re-tokenised);
- checks made when a sample is built, never patched: the number of `[SEG]` equals the number of masks,
  image-token counts match the tiles, and a sample longer than `max_length` is rejected
  (`SampleError`, reason `too_long`) instead of being truncated.
"""
from __future__ import annotations

import random
from typing import List, Optional, Sequence, Tuple

from ..common import special_tokens as st
from ..common.chat_template import INTERNVL2_5_SYSTEM, format_turns, get_template

IGNORE_INDEX = -100

IMAGE_SEG_QUESTIONS = [
    "Can you segment the {} in this image?",
    "Please segment {} in this image.",
    "What is {} in this image? Please respond with segmentation mask.",
    "What is {} in this image? Please output segmentation mask.",
    "Could you provide a segmentation mask for the {} in this image?",
]
VIDEO_SEG_QUESTIONS = [
    "Can you segment the {} in this video?",
    "Please segment {} in this video.",
    "What is {} in this video? Please respond with segmentation masks.",
    "What is {} in this video? Please output segmentation masks.",
    "Could you provide segmentation masks for the {} in this video?",
]
SEG_ANSWERS = ["It is [SEG].", "Sure, [SEG].", "Sure, it is [SEG].", "Sure, the segmentation result is [SEG].",
               "[SEG]."]


def referring_question(expression: str, video: bool = False) -> str:
    """The question asked for a referring expression at evaluation and in the predictor's `segment`:
    "Please segment {expression} in this image/video."; a question (ReVOS reasoning) is asked as it is."""
    e = expression.strip()
    if e.endswith("?"):
        return f"{e} Please respond with the segmentation mask{'s' if video else ''}."
    return (VIDEO_SEG_QUESTIONS if video else IMAGE_SEG_QUESTIONS)[1].format(e.rstrip("."))


class SampleError(Exception):
    """A sample that cannot be used; `reason` is a short counter key (missing_file, too_long, ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def pair_turns(conversations: Sequence[dict], sample_id: str) -> List[Tuple[str, str]]:
    """LLaVA-style [{"from": "human"|"gpt", "value"}] -> [(question, answer)]."""
    if len(conversations) < 2 or len(conversations) % 2:
        raise SampleError("bad_conversation", f"sample {sample_id}: {len(conversations)} messages; "
                                              "expected human/gpt pairs")
    turns = []
    for i in range(0, len(conversations), 2):
        q, a = conversations[i], conversations[i + 1]
        if q.get("from") != "human" or a.get("from") != "gpt":
            raise SampleError("bad_conversation", f"sample {sample_id}: message {i} is not a human/gpt pair")
        turns.append((q["value"], a["value"]))
    return turns


def referring_turns(phrases: Sequence[str], rng: random.Random, video: bool = False,
                    image_prefix: str = st.IMAGE_PLACEHOLDER + "\n") -> List[Tuple[str, str]]:
    """One question/answer turn per referred object (each answer holds one [SEG]); the image
    placeholders go before the first question."""
    questions = VIDEO_SEG_QUESTIONS if video else IMAGE_SEG_QUESTIONS
    turns = []
    for i, phrase in enumerate(phrases):
        q = rng.choice(questions).format(phrase.strip().rstrip("."))
        turns.append(((image_prefix if i == 0 else "") + q, rng.choice(SEG_ANSWERS)))
    return turns


class ConversationEncoder:
    def __init__(self, tokenizer, max_length: int = 8192, system: Optional[str] = INTERNVL2_5_SYSTEM,
                 template: str = "internvl2_5"):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.system = system
        get_template(template)  # an unknown name fails here, at build time
        self.template = template
        vocab = tokenizer.get_vocab()
        missing = [t for t in (st.IMG_START, st.IMG_END, st.IMG_CONTEXT, st.SEG) if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks {missing}: load it with common.tokenizer.load_tokenizer")
        self.img_start, self.img_end, self.img_context = vocab[st.IMG_START], vocab[st.IMG_END], vocab[st.IMG_CONTEXT]
        self.seg_id = vocab[st.SEG]

    def _text(self, text: str, tokens_per_image: List[int]) -> List[int]:
        parts = text.split(st.IMAGE_PLACEHOLDER)
        ids = self.tokenizer(parts[0], add_special_tokens=False).input_ids if parts[0] else []
        for part in parts[1:]:
            if not tokens_per_image:
                raise SampleError("image_token_mismatch", "more <image> placeholders than images")
            ids += [self.img_start] + [self.img_context] * tokens_per_image.pop(0) + [self.img_end]
            if part:
                ids += self.tokenizer(part, add_special_tokens=False).input_ids
        return ids

    def encode(self, turns: Sequence[Tuple[str, str]], tokens_per_image: Sequence[int] = (),
               num_masks: Optional[int] = None, sample_id: str = "") -> Tuple[List[int], List[int]]:
        """(input_ids, labels) of a conversation; raises SampleError on any check."""
        remaining = list(tokens_per_image)
        input_ids: List[int] = []
        labels: List[int] = []
        for prompt, answer in format_turns(turns, self.system, self.template):
            p = self._text(prompt, remaining)
            a = self._text(answer, remaining)
            input_ids += p + a
            labels += [IGNORE_INDEX] * len(p) + a
        if remaining:
            raise SampleError("image_token_mismatch",
                              f"sample {sample_id}: {len(remaining)} image(s) without an <image> placeholder")
        if num_masks is not None:
            n_seg = input_ids.count(self.seg_id)
            if n_seg != num_masks:
                raise SampleError("seg_mask_mismatch", f"sample {sample_id}: {n_seg} {st.SEG} token(s) but "
                                                       f"{num_masks} mask(s)")
        if len(input_ids) > self.max_length:
            raise SampleError("too_long", f"sample {sample_id}: {len(input_ids)} tokens > max_length "
                                          f"{self.max_length}")
        return input_ids, labels
