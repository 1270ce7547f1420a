"""Loading the InternVL2.5 tokenizer and registering the grounding tokens: one procedure for datasets and
the model, so token ids always agree. `load_tokenizer` is cached: every dataset in a process shares one
tokenizer object instead of rebuilding it."""
from __future__ import annotations

import functools
import os
from typing import List

from . import special_tokens as st


class TokenizerError(RuntimeError):
    pass


def add_grounding_tokens(tokenizer) -> List[str]:
    """Add [SEG], <p>, </p>, <vp>, </vp> where missing (idempotent); returns the tokens that were added."""
    vocab = tokenizer.get_vocab()
    new = [t for t in st.GROUNDING_TOKENS if t not in vocab]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    return new


@functools.lru_cache(maxsize=8)
def load_tokenizer(model_path: str):
    """The tokenizer of an InternVL2.5 folder with the grounding tokens registered (shared, cached)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(os.fspath(model_path), trust_remote_code=False, use_fast=True)
    except Exception as e:
        raise TokenizerError(f"cannot load the tokenizer of {model_path}: {e}") from e
    add_grounding_tokens(tok)
    return tok
