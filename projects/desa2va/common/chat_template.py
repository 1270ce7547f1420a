"""The chat templates, used by every dataset and by inference: one place.

`TEMPLATES` holds those of the Sa2VA / DeSa2VA releases (REFERENCE.md 6; the names are xtuner's, as a
release's config.json `template` field writes them):
- `internvl2_5`, `qwen_chat` (ChatML; the same format, they differ in nothing but the default system
  message a config sets):
    <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n
- `phi3_chat` (Sa2VA-4B's, whatever the LLM's tokenizer; its markers are plain text to a Qwen2 tokenizer):
    <|system|>\n{system}<|end|>\n<|user|>\n{q}<|end|>\n<|assistant|>\n{a}<|end|>\n
A system part is written only when a system message is given (Sa2VA's configs give none). Generation
stops at the template's stop words (and the tokenizer's end-of-text ids).

`<image>` placeholders in the user text are expanded, in order, into `<img>` + `<IMG_CONTEXT>` x n + `</img>`
(n = visual tokens of that image: tiles x tokens per tile; a video frame is one tile).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from . import special_tokens as st


@dataclass(frozen=True)
class ChatTemplate:
    system: str        # format of the system part, {system}
    instruction: str   # format of a user turn up to the assistant's answer, {input}
    suffix: str        # ends an answer (labelled)
    sep: str           # after the suffix (not an answer token, but trained on as part of it here)
    stop_words: Tuple[str, ...]


_CHATML = ChatTemplate(system=f"{st.IM_START}system\n{{system}}{st.IM_END}\n",
                       instruction=f"{st.IM_START}user\n{{input}}{st.IM_END}\n{st.IM_START}assistant\n",
                       suffix=st.IM_END, sep="\n", stop_words=(st.IM_END, "<|endoftext|>"))
TEMPLATES: Dict[str, ChatTemplate] = {
    "internvl2_5": _CHATML,
    "qwen_chat": _CHATML,
    "phi3_chat": ChatTemplate(system="<|system|>\n{system}<|end|>\n",
                              instruction="<|user|>\n{input}<|end|>\n<|assistant|>\n",
                              suffix="<|end|>", sep="\n", stop_words=("<|end|>",)),
}


def get_template(name: str) -> ChatTemplate:
    if name not in TEMPLATES:
        raise ValueError(f"chat template {name!r} is not supported; supported: {sorted(TEMPLATES)}")
    return TEMPLATES[name]

# InternVL2.5's default system message (the `internvl2_5` template of the released checkpoints).
INTERNVL2_5_SYSTEM = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
                      "多模态大语言模型。")


def image_tokens(num_tokens: int) -> str:
    return st.IMG_START + st.IMG_CONTEXT * num_tokens + st.IMG_END


def media_placeholder(num_frames: int = 1) -> str:
    """The text standing for the media of a conversation: `<image>` for an image, and for a video of n
    frames one `<image>` per frame joined by newlines (Sa2VA's layout, METHOD.md 3.5). Training readers
    and inference both write it, so the model sees one prompt layout."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    return "\n".join([st.IMAGE_PLACEHOLDER] * num_frames)


def with_media(text: str, num_frames: int = 1) -> str:
    """`text` holding the media placeholder: put in front ("<image>\n" + text) when the text has none, and
    a single `<image>` of a video (Sa2VA's video prompt) stands for all its frames. A text with one
    `<image>` per frame is kept as it is."""
    n = text.count(st.IMAGE_PLACEHOLDER)
    if n == 0:
        return media_placeholder(num_frames) + "\n" + text
    if n == 1 and num_frames > 1:
        return text.replace(st.IMAGE_PLACEHOLDER, media_placeholder(num_frames))
    if n != num_frames:
        raise ValueError(f"{n} {st.IMAGE_PLACEHOLDER} placeholders in the text for {num_frames} frame(s): "
                         f"write one, or one per frame")
    return text


def expand_image_placeholders(text: str, tokens_per_image: Sequence[int]) -> str:
    """Replace the k-th `<image>` with the tokens of image k; the counts must match."""
    parts = text.split(st.IMAGE_PLACEHOLDER)
    if len(parts) - 1 != len(tokens_per_image):
        raise ValueError(f"{len(parts) - 1} {st.IMAGE_PLACEHOLDER} placeholder(s) for {len(tokens_per_image)} image(s)")
    out = parts[0]
    for n, rest in zip(tokens_per_image, parts[1:]):
        out += image_tokens(n) + rest
    return out


def format_turns(turns: Sequence[Tuple[str, Optional[str]]], system: Optional[str] = INTERNVL2_5_SYSTEM,
                 template: str = "internvl2_5") -> List[Tuple[str, str]]:
    """Pieces [(prompt_part, answer_part)] of (user, assistant) turns in `template`; the last answer may
    be None (generation: the text ends with the assistant header)."""
    t = get_template(template)
    pieces = []
    head = t.system.format(system=system) if system else ""
    for i, (user, answer) in enumerate(turns):
        prompt = (head if i == 0 else "") + t.instruction.format(input=user)
        pieces.append((prompt, "" if answer is None else f"{answer}{t.suffix}{t.sep}"))
    return pieces


def generation_prompt(question: str, history: Sequence[Tuple[str, str]] = (),
                      system: Optional[str] = INTERNVL2_5_SYSTEM, template: str = "internvl2_5") -> str:
    """Full text for generation: past turns, then the question, ending with the assistant header."""
    return "".join(p + a for p, a in format_turns(list(history) + [(question, None)], system, template))


def region_prefix(cell_counts: Sequence[int]) -> str:
    """The visual-prompt preamble: "There are N part regions in the picture: region1 <vp>...</vp>, ...",
    region k holding `cell_counts[k]` <IMG_CONTEXT> tokens (the cells its mask covers)."""
    blocks = [f"region{k + 1} {st.VP_START}{st.IMG_CONTEXT * n}{st.VP_END}" for k, n in enumerate(cell_counts)]
    plural = "part region" if len(blocks) == 1 else "part regions"
    return f"There are {len(blocks)} {plural} in the picture: " + ", ".join(blocks) + ". "
