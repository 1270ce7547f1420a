"""Greedy generation with the hidden state of every generated `[SEG]` (read when `[SEG]` is fed back as input,
i.e. at its input position, as in training). It stops at an end-of-text id or when the answer's text
ends with one of the chat template's stop words (removed from the answer), as Sa2VA's stop criteria do."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from transformers.cache_utils import DynamicCache


@dataclass
class GenerationOutput:
    text: str                           # decoded answer, special tokens kept ([SEG] visible), eos removed
    token_ids: List[int]                # generated ids, eos removed
    seg_hidden: torch.Tensor            # (n_seg, d), one row per generated [SEG], in order


@torch.no_grad()
def greedy_generate(mllm, input_ids: torch.Tensor, pixel_values: Optional[torch.Tensor] = None,
                    max_new_tokens: int = 128, region_masks: Optional[Sequence[torch.Tensor]] = None,
                    stop_words: Sequence[str] = ()) -> GenerationOutput:
    """Greedy decoding of one prompt (input_ids (1, L)) of an `InternVLMLLM`, with a KV cache."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"generate takes one prompt, input_ids of shape (1, L); got {tuple(input_ids.shape)}")
    backbone, head = mllm.causal_lm.model, mllm.causal_lm.lm_head
    embed = mllm.get_input_embeddings()
    cache = DynamicCache()
    n_tiles = [0 if pixel_values is None else int(pixel_values.shape[0])]
    h = backbone(inputs_embeds=mllm.build_inputs_embeds(input_ids, pixel_values, n_tiles,
                                                        None if region_masks is None else [region_masks]),
                 past_key_values=cache, use_cache=True).last_hidden_state[:, -1]
    tokens: List[int] = []
    seg_states: List[torch.Tensor] = []
    eos = set(mllm.eos_token_ids)
    for _ in range(max_new_tokens):
        nxt = int(head(h).argmax(-1))
        if nxt in eos:
            break
        tokens.append(nxt)
        stop = _stop_word(mllm.tokenizer, tokens, stop_words)
        if stop is not None:
            tokens = stop
            break
        if nxt != mllm.seg_token_id and len(tokens) == max_new_tokens:
            break  # no further state needed
        ids = torch.tensor([[nxt]], device=input_ids.device)
        h = backbone(inputs_embeds=embed(ids), past_key_values=cache, use_cache=True).last_hidden_state[:, -1]
        if nxt == mllm.seg_token_id:
            seg_states.append(h[0])
    seg = torch.stack(seg_states) if seg_states else h.new_zeros(0, mllm.hidden_size)
    text = mllm.tokenizer.decode(tokens, skip_special_tokens=False)
    return GenerationOutput(text=text, token_ids=tokens, seg_hidden=seg)


def _stop_word(tokenizer, tokens: List[int], stop_words: Sequence[str]) -> Optional[List[int]]:
    """When the answer's text ends with a stop word (it may span several tokens, e.g. phi3_chat's `<|end|>`
    for a Qwen2 tokenizer): the tokens before it; else None."""
    if not stop_words:
        return None
    text = tokenizer.decode(tokens, skip_special_tokens=False)
    for word in stop_words:
        if text.endswith(word):
            keep = len(text) - len(word)
            out = list(tokens)
            while out and len(tokenizer.decode(out, skip_special_tokens=False)) > keep:
                out.pop()
            return out
    return None
