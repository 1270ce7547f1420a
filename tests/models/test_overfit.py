"""Overfit checks: each mode learns one synthetic image (two shapes, two expressions) end to end.

sa2va and desa2va are evaluated through `predict` (generation must emit [SEG], then decode, then upsample
to the image size); text_pretrain from the text token alone (all point tokens dropped), as stage 2 uses it.
"""
import numpy as np
import torch

from conftest import iou, referring_batch, train, two_shapes
from projects.desa2va.common.image_processing import resize_logits, sam2_frames
from projects.desa2va.inference import predict
from projects.desa2va.models.text_prompts import text_prompt_tokens

EXPRESSIONS = [("Please segment the red circle.", "the red circle"), ("Please segment the blue square.", "the blue square")]


def _overfit_referring(make_model, mode, steps):
    # SAM-2's single-mask output, as the tiny configs decode: the tiny SAM-2's IoU head is random, so the
    # best-IoU choice would be arbitrary (and flips with the float summation order, e.g. the thread count)
    model = make_model(mode, reprompt_iters=0, grounding_overrides=dict(mask_selection="single"))
    img, circle, square = two_shapes()
    gts = [circle, square]
    data = referring_batch(model, img, [(q, gt[None], [t]) for (q, t), gt in zip(EXPRESSIONS, gts)])
    train(model, data, steps)
    for (question, _), gt in zip(EXPRESSIONS, gts):
        out = predict(model, question, image=img)
        assert out["text"] == "Sure, [SEG]." and len(out["masks"]) == 1
        assert iou(out["masks"][0], gt) > 0.9, (mode, question, iou(out["masks"][0], gt))


def test_sa2va_overfits_two_expressions(make_model):
    _overfit_referring(make_model, "sa2va", steps=150)


def test_desa2va_overfits_two_expressions(make_model):
    _overfit_referring(make_model, "desa2va", steps=150)


def test_text_pretrain_segments_from_the_text_token_alone(make_model):
    model = make_model("text_pretrain")
    img, circle, square = two_shapes()
    sam = sam2_frames([img], model.grounding.image_size)
    texts = [t for _, t in EXPRESSIONS]
    data = dict(sam_images=[sam], masks=[torch.from_numpy(np.stack([circle, square]))[:, None]], object_texts=[texts])
    train(model, data, steps=150)
    with torch.no_grad():
        feats = model.grounding.encode_frames(sam)
        r = model.head.real_text_proj(model.text_embeddings(texts))
        tokens = text_prompt_tokens(model.grounding.sam2_model.sam_prompt_encoder, r, None, None,
                                    model.head.num_text_points)
        assert tokens.shape == (2, model.head.num_text_points + 1, 256)
        logits = model.grounding.decode(feats, tokens, torch.zeros(2, dtype=torch.long),
                                        decoder=model.head.text_decoder).low_res_logits
    masks = resize_logits(logits[:, 0], img.shape[:2]) > 0
    for pred, gt in zip(masks.numpy(), (circle, square)):
        assert iou(pred, gt) > 0.9, iou(pred, gt)
