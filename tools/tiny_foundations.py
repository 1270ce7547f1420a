"""Pre-trained tiny foundations for the CPU proxy: what SAM-2's and InternVL's pre-training give the real
pipeline, at toy scale, on synthetic scenes of the benchmark's kind (`datasets/synthetic.py`; generated in
memory from their own seeds, never the benchmark's images).

    python tools/make_tiny_pretrained.py --out pretrained/tiny --foundations   (calls the functions below)

SAM-2 (`pretrain_sam2`), with SAM-2's own kinds of prompts and losses (`models/grounding/sam_training.py`):
  phase 1, images: per object one positive point (multimask output, the lowest-loss mask supervised, the
    IoU head on all three; or single output) or a jittered box (single mask), then a second round from the
    first round's low-res mask (the one of highest predicted IoU, detached) as the dense prompt plus one
    point (SAM's correction click in the error region, or the mask's distance-transform peak: what reprompt
    feeds it). Our addition, a localisation warm-up: the first half of phase 1 prompts objects by one point
    (single output) and adds two rows per image whose target is a disc at a uniform point, whatever the
    image shows. Without it the decoder settles within ~100 steps on segmenting every shape whatever the
    prompt and stays there (RESULTS.md, "Tiny foundations"): the disc rows have no prompt-free solution,
    and force the point into the decoder;
  phase 2, 8-frame clips: frame 0 conditioned by its mask or one point, frames 1-7 tracked through the
    memory bank, every frame supervised; the image encoder frozen (its phase-1 features), each step also
    one phase-1 image batch.
MLLM (64 visual tokens per tile: ViT patch 8, make_tiny_pretrained.PROXY_PATCH):
  phase 1 (`pretrain_vision`), the ViT alone, as InternViT is pre-trained before InternVL: each object's
    patch features, max-pooled over its mask, classify its shape and colour (a linear head, discarded);
  phase 2 (`pretrain_mllm`), the projector and the LLM (the ViT frozen) on captions and questions about the
    shapes (colour, shape, count, position, a caption), LM loss on the answers. Trained through the LLM
    alone the tiny ViT never learns the shapes (shape answers at chance with patch 16 or 8).
`evaluate_sam2` / `evaluate_mllm` measure them on held-out scenes (other seeds): IoU from one positive
point (a uniform pick and the peak), from a box, after one reprompt refinement of the uniform point's
mask; J&F of first-frame-mask propagation through the project's `SAM2Grounding.propagate`; question
accuracy by greedy generation.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from projects.desa2va.common import special_tokens as st  # noqa: E402
from projects.desa2va.common.chat_template import expand_image_placeholders, generation_prompt  # noqa: E402
from projects.desa2va.common.image_processing import mllm_inputs, sam2_frames  # noqa: E402
from projects.desa2va.datasets.synthetic import random_clip, random_scene  # noqa: E402
from projects.desa2va.models.grounding import sam_training as T  # noqa: E402
from projects.desa2va.models.grounding.sam2_grounding import image_embeddings  # noqa: E402

SIZE = 128           # synthetic image side (the benchmark's)
TRAIN_SEED, EVAL_SEED = 1_000_003, 2_000_003   # scene streams, disjoint from the benchmark's seed 0


def log(msg: str) -> None:
    print(f"[foundations] {msg}", flush=True)


def _schedule(opt, step: int, total: int, lr: float, warmup: int = 50) -> None:
    f = ((step + 1) / warmup if step < warmup
         else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1))))
    for g in opt.param_groups:
        g["lr"] = lr * f


def _optimizer(params, lr: float):
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, betas=(0.9, 0.95), weight_decay=0.05)


# ============================================================================================ SAM-2
def _points(pts: Sequence[np.ndarray], labels: Sequence[Sequence[int]], scale: float):
    return (torch.from_numpy(np.stack(pts)).float() * scale,
            torch.tensor(np.asarray(labels), dtype=torch.int32))


def position_rows(rng: np.random.Generator, n: int):
    """`n` points and their targets for the localisation warm-up: a disc of radius 10-25 px (the shapes'
    sizes) centred on a uniform point, whatever the image shows."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    pts = rng.uniform(10, SIZE - 10, (n, 2)).astype(np.float32)
    radii = rng.uniform(10, 25, n)
    return pts, [(xx - p[0]) ** 2 + (yy - p[1]) ** 2 < r ** 2 for p, r in zip(pts, radii)]


def cell_labels(masks: Sequence[np.ndarray], shapes, side: int) -> torch.Tensor:
    """(side, side, 2) long: the colour and the kind (1-based, 0 = background) of the shape under the centre
    of each cell of a side x side grid over the image."""
    from projects.desa2va.datasets.synthetic import COLORS, SHAPES

    stride = SIZE // side
    lab = np.zeros((SIZE, SIZE, 2), np.int64)
    for mask, s in zip(masks, shapes):
        lab[mask] = (list(COLORS).index(s.color) + 1, SHAPES.index(s.kind) + 1)
    return torch.from_numpy(lab[stride // 2::stride, stride // 2::stride].copy())


class SemanticProbe(torch.nn.Module):
    """A 1 x 1 convolution on the image encoder's lowest-resolution level (what the mask decoder's tokens
    attend to) classifying each cell's colour and shape (5 classes each, background included): the proxy's
    stand-in for the semantic pre-training of SAM-2's Hiera (MAE on ImageNet), discarded after training."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 10, 1)

    def forward(self, feat: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """feat (B, C, e, e), labels (B, e, e, 2) -> {loss_sem_colour, loss_sem_shape}"""
        lg = self.conv(feat).permute(0, 2, 3, 1)
        ce = torch.nn.functional.cross_entropy
        return {"loss_sem_colour": ce(lg[..., :5].reshape(-1, 5), labels[..., 0].reshape(-1)),
                "loss_sem_shape": ce(lg[..., 5:].reshape(-1, 5), labels[..., 1].reshape(-1))}


def sam2_image_step(m, rng: np.random.Generator, batch: int, max_objects: int = 2,
                    localisation: int = 0, probe: Optional[SemanticProbe] = None,
                    probe_weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """One phase-1 step's losses on `batch` fresh scenes, up to `max_objects` random objects of each. With
    `localisation` > 0 (the warm-up) that many `position_rows` per image and the objects prompted by one
    point with a single output only; else the full recipe (module docstring). With `probe`, its semantic
    loss on the same features (times `probe_weight`) keeps the image encoder's features semantic."""
    images, gts, frame, sem = [], [], [], []
    for b in range(batch):
        img, masks, shapes = random_scene(rng, SIZE)
        images.append(img)
        keep = rng.permutation(len(masks))[:max_objects]
        gts += [masks[i] for i in keep]
        frame += [b] * len(keep)
        sem.append((masks, shapes))
    s = m.image_size / SIZE
    fpn = m.image_encoder(sam2_frames(images, m.image_size))["backbone_fpn"]
    extra: Dict[str, torch.Tensor] = {}
    if probe is not None:
        side = fpn[-1].shape[-1]
        part = probe(fpn[-1], torch.stack([cell_labels(mk, sh, side) for mk, sh in sem]))
        extra = {k: v * probe_weight for k, v in part.items()}
    frame_t = torch.tensor(frame)
    embed, high = image_embeddings(m, fpn, frame_t)
    gt = torch.from_numpy(np.stack(gts))
    is_box = rng.random(len(gts)) < (0.0 if localisation else 0.5)
    multi = rng.random(len(gts)) < (0.0 if localisation else 0.5)
    losses: Dict[str, torch.Tensor] = {}
    if localisation:
        pts, discs = position_rows(rng, batch * localisation)
        rows = torch.arange(batch).repeat_interleave(localisation)
        e, h = image_embeddings(m, fpn, rows)
        out = T.decode_prompts(m, e, h, torch.from_numpy(pts)[:, None] * s,
                               torch.ones(len(pts), 1, dtype=torch.int32), multimask=False)
        part = T.prompt_losses(out.low_res, out.iou, out.obj, torch.from_numpy(np.stack(discs)))
        losses.update({k + "_loc": v for k, v in part.items() if k.startswith("loss_")})
    losses.update(extra)
    chosen = torch.zeros(len(gts), 1, *m.sam_prompt_encoder.mask_input_size)
    groups = ((False, True, np.nonzero(~is_box & multi)[0]), (False, False, np.nonzero(~is_box & ~multi)[0]),
              (True, False, np.nonzero(is_box)[0]))
    for box, multimask, rows in groups:  # one point: multimask or single output; a box: single
        if not len(rows):
            continue
        if box:
            coords, labels = _points([T.jittered_box(gts[i], rng) for i in rows], [[2, 3]] * len(rows), s)
        else:
            coords, labels = _points([T.uniform_point(gts[i], rng)[None] for i in rows], [[1]] * len(rows), s)
        r = torch.from_numpy(rows)
        hr = [h[r] for h in high] if high is not None else None
        out = T.decode_prompts(m, embed[r], hr, coords, labels, multimask=multimask)
        part = T.prompt_losses(out.low_res, out.iou, out.obj, gt[r])
        for k, v in part.items():
            if k.startswith("loss_"):
                losses[k] = losses.get(k, 0) + v * len(rows) / len(gts)
        pick = out.iou.argmax(1)
        chosen[r] = out.low_res[torch.arange(len(rows)), pick][:, None].detach()
    if localisation:
        return losses
    # round 2: the round-1 mask as the dense prompt plus one click (correction or the mask's peak)
    pred = (torch.nn.functional.interpolate(chosen, size=gt.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
            ).numpy()
    pts, labels = [], []
    for i in range(len(gts)):
        peak = T.peak_point(pred[i]) if rng.random() < 0.5 else None
        if peak is not None:
            pts.append(peak[None])
            labels.append([1])
        else:
            p, lab = T.correction_point(pred[i], gts[i], rng)
            pts.append(p[None])
            labels.append([lab])
    coords, labels = _points(pts, labels, s)
    out = T.decode_prompts(m, embed, high, coords, labels, mask_logits=chosen, multimask=True)
    for k, v in T.prompt_losses(out.low_res, out.iou, out.obj, gt).items():
        if k.startswith("loss_"):
            losses[k + "_r2"] = v
    return losses


def sam2_video_step(m, rng: np.random.Generator, clips: int, frames: int) -> Dict[str, torch.Tensor]:
    """One phase-2 step's losses: `clips` fresh clips, one object each, tracked from frame 0."""
    images, gts = [], []
    for _ in range(clips):
        imgs, tracks, _, _ = random_clip(rng, SIZE, frames)
        images += imgs
        gts.append(np.stack(tracks[int(rng.integers(len(tracks)))]))
    gt = torch.from_numpy(np.stack(gts))  # (B, T, H, W)
    with torch.no_grad():
        enc = m.image_encoder(sam2_frames(images, m.image_size))
    fpn = list(enc["backbone_fpn"])
    dec = m.sam_mask_decoder
    fpn[0], fpn[1] = dec.conv_s0(fpn[0]), dec.conv_s1(fpn[1])
    backbone_out = {"backbone_fpn": fpn, "vision_pos_enc": enc["vision_pos_enc"]}
    if rng.random() < 0.5:
        cond = torch.nn.functional.interpolate(gt[:, 0:1].float(), size=(m.image_size, m.image_size),
                                               mode="nearest")[:, None]
        outs = T.track_clip(m, backbone_out, clips, frames, cond_masks=cond)
    else:
        coords, labels = _points([T.uniform_point(g[0].numpy(), rng)[None] for g in gt], [[1]] * clips,
                                 m.image_size / SIZE)
        outs = T.track_clip(m, backbone_out, clips, frames,
                            cond_points={"point_coords": coords, "point_labels": labels})
    losses: Dict[str, torch.Tensor] = {}
    supervised = [o for o in outs if not o["conditioning"]]
    for o in supervised:
        part = T.prompt_losses(o["low_res_multimasks"], o["ious"], o["object_score_logits"], gt[:, o["frame"]])
        for k, v in part.items():
            if k.startswith("loss_"):
                losses[k + "_video"] = losses.get(k + "_video", 0) + v / len(supervised)
    return losses


def sam2_encoder_step(m, probe: SemanticProbe, rng: np.random.Generator, batch: int) -> Dict[str, torch.Tensor]:
    """One phase-0 step: the image encoder and the probe on `batch` fresh scenes (`SemanticProbe`)."""
    images, labels = [], []
    for _ in range(batch):
        img, masks, shapes = random_scene(rng, SIZE)
        images.append(img)
        labels.append((masks, shapes))
    fpn = m.image_encoder(sam2_frames(images, m.image_size))["backbone_fpn"]
    side = fpn[-1].shape[-1]
    return probe(fpn[-1], torch.stack([cell_labels(mk, sh, side) for mk, sh in labels]))


def pretrain_sam2(m, image_iters: int, video_iters: int, seed: int, batch: int = 8, clips: int = 4,
                  frames: int = 8, lr: float = 1e-3, warmup_frac: float = 0.5, encoder_iters: int = 0,
                  probe_weight: float = 0.0) -> Dict[str, float]:
    """Phase 0 (`encoder_iters` steps of the image encoder's semantic pre-training, `SemanticProbe`), phase 1
    then phase 2 (module docstring) on `m` (a SAM-2 module), in place; returns timings. The first
    `warmup_frac` of phase 1 is the localisation warm-up (two `position_rows` per image, one-point prompts);
    with `probe_weight` > 0 the probe's loss stays on during phase 1 (the encoder trains there)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(TRAIN_SEED + seed)
    m.train()
    m.requires_grad_(True)
    step = {"n": 0}
    probe = SemanticProbe(m.image_encoder.neck.d_model)
    times = {}
    if encoder_iters:
        times["sam2_encoder_s"] = _loop(torch.nn.ModuleList([m.image_encoder, probe]), encoder_iters, lr, 50,
                                        lambda: sam2_encoder_step(m, probe, rng, batch), "sam2 encoder", 100)

    def image_step():
        step["n"] += 1
        return sam2_image_step(m, rng, batch, localisation=2 if step["n"] <= warmup_frac * image_iters else 0,
                               probe=probe if probe_weight > 0 else None, probe_weight=probe_weight)
    trained = torch.nn.ModuleList([m, probe]) if probe_weight > 0 else m
    times["sam2_images_s"] = _loop(trained, image_iters, lr, 50, image_step, "sam2 images", 100)
    times["sam2_clips_s"] = pretrain_sam2_clips(m, rng, video_iters, batch, clips, frames, lr)
    m.requires_grad_(True)
    m.eval()
    return times


def pretrain_sam2_clips(m, rng: np.random.Generator, iters: int, batch: int = 8, clips: int = 4, frames: int = 8,
                        lr: float = 1e-3) -> float:
    """Phase 2 (module docstring), the image encoder frozen; returns seconds."""
    m.image_encoder.requires_grad_(False)

    def clip_step():
        return {**sam2_video_step(m, rng, clips, frames), **sam2_image_step(m, rng, batch // 2)}
    return _loop(m, iters, lr, 20, clip_step, "sam2 clips", 50)


def _loop(m, iters: int, lr: float, warmup: int, step, name: str, every: int) -> float:
    """`iters` AdamW steps on `step()`'s summed losses (warm-up then cosine, clip 1.0); returns seconds."""
    t0 = time.time()
    opt = _optimizer(m.parameters(), lr)
    for it in range(iters):
        _schedule(opt, it, iters, lr, warmup)
        losses = step()
        opt.zero_grad(set_to_none=True)
        T.total(losses).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        if it % every == 0 or it == iters - 1:
            log(f"{name} {it + 1}/{iters}: " + _fmt(losses))
    return round(time.time() - t0, 1)


def _fmt(losses: Dict[str, torch.Tensor]) -> str:
    return " ".join(f"{k[5:]} {float(v.detach()):.3f}" for k, v in losses.items() if k.startswith("loss_"))


@torch.no_grad()
def evaluate_sam2(grounding, num_images: int = 100, num_clips: int = 20, frames: int = 8, seed: int = 0
                  ) -> Dict[str, float]:
    """Held-out figures of a `SAM2Grounding` (its `decode`, mask_selection as configured, and `propagate`)."""
    from projects.desa2va.common.image_processing import resize_logits
    from projects.desa2va.evaluation.metrics import j_and_f, region_similarity as iou

    rng = np.random.default_rng(EVAL_SEED + seed)
    m = grounding.sam2_model
    m.eval()
    s = grounding.image_size / SIZE
    res: Dict[str, List[float]] = {"point_uniform": [], "point_peak": [], "box": [], "reprompt": []}
    for _ in range(num_images):
        img, masks, _ = random_scene(rng, SIZE)
        feats = grounding.encode_frames(grounding.preprocess([img]))
        for gt in masks:
            def run(coords, labels, mask_logits=None):
                c, lab = _points([coords], [labels], s)
                out = grounding.decode(feats, None, torch.zeros(1, dtype=torch.long), point_coords=c,
                                       point_labels=lab, mask_logits=mask_logits)
                return out.low_res_logits, resize_logits(out.low_res_logits, (SIZE, SIZE))[0, 0].numpy() > 0
            low, pred = run(T.uniform_point(gt, rng)[None], [1])
            res["point_uniform"].append(iou(pred, gt))
            # reprompt, as inference: that mask's low-res logits as the dense prompt + the mask's own peak
            p = T.peak_point(pred)
            res["reprompt"].append(iou(run(p[None], [1], low)[1], gt) if p is not None else res["point_uniform"][-1])
            res["point_peak"].append(iou(run(T.peak_point(gt)[None], [1])[1], gt))
            res["box"].append(iou(run(T.jittered_box(gt, rng, 0.0), [2, 3])[1], gt))
    jf, j_only = [], []
    for _ in range(num_clips):
        imgs, tracks, _, _ = random_clip(rng, SIZE, frames)
        for track in tracks:
            pred = grounding.propagate(imgs, (SIZE, SIZE), {0: {0: torch.from_numpy(track[0])}})[0].numpy()
            j, f = j_and_f(list(pred[1:]), list(track[1:]))
            jf.append((j + f) / 2)
            j_only.append(j)
    out = {f"iou_{k}": round(float(np.mean(v)), 4) for k, v in res.items()}
    out.update(propagation_jf=round(float(np.mean(jf)), 4), propagation_j=round(float(np.mean(j_only)), 4),
               eval_objects=len(res["box"]), eval_tracks=len(jf))
    return out


# ============================================================================================ MLLM
def _where(shape, size: int) -> str:
    col = ("left", "middle", "right")[min(int(3 * shape.cx / size), 2)]
    row = ("top", "middle", "bottom")[min(int(3 * shape.cy / size), 2)]
    return "in the middle" if col == row == "middle" else f"at the {row} {col}" if row != "middle" else f"on the {col}"


def questions(shapes, rng: np.random.Generator) -> Dict[str, List[tuple]]:
    """(question, answer) pairs about a scene, by kind: colour, shape, count, position, caption."""
    kinds = [s.kind for s in shapes]
    colors = [s.color for s in shapes]
    out: Dict[str, List[tuple]] = {"colour": [], "shape": [], "count": [], "position": [], "caption": []}
    for s in shapes:
        if kinds.count(s.kind) == 1:
            out["colour"].append((f"What colour is the {s.kind}?", f"{s.color}."))
        if colors.count(s.color) == 1:
            out["shape"].append((f"What shape is the {s.color} one?", f"{s.kind}."))
        if sum(1 for x in shapes if (x.kind, x.color) == (s.kind, s.color)) == 1:
            out["position"].append((f"Where is the {s.color} {s.kind}?", f"It is {_where(s, SIZE)}."))
    out["count"].append(("How many shapes are there?", f"There are {len(shapes)} shapes."))
    names = [f"a {s.color} {s.kind}" for s in sorted(shapes, key=lambda x: x.cx)]
    text = ", ".join(names[:-1]) + " and " + names[-1]
    out["caption"].append(("Describe the image.", text[0].upper() + text[1:] + "."))
    return out


class _Encoder:
    """Scene conversations as the datasets encode them (`ConversationEncoder`, no system message), padded."""

    def __init__(self, mllm):
        from projects.desa2va.datasets.template import ConversationEncoder

        self.mllm, self.tok = mllm, mllm.tokenizer
        self.encoder = ConversationEncoder(mllm.tokenizer, system=None)

    def image(self, img):
        """The MLLM's tiles of an image and its visual tokens, as the datasets and inference prepare them."""
        return mllm_inputs(self.mllm.geometry, [img], "image")

    def conversation(self, img, turns):
        turns = [(st.IMAGE_PLACEHOLDER + "\n" + turns[0][0], turns[0][1])] + list(turns[1:])
        pixels, tokens = self.image(img)
        ids, labels = self.encoder.encode(turns, tokens)
        return ids, labels, pixels

    def batch(self, items):
        n = max(len(i[0]) for i in items)
        ids = torch.full((len(items), n), self.tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), n), -100, dtype=torch.long)
        att = torch.zeros(len(items), n, dtype=torch.long)
        for b, (i, lab, _) in enumerate(items):
            ids[b, :len(i)], labels[b, :len(i)], att[b, :len(i)] = torch.tensor(i), torch.tensor(lab), 1
        return ids, labels, att, torch.cat([i[2] for i in items])


def _object_patches(mask: np.ndarray, patch: int) -> torch.Tensor:
    """(P,) bool: the ViT patches a mask covers by more than a quarter (its best-covered one if none)."""
    side = mask.shape[0] // patch
    cover = torch.from_numpy(mask.reshape(side, patch, side, patch).mean((1, 3)).reshape(-1))
    return cover > 0.25 if bool((cover > 0.25).any()) else cover == cover.max()


def pretrain_vision(mllm, iters: int, seed: int, batch: int = 16, lr: float = 1e-3, dense_weight: float = 0.0
                    ) -> Dict[str, float]:
    """The ViT alone, as InternViT is pre-trained before the MLLM: each object's patch features, max-pooled
    over the patches its mask covers, classify its shape and its colour (a linear head, then discarded);
    with `dense_weight` > 0 every patch also classifies the colour and shape under its centre (background
    a class; a second linear head), so that each visual token, not only the object's pooled feature,
    says what it shows. Trained through the LLM only, the tiny ViT does not learn the shapes (shape
    answers at chance)."""
    from projects.desa2va.datasets.synthetic import COLORS, SHAPES

    torch.manual_seed(seed)
    rng = np.random.default_rng(TRAIN_SEED + 11 + seed)
    vm = mllm.vision_model
    patch = vm.embeddings.patch_embedding.kernel_size[0]
    width = vm.embeddings.patch_embedding.out_channels
    head = torch.nn.Linear(width, len(SHAPES) + len(COLORS))
    dense = torch.nn.Linear(width, len(COLORS) + len(SHAPES) + 2)
    vm.train()
    ce = torch.nn.functional.cross_entropy

    def step():
        pixels, regions, labels, cells = [], [], [], []
        for b in range(batch):
            img, masks, shapes = random_scene(rng, SIZE)
            pixels.append(mllm_inputs(mllm.geometry, [img], "image")[0])
            cells.append(cell_labels(masks, shapes, SIZE // patch).reshape(-1, 2))
            for mask, s in zip(masks, shapes):
                regions.append((b, _object_patches(mask, patch)))
                labels.append((SHAPES.index(s.kind), list(COLORS).index(s.color)))
        feats = vm.encoder(vm.embeddings(torch.cat(pixels)))[:, 1:]  # drop CLS
        logits = head(torch.stack([feats[b][r].max(0).values for b, r in regions]))
        y = torch.tensor(labels)
        out = {"loss_shape": ce(logits[:, :len(SHAPES)], y[:, 0]), "loss_colour": ce(logits[:, len(SHAPES):], y[:, 1])}
        if dense_weight > 0:
            d, c = dense(feats).flatten(0, 1), torch.cat(cells)  # cell_labels: (colour, kind), 0 = background
            k = len(COLORS) + 1
            out.update(loss_dense_colour=dense_weight * ce(d[:, :k], c[:, 0]),
                       loss_dense_shape=dense_weight * ce(d[:, k:], c[:, 1]))
        return out
    # the ViT and the heads, one AdamW, warm-up then cosine, clip 1.0: the SAM-2 phases' loop
    return {"vision_s": _loop(torch.nn.ModuleList([vm, head, dense]), iters, lr, 50, step, "vision", 100)}


def pretrain_mllm(mllm, iters: int, seed: int, batch: int = 16, lr: float = 1e-3, train_vision: bool = True
                  ) -> Dict[str, float]:
    """The model (`InternVLMLLM` loaded with every part trainable; the ViT frozen unless `train_vision`) on
    scene questions, in place."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(TRAIN_SEED + 7 + seed)
    enc = _Encoder(mllm)
    mllm.train()
    mllm.vision_model.requires_grad_(train_vision)
    opt = _optimizer(mllm.parameters(), lr)
    t0 = time.time()
    for it in range(iters):
        _schedule(opt, it, iters, lr)
        items = []
        for _ in range(batch):
            img, _, shapes = random_scene(rng, SIZE)
            qa = [p for v in questions(shapes, rng).values() for p in v]
            order = rng.permutation(len(qa))[:4]
            items.append(enc.conversation(img, [qa[i] for i in order]))
        ids, labels, att, pixels = enc.batch(items)
        loss = mllm(ids, attention_mask=att, labels=labels, pixel_values=pixels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mllm.parameters(), 1.0)
        opt.step()
        if it % 100 == 0 or it == iters - 1:
            log(f"mllm {it + 1}/{iters}: lm {loss.item():.3f}")
    mllm.vision_model.requires_grad_(True)
    mllm.eval()
    return {"mllm_s": round(time.time() - t0, 1)}


@torch.no_grad()
def evaluate_mllm(mllm, num_images: int = 100, seed: int = 0) -> Dict[str, float]:
    """Exact-answer accuracy of greedy generation per question kind on held-out scenes."""
    rng = np.random.default_rng(EVAL_SEED + 7 + seed)
    enc = _Encoder(mllm)
    mllm.eval()
    hits: Dict[str, List[bool]] = {}
    for _ in range(num_images):
        img, _, shapes = random_scene(rng, SIZE)
        pixels, tokens = enc.image(img)
        for kind, pairs in questions(shapes, rng).items():
            if not pairs:
                continue
            q, a = pairs[int(rng.integers(len(pairs)))]
            text = expand_image_placeholders(generation_prompt(st.IMAGE_PLACEHOLDER + "\n" + q, system=None),
                                             tokens)
            ids = torch.tensor([enc.tok(text, add_special_tokens=False).input_ids])
            got = mllm.generate(ids, pixels, max_new_tokens=32).text.strip()
            hits.setdefault(kind, []).append(got == a)
    return {f"qa_{k}": round(float(np.mean(v)), 4) for k, v in hits.items()}
