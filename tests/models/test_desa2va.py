"""DeSa2VAModel: trainable parts per mode, the exact Sa2VA control arm, fusion, reprompt, objects, inference."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import collate_samples, moving_clip, prompt_sample, referring_batch, two_shapes
from projects.desa2va.models.checkpoint_io import CheckpointError
from projects.desa2va.inference import keyframe_indices, predict, predict_image, predict_video
from projects.desa2va.models.text_prompts import text_prompt_tokens
from projects.desa2va.models.fusion import MaskFusion
from projects.desa2va.models.losses import dice_loss, sample_logits_and_targets, sigmoid_bce
from conftest import ScriptedHead


def _data(model, n_obj=(1, 2)):
    img, circle, square = two_shapes()
    items = []
    for i, n in enumerate(n_obj):
        masks = np.stack([circle, square][:n]) if n else np.zeros((0, 128, 128), bool)
        answer_objs = " and ".join(["[SEG]"] * n) if n else "nothing"
        items.append((f"Please segment object {i}.", masks, ["the red circle", "the blue square"][:n], answer_objs))
    batches = [referring_batch(model, img, [(q, m, t)], answer=f"Sure, {a}.") for q, m, t, a in items]
    # pad to a common length and merge
    length = max(b["input_ids"].shape[1] for b in batches)
    pad = model.mllm.tokenizer.pad_token_id
    out = {k: [] for k in batches[0]}
    for b in batches:
        extra = length - b["input_ids"].shape[1]
        out["input_ids"].append(F.pad(b["input_ids"], (0, extra), value=pad))
        out["labels"].append(F.pad(b["labels"], (0, extra), value=-100))
        out["attention_mask"].append(F.pad(b["attention_mask"], (0, extra), value=0))
        for k in ("pixel_values", "num_tiles", "sam_images", "masks", "object_texts", "sample_ids"):
            out[k].append(b[k])
    data = {k: torch.cat(v) for k, v in out.items() if k in ("input_ids", "labels", "attention_mask", "pixel_values")}
    data["num_tiles"] = [t for b in out["num_tiles"] for t in b]
    for k in ("sam_images", "masks", "object_texts"):
        data[k] = [x for b in out[k] for x in b]
    data["sample_ids"] = [f"s{i}" for i in range(len(n_obj))]
    return data


TRAINABLE = {
    "sa2va": {"mllm.language_model", "mllm.mlp1", "head.seg_proj", "grounding.sam2_model.sam_mask_decoder"},
    "desa2va": {"mllm.language_model", "mllm.mlp1", "head.decoupler", "head.text_decoder", "head.fusion",
                "grounding.sam2_model.sam_mask_decoder"},
    "text_pretrain": {"head.text_decoder", "head.real_text_proj"},
}


def _prefix(name):
    for p in ("mllm.language_model", "mllm.mlp1", "grounding.sam2_model.sam_mask_decoder"):
        if name.startswith(p):
            return p
    return ".".join(name.split(".")[:2]) if name.startswith("head.") else ".".join(name.split(".")[:3])


@pytest.mark.parametrize("mode", ["sa2va", "desa2va", "text_pretrain"])
def test_gradients_reach_exactly_the_trainable_parts(make_model, mode, tmp_path):
    extra = {}
    if mode == "desa2va":  # with a stage-1 teacher, so that the alignment term is on
        make_model("text_pretrain").save_stage1(str(tmp_path / "stage1.pth"))
        extra = dict(stage1_checkpoint=str(tmp_path / "stage1.pth"))
    model = make_model(mode, **extra)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    losses = model(_data(model), mode="loss")
    sum(losses.values()).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {_prefix(n) for n in trainable} == TRAINABLE[mode]
    for n, p in model.named_parameters():
        if n in trainable:
            assert p.grad is not None, n
        else:
            assert p.grad is None, n
    frozen = {"grounding.sam2_model.image_encoder", "grounding.sam2_model.sam_prompt_encoder",
              "grounding.sam2_model.memory_attention", "grounding.sam2_model.memory_encoder", "mllm.vision_model"}
    assert not any(n.startswith(tuple(frozen)) for n in trainable)
    if mode == "desa2va":
        assert not any(n.startswith("head.real_text_proj") for n in trainable)  # a frozen teacher in stage 2
        assert {"loss_lm", "loss_text_bce", "loss_text_dice", "loss_visual_bce", "loss_visual_dice", "loss_fused_bce",
                "loss_fused_dice", "loss_align", "loss_orth"} == set(losses)
        assert model.head.decoupler.text_proj.weight.grad.abs().sum() > 0
        assert model.head.text_decoder.iou_token.weight.grad.abs().sum() > 0


def test_sa2va_mode_equals_a_direct_reference_computation(make_model):
    model = make_model("sa2va", reprompt_iters=0)
    data = _data(model, n_obj=(2,))
    torch.manual_seed(123)
    losses = model(data, mode="loss")

    # reference, written against SAM-2's own forward_image path and the raw modules
    mllm, sam = model.mllm, model.grounding.sam2_model
    out = mllm(data["input_ids"], attention_mask=data["attention_mask"], labels=data["labels"],
               pixel_values=data["pixel_values"])
    fc0, fc2 = model.head.seg_proj.text_hidden_fcs[0], model.head.seg_proj.text_hidden_fcs[2]
    z = fc2(torch.relu(fc0(out.seg_hidden)))
    backbone = sam.forward_image(data["sam_images"][0])
    _, feats, _, sizes = sam._prepare_backbone_features(backbone)
    pix = (feats[-1] + sam.no_mem_embed).permute(1, 2, 0).reshape(1, 256, *sizes[-1]).expand(2, -1, -1, -1)
    high = [f.permute(1, 2, 0).reshape(1, -1, *s).expand(2, -1, -1, -1) for f, s in zip(feats[:-1], sizes[:-1])]
    sparse, dense = sam.sam_prompt_encoder(points=(torch.zeros(2, 1, 2), -torch.ones(2, 1, dtype=torch.int32)),
                                           boxes=None, masks=None)
    sparse = torch.cat([sparse, z[:, None]], dim=1)
    masks3, iou3, _, _ = sam.sam_mask_decoder(image_embeddings=pix, image_pe=sam.sam_prompt_encoder.get_dense_pe(),
                                              sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                              multimask_output=True, repeat_image=False, high_res_features=high)
    # Sa2VA (mask_selection='best_iou'): of the three multimask outputs, the one with the highest predicted IoU
    ref_logits = torch.stack([masks3[i, int(iou3[i].argmax())] for i in range(2)])[:, None]
    with torch.no_grad():
        ours = model.decode_objects(model.grounding.encode_frames(data["sam_images"][0]), out.seg_hidden,
                                    torch.zeros(2, dtype=torch.long))
    assert torch.allclose(ours, ref_logits, atol=1e-4)

    torch.manual_seed(123)  # the same points as the model drew
    lg, tg = sample_logits_and_targets(ref_logits, data["masks"][0].reshape(2, 1, 128, 128).float(), 1024)
    assert torch.allclose(losses["loss_lm"], out.loss, atol=1e-5)
    assert torch.allclose(losses["loss_mask_bce"], 2.0 * sigmoid_bce(lg, tg), atol=1e-4)
    assert torch.allclose(losses["loss_mask_dice"], 0.5 * dice_loss(lg, tg), atol=1e-4)


def test_fusion_modes():
    torch.manual_seed(0)
    m_t, m_v = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    z_t, z_v, s_t, s_v = torch.randn(3, 256), torch.randn(3, 256), torch.rand(3, 1), torch.rand(3, 1)
    assert torch.equal(MaskFusion("text_only")(m_t, m_v, z_t, z_v, s_t, s_v), m_t)
    assert torch.equal(MaskFusion("visual_only")(m_t, m_v, z_t, z_v, s_t, s_v), m_v)
    assert torch.allclose(MaskFusion("mean")(m_t, m_v, z_t, z_v, s_t, s_v), (m_t + m_v) / 2)
    for mode in ("gate", "pixel_gate"):
        f = MaskFusion(mode)(m_t, m_v, z_t, z_v, s_t, s_v)
        lo, hi = torch.minimum(m_t, m_v), torch.maximum(m_t, m_v)
        assert f.shape == m_t.shape and (f >= lo - 1e-6).all() and (f <= hi + 1e-6).all()
    gate = MaskFusion("gate")
    g = torch.sigmoid(gate.gate(torch.cat([z_t, z_v, s_t, s_v], -1)))[:, :, None, None]
    assert torch.allclose(gate(m_t, m_v, z_t, z_v, s_t, s_v), g * m_t + (1 - g) * m_v)
    # the predicted IoUs enter the gate detached (METHOD.md 3.5): no gradient reaches the IoU heads through it
    s_t.requires_grad_(True)
    s_v.requires_grad_(True)
    z_t.requires_grad_(True)
    gate(m_t, m_v, z_t, z_v, s_t, s_v).sum().backward()
    assert s_t.grad is None and s_v.grad is None and z_t.grad is not None
    with pytest.raises(ValueError, match="fusion mode"):
        MaskFusion("max")


def test_text_only_fusion_in_the_model_returns_the_text_mask(make_model):
    model = make_model("desa2va", fusion="text_only", reprompt_iters=0).eval()
    feats = model.grounding.encode_frames(torch.randn(1, 3, 256, 256))
    h = torch.randn(2, model.mllm.hidden_size)
    fidx = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        fused = model.decode_objects(feats, h, fidx)
        z_t, _ = model.head.decoupler(h)
        text = model.head.decode_text(model.grounding, feats, z_t, fidx).low_res_logits
        # D_txt sees z_t as stage 1 showed it the text when the points were dropped
        points = torch.rand(2, model.head.num_text_points, 2) * 256
        stage1 = text_prompt_tokens(model.grounding.sam2_model.sam_prompt_encoder, z_t, points,
                                    torch.ones(2, dtype=torch.bool), model.head.num_text_points)
        assert stage1.shape[1] == model.head.num_text_points + 1
        as_stage1 = model.grounding.decode(feats, stage1, fidx, decoder=model.head.text_decoder).low_res_logits
        # the video memory's pointer comes from the decoder of the output: D_txt's token here
        full = model.decode_objects_full(feats, h, fidx)
        text_token = model.head.decode_text(model.grounding, feats, z_t, fidx).mask_token
    assert torch.equal(fused, text) and torch.equal(text, as_stage1)
    assert torch.equal(full.mask_token, text_token)


def _peak_prompt_by_hand(logits):
    """The reprompt point of a square blob, by hand: its centre pixel (distance-transform peak), in SAM-2
    input pixels (x, y) for a 256 px SAM-2 and 64 x 64 logits."""
    ys, xs = np.nonzero(logits[0].numpy() > 0)
    return torch.tensor([[(xs.min() + xs.max()) / 2 * 4.0, (ys.min() + ys.max()) / 2 * 4.0]])


def test_reprompt_refines_through_the_decoder_of_the_output(make_model):
    """METHOD.md 3.5: the fused mask is refined by D_vis with z_vis and the peak as SAM-2's point prompt;
    with fusion='text_only', by D_txt with the point in its stage-1 point-token slots; empty masks stay."""
    from projects.desa2va.models.grounding import DecoderOutput

    torch.manual_seed(0)
    blob = torch.full((2, 1, 64, 64), -5.0)
    blob[0, :, 10:31, 10:31] = 5.0  # object 0 has a mask (peak at its centre pixel (20, 20)), object 1 is empty
    for fusion in ("gate", "text_only"):
        model = make_model("desa2va", fusion=fusion, reprompt_iters=0).eval()
        feats = model.grounding.encode_frames(torch.randn(1, 3, 256, 256))
        h = torch.randn(2, model.mllm.hidden_size)
        fidx = torch.zeros(2, dtype=torch.long)
        g, head = model.grounding, model.head
        with torch.no_grad():
            out = head(g, feats, h, fidx)
            start = DecoderOutput(blob, torch.zeros(2, 1), torch.ones(2, 1), torch.zeros(2, 256))
            refined = head.reprompt(g, feats, out, fidx, start)
            point = _peak_prompt_by_hand(blob[0])
            z_t, z_v = head.decoupler(h)
            if fusion == "text_only":
                pe = g.sam2_model.sam_prompt_encoder
                k = head.num_text_points
                tokens = text_prompt_tokens(pe, z_t[:1], point[:, None].expand(1, k, 2), torch.zeros(1, dtype=torch.bool), k)
                want = g.decode(feats, tokens, fidx[:1], mask_logits=blob[:1], decoder=head.text_decoder)
            else:
                want = g.decode(feats, z_v[:1], fidx[:1], point_coords=point[:, None],
                                point_labels=torch.ones(1, 1, dtype=torch.int32), mask_logits=blob[:1])
        torch.testing.assert_close(refined.low_res_logits[:1], want.low_res_logits)
        torch.testing.assert_close(refined.mask_token[:1], want.mask_token)
        assert not torch.allclose(refined.low_res_logits[0], blob[0])
        assert torch.equal(refined.low_res_logits[1], blob[1]) and torch.equal(refined.mask_token[1], start.mask_token[1])


def test_reprompt_is_a_no_op_when_off(make_model):
    model = make_model("desa2va", reprompt_iters=0).eval()
    feats = model.grounding.encode_frames(torch.randn(1, 3, 256, 256))
    h = torch.randn(2, model.mllm.hidden_size)
    fidx = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        z_t, z_v = model.head.decoupler(h)
        ot = model.head.decode_text(model.grounding, feats, z_t, fidx)
        ov = model.grounding.decode(feats, z_v, fidx)
        fused = model.head.fusion(ot.low_res_logits, ov.low_res_logits, z_t, z_v, ot.iou_pred, ov.iou_pred)
        assert torch.equal(model.decode_objects(feats, h, fidx, reprompt_iters=0), fused)
        assert not torch.equal(model.decode_objects(feats, h, fidx, reprompt_iters=1), fused)


def test_objects_per_sample_repeats_or_cuts_to_exactly_five(make_model, monkeypatch):
    """Sa2VA's check_obj_number: fewer objects are repeated in order and cut, more are a random subset; the
    mask loss then sees exactly 5 (object, frame) rows per frame of every sample."""
    model = make_model("sa2va", objects_per_sample=5)
    assert model._objects_of(2) == [0, 1, 0, 1, 0] and model._objects_of(5) == [0, 1, 2, 3, 4]
    seven = model._objects_of(7)
    assert len(seven) == len(set(seven)) == 5 and set(seven) <= set(range(7))
    assert make_model("sa2va")._objects_of(2) == [0, 1]  # None: every object once
    seen = []
    import projects.desa2va.models.desa2va as mod

    real = mod.segmentation_losses
    monkeypatch.setattr(mod, "segmentation_losses", lambda logits, bw, targets, *a: seen.append(
        ([lg.shape[0] for lg in logits.values()], [t.shape[0] for t in targets])) or real(logits, bw, targets, *a))
    data = _data(model, n_obj=(2, 1))
    model(data, mode="loss")
    assert seen == [([10], [5, 5])]
    # the targets follow the repeated objects: sample 0's rows are objects 0, 1, 0, 1, 0
    rows, _, targets, *_ = model._object_rows(data, [0], [0], fixed=True)
    assert rows.tolist() == [0, 1, 0, 1, 0]
    assert torch.equal(targets[0][:, 0], data["masks"][0][[0, 1, 0, 1, 0], 0])
    with pytest.raises(ValueError, match="objects_per_sample must be None or a positive int"):
        make_model("sa2va", objects_per_sample=0)


def test_seg_count_mismatch_names_the_sample(make_model):
    model = make_model("sa2va")
    data = _data(model, n_obj=(1, 2))
    data["masks"][1] = data["masks"][1][:1]
    data["object_texts"][1] = data["object_texts"][1][:1]
    with pytest.raises(ValueError, match=r"sample s1: 2 \[SEG\] token\(s\) but 1 object mask\(s\)"):
        model(data, mode="loss")


def test_batch_without_masks_gives_zero_gradients_without_running_sam2(make_model, monkeypatch):
    model = make_model("desa2va")
    data = _data(model, n_obj=(0, 0))
    data["masks"] = [None, None]

    def forbidden(*a, **k):
        raise AssertionError("SAM-2 must not run on a batch without masks")
    monkeypatch.setattr(model.grounding, "encode_frames", forbidden)
    losses = model(data, mode="loss")
    sum(losses.values()).backward()
    seg = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("mllm.")]
    assert seg and all(p.grad is not None and p.grad.abs().sum() == 0 for _, p in seg)


def test_bad_samples_dropped_from_a_batch_are_logged_and_never_replaced(make_model, monkeypatch):
    """`collate` drops a bad sample's marker into `skipped`: the model trains on the rest exactly as on a
    batch without it, names the item in the log, and a batch of markers only is a zero-gradient step."""
    import projects.desa2va.models.desa2va as D

    logged = []
    monkeypatch.setattr(D, "print_log", lambda msg, **kw: logged.append(msg))
    model = make_model("desa2va")
    data = _data(model, n_obj=(1, 2))
    bad = {"item": "RefCOCODataset[7]", "reason": "missing_file", "message": "sample 7: image not found: x.jpg"}
    torch.manual_seed(3)
    clean = model(data, mode="loss")
    torch.manual_seed(3)
    with_bad = model(dict(data, skipped=[bad]), mode="loss")
    assert clean.keys() == with_bad.keys() and all(torch.equal(clean[k], with_bad[k]) for k in clean)
    assert model.skipped_samples == 1 and logged and "RefCOCODataset[7] (missing_file)" in logged[0]
    assert "x.jpg" in logged[0]
    losses = model({"sample_ids": [], "skipped": [bad, bad]}, mode="loss")
    assert list(losses) == ["loss_empty_batch"] and losses["loss_empty_batch"].item() == 0
    losses["loss_empty_batch"].backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert any(n.startswith("mllm.") for n, _ in trainable)  # LoRA and the new rows
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for _, p in trainable)
    assert model.skipped_samples == 3 and "3 so far" in logged[-1]


def test_video_sample_shares_each_object_embedding_and_features_are_computed_once(make_model, monkeypatch):
    model = make_model("desa2va")
    data = _data(model, n_obj=(1, 2))
    # sample 1 becomes a 3-frame clip with 2 objects
    data["sam_images"][1] = torch.randn(3, 3, 256, 256)
    data["masks"][1] = data["masks"][1].repeat(1, 3, 1, 1)
    calls = []
    real = model.grounding.encode_frames
    monkeypatch.setattr(model.grounding, "encode_frames", lambda x: calls.append(x.shape[0]) or real(x))
    decoded = []
    real_decode = model.grounding.decode
    monkeypatch.setattr(model.grounding, "decode",
                        lambda feats, tokens, fidx, **k: decoded.append((tokens.detach(), fidx)) or real_decode(
                            feats, tokens, fidx, **k))
    model(data, mode="loss")
    assert calls == [4]  # 1 + 3 frames, one encoder call for the whole batch
    tokens, fidx = decoded[0]
    assert fidx.tolist() == [0, 1, 2, 3, 1, 2, 3]  # obj of sample 0 on frame 0, then 2 objects x 3 frames
    assert torch.equal(tokens[1], tokens[2]) and torch.equal(tokens[2], tokens[3])  # shared across frames
    assert not torch.equal(tokens[3], tokens[4])


def test_keyframe_indices():
    assert keyframe_indices(100, "uniform", 5) == [10, 30, 50, 70, 90]
    assert keyframe_indices(100, "first", 5) == [0, 1, 2, 3, 4]
    assert keyframe_indices(3, "uniform", 5) == [0, 1, 2]
    with pytest.raises(ValueError):
        keyframe_indices(10, "random", 5)


def _script(model, tokens):
    model.mllm.causal_lm.lm_head = ScriptedHead(tokens, len(model.mllm.tokenizer))


def test_image_predict_masks_at_original_size_and_text_only_answers(make_model):
    model = make_model("desa2va").eval()
    tok = model.mllm.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    img = np.random.RandomState(0).randint(0, 255, (70, 90, 3), dtype=np.uint8)
    _script(model, tok("Sure", add_special_tokens=False).input_ids + [model.mllm.seg_token_id] * 2 + [eos])
    out = predict(model, "Please segment the shapes.", image=img)
    assert out["text"] == "Sure[SEG][SEG]" and len(out["masks"]) == 2
    assert all(m.shape == (70, 90) and m.dtype == bool for m in out["masks"])
    _script(model, tok("No", add_special_tokens=False).input_ids + [eos])
    out = predict(model, "Is there a dog?", image=img)
    assert out == {"text": "No", "masks": []}
    with pytest.raises(ValueError, match="exactly one of"):
        predict(model, "x")


def test_video_predict_one_mask_per_frame_per_object(make_model):
    model = make_model("desa2va", num_keyframes=2).eval()
    eos = model.mllm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    frames = [np.random.RandomState(i).randint(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(9)]
    _script(model, [model.mllm.seg_token_id, model.mllm.seg_token_id, eos])
    seen = []
    real = model.grounding.propagate_iter

    def spy(*a, **k):
        for f, ids, logits in real(*a, **k):
            seen.append(f)
            yield f, ids, logits
    model.grounding.propagate_iter = spy
    out = predict(model, "Please segment the moving shapes.", frames=frames)
    assert len(out["masks"]) == 2 and all(m.shape == (9, 48, 64) and m.dtype == bool for m in out["masks"])
    assert seen[0] == 2 and sorted(seen) == list(range(9))  # from key frame 2 forward, then backward to 0
    _script(model, [eos])
    assert predict(model, "What happens?", frames=frames)["masks"] == []


def test_stage1_to_stage2_hand_off(make_model, tmp_path):
    stage1 = make_model("text_pretrain")
    with torch.no_grad():
        for p in stage1.head.text_decoder.parameters():
            p.add_(0.01)
    path = str(tmp_path / "stage1.pth")
    stage1.save_stage1(path)
    assert set(torch.load(path)["state_dict"]) == set(stage1.stage1_state_dict())
    stage2 = make_model("desa2va", stage1_checkpoint=path)
    for k, v in stage1.stage1_state_dict().items():
        assert torch.equal(stage2.head.state_dict()[k], v), k
    wd = tmp_path / "stage1_work_dir"  # a stage-1 training work dir: its last_checkpoint is used
    wd.mkdir()
    (wd / "last_checkpoint").write_text(path)
    from_dir = make_model("desa2va", stage1_checkpoint=str(wd))
    assert torch.equal(from_dir.head.text_decoder.iou_token.weight, stage2.head.text_decoder.iou_token.weight)
    with pytest.raises(CheckpointError, match="nor a work dir with a last_checkpoint"):
        make_model("desa2va", stage1_checkpoint=str(tmp_path))
    fresh = make_model("desa2va")  # ablation: no stage 1, text decoder from SAM-2
    assert not torch.equal(fresh.head.text_decoder.iou_token.weight, stage2.head.text_decoder.iou_token.weight)

    sd = torch.load(path)["state_dict"]
    partial = {k: v for k, v in sd.items() if not k.startswith("text_decoder.output_upscaling")}
    torch.save({"state_dict": partial}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"lacks 6 .*text_decoder\.output_upscaling"):
        make_model("desa2va", stage1_checkpoint=str(tmp_path / "partial.pth"))
    other = dict(sd)
    other["real_text_proj.proj.weight"] = torch.zeros(256, 896)
    torch.save({"state_dict": other}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="another model size: its Linear\\(Real-Text\\) maps 896 -> 256"):
        make_model("desa2va", stage1_checkpoint=str(tmp_path / "other.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        make_model("desa2va", stage1_checkpoint=str(tmp_path / "absent.pth"))


def test_text_embeddings_are_cached_and_adapter_free(make_model, monkeypatch):
    model = make_model("desa2va")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    e1 = model.text_embeddings(["the red circle", "the blue square"])
    assert e1.shape == (2, model.mllm.hidden_size) and not torch.allclose(e1[0], e1[1])
    calls = []
    real = model.mllm.causal_lm.model.forward
    monkeypatch.setattr(model.mllm.causal_lm.model, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert torch.equal(model.text_embeddings(["the blue square"])[0], e1[1]) and calls == []
    # the same texts through the LLM without adapters (the stage-1 teacher), mean over tokens
    tok = model.mllm.tokenizer
    ids = torch.tensor([tok("the red circle", add_special_tokens=False).input_ids])
    with model.mllm.language_model.disable_adapter(), torch.no_grad():
        h = model.mllm.causal_lm.model(input_ids=ids).last_hidden_state[0].mean(0)
    assert torch.allclose(e1[0], h, atol=1e-5)


def test_text_embedding_cache_is_bounded_least_recently_used_first(make_model, monkeypatch):
    model = make_model("desa2va", text_cache_size=2)
    assert model.text_encoder.max_entries == 2
    first = model.text_embeddings(["a", "b"])
    model.text_embeddings(["a"])          # a is now the most recent
    model.text_embeddings(["c"])          # evicts b, the least recently used
    assert list(model.text_encoder.cache) == ["a", "c"]
    calls = []
    real = model.mllm.causal_lm.model.forward
    monkeypatch.setattr(model.mllm.causal_lm.model, "forward", lambda *a, **k: calls.append(k["input_ids"].shape[0])
                        or real(*a, **k))
    again = model.text_embeddings(["b", "a"])  # b is encoded again (1 text), a comes from the cache
    assert calls == [1] and torch.allclose(again[0], first[1], atol=1e-5) and torch.equal(again[1], first[0])
    assert len(model.text_encoder.cache) == 2
    with pytest.raises(ValueError, match="3 distinct texts in one call but text_cache_size is 2"):
        model.text_embeddings(["x", "y", "z"])


def _answer_and_count_frames(model, monkeypatch, answers):
    """Each generate call answers the next scripted token list; returns the list of the batch sizes that
    SAM-2's image encoder is called with."""
    real_generate = model.mllm.generate

    def generate(*a, **k):
        _script(model, next(answers))
        return real_generate(*a, **k)
    monkeypatch.setattr(model.mllm, "generate", generate)
    calls = []
    encoder = model.grounding.sam2_model.image_encoder
    real_forward = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda x: calls.append(x.shape[0]) or real_forward(x))
    return calls


def test_several_questions_on_a_video_share_one_sam2_state(make_model, monkeypatch):
    model = make_model("desa2va", num_keyframes=2).eval()
    seg, eos = model.mllm.seg_token_id, model.mllm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    frames = [np.random.RandomState(i).randint(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(6)]
    calls = _answer_and_count_frames(model, monkeypatch, iter([[seg, eos]] * 4))  # one [SEG] per question
    questions = ["Please segment the circle.", "Please segment the square."]
    joint = predict_video(model, questions, frames)
    joint_calls = sum(calls)
    calls.clear()
    separate = [predict(model, q, frames=frames) for q in questions]
    assert [r["text"] for r in joint] == [r["text"] for r in separate] == ["[SEG]", "[SEG]"]
    for a, b in zip(joint, separate):
        assert len(a["masks"]) == 1 and a["masks"][0].shape == (6, 48, 64)
        assert np.array_equal(a["masks"][0], b["masks"][0])  # objects are tracked independently
    assert joint_calls == 6  # every frame encoded once for both expressions, key frames included
    assert joint_calls < sum(calls)


def test_key_frame_features_reused_by_the_video_state_give_the_same_masks(make_model):
    model = make_model("desa2va").eval()
    g = model.grounding
    frames = [np.random.RandomState(i).randint(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(5)]
    keys = [1, 3]
    images = g.preprocess([frames[i] for i in keys])
    with torch.no_grad():
        feats = g.encode_frames(images)
    rng = np.random.RandomState(0)
    key_masks = {0: {k: torch.from_numpy(rng.rand(16, 16) > 0.5) for k in keys}}
    plain = g.propagate(frames, (48, 64), key_masks)
    reused = g.propagate(frames, (48, 64), key_masks, g.video_features(feats, images, keys))
    assert torch.equal(plain, reused)


def test_several_questions_on_an_image_share_its_sam2_features(make_model, monkeypatch):
    model = make_model("desa2va").eval()
    seg, eos = model.mllm.seg_token_id, model.mllm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    img = np.random.RandomState(0).randint(0, 255, (70, 90, 3), dtype=np.uint8)
    calls = _answer_and_count_frames(model, monkeypatch, iter([[seg, eos], [eos], [seg, seg, eos]] * 2))
    qs = ["Please segment the circle.", "Is there a dog?", "Please segment both shapes."]
    joint = predict_image(model, qs, img)
    assert calls == [1]
    separate = [predict(model, q, image=img) for q in qs]
    assert [len(r["masks"]) for r in joint] == [len(r["masks"]) for r in separate] == [1, 0, 2]
    for a, b in zip(joint, separate):
        assert a["text"] == b["text"] and all(np.array_equal(x, y) for x, y in zip(a["masks"], b["masks"]))


@pytest.mark.parametrize("arm", ["desa2va", "sa2va"])
def test_train_with_memory_tracks_as_inference_propagates(make_model, monkeypatch, arm):
    """METHOD.md 3.4: each object's final output on the first sampled frame seeds SAM-2's memory and the later
    frames are tracked from it; the tracked logits must be those inference's video propagation gives from
    the same key output (SAM-2's video predictor, another code path), their loss the final output's, and
    the gradient must reach the [SEG] projection through the memory."""
    import projects.desa2va.models.desa2va as D
    from projects.desa2va.models.grounding.sam2_grounding import DecoderOutput
    from projects.desa2va.models.objectives import segmentation_losses

    model = make_model(arm, train_with_memory=True, objects_per_sample=3)  # 2 objects repeated to 3 slots
    images, masks = moving_clip()
    s = prompt_sample(model, images, "Please segment the red circle and the blue square.", masks,
                      answer="Sure, [SEG] and [SEG].")
    data = collate_samples(model, [s], [["the red circle", "the blue square"]])
    seen = {}
    real = D.track_from_key

    def spy(m, backbone, n, t, key_logits, key_ptr, key_score):
        seen.update(n=n, t=t, key=key_logits.detach().clone(), score=key_score.detach().clone())
        out = real(m, backbone, n, t, key_logits, key_ptr, key_score)
        seen["tracked"] = [o.detach().clone() for o in out]
        seen["rng"] = torch.get_rng_state()  # the loss's point sampling draws from here
        return out
    monkeypatch.setattr(D, "track_from_key", spy)
    model.eval()  # no dropout: the same computation as inference
    losses = model(data, mode="loss")
    assert seen["n"] == 2 and seen["t"] == 3  # each object once, frames 1 and 2 tracked from frame 0
    # the memory term: 2 BCE + 0.5 Dice of the tracked logits times the final output's branch weight
    w = model.head.branch_weights["fused" if arm == "desa2va" else "mask"]
    tracked = torch.stack(seen["tracked"], 1).flatten(0, 1)
    gt = torch.as_tensor(masks[:, 1:]).reshape(4, 1, 128, 128)  # object-major: (circle, square) x frames 1, 2
    torch.set_rng_state(seen["rng"])
    expect = segmentation_losses({"memory": tracked}, {"memory": w}, [gt], model.weights, model.points)
    for k in ("loss_memory_bce", "loss_memory_dice"):
        torch.testing.assert_close(losses[k].detach(), expect[k], atol=1e-6, rtol=1e-5)
    # the head's own key output (fused / mask logits on frame 0 of each object)
    with torch.no_grad():
        out = model.mllm(data["input_ids"], attention_mask=data["attention_mask"], pixel_values=data["pixel_values"],
                         num_tiles=data["num_tiles"])
        feats = model.grounding.encode_frames(data["sam_images"][0])
        head = model.head(model.grounding, feats, out.seg_hidden, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(seen["key"], head.mask, atol=1e-5, rtol=1e-5)
    # inference: the same key outputs seeded into SAM-2's video predictor, propagated forward
    keys = {j: {0: DecoderOutput(head.mask[j:j + 1], head.decoded.iou_pred[j:j + 1],
                                 head.decoded.object_score_logits[j:j + 1], head.decoded.mask_token[j:j + 1])}
            for j in range(2)}
    size = tuple(head.mask.shape[-2:])
    got = {f: logits for f, _, logits in model.grounding.propagate_iter(data["sam_images"][0], size, keys)}
    for f in (1, 2):
        torch.testing.assert_close(seen["tracked"][f - 1][:, 0], got[f], atol=1e-4, rtol=1e-4)
    # gradient through the memory alone reaches the projection of [SEG]
    model.zero_grad()
    (losses["loss_memory_bce"] + losses["loss_memory_dice"]).backward()
    proj = model.head.decoupler.vision_proj if arm == "desa2va" else model.head.seg_proj
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proj.parameters())


def test_train_with_memory_off_adds_no_term_and_images_add_none(make_model):
    model = make_model("desa2va")
    images, masks = moving_clip()
    s = prompt_sample(model, images, "Please segment the red circle.", masks[:1])
    data = collate_samples(model, [s], [["the red circle"]])
    assert not any("memory" in k for k in model(data, mode="loss"))
    model = make_model("desa2va", train_with_memory=True)
    assert not any("memory" in k for k in model(_data(model), mode="loss"))  # one-frame samples: nothing to track
