"""SAM-2 wrapper: prompt-token decoding, shared features, independent decoder copies, video propagation."""
import numpy as np
import pytest
import torch

from projects.desa2va.models.checkpoint_io import read_torch_checkpoint


def _iou(a, b):
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def test_strict_load_and_sizes(sam2, tiny_sam2_ckpt):
    sd = read_torch_checkpoint(tiny_sam2_ckpt, key="model")
    assert torch.equal(sam2.sam2_model.state_dict()["sam_mask_decoder.iou_token.weight"],
                       sd["sam_mask_decoder.iou_token.weight"])
    assert sam2.image_size == 256 and sam2.prompt_dim == 256 and sam2.low_res_size == (64, 64)


def test_decode_with_prompt_token_and_gradient(sam2):
    feats = sam2.encode_frames(torch.randn(2, 3, 256, 256))
    tokens = torch.randn(3, 256, requires_grad=True)
    out = sam2.decode(feats, tokens, frame_index=torch.tensor([0, 0, 1]))
    assert out.low_res_logits.shape == (3, 1, 64, 64)
    assert out.iou_pred.shape == (3, 1) and out.object_score_logits.shape == (3, 1)
    assert out.mask_token.shape == (3, 256)
    out.low_res_logits.sum().backward()
    assert tokens.grad is not None and (tokens.grad.abs().sum(-1) > 0).all()
    # the token matters: another token, another mask
    with torch.no_grad():
        other = sam2.decode(feats, torch.randn(3, 256), frame_index=torch.tensor([0, 0, 1]))
    assert not torch.allclose(other.low_res_logits, out.low_res_logits)


def test_frame_features_are_shared_by_objects(sam2):
    images = torch.randn(2, 3, 256, 256)
    tokens = torch.randn(3, 1, 256)
    with torch.no_grad():
        both = sam2.decode(sam2.encode_frames(images), tokens, frame_index=torch.tensor([1, 0, 1]))
        only1 = sam2.decode(sam2.encode_frames(images[1:]), tokens[[0, 2]], frame_index=torch.tensor([0, 0]))
    assert torch.allclose(both.low_res_logits[[0, 2]], only1.low_res_logits, atol=1e-4)


def test_points_and_dense_mask_prompts(sam2):
    feats = sam2.encode_frames(torch.randn(1, 3, 256, 256))
    tok = torch.randn(1, 1, 256)
    with torch.no_grad():
        plain = sam2.decode(feats, tok).low_res_logits
        pts = sam2.decode(feats, tok, point_coords=torch.tensor([[[100.0, 120.0]]]),
                          point_labels=torch.tensor([[1]], dtype=torch.int32)).low_res_logits
        dense = sam2.decode(feats, tok, mask_logits=torch.randn(1, 1, 64, 64) * 10).low_res_logits
        dense_hi = sam2.decode(feats, tok, mask_logits=torch.randn(1, 1, 256, 256) * 10).low_res_logits
    for x in (pts, dense, dense_hi):
        assert x.shape == plain.shape and not torch.allclose(x, plain)


def test_decoder_copy_is_independent(sam2):
    copy = sam2.copy_mask_decoder()
    orig = sam2.sam2_model.sam_mask_decoder
    orig_ptrs = {p.data_ptr() for p in orig.parameters()}
    assert all(p.data_ptr() not in orig_ptrs for p in copy.parameters())
    assert all(p.requires_grad for p in copy.parameters())
    feats = sam2.encode_frames(torch.randn(1, 3, 256, 256))
    tok = torch.randn(1, 1, 256)
    with torch.no_grad():
        base = sam2.decode(feats, tok).low_res_logits
        assert torch.allclose(sam2.decode(feats, tok, decoder=copy).low_res_logits, base)
        copy.conv_s0.weight.add_(0.5)  # the copy's own high-res projection is used
        changed = sam2.decode(feats, tok, decoder=copy).low_res_logits
        assert not torch.allclose(changed, base)
        assert torch.allclose(sam2.decode(feats, tok).low_res_logits, base)
    orig.zero_grad()
    sam2.decode(feats, tok, decoder=copy).low_res_logits.sum().backward()
    assert all(p.grad is None for p in orig.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in copy.parameters())


def test_freeze_all_but_mask_decoder(sam2):
    sam2.freeze_all_but_mask_decoder()
    trainable = {n.split(".")[0] for n, p in sam2.sam2_model.named_parameters() if p.requires_grad}
    assert trainable == {"sam_mask_decoder"}


def _blob(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return torch.from_numpy((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)


def test_eight_frame_propagation_one_mask_per_frame_per_object(sam2):
    frames = torch.randn(8, 3, 256, 256)
    h, w = 90, 120
    m1, m2, m3 = _blob(h, w, 30, 40, 15), _blob(h, w, 60, 80, 20), _blob(h, w, 50, 30, 10)
    keys = {"a": {3: m1}, "b": {3: m2, 6: m3}}
    seen = []
    for f, obj_ids, logits in sam2.propagate_iter(frames, (h, w), keys):
        seen.append(f)
        assert obj_ids == ["a", "b"] and logits.shape == (2, h, w)
    assert sorted(seen) == list(range(8)) and seen[0] == 3  # forward from frame 3, then backward to 0
    masks = sam2.propagate(frames, (h, w), keys)
    assert masks.shape == (2, 8, h, w) and masks.dtype == torch.bool
    # key frames reproduce their seeding masks (SAM-2 uses a mask input as the output)
    assert _iou(masks[0, 3], m1) > 0.9 and _iou(masks[1, 3], m2) > 0.9 and _iou(masks[1, 6], m3) > 0.9
    assert sam2.sam2_model.training  # the train/eval mode is restored


def test_propagation_from_uint8_frames_and_first_frame(sam2):
    frames = [np.random.RandomState(i).randint(0, 255, (40, 60, 3), dtype=np.uint8) for i in range(5)]
    masks = sam2.propagate(frames, (40, 60), {0: {0: _blob(40, 60, 20, 30, 8)}})
    assert masks.shape == (1, 5, 40, 60)
    assert _iou(masks[0, 0], _blob(40, 60, 20, 30, 8)) > 0.9


def test_propagation_input_errors(sam2):
    frames = torch.randn(4, 3, 256, 256)
    with pytest.raises(ValueError, match="at least one key-frame mask"):
        sam2.propagate(frames, (32, 32), {1: {}})
    with pytest.raises(ValueError, match="key frame 7 of object 1 is outside the video"):
        sam2.propagate(frames, (32, 32), {1: {7: torch.ones(32, 32, dtype=torch.bool)}})


def test_other_input_size_same_weights(sam2, tiny_sam2_ckpt, tmp_path):
    from projects.desa2va.models.grounding import SAM2Grounding

    small = SAM2Grounding("sam2_tiny.yaml", tiny_sam2_ckpt, image_size=128)  # strict load: same weights
    assert small.image_size == 128 and small.low_res_size == (32, 32)
    for k, v in sam2.sam2_model.state_dict().items():
        assert torch.equal(small.sam2_model.state_dict()[k], v), k
    attn = small.sam2_model.memory_attention.layers[0]
    assert attn.self_attn.freqs_cis.shape[0] == attn.cross_attn_image.freqs_cis.shape[0] == 8 * 8  # RoPE grid
    with torch.no_grad():
        out = small.decode(small.encode_frames(torch.randn(1, 3, 128, 128)), torch.randn(2, 256),
                           frame_index=torch.tensor([0, 0]))
    assert out.low_res_logits.shape == (2, 1, 32, 32)
    masks = small.propagate(torch.randn(3, 3, 128, 128), (40, 60), {0: {0: _blob(40, 60, 20, 30, 8)}})
    assert masks.shape == (1, 3, 40, 60)
    with pytest.raises(ValueError, match=r"frames are \(256, 256\) but the model's image_size is 128"):
        small.encode_frames(torch.randn(1, 3, 256, 256))
    with pytest.raises(ValueError, match="multiple of 16"):
        SAM2Grounding("sam2_tiny.yaml", tiny_sam2_ckpt, image_size=100)
    small.save_pretrained(str(tmp_path))  # the resolved config keeps the size
    again = SAM2Grounding(str(tmp_path / "sam2_config.yaml"), str(tmp_path / "sam2.pt"))
    assert again.image_size == 128


def _rig_iou_head(dec, bias):
    """The decoder's IoU head made to predict `bias` (4 logits: token 0, then the 3 multimask tokens)."""
    last = dec.iou_prediction_head.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(bias))


def test_best_iou_picks_the_mask_with_the_highest_predicted_iou(sam2):
    """METHOD.md 3.5 / Sa2VA: the three multimask outputs, the one whose (rigged) predicted IoU is highest,
    with that mask's token; 'single' is token 0. Expected values from the decoder's raw outputs."""
    from projects.desa2va.models.grounding import SAM2Grounding

    dec = sam2.sam2_model.sam_mask_decoder
    feats = sam2.encode_frames(torch.randn(1, 3, 256, 256))
    tok = torch.randn(2, 256)
    m, pe = sam2.sam2_model, sam2.sam2_model.sam_prompt_encoder
    sparse, dense = pe(points=(torch.zeros(2, 1, 2), -torch.ones(2, 1, dtype=torch.int32)), boxes=None, masks=None)
    image = (feats.fpn[-1] + m.no_mem_embed.reshape(1, -1, 1, 1)).expand(2, -1, -1, -1)
    high = [dec.conv_s0(feats.fpn[0]).expand(2, -1, -1, -1), dec.conv_s1(feats.fpn[1]).expand(2, -1, -1, -1)]

    def raw(multimask):
        return dec(image_embeddings=image, image_pe=pe.get_dense_pe(), sparse_prompt_embeddings=torch.cat(
            [sparse, tok[:, None]], 1), dense_prompt_embeddings=dense, multimask_output=multimask,
            repeat_image=False, high_res_features=high)
    with torch.no_grad():
        for best, bias in ((1, [9.0, -5.0, 5.0, -5.0]), (2, [9.0, -5.0, -5.0, 5.0])):
            _rig_iou_head(dec, bias)
            masks, iou, tokens, _ = raw(True)
            out = sam2.decode(feats, tok, torch.zeros(2, dtype=torch.long))
            assert torch.equal(out.low_res_logits, masks[:, best:best + 1].float())
            assert torch.equal(out.mask_token, tokens[:, best]) and torch.allclose(out.iou_pred, iou[:, best:best + 1])
            assert not torch.equal(masks[:, 0], masks[:, best])
        sam2.mask_selection = "single"
        single = sam2.decode(feats, tok, torch.zeros(2, dtype=torch.long))
        masks0, _, tokens0, _ = raw(False)
        assert torch.equal(single.low_res_logits, masks0.float()) and torch.equal(single.mask_token, tokens0[:, 0])
    with pytest.raises(ValueError, match="mask_selection must be one of"):
        SAM2Grounding("sam2_tiny.yaml", mask_selection="first")


def test_object_score_gating_switch(sam2):
    """Sa2VA's SAM-2 keeps a tracked frame's logits when the object score is <= 0 (gating commented out);
    the sam2 package's replaces them by -1024. Rigged object score -10: off keeps the decoder's logits."""
    m = sam2.sam2_model.eval()
    with torch.no_grad():
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].weight.zero_()
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(-10.0)
        backbone = m.forward_image(torch.randn(1, 3, 256, 256))
        _, vis, _, sizes = m._prepare_backbone_features(backbone)
        pix = vis[-1].permute(1, 2, 0).reshape(1, 256, *sizes[-1])
        high = [f.permute(1, 2, 0).reshape(1, -1, *s) for f, s in zip(vis[:-1], sizes[:-1])]
        outs = {}
        for gating in (False, True):
            m.object_score_gating = gating
            outs[gating] = m._forward_sam_heads(pix, high_res_features=high, multimask_output=True)
    low_off, low_on = outs[False][3], outs[True][3]
    assert (outs[True][6] < 0).all() and torch.equal(low_on, torch.full_like(low_on, -1024.0))
    ious = outs[False][2]
    masks3 = outs[False][0]
    assert torch.equal(low_off[:, 0], masks3[0, int(ious[0].argmax())][None]) and low_off.abs().max() < 1000
    torch.testing.assert_close(outs[False][5], outs[True][5])  # the object pointer is the same either way


def test_key_frames_seed_memory_with_the_decoder_logits(sam2):
    """METHOD.md 3.5: a key frame's output is its decoder logits (SAM-2's resize, not re-thresholded at
    decoder resolution), the object pointer comes from its mask token, and the memory from those logits."""
    sam2.eval()
    frames = torch.randn(4, 3, 256, 256)
    with torch.no_grad():
        feats = sam2.encode_frames(frames[1:2])
        out = sam2.decode(feats, torch.randn(1, 256) * 3)
    seen = {}
    for f, _, logits in sam2.propagate_iter(frames, (90, 120), {0: {1: out}}):
        seen[f] = logits
    want = torch.nn.functional.interpolate(out.low_res_logits, size=(90, 120), mode="bilinear", align_corners=False)
    torch.testing.assert_close(seen[1][0], want[0, 0])
    assert sorted(seen) == [0, 1, 2, 3]
    # the memory that propagation read: SAM-2's memory encoder on sigmoid(logits at 256) * 20 - 10, and
    # the pointer obj_ptr_proj(token) (object score > 0) or no_obj_ptr
    m = sam2.sam2_model
    state = sam2.init_video_state(frames, (90, 120))
    sam2._seed(m, state, 1, 0, out)
    entry = state["temp_output_dict_per_obj"][0]["cond_frame_outputs"][1]
    with torch.no_grad():
        lam = float(out.object_score_logits[0, 0] > 0)
        ptr = lam * m.obj_ptr_proj(out.mask_token) + (1 - lam) * m.no_obj_ptr
    torch.testing.assert_close(entry["obj_ptr"], ptr)
    assert torch.equal(entry["pred_masks"], out.low_res_logits)


def test_sa2va_postprocess_chain():
    """'sa2va': low-res -> SAM-2 size -> image size, sigmoid > 0.5; 'direct': one resize, > 0. A case where
    the two differ, with the expected masks from explicit resizes."""
    import torch.nn.functional as F

    from projects.desa2va.common.image_processing import logits_to_masks

    torch.manual_seed(0)
    logits = torch.randn(2, 16, 16) * 4
    up = F.interpolate(logits[:, None], size=(64, 64), mode="bilinear", align_corners=False)
    chain = F.interpolate(up, size=(37, 23), mode="bilinear", align_corners=False)[:, 0].sigmoid() > 0.5
    direct = F.interpolate(logits[:, None], size=(37, 23), mode="bilinear", align_corners=False)[:, 0] > 0
    assert torch.equal(logits_to_masks(logits, (37, 23), "sa2va", 64), chain)
    assert torch.equal(logits_to_masks(logits, (37, 23), "direct", 64), direct)
    assert not torch.equal(chain, direct)
    with pytest.raises(ValueError, match="postprocess must be one of"):
        logits_to_masks(logits, (37, 23), "bicubic", 64)
