"""Conversation encoding (template round trip, labels, checks), collate, packed records."""
import pytest
import torch

from projects.desa2va.common.chat_template import generation_prompt
from projects.desa2va.common.tokenizer import load_tokenizer
from projects.desa2va.datasets.base import collate
from projects.desa2va.datasets.records import PackedRecords
from projects.desa2va.datasets.template import ConversationEncoder, SampleError


@pytest.fixture
def encoder(tiny_mllm_path):
    return ConversationEncoder(load_tokenizer(tiny_mllm_path), max_length=200, system="You are helpful.")


def test_template_round_trip_and_labels(encoder):
    tok = encoder.tokenizer
    turns = [("<image>\nPlease segment the red circle.", "Sure, [SEG]."), ("And the square?", "It is [SEG].")]
    ids, labels = encoder.encode(turns, tokens_per_image=[3], num_masks=2)
    text = tok.decode(ids)
    assert text == ("<|im_start|>system\nYou are helpful.<|im_end|>\n"
                    "<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img>\nPlease segment the red circle."
                    "<|im_end|>\n<|im_start|>assistant\nSure, [SEG].<|im_end|>\n"
                    "<|im_start|>user\nAnd the square?<|im_end|>\n<|im_start|>assistant\nIt is [SEG].<|im_end|>\n")
    answer_ids = [i for i, l in zip(ids, labels) if l != -100]
    assert tok.decode(answer_ids) == "Sure, [SEG].<|im_end|>\nIt is [SEG].<|im_end|>\n"
    assert [l for l in labels if l != -100] == answer_ids
    # the generation prompt is the same text up to the first answer
    prompt = generation_prompt("<image>\nPlease segment the red circle.", system="You are helpful.")
    assert text.startswith(prompt.replace("<image>", "<img>" + "<IMG_CONTEXT>" * 3 + "</img>"))


def test_seg_count_length_and_image_checks(encoder):
    turns = [("<image>\nPlease segment it.", "Sure, [SEG].")]
    with pytest.raises(SampleError, match=r"s7: 1 \[SEG\] token\(s\) but 2 mask\(s\)") as e:
        encoder.encode(turns, [3], num_masks=2, sample_id="s7")
    assert e.value.reason == "seg_mask_mismatch"
    with pytest.raises(SampleError, match="max_length 200") as e:
        encoder.encode(turns, [400], num_masks=1, sample_id="long")
    assert e.value.reason == "too_long"
    with pytest.raises(SampleError) as e:
        encoder.encode(turns, [3, 3], num_masks=1)
    assert e.value.reason == "image_token_mismatch"
    with pytest.raises(SampleError) as e:
        encoder.encode([("<image><image>\nx", "[SEG].")], [3], num_masks=1)
    assert e.value.reason == "image_token_mismatch"


def test_collate_pads_and_keeps_objects_per_sample():
    def sample(n, tiles, masks):
        return {"input_ids": torch.arange(1, n + 1), "labels": torch.arange(1, n + 1), "num_tiles": tiles,
                "pixel_values": torch.ones(tiles, 3, 4, 4) if tiles else None, "sam_images": None, "masks": masks,
                "object_texts": None, "region_masks": None, "kind": "image" if tiles else "text", "sample_id": str(n)}
    out = collate([sample(3, 2, torch.ones(2, 1, 5, 5, dtype=torch.bool)), sample(5, 0, None)], pad_token_id=9)
    assert out["data_samples"] is None
    b = out["data"]
    assert b["input_ids"].tolist() == [[1, 2, 3, 9, 9], [1, 2, 3, 4, 5]]
    assert b["labels"][0].tolist() == [1, 2, 3, -100, -100]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert b["pixel_values"].shape == (2, 3, 4, 4) and b["num_tiles"] == [2, 0]
    assert b["masks"][0].shape == (2, 1, 5, 5) and b["masks"][1] is None
    assert b["kind"] == ["image", "text"] and b["sample_ids"] == ["3", "5"]


def test_collate_drops_bad_sample_markers_and_lists_them():
    from projects.desa2va.datasets.base import skipped_sample

    def sample(n):
        return {"input_ids": torch.arange(1, n + 1), "labels": torch.arange(1, n + 1), "num_tiles": 0,
                "pixel_values": None, "sam_images": None, "masks": None, "object_texts": None,
                "region_masks": None, "kind": "text", "sample_id": str(n)}
    bad = skipped_sample("LLaVADataset[4]", "too_long", "sample 4: 9000 tokens > max_length 8192")
    b = collate([sample(2), bad, sample(3)])["data"]
    assert b["sample_ids"] == ["2", "3"] and b["input_ids"].shape == (2, 3) and b["num_tiles"] == [0, 0]
    assert b["skipped"] == [{"item": "LLaVADataset[4]", "reason": "too_long",
                             "message": "sample 4: 9000 tokens > max_length 8192"}]
    assert collate([sample(2)])["data"]["skipped"] == []
    only = collate([bad, bad])["data"]
    assert only == {"sample_ids": [], "skipped": [bad["skipped"]] * 2}


def test_packed_records_round_trip():
    recs = [{"a": i, "b": [i] * i, "s": "x" * i} for i in range(50)]
    packed = PackedRecords(recs)
    assert len(packed) == 50 and packed[7] == recs[7] and packed[-1] == recs[-1] and list(packed) == recs
    with pytest.raises(IndexError):
        packed[50]
