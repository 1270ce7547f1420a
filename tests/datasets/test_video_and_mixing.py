"""MeViS / ReVOS reader, LLaVA reader, text pre-training view, mixing and the kind-grouped sampler."""
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from projects.desa2va.datasets.llava import LLaVADataset
from projects.desa2va.datasets.mevis_revos import RefVOSDataset
from projects.desa2va.datasets.mixing import KindGroupedSampler, MixedDataset
from projects.desa2va.datasets.template import SampleError
from projects.desa2va.datasets.text_pretrain import TextPretrainView

H, W, T = 24, 32, 6


def _obj(f, x0):
    m = np.zeros((H, W), bool)
    m[4:12, x0 + f:x0 + f + 6] = True  # moves right by one pixel per frame
    return m


def _rle(m):
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [H, W], "counts": r["counts"].decode()}


@pytest.fixture
def mevis(tmp_path):
    """Two videos; frame f of each is filled with grey level 30 * f so tests can tell which frame they got."""
    root = tmp_path / "mevis" / "train"
    for vid in ("v0", "v1"):
        (root / "JPEGImages" / vid).mkdir(parents=True)
        for f in range(T):
            Image.fromarray(np.full((H, W, 3), 30 * f, np.uint8)).save(root / "JPEGImages" / vid / f"{f:05d}.jpg")
    frames = [f"{f:05d}" for f in range(T)]
    masks = {
        "1": [_rle(_obj(f, 0)) for f in range(T)],
        "2": [_rle(_obj(f, 14)) if f < 4 else None for f in range(T)],  # leaves after frame 3
        "3": [_rle(_obj(f, 6)) for f in range(T)],
    }
    meta = {"videos": {
        "v0": {"frames": frames, "expressions": {
            "0": {"exp": "the left shape", "anno_id": [1], "obj_id": [0]},
            "1": {"exp": "both shapes", "anno_id": [1, 2], "obj_id": [0, 1]}}},
        "v1": {"frames": frames, "expressions": {
            "0": {"exp": "what moves?", "anno_id": [3], "obj_id": [0], "type_id": 1},
            "1": {"exp": "the missing dog", "anno_id": [], "obj_id": [], "type_id": 2}}},
    }}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    (root / "mask_dict.json").write_text(json.dumps(masks))
    return root


def _vos(root, tiny_mllm_path, **kw):
    kw.setdefault("sam_size", 64)
    return RefVOSDataset(data_root=str(root), model_path=tiny_mllm_path, **kw)


def test_eval_masks_are_unions_of_anno_ids(mevis, tiny_mllm_path):
    ds = _vos(mevis, tiny_mllm_path, mode="eval")
    keys = [f"{ds.item_info(i)['vid']}/{ds.item_info(i)['expressions'][0]['exp_id']}" for i in range(len(ds))]
    assert keys == ["v0/0", "v0/1", "v1/0", "v1/1"]  # eval keeps every expression, no-target ones too
    both = ds.load(1, random.Random(0))
    assert both.masks.shape == (1, T, H, W) and both.object_texts == ["both shapes"]
    for f in range(T):
        expected = _obj(f, 0) | (_obj(f, 14) if f < 4 else np.zeros((H, W), bool))
        assert np.array_equal(both.masks[0, f], expected)
        assert abs(np.asarray(both.images[f]).mean() - 30 * f) < 2
    assert not ds.load(3, random.Random(0)).masks.any()  # no target: empty masks, not an error


def test_train_samples_sorted_frames_with_matching_masks(mevis, tiny_mllm_path):
    ds = _vos(mevis, tiny_mllm_path, mode="train", num_frames=3, max_objects=2)
    assert len(ds) == 2  # one item per video; the no-target expression is not trained on
    raw = ds.load(0, random.Random(5))
    frames = [round(np.asarray(im).mean() / 30) for im in raw.images]
    assert len(frames) == 3 and frames == sorted(frames) and len(set(frames)) == 3
    for k, text in enumerate(raw.object_texts):
        for t, f in enumerate(frames):
            expected = _obj(f, 0) | (_obj(f, 14) if text == "both shapes" and f < 4 else np.zeros((H, W), bool))
            assert np.array_equal(raw.masks[k, t], expected)
    sample = ds[0]
    tok = ds.tokenizer
    ids = sample["input_ids"].tolist()
    assert sample["pixel_values"].shape[0] == 3  # one tile per frame
    assert ids.count(tok.convert_tokens_to_ids("<img>")) == 3
    assert ids.count(tok.convert_tokens_to_ids("[SEG]")) == sample["masks"].shape[0] == 2
    assert sample["kind"] == "video" and sample["sam_images"].shape == (3, 3, 64, 64)


def test_frames_listed_out_of_order_are_sorted_and_masks_follow(mevis, tiny_mllm_path):
    """Every official reader sorts a video's frames; mask list entry t belongs to the t-th sorted frame."""
    path = mevis / "meta_expressions.json"
    meta = json.loads(path.read_text())
    meta["videos"]["v0"]["frames"] = meta["videos"]["v0"]["frames"][::-1]
    path.write_text(json.dumps(meta))
    ds = _vos(mevis, tiny_mllm_path, mode="eval", skip_no_target=False)
    assert ds.item_info(0)["frames"] == [f"{f:05d}" for f in range(T)]
    raw = ds.load(0, random.Random(0))  # v0/0: the left shape
    assert [round(np.asarray(im).mean() / 30) for im in raw.images] == list(range(T))
    assert all(np.array_equal(raw.masks[0, t], _obj(t, 0)) for t in range(T))
    train = _vos(mevis, tiny_mllm_path, mode="train", num_frames=3)
    frames = [round(np.asarray(im).mean() / 30) for im in train.load(0, random.Random(1)).images]
    assert frames == sorted(frames)


def test_revos_layout_and_question_marks(mevis, tiny_mllm_path):
    import shutil

    revos = mevis.parent.parent / "revos"
    shutil.copytree(mevis / "JPEGImages", revos)
    shutil.copy(mevis / "mask_dict.json", revos)
    shutil.copy(mevis / "meta_expressions.json", revos / "meta_expressions_train_.json")
    ds = _vos(revos, tiny_mllm_path, mode="train", frames_dir="", expression_file="meta_expressions_train_.json")
    sample = ds[1]  # v1: "what moves?" (reasoning, type 1); its type-2 expression is skipped
    assert sample["object_texts"] == ["what moves?"]
    assert "what moves" in ds.tokenizer.decode(sample["input_ids"])


def test_video_bad_input(mevis, tiny_mllm_path):
    masks = json.loads((mevis / "mask_dict.json").read_text())
    masks["1"] = masks["1"][:2]  # fewer frame masks than frames
    del masks["3"]
    (mevis / "mask_dict.json").write_text(json.dumps(masks))
    strict = _vos(mevis, tiny_mllm_path, mode="eval", on_bad_sample="raise")
    with pytest.raises(SampleError, match="v0/0: anno_id 1 has 2 frame masks for 6 frames"):
        strict[0]
    with pytest.raises(SampleError, match="v1/0: anno_id 3 not in the mask file"):
        strict[2]
    (mevis / "JPEGImages" / "v1" / "00002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SampleError, match="cannot read image .*v1/00002.jpg"):
        _vos(mevis, tiny_mllm_path, mode="eval", on_bad_sample="raise").load(2, random.Random(0))
    with pytest.raises(ValueError, match="training needs a mask file"):
        _vos(mevis, tiny_mllm_path, mode="train", mask_file=None)


def test_text_pretrain_view_of_a_video_dataset(mevis, tiny_mllm_path):
    view = TextPretrainView(_vos(mevis, tiny_mllm_path, mode="train"))
    s = view[0]
    assert s["sam_images"].shape == (1, 3, 64, 64) and s["input_ids"].numel() == 0
    assert s["masks"].shape[1] == 1 and len(s["object_texts"]) == s["masks"].shape[0]
    assert all(m.any() for m in s["masks"][:, 0])


@pytest.fixture
def llava(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.jpg")
    data = [
        {"id": "img1", "image": "a.jpg", "conversations": [
            {"from": "human", "value": "<image>\nHow many shapes are there?"}, {"from": "gpt", "value": "Two."},
            {"from": "human", "value": "Which colour?"}, {"from": "gpt", "value": "Red."}]},
        {"id": "img2", "image": "a.jpg", "conversations": [
            {"from": "human", "value": "Describe it."}, {"from": "gpt", "value": "Dark."}]},
        {"id": "txt", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
        {"id": "bad", "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "?"}]},
        {"id": "gone", "image": "missing.jpg", "conversations": [
            {"from": "human", "value": "<image>\nA?"}, {"from": "gpt", "value": "B"}]},
    ]
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(data))
    return str(path), str(tmp_path)


def test_llava_with_and_without_images(llava, tiny_mllm_path):
    path, folder = llava
    ds = LLaVADataset(data_file=path, image_folder=folder, model_path=tiny_mllm_path, on_bad_sample="raise", sam_size=64)
    assert [ds.kind_of(i) for i in range(5)] == ["image", "image", "text", "text", "image"]
    s = ds[0]
    text = ds.tokenizer.decode(s["input_ids"])
    assert text.count("<img>") == 1 and "How many shapes are there?" in text and "Which colour?" in text
    answers = ds.tokenizer.decode([i for i, l in zip(s["input_ids"], s["labels"]) if l != -100])
    assert answers == "Two.<|im_end|>\nRed.<|im_end|>\n"
    assert s["masks"] is None and s["sam_images"] is None
    assert ds.tokenizer.decode(ds[1]["input_ids"]).count("<img>") == 1  # placeholder added
    t = ds[2]
    assert t["kind"] == "text" and t["pixel_values"] is None and t["num_tiles"] == 0
    with pytest.raises(SampleError, match="bad: <image> placeholder without an image"):
        ds[3]
    with pytest.raises(SampleError, match="gone: image not found: .*missing.jpg"):
        ds[4]


class _Toy(torch.utils.data.Dataset):
    def __init__(self, n, kind, tag):
        self.n, self.kind, self.tag = n, kind, tag

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return (self.tag, i, self.kind)


def test_mixed_dataset_repeats_cover_every_sample():
    mixed = MixedDataset([_Toy(10, "image", "a"), _Toy(4, "video", "b"), _Toy(6, "text", "c")], repeats=[2, 1, 0.5])
    assert len(mixed) == 20 + 4 + 3
    items = [mixed[i] for i in range(len(mixed))]
    assert sorted(i for t, i, _ in items if t == "a") == sorted(list(range(10)) * 2)
    assert sorted(i for t, i, _ in items if t == "b") == [0, 1, 2, 3]
    assert len({i for t, i, _ in items if t == "c"}) == 3
    with pytest.raises(ValueError, match="repeats"):
        MixedDataset([_Toy(3, "image", "a")], repeats=[1, 2])


def test_sampler_visits_every_index_with_single_kind_batches():
    mixed = MixedDataset([_Toy(7, "image", "a"), _Toy(5, "video", "b"), _Toy(3, "text", "c")], repeats=[2, 1, 1])
    sampler = KindGroupedSampler(mixed, batch_size=4, seed=0, num_replicas=1, rank=0)
    order = list(sampler)
    assert set(order) == set(range(len(mixed)))  # every index of the concatenation, repeats included
    loader = torch.utils.data.DataLoader(mixed, batch_size=4, sampler=sampler, collate_fn=lambda b: b)
    for batch in loader:
        assert len({kind for _, _, kind in batch}) == 1
    sampler.set_epoch(1)
    assert list(sampler) != order
    ranks = [list(KindGroupedSampler(mixed, batch_size=4, seed=0, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) and set(ranks[0]) | set(ranks[1]) == set(range(len(mixed)))


def test_empty_video_is_a_named_bad_sample(mevis, tiny_mllm_path):
    meta = json.loads((mevis / "meta_expressions.json").read_text())
    meta["videos"]["v1"]["frames"] = []
    (mevis / "meta_expressions.json").write_text(json.dumps(meta))
    strict = _vos(mevis, tiny_mllm_path, mode="train", on_bad_sample="raise")
    with pytest.raises(SampleError, match="v1: the expression file lists no frames"):
        strict[1]
    ds = _vos(mevis, tiny_mllm_path, mode="train")
    assert ds[1]["skipped"]["reason"] == "empty_video" and ds.skipped["empty_video"] == 1  # not replaced


def test_training_and_inference_build_the_same_tokens_for_a_5_frame_video(mevis, tiny_mllm_path, make_model):
    """The video prompt of a training sample (RefVOSDataset, 5 frames) and the one inference builds for the
    same question (`inference.image.prompt_ids`) are the same token ids up to the answer; both follow Sa2VA's
    layout, checked here against a hand-written string: one <img> block per frame joined by newlines."""
    from projects.desa2va.common.chat_template import INTERNVL2_5_SYSTEM
    from projects.desa2va.inference.image import prompt_ids

    ds = _vos(mevis, tiny_mllm_path, mode="train", num_frames=5, max_objects=1)
    raw = ds.load(0, random.Random(3))
    sample = ds.build(raw)
    model = make_model("desa2va", system_prompt=INTERNVL2_5_SYSTEM)  # the datasets' default system message
    question = raw.turns[0][0].split("\n")[-1]  # the text after the media placeholder
    k = model.mllm.num_image_token
    ids = prompt_ids(model, question, [k] * 5)[0][0].tolist()
    train_ids = sample["input_ids"].tolist()
    first_answer = sample["labels"].tolist().index(next(x for x in sample["labels"].tolist() if x != -100))
    assert train_ids[:first_answer] == ids
    frame = "<img>" + "<IMG_CONTEXT>" * k + "</img>"
    text = (f"<|im_start|>system\n{INTERNVL2_5_SYSTEM}<|im_end|>\n<|im_start|>user\n" + "\n".join([frame] * 5)
            + f"\n{question}<|im_end|>\n<|im_start|>assistant\n")
    assert ids == ds.tokenizer(text, add_special_tokens=False).input_ids
    # Sa2VA's own video prompt (a single <image> for all frames) is the same prompt
    assert prompt_ids(model, "<image>\n" + question, [k] * 5)[0][0].tolist() == ids
