"""Ref-YouTube-VOS, Ref-SAV, ChatUniVi and GCG readers on hand-written fixtures in their real formats."""
import json
import pickle
import random

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from projects.desa2va.datasets.chatunivi import ChatUniViDataset
from projects.desa2va.datasets.gcg import GCGDataset, grounded_answer
from projects.desa2va.datasets.ref_sav import RefSAVDataset
from projects.desa2va.datasets.ref_ytvos import RefYTVOSDataset
from projects.desa2va.datasets.template import SampleError
from projects.desa2va.datasets.video_io import segment_indices

H, W = 32, 64  # mp4v clips need a macroblock-aligned width for decord


def _rle(m):
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": list(m.shape), "counts": r["counts"].decode()}


def _box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _write_mp4(path, n, level=lambda i: 10 * i):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (W, H))
    for i in range(n):
        writer.write(np.full((H, W, 3), level(i), np.uint8))
    writer.release()


def _frame_of(img, level=10):
    return round(np.asarray(img).mean() / level)


def test_ref_ytvos_counter_keys_follow_sorted_expression_ids(tmp_path, tiny_mllm_path):
    root = tmp_path / "rvos" / "train"
    frames = ["00010", "00005", "00000"]  # unsorted in the json: the reader sorts them
    for vid in ("va", "vb"):
        (root / "JPEGImages" / vid).mkdir(parents=True)
        for f in frames:
            Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "JPEGImages" / vid / f"{f}.jpg")
    # expression ids "10" < "2" as strings: counter order is va/0, va/10, va/2, vb/0
    meta = {"videos": {"va": {"frames": frames, "expressions": {"0": {"exp": "zero"}, "2": {"exp": "two"},
                                                                 "10": {"exp": "ten"}}},
                       "vb": {"frames": frames, "expressions": {"0": {"exp": "other"}}}}}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    boxes = {k: [_box(0, 5 + k + t, 0, 10) for t in range(3)] for k in range(4)}  # distinct per counter
    with open(root / "mask_dict.pkl", "wb") as f:
        pickle.dump({str(k): [_rle(m) for m in v] for k, v in boxes.items()}, f)
    ds = RefYTVOSDataset(data_root=str(root), mode="eval", model_path=tiny_mllm_path, sam_size=64,
                         on_bad_sample="raise")
    expected = {"zero": 0, "ten": 1, "two": 2, "other": 3}
    assert len(ds) == 4
    for i in range(4):
        raw = ds.load(i, random.Random(0))
        k = expected[raw.object_texts[0]]
        for t in range(3):  # frames in sorted order: 00000, 00005, 00010
            assert np.array_equal(raw.masks[0, t], boxes[k][t]), (raw.object_texts, t)


@pytest.fixture
def ref_sav(tmp_path):
    folder = tmp_path / "sam_v_full"
    folder.mkdir()
    _write_mp4(folder / "sav_000001.mp4", 20)  # annotated frames 0, 4, 8, 12, 16
    masklet = [[_rle(_box(2, 10, k, k + 8)), _rle(_box(15, 30, 20, 40) if k < 3 else np.zeros((H, W), bool))]
               for k in range(5)]
    (folder / "sav_000001_manual.json").write_text(json.dumps({"video_id": "sav_000001", "masklet": masklet,
                                                               "masklet_num": 2}))
    ann = {"sav_000001": {"video_path": "sav_000001.mp4", "anno_path": "sav_000001_manual.json", "objects": {
        "0": {"formated": "A small box sliding right across the top.", "short_caps": ["the top box"]},
        "1": {"formated": "A large box that disappears.", "short_caps": ["the big box"]}}}}
    path = tmp_path / "sam_v_final_v3.json"
    path.write_text(json.dumps(ann))
    return str(path), str(folder)


def test_ref_sav_reads_every_fourth_frame_of_the_mp4(ref_sav, tiny_mllm_path):
    ann, folder = ref_sav
    ds = RefSAVDataset(annotation_file=ann, video_folder=folder, num_frames=3, model_path=tiny_mllm_path,
                       sam_size=64, on_bad_sample="raise")
    raw = ds.load(0, random.Random(1))
    assert len(raw.images) == 3 and raw.masks.shape == (2, 3, H, W)
    video_frames = [_frame_of(im) for im in raw.images]
    assert all(f % 4 == 0 for f in video_frames) and video_frames == sorted(video_frames)
    for k, text in enumerate(raw.object_texts):
        for t, f in enumerate(video_frames):
            ak = f // 4
            expected = _box(2, 10, ak, ak + 8) if text.startswith("A small") else (
                _box(15, 30, 20, 40) if ak < 3 else np.zeros((H, W), bool))
            assert np.array_equal(raw.masks[k, t], expected)
    short = RefSAVDataset(annotation_file=ann, video_folder=folder, caption="short", model_path=tiny_mllm_path,
                          sam_size=64).load(0, random.Random(0))
    assert set(short.object_texts) == {"the top box", "the big box"}
    assert ds[0]["kind"] == "video"


def test_ref_sav_bad_video(ref_sav, tiny_mllm_path):
    ann, folder = ref_sav
    with open(f"{folder}/sav_000001.mp4", "wb") as f:
        f.write(b"garbage")
    ds = RefSAVDataset(annotation_file=ann, video_folder=folder, model_path=tiny_mllm_path, on_bad_sample="raise")
    with pytest.raises(SampleError, match="cannot read video .*sav_000001.mp4"):
        ds[0]


def test_segment_sampling_always_gives_the_announced_count():
    rng = random.Random(0)
    assert segment_indices(100, 5) == [10, 30, 50, 70, 90]
    assert segment_indices(3, 5) == [0, 0, 1, 2, 2]  # shorter than the prompt: frames repeat
    for n in (1, 2, 7, 50):
        idx = segment_indices(n, 8, rng)
        assert len(idx) == 8 and idx == sorted(idx) and 0 <= min(idx) and max(idx) < n


def test_chatunivi_video_qa(tmp_path, tiny_mllm_path):
    (tmp_path / "Activity_Videos").mkdir()
    _write_mp4(tmp_path / "Activity_Videos" / "v.mp4", 3)
    data = [{"video": "v.mp4", "conversations": [{"from": "human", "value": "<video>\nWhat happens?"},
                                                 {"from": "gpt", "value": "It gets brighter."}]}]
    (tmp_path / "video_chat.json").write_text(json.dumps(data))
    ds = ChatUniViDataset(data_file=str(tmp_path / "video_chat.json"), video_folder=str(tmp_path / "Activity_Videos"),
                          num_frames=5, model_path=tiny_mllm_path, on_bad_sample="raise")
    s = ds[0]
    assert s["kind"] == "video" and s["pixel_values"].shape[0] == 5  # 3-frame video, 5 announced frames
    text = ds.tokenizer.decode(s["input_ids"])
    assert text.count("<img>") == 5 and "What happens?" in text and "<video>" not in text
    assert s["masks"] is None


def test_grounded_answer_format():
    cap = "A man rides a horse near a lake."
    assert grounded_answer(cap, [(0, 5), (12, 19)]) == \
        "<p> A man </p> [SEG] rides <p> a horse </p> [SEG] near a lake."


@pytest.fixture
def gcg_image(tmp_path):
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "img.jpg")
    return tmp_path


def _gcg(tmp_path, data, layout, tiny_mllm_path):
    path = tmp_path / f"{layout}.json"
    path.write_text(json.dumps(data))
    return GCGDataset(annotation_file=str(path), image_folder=str(tmp_path), layout=layout,
                      model_path=tiny_mllm_path, sam_size=64, on_bad_sample="raise")


def _check(ds, caption_spans, masks):
    raw = ds.load(0, random.Random(0))
    answer = raw.turns[0][1]
    assert answer == grounded_answer(raw_caption(ds), caption_spans)
    assert raw.masks.shape == (len(masks), 1, H, W)
    for k, m in enumerate(masks):
        assert np.array_equal(raw.masks[k, 0], m)
    s = ds[0]
    assert s["input_ids"].tolist().count(ds.tokenizer.convert_tokens_to_ids("[SEG]")) == len(masks)
    return raw


def raw_caption(ds):
    return ds.items[0]["caption"]


def test_gcg_grandf_and_openpsg(gcg_image, tiny_mllm_path):
    a, b, c = _box(0, 10, 0, 10), _box(5, 20, 5, 30), _box(20, 30, 30, 45)
    cap = "A cat sits on a red mat by the door."
    rec = {"file_name": "img.jpg", "height": H, "width": W, "image_id": 7, "caption": cap, "groundings": {
        "a red mat": {"token_positives": [14, 23], "rle_masks": [_rle(b), _rle(c)]},  # union of two masks
        "A cat": {"token_positives": [0, 5], "rle_masks": [_rle(a)]}}}
    for layout in ("grandf", "openpsg"):
        raw = _check(_gcg(gcg_image, [rec], layout, tiny_mllm_path), [(0, 5), (14, 23)], [a, b | c])
        assert raw.object_texts == ["A cat", "a red mat"]


def test_gcg_grounding_without_a_mask_is_dropped_and_counted(gcg_image, tiny_mllm_path):
    a = _box(0, 10, 0, 10)
    cap = "A cat sits on a red mat by the door."
    rec = {"file_name": "img.jpg", "height": H, "width": W, "image_id": 8, "caption": cap, "groundings": {
        "A cat": {"token_positives": [0, 5], "rle_masks": [_rle(a)]},
        "a red mat": None,                                                   # the reference skips these
        "the door": {"token_positives": [32, 40], "rle_masks": None},
        "by": {"token_positives": [24, 26], "rle_masks": [None]}}}
    ds = _gcg(gcg_image, [rec], "grandf", tiny_mllm_path)
    assert ds.dropped_phrases == 3
    raw = _check(ds, [(0, 5)], [a])
    assert raw.object_texts == ["A cat"]


def test_gcg_flickr(gcg_image, tiny_mllm_path):
    a, b = _box(0, 10, 0, 10), _box(12, 25, 10, 40)
    data = {"images": [{"id": 3, "file_name": "img.jpg", "height": H, "width": W,
                        "caption": "Two dogs play with a ball."}],
            "annotations": [{"image_id": 3, "tokens_positive": [[20, 26]], "sam_mask": _rle(b)},
                            {"image_id": 3, "tokens_positive": [[0, 8]], "sam_mask": _rle(a)}]}
    _check(_gcg(gcg_image, data, "flickr", tiny_mllm_path), [(0, 8), (20, 26)], [a, b])


def test_gcg_refcocog_locates_phrases_case_insensitively(gcg_image, tiny_mllm_path):
    poly = [[2, 2, 20, 2, 20, 12, 2, 12]]
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, H, W))).astype(bool)
    data = {"42": {"img_file_name": "img.jpg", "caption": "The Woman in red holds an umbrella.",
                   "refs": [{"sentence": "the woman in red", "bbox": [2, 2, 18, 10], "segmentation": poly},
                            {"sentence": "a bicycle", "bbox": [0, 0, 1, 1], "segmentation": poly}]}}
    ds = _gcg(gcg_image, data, "refcocog_gcg", tiny_mllm_path)
    assert ds.dropped_phrases == 1  # "a bicycle" is not in the caption
    raw = _check(ds, [(0, 16)], [expected])
    assert raw.turns[0][1].startswith("<p> The Woman in red </p> [SEG] holds")


def test_gcg_bad_layout_and_span(gcg_image, tiny_mllm_path):
    with pytest.raises(ValueError, match="layout must be one of"):
        _gcg(gcg_image, [], "coco", tiny_mllm_path)
    rec = {"file_name": "img.jpg", "caption": "short", "image_id": 1,
           "groundings": {"x": {"token_positives": [3, 40], "rle_masks": [_rle(_box(0, 2, 0, 2))]}}}
    with pytest.raises(SampleError, match=r"sample 1: span \[3, 40\) outside the caption"):
        _gcg(gcg_image, [rec], "grandf", tiny_mllm_path)[0]


def test_zero_frame_video_is_a_named_bad_sample(tmp_path, tiny_mllm_path):
    from projects.desa2va.datasets.video_io import open_video

    _write_mp4(tmp_path / "empty.mp4", 0)
    with pytest.raises(SampleError, match="(video has no frames: |cannot read video ).*empty.mp4"):
        open_video(str(tmp_path / "empty.mp4"), "e")
