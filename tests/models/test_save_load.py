"""save_pretrained / builder.load_pretrained: a self-contained folder that reloads to the same outputs."""
import json
import os

import pytest
import torch

from conftest import referring_batch, train, two_shapes
from projects.desa2va.models.checkpoint_io import CheckpointError, read_safetensors_folder
from projects.desa2va.inference import predict
from projects.desa2va.models.builder import load_pretrained
from projects.desa2va.models.mllm import InternVLMLLM


@pytest.mark.parametrize("mode", ["desa2va", "sa2va"])
def test_saved_folder_reloads_to_the_same_outputs(make_model, tmp_path, mode):
    model = make_model(mode, reprompt_iters=1, **(dict(fusion="gate") if mode == "desa2va" else {}))
    img, circle, square = two_shapes()
    data = referring_batch(model, img, [("Please segment the red circle.", circle[None], ["the red circle"])])
    train(model, data, steps=3, lr=1e-2)  # LoRA, grounding rows and heads all move away from init
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    folder = str(tmp_path / "saved")
    model.save_pretrained(folder)
    assert sorted(os.listdir(folder)) == ["desa2va_config.json", "heads.safetensors", "mllm", "sam2.pt",
                                          "sam2_config.yaml"]
    saved = json.load(open(os.path.join(folder, "desa2va_config.json")))
    assert saved["version"] == 2 and saved["model"] == model.settings
    assert (saved["model"]["stage"], saved["model"]["decouple"], saved["model"]["reprompt_iters"]) == \
        (2, mode == "desa2va", 1)
    assert ("fusion" in saved["model"]) == (mode == "desa2va")  # the arm's settings only
    keys = set(read_safetensors_folder(os.path.join(folder, "mllm")))
    assert not any("lora" in k or "base_layer" in k for k in keys)  # merged, in the InternVL2.5 layout

    loaded = load_pretrained(folder)
    assert loaded.mllm.tokenizer.convert_tokens_to_ids("[SEG]") == model.mllm.seg_token_id
    ids, pv = data["input_ids"], data["pixel_values"]
    model.eval()
    with torch.no_grad():
        a = model.mllm(ids, pixel_values=pv, return_hidden_states=True).hidden_states
        b = loaded.mllm(ids, pixel_values=pv, return_hidden_states=True).hidden_states
        assert torch.allclose(a, b, atol=1e-4)  # LoRA merged == LoRA applied
        feats = model.grounding.encode_frames(data["sam_images"][0])
        h = torch.randn(2, model.mllm.hidden_size)
        fidx = torch.zeros(2, dtype=torch.long)
        assert torch.allclose(model.decode_objects(feats, h, fidx), loaded.decode_objects(feats, h, fidx), atol=1e-5)
    out_a = predict(model, "Please segment the red circle.", image=img)
    out_b = predict(loaded, "Please segment the red circle.", image=img)
    assert out_a["text"] == out_b["text"]
    assert len(out_a["masks"]) == len(out_b["masks"])
    assert all((x == y).mean() > 0.999 for x, y in zip(out_a["masks"], out_b["masks"]))
    assert load_pretrained(folder, reprompt_iters=0).reprompt_iters == 0
    if mode == "sa2va":  # an override the saved arm ignores is an error, as in a config
        with pytest.raises(ValueError, match=r"\['fusion'\] are ignored by the sa2va arm"):
            load_pretrained(folder, fusion="mean")


def test_merged_mllm_folder_loads_on_its_own(make_mllm, tmp_path):
    m = make_mllm(lora=dict(r=4, lora_alpha=8, lora_dropout=0.0))
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    m.save_pretrained(str(tmp_path / "mllm"))
    again = InternVLMLLM(str(tmp_path / "mllm"))
    assert again.add_grounding_tokens() == [] and len(again.tokenizer) == len(m.tokenizer)
    ids = torch.tensor([[5, 6, 7, m.seg_token_id, 8]])
    with torch.no_grad():
        assert torch.allclose(m(ids).seg_hidden, again(ids).seg_hidden, atol=1e-4)


@pytest.mark.parametrize("arm", ["sa2va", "desa2va"])
def test_a_version_1_folder_still_loads(save_tiny_model, tmp_path, arm):
    """Folders written before the builder recorded `mode` and every constructor argument, the alignment
    weight 0.5 among them, but no stage-1 path."""
    folder = save_tiny_model(tmp_path / "m", arm=arm, reprompt_iters=0, keyframes="first", max_new_tokens=7)
    path = os.path.join(folder, "desa2va_config.json")
    saved = json.load(open(path))
    v1 = {k: v for k, v in saved["model"].items() if k not in ("stage", "decouple", "stage1_checkpoint")}
    v1.update(mode=arm, fusion="gate", align_weight=0.5, visual_proj="linear", num_text_points=3)  # all args
    json.dump({"format": "desa2va", "version": 1, "model": v1}, open(path, "w"))
    m = load_pretrained(folder)
    assert (m.stage, m.decouple, m.keyframes, m.max_new_tokens) == (2, arm == "desa2va", "first", 7)
    assert type(m.head).__name__ == {"sa2va": "Sa2VAHead", "desa2va": "DecoupledHead"}[arm]


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(CheckpointError, match="desa2va_config.json not found"):
        load_pretrained(str(tmp_path))
