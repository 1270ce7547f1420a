"""The tiny stand-ins are deterministic, in the real formats, and carry a working tokenizer."""
import filecmp
import json
import os

import make_tiny_pretrained
from transformers import AutoTokenizer


def test_deterministic_by_seed(tiny_pretrained, tmp_path):
    make_tiny_pretrained.main(["--out", str(tmp_path), "--seed", "0"])
    a = os.path.join(tiny_pretrained, make_tiny_pretrained.MLLM_DIR)
    b = os.path.join(tmp_path, make_tiny_pretrained.MLLM_DIR)
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b)) and "model.safetensors" in names and "tokenizer.json" in names
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []
    assert filecmp.cmp(os.path.join(tiny_pretrained, "sam2_tiny.pt"), os.path.join(tmp_path, "sam2_tiny.pt"),
                       shallow=False)
    make_tiny_pretrained.main(["--out", str(tmp_path / "s1"), "--seed", "1"])
    assert not filecmp.cmp(os.path.join(a, "model.safetensors"),
                           os.path.join(tmp_path, "s1", make_tiny_pretrained.MLLM_DIR, "model.safetensors"),
                           shallow=False)


def test_config_schema_and_tokenizer(tiny_mllm_path):
    cfg = json.load(open(os.path.join(tiny_mllm_path, "config.json")))
    assert cfg["model_type"] == "internvl_chat" and cfg["template"] == "internvl2_5"
    assert cfg["llm_config"]["architectures"] == ["Qwen2ForCausalLM"]
    tok = AutoTokenizer.from_pretrained(tiny_mllm_path)
    assert len(tok) == cfg["llm_config"]["vocab_size"]
    assert tok.eos_token == "<|im_end|>"
    text = "<|im_start|>user\n<img><IMG_CONTEXT></img>\nPlease segment the red circle.<|im_end|>\n"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    for special in ("<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"):
        assert ids.count(tok.convert_tokens_to_ids(special)) >= 1
