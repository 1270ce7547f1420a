"""Image inference: a question about an image -> answer text + one mask per `[SEG]` (METHOD.md 3.3).

- `generate_answer(model, question, pixel_values, tokens_per_image, ...)`: the prompt (chat template, the
  media placeholder of `common.chat_template`, region preamble for visual prompts) -> MLLM generation;
- `predict_image(model, questions, image)`: several questions on one image, SAM-2 features once, every
  object of every answer decoded in one batch (`model.decode_objects`), upsampled once to the image;
- `predict(model, question, image=... | frames=...)`: one question, image or video.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..common import special_tokens as st
from ..common.chat_template import (expand_image_placeholders, generation_prompt, get_template, region_prefix,
                                    with_media)
from ..common.image_processing import logits_to_masks, mllm_inputs, region_token_cells, to_pil


def geometry(model):
    """The MLLM's image geometry with the model's inference tile limit (`max_tiles`)."""
    return dataclasses.replace(model.mllm.geometry, max_tiles=model.max_tiles)


def prompt_ids(model, question: str, tokens_per_image: List[int], history=(),
               region_masks: Optional[Sequence[np.ndarray]] = None):
    """(input_ids (1, L), region masks or None) of the prompt training uses: the media placeholder (one
    `<image>` per frame) in front of the question unless it holds one, the region preamble for visual
    prompts, then the chat template with the model's system prompt."""
    user = with_media(question, len(tokens_per_image))
    regions = None
    if region_masks is not None:
        grid = int(round(model.mllm.num_image_token ** 0.5))
        counts = [int(region_token_cells(np.asarray(m, bool), grid).sum()) for m in region_masks]
        if not all(counts):
            raise ValueError(f"region {counts.index(0) + 1} has an empty mask")
        head, _, rest = user.partition(st.IMAGE_PLACEHOLDER)
        user = head + st.IMAGE_PLACEHOLDER + "\n" + region_prefix(counts) + rest.lstrip("\n")
        regions = [torch.as_tensor(np.asarray(m, bool)) for m in region_masks]
    text = generation_prompt(expand_image_placeholders(user, tokens_per_image), history, model.system_prompt,
                             model.chat_template)
    return torch.tensor([model.mllm.tokenizer(text, add_special_tokens=False).input_ids], device=model.device), regions


def generate_answer(model, question: str, pixel_values: torch.Tensor, tokens_per_image: List[int], history=(),
                    region_masks: Optional[Sequence[np.ndarray]] = None):
    """`mllm.generate` on `prompt_ids`' prompt."""
    ids, regions = prompt_ids(model, question, tokens_per_image, history, region_masks)
    return model.mllm.generate(ids, pixel_values.to(model.device), max_new_tokens=model.max_new_tokens, region_masks=regions,
                               stop_words=get_template(model.chat_template).stop_words)


@torch.no_grad()
def predict_image(model, questions: Sequence[str], image, history=(),
                  region_masks: Optional[Sequence[np.ndarray]] = None) -> List[Dict[str, Any]]:
    """Several questions on one image (PIL or (H, W, 3) uint8). region_masks ((H, W) bool each): visual
    prompts, referred to as region1, region2, ... (the image is then one whole-image tile). Returns one
    {'text', 'masks': [(H, W) bool per [SEG]]} per question."""
    image = to_pil(image)
    with model.autocast():
        tiles, tokens = mllm_inputs(geometry(model), [image], "image", regions=region_masks is not None)
        gens = [generate_answer(model, q, tiles, tokens, history, region_masks) for q in questions]
        results = [{"text": g.text, "masks": []} for g in gens]
        owners = [q for q, g in enumerate(gens) for _ in range(g.seg_hidden.shape[0])]
        if not owners:
            return results
        feats = model.encode(model.grounding.preprocess([image]))
        h = torch.cat([g.seg_hidden for g in gens]).float()
        logits = model.decode_objects(feats, h, torch.zeros(len(owners), dtype=torch.long, device=model.device))
        masks = logits_to_masks(logits[:, 0], (image.height, image.width), model.postprocess,
                                model.grounding.image_size)
    for q, mk in zip(owners, masks):
        results[q]["masks"].append(mk.cpu().numpy())
    return results
