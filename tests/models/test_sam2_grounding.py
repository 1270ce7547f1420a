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
