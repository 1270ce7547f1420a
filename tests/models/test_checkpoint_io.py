"""Strict loading: every key used, every key filled, shapes equal; errors name the key or the path."""
import json
import os
import shutil

import pytest
import torch

from projects.desa2va.models.checkpoint_io import (CheckpointError, read_safetensors_folder, read_torch_checkpoint,
                                                   write_safetensors_folder)
from projects.desa2va.models.grounding import SAM2Grounding
from projects.desa2va.models.mllm import InternVLMLLM


def _copy_folder_with(src, dst, state):
    shutil.copytree(src, dst)
    os.remove(os.path.join(dst, "model.safetensors"))
    write_safetensors_folder(state, dst)
    return dst


def test_tiny_folder_holds_the_real_key_names(tiny_mllm_path):
    keys = set(read_safetensors_folder(tiny_mllm_path))
    for k in ["vision_model.embeddings.class_embedding", "vision_model.embeddings.position_embedding",
              "vision_model.embeddings.patch_embedding.weight", "vision_model.encoder.layers.0.ls1",
              "vision_model.encoder.layers.0.attn.qkv.bias", "vision_model.encoder.layers.1.mlp.fc2.weight",
              "mlp1.0.weight", "mlp1.1.weight", "mlp1.3.bias", "language_model.lm_head.weight",
              "language_model.model.embed_tokens.weight", "language_model.model.layers.0.self_attn.q_proj.weight",
              "language_model.model.norm.weight"]:
        assert k in keys, k
    assert not any(k.startswith("mlp1.2") for k in keys)  # GELU has no weights


def test_loaded_weights_equal_the_file(make_mllm, tiny_mllm_path):
    m = make_mllm()
    sd = read_safetensors_folder(tiny_mllm_path)
    w = sd["vision_model.encoder.layers.1.attn.proj.weight"]
    assert torch.equal(m.vision_model.encoder.layers[1].attn.proj.weight, w)
    n_file = sd["language_model.model.embed_tokens.weight"].shape[0]
    assert torch.equal(m.get_input_embeddings().weight[:n_file], sd["language_model.model.embed_tokens.weight"])


def test_missing_key_is_named(tiny_mllm_path, tmp_path):
    sd = read_safetensors_folder(tiny_mllm_path)
    del sd["mlp1.3.bias"]
    folder = _copy_folder_with(tiny_mllm_path, tmp_path / "m", sd)
    with pytest.raises(CheckpointError, match=r"missing key.*mlp1\.3\.bias"):
        InternVLMLLM(str(folder))


def test_unexpected_key_is_named(tiny_mllm_path, tmp_path):
    sd = read_safetensors_folder(tiny_mllm_path)
    sd["language_model.model.extra_layer.weight"] = torch.zeros(2)
    folder = _copy_folder_with(tiny_mllm_path, tmp_path / "m", sd)
    with pytest.raises(CheckpointError, match=r"unexpected key.*extra_layer"):
        InternVLMLLM(str(folder))


def test_shape_mismatch_is_named(tiny_mllm_path, tmp_path):
    sd = read_safetensors_folder(tiny_mllm_path)
    sd["mlp1.1.weight"] = sd["mlp1.1.weight"][:, :-1].contiguous()
    folder = _copy_folder_with(tiny_mllm_path, tmp_path / "m", sd)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*mlp1\.1\.weight"):
        InternVLMLLM(str(folder))


def test_missing_folder_and_file_name_the_path(tiny_mllm_path, tmp_path):
    with pytest.raises(CheckpointError, match="config not found: .*nowhere"):
        InternVLMLLM(str(tmp_path / "nowhere"))
    folder = shutil.copytree(tiny_mllm_path, tmp_path / "m")
    os.remove(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=f"no model.safetensors .* in {folder}"):
        InternVLMLLM(str(folder))


def test_corrupt_file_names_the_path(tiny_mllm_path, tmp_path):
    folder = shutil.copytree(tiny_mllm_path, tmp_path / "m")
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=f"cannot read safetensors file {path}"):
        InternVLMLLM(str(folder))


def test_sharded_folder_loads_like_the_single_file(tiny_mllm_path, tmp_path):
    sd = read_safetensors_folder(tiny_mllm_path)
    folder = shutil.copytree(tiny_mllm_path, tmp_path / "m")
    os.remove(folder / "model.safetensors")
    write_safetensors_folder(sd, str(folder), max_shard_bytes=500_000)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    loaded = read_safetensors_folder(str(folder))
    assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)
    InternVLMLLM(str(folder))  # strict load succeeds
    os.remove(folder / sorted(set(index["weight_map"].values()))[1])
    with pytest.raises(CheckpointError, match="model-00002-of"):
        read_safetensors_folder(str(folder))


def test_sam2_checkpoint_errors(tiny_sam2_ckpt, tmp_path):
    sd = read_torch_checkpoint(tiny_sam2_ckpt, key="model")
    assert "sam_mask_decoder.conv_s0.weight" in sd and "image_encoder.trunk.pos_embed" in sd

    bad = dict(sd)
    del bad["sam_mask_decoder.iou_token.weight"]
    torch.save({"model": bad}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing key.*sam_mask_decoder\.iou_token\.weight"):
        SAM2Grounding("sam2_tiny.yaml", str(tmp_path / "missing.pt"))

    torch.save(sd, tmp_path / "flat.pt")
    with pytest.raises(CheckpointError, match=r"no top-level key 'model'"):
        SAM2Grounding("sam2_tiny.yaml", str(tmp_path / "flat.pt"))

    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*corrupt.pt"):
        SAM2Grounding("sam2_tiny.yaml", str(tmp_path / "corrupt.pt"))

    with pytest.raises(CheckpointError, match="checkpoint not found: .*absent.pt"):
        SAM2Grounding("sam2_tiny.yaml", str(tmp_path / "absent.pt"))

    with pytest.raises(CheckpointError, match="neither a file nor a config"):
        SAM2Grounding("no_such_config.yaml")


def test_meta_built_model_equals_a_conventionally_built_one(make_mllm, tiny_mllm_path):
    from projects.desa2va.models.mllm import read_internvl_config

    m = make_mllm()
    ref = InternVLMLLM.from_config(read_internvl_config(tiny_mllm_path))
    ref.load_state_dict(read_safetensors_folder(tiny_mllm_path))
    assert not any(t.is_meta for t in list(m.parameters()) + list(m.buffers()))
    assert torch.equal(m.causal_lm.model.rotary_emb.inv_freq, ref.language_model.model.rotary_emb.inv_freq)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        a = m.causal_lm.model(input_ids=ids).last_hidden_state
        b = ref.language_model.model(input_ids=ids).last_hidden_state
        px = torch.randn(1, 3, 128, 128)
        assert torch.allclose(m.extract_visual_tokens(px), ref.extract_visual_tokens(px), atol=1e-6)
    assert torch.allclose(a, b, atol=1e-6)
