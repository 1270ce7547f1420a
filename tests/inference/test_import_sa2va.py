"""tools/import_sa2va.py on a tiny folder in the layout of a released Sa2VA checkpoint."""
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import MODELS

from conftest import ScriptedHead, two_shapes, write_tiny_sa2va
from projects.desa2va.inference import DeSa2VAPredictor
from projects.desa2va.models.checkpoint_io import CheckpointError, read_safetensors_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import import_sa2va  # noqa: E402


@pytest.fixture(scope="module")
def imported(tmp_path_factory, tiny_mllm_path, tiny_sam2_ckpt):
    root = tmp_path_factory.mktemp("sa2va")
    src = write_tiny_sa2va(root / "src", tiny_mllm_path, tiny_sam2_ckpt)
    out = str(root / "out")
    assert import_sa2va.main([src, "--save-path", out, "--sam2-config", "sam2_tiny.yaml"]) == 0
    return src, out


def _scripted(mllm):
    tok = mllm.tokenizer
    mllm.causal_lm.lm_head = ScriptedHead([tok.convert_tokens_to_ids("Sure"), mllm.seg_token_id,
                                           tok.convert_tokens_to_ids("<|im_end|>")], len(tok))


def test_imported_folder_is_sa2va_mode_with_sa2va_settings(imported):
    _, out = imported
    p = DeSa2VAPredictor.from_pretrained(out)
    m = p.model
    assert (m.stage, m.decouple) == (2, False) and m.keyframes == "first" and m.reprompt_iters == 0 and m.system_prompt is None
    assert m.chat_template == "qwen_chat" and m.postprocess == "sa2va" and m.max_tiles == 12
    assert (m.grounding.mask_selection, m.grounding.object_score_gating) == ("best_iou", False)
    assert sorted(os.listdir(out)) == ["desa2va_config.json", "heads.safetensors", "mllm", "sam2.pt", "sam2_config.yaml"]


def test_masks_equal_a_direct_computation_with_the_source_weights(imported):
    """Predictor on the imported folder vs the source tensors used directly: our InternVL2.5 module and
    SAM-2 loaded from the source's keys, Sa2VA's projection applied by hand (Linear, ReLU, Linear)."""
    from transformers import AutoTokenizer

    from projects.desa2va.models.grounding import SAM2Grounding
    from projects.desa2va.models.mllm import InternVLMLLM
    from projects.desa2va.models.sa2va_import import _internvl_config, _read_config

    src, out = imported
    p = DeSa2VAPredictor.from_pretrained(out)
    _scripted(p.model.mllm)
    seen = {}
    generate = p.model.mllm.generate

    def spy(ids, pv, **kw):
        seen.update(ids=ids, pv=pv)
        return generate(ids, pv, **kw)
    p.model.mllm.generate = spy
    img, _, _ = two_shapes(96)
    res = p.segment(img, "the red circle")
    assert res.text == "Sure[SEG]" and len(res.masks) == 1 and res.masks[0].shape == (96, 96)

    state = read_safetensors_folder(src)
    mllm = InternVLMLLM.from_config(_internvl_config(_read_config(src)))
    mllm.load_state_dict({k: v for k, v in state.items() if k.startswith(("vision_model.", "mlp1.", "language_model."))},
                         strict=True)
    mllm.tokenizer = AutoTokenizer.from_pretrained(src)
    mllm._resolve_image_token_ids()
    assert mllm.add_grounding_tokens() == []  # the Sa2VA tokenizer holds them already
    mllm.eval()
    _scripted(mllm)
    sam2 = SAM2Grounding("sam2_tiny.yaml")
    pre = "grounding_encoder.sam2_model."
    sam2.sam2_model.load_state_dict({k[len(pre):].replace(".g_weight", ".gamma"): v for k, v in state.items()
                                     if k.startswith(pre)}, strict=True)
    sam2.eval()
    m = sam2.sam2_model
    with torch.no_grad():
        h = mllm.generate(seen["ids"], seen["pv"], max_new_tokens=p.model.max_new_tokens).seg_hidden
        z = F.linear(F.relu(F.linear(h, state["text_hidden_fcs.0.weight"], state["text_hidden_fcs.0.bias"])),
                     state["text_hidden_fcs.2.weight"], state["text_hidden_fcs.2.bias"])
        # Sa2VA's path by hand: SAM-2's image features + no-memory embedding, the padding point then z as the
        # sparse prompt, three multimask outputs, the one with the highest predicted IoU
        backbone = m.forward_image(sam2.preprocess([img]))
        _, vis, _, sizes = m._prepare_backbone_features(backbone)
        pix = (vis[-1] + m.no_mem_embed).permute(1, 2, 0).reshape(1, 256, *sizes[-1])
        high = [f.permute(1, 2, 0).reshape(1, -1, *sz) for f, sz in zip(vis[:-1], sizes[:-1])]
        sparse, dense = m.sam_prompt_encoder(points=(torch.zeros(1, 1, 2), -torch.ones(1, 1, dtype=torch.int32)),
                                             boxes=None, masks=None)
        masks3, iou3, _, _ = m.sam_mask_decoder(image_embeddings=pix, image_pe=m.sam_prompt_encoder.get_dense_pe(),
                                                sparse_prompt_embeddings=torch.cat([sparse, z[:, None]], 1),
                                                dense_prompt_embeddings=dense, multimask_output=True,
                                                repeat_image=False, high_res_features=high)
        best = masks3[0, int(iou3[0].argmax())]
        # predict_forward's post-processing: -> SAM-2's size (256 here) -> the image's size, sigmoid > 0.5
        up = F.interpolate(best[None, None], size=(256, 256), mode="bilinear", align_corners=False)
        direct = (F.interpolate(up, size=(96, 96), mode="bilinear", align_corners=False)[0, 0].sigmoid() > 0.5).numpy()
    assert h.shape[0] == 1 and masks3.shape[1] == 3
    np.testing.assert_array_equal(res.masks[0], direct)
    assert 0 < direct.sum() < direct.size  # a partial mask: the comparison is not between two constants


@pytest.mark.parametrize("drop,extra,message", [
    (("text_hidden_fcs.2.bias",), None, r"missing \['text_hidden_fcs.2.bias'\]"),
    (("language_model.model.norm.weight",), None, "missing key.*language_model.model.norm.weight"),
    (("grounding_encoder.sam2_model.no_mem_embed",), None, "missing key.*no_mem_embed"),
    (("grounding_encoder.sam2_model.memory_encoder.fuser.layers.0.g_weight",), None,
     r"missing key.*'grounding_encoder.sam2_model.memory_encoder.fuser.layers.0.g_weight'"),
    ((), {"grounding_encoder.sam2_model.memory_encoder.fuser.layers.0.gamma": torch.zeros(256)},
     r"no part of the model takes: \['grounding_encoder.sam2_model.memory_encoder.fuser.layers.0.gamma'\].*g_weight"),
    ((), {"vision_model.extra.weight": torch.zeros(2)}, "unexpected key.*vision_model.extra.weight"),
    ((), {"grounding_encoder.sam2_model.extra": torch.zeros(2)}, "unexpected key.*'grounding_encoder.sam2_model.extra'"),
    ((), {"something_else.weight": torch.zeros(2)}, "no part of the model takes: \\['something_else.weight'\\]"),
    ((), {"text_hidden_fcs.4.weight": torch.zeros(2)}, r"unexpected \['text_hidden_fcs.4.weight'\]"),
])
def test_missing_or_extra_keys_are_errors_naming_them(tmp_path, tiny_mllm_path, tiny_sam2_ckpt, capsys,
                                                      drop, extra, message):
    src = write_tiny_sa2va(tmp_path / "src", tiny_mllm_path, tiny_sam2_ckpt, drop=drop, extra=extra)
    assert import_sa2va.main([src, "--save-path", str(tmp_path / "out"), "--sam2-config", "sam2_tiny.yaml"]) == 1
    err = capsys.readouterr().err
    assert "[import_sa2va] error:" in err
    import re
    assert re.search(message, err), err


def test_not_a_sa2va_folder(tmp_path, tiny_mllm_path):
    from projects.desa2va.models.sa2va_import import import_sa2va as run

    with pytest.raises(CheckpointError, match="config.json not found"):
        run(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(CheckpointError, match="a plain InternVL checkpoint, not Sa2VA"):
        run(tiny_mllm_path, str(tmp_path / "out"))  # an InternVL2.5 folder


def test_stage2_from_sa2va_config_starts_from_sa2va_visual_branch(imported):
    """configs/desa2va_4b_from_sa2va.py pointed at the tiny import: z_vis is Sa2VA's projection and D_vis
    is the imported SAM-2 decoder."""
    import projects.desa2va.registry  # noqa: F401

    src, out = imported
    cfg = Config.fromfile(os.path.join(ROOT, "configs", "desa2va_4b_from_sa2va.py"), lazy_import=False)
    assert cfg.model.sa2va_init == "pretrained/Sa2VA-4B-imported" and cfg.model.visual_proj == "sa2va_mlp"
    assert cfg.model.mllm.model_path == "pretrained/Sa2VA-4B-imported/mllm"
    cfg.model.update(sa2va_init=out, stage1_checkpoint=None, align_weight=0.0)
    cfg.model.mllm.update(model_path=os.path.join(out, "mllm"))
    cfg.model.precision = "fp32"
    cfg.model.grounding.update(model_config=os.path.join(out, "sam2_config.yaml"), checkpoint=os.path.join(out, "sam2.pt"))
    model = MODELS.build(cfg.model)
    state = read_safetensors_folder(src)
    h = torch.randn(3, model.mllm.hidden_size)
    want = F.linear(F.relu(F.linear(h, state["text_hidden_fcs.0.weight"], state["text_hidden_fcs.0.bias"])),
                    state["text_hidden_fcs.2.weight"], state["text_hidden_fcs.2.bias"])
    torch.testing.assert_close(model.head.decoupler(h)[1], want)
    dec = model.grounding.sam2_model.sam_mask_decoder.state_dict()
    pre = "grounding_encoder.sam2_model.sam_mask_decoder."
    assert all(torch.equal(dec[k[len(pre):]], v) for k, v in state.items() if k.startswith(pre))
    text_cfg = Config.fromfile(os.path.join(ROOT, "configs", "desa2va_text_pretrain_4b_from_sa2va.py"), lazy_import=False)
    assert text_cfg.model.mllm.model_path == cfg.model.mllm.model_path.replace(out, "pretrained/Sa2VA-4B-imported")
    with pytest.raises(ValueError, match="visual_proj='sa2va_mlp'"):
        cfg.model.visual_proj = "linear"
        MODELS.build(cfg.model)


def test_release_layout_of_the_fixture(tmp_path, tiny_mllm_path, tiny_sam2_ckpt):
    """What the importer is tested on is what Sa2VA's export writes (key names, config fields)."""
    import json

    src = write_tiny_sa2va(tmp_path / "src", tiny_mllm_path, tiny_sam2_ckpt)
    keys = set(read_safetensors_folder(src))
    assert "grounding_encoder.sam2_model.memory_encoder.fuser.layers.0.g_weight" in keys
    assert not any(k.endswith(".gamma") for k in keys)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["architectures"] == ["Sa2VAChatModel"] and cfg["template"] == "qwen_chat"
    assert cfg["auto_map"]["AutoModel"] == "modeling_sa2va_chat.Sa2VAChatModel"


def test_internlm2_release_is_a_clear_error(tmp_path, tiny_mllm_path, tiny_sam2_ckpt):
    from projects.desa2va.models.sa2va_import import import_sa2va as run

    src = write_tiny_sa2va(tmp_path / "src", tiny_mllm_path, tiny_sam2_ckpt, llm_arch="InternLM2ForCausalLM",
                           template="internlm2_chat")
    with pytest.raises(CheckpointError, match="the LLM is InternLM2ForCausalLM, which is not supported.*8B / 26B"):
        run(src, str(tmp_path / "out"), "sam2_tiny.yaml")


def test_phi3_chat_release_prompts_as_sa2va_builds_them(tmp_path, tiny_mllm_path, tiny_sam2_ckpt):
    """Sa2VA-4B's template: predict_forward writes PROMPT_TEMPLATE['phi3_chat']['INSTRUCTION'] around the
    question whose `<image>` became the image tokens, no system part, and tokenizes it plainly."""
    from projects.desa2va.inference.image import prompt_ids

    src = write_tiny_sa2va(tmp_path / "src", tiny_mllm_path, tiny_sam2_ckpt, template="phi3_chat")
    out = str(tmp_path / "out")
    assert import_sa2va.main([src, "--save-path", out, "--sam2-config", "sam2_tiny.yaml", "--skip-verify"]) == 0
    model = DeSa2VAPredictor.from_pretrained(out).model
    assert model.chat_template == "phi3_chat"
    n = model.mllm.num_image_token
    ids, _ = prompt_ids(model, "<image>Please segment the cat.", [2 * n])
    want = ("<|user|>\n<img>" + "<IMG_CONTEXT>" * (2 * n) + "</img>Please segment the cat.<|end|>\n"
            "<|assistant|>\n")
    assert ids[0].tolist() == model.mllm.tokenizer(want, add_special_tokens=False).input_ids
    # and generation stops at the template's stop word, spelled over several tokens by this tokenizer
    tok = model.mllm.tokenizer
    end = tok("<|end|>", add_special_tokens=False).input_ids
    assert len(end) > 1
    script = [tok.convert_tokens_to_ids("Sure"), model.mllm.seg_token_id] + end + [tok.convert_tokens_to_ids("Sure")] * 3
    model.mllm.causal_lm.lm_head = ScriptedHead(script, len(tok))
    text_only = torch.tensor([tok("<|user|>\nHi<|end|>\n<|assistant|>\n", add_special_tokens=False).input_ids])
    g = model.mllm.generate(text_only, None, max_new_tokens=20, stop_words=("<|end|>",))
    assert g.text == "Sure[SEG]" and g.seg_hidden.shape[0] == 1
