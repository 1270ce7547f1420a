"""DeSa2VAPredictor on a saved tiny model that answers "Sure, [SEG].": images, frame lists, JPEG folders and
mp4 files; mask sizes; one decoding of a video for several expressions; bad input."""

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import two_shapes
from projects.desa2va.inference import DeSa2VAPredictor, InputError, load_video
from projects.desa2va.inference import predict
from projects.desa2va.models.checkpoint_io import CheckpointError

T = 12  # uniform key frames 1, 3, 6, 8, 10: frame 0 is read by the backward propagation only


@pytest.fixture(scope="module")
def predictor(seg_model_folder):
    return DeSa2VAPredictor.from_pretrained(seg_model_folder)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The two shapes (64 px: decord needs macroblock-aligned widths) as a JPEG folder and an mp4."""
    root = tmp_path_factory.mktemp("clip")
    img, circle, square = two_shapes(64)
    folder = root / "frames"
    folder.mkdir()
    for t in range(T):
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=98)
    mp4 = str(root / "clip.mp4")
    w = cv2.VideoWriter(mp4, cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for _ in range(T):
        w.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    w.release()
    return dict(img=img, circle=circle, square=square, folder=str(folder), mp4=mp4)


def test_device_and_dtype_defaults(predictor):
    assert predictor.model.device.type == "cpu"
    assert next(predictor.model.mllm.parameters()).dtype.is_floating_point
    assert str(next(predictor.model.mllm.parameters()).dtype) == "torch.float32"


@pytest.mark.parametrize("kind", ["path", "pil", "array"])
def test_image_masks_have_the_input_size(predictor, tmp_path, kind):
    img, circle, square = two_shapes(128)
    img = np.ascontiguousarray(img[:100])  # 128 x 100: not square
    path = str(tmp_path / "img.png")
    Image.fromarray(img).save(path)
    media = {"path": path, "pil": Image.fromarray(img), "array": img}[kind]
    out = predictor.segment(media, "the blue square")
    assert "[SEG]" in out.text and out.prompt == "Please segment the blue square in this image."
    assert len(out.masks) == 1 and out.masks[0].shape == (100, 128) and out.masks[0].dtype == bool


def test_segment_asks_the_referring_question(predictor):
    img, _, _ = two_shapes(128)
    outs = predictor.segment(img, ["the blue square", "Which shape is red?"])
    assert [o.prompt for o in outs] == ["Please segment the blue square in this image.",
                                        "Which shape is red? Please respond with the segmentation mask."]
    direct = predict(predictor.model, outs[0].prompt, image=img)
    assert direct["text"] == outs[0].text
    np.testing.assert_array_equal(direct["masks"][0], outs[0].masks[0])


def test_chat_returns_the_answer_and_the_history(predictor):
    img, _, _ = two_shapes(128)
    out = predictor.chat(img, "Please segment the red circle in this image.")
    assert out.prompt == "Please segment the red circle in this image."
    assert out.history == [(out.prompt, out.text)] and len(out.masks) == out.text.count("[SEG]")
    again = predictor.chat(img, "Please segment the blue square in this image.", history=out.history)
    assert again.history[:1] == out.history and len(again.history) == 2


@pytest.mark.parametrize("source", ["list", "folder", "mp4"])
def test_video_masks_have_the_video_size(predictor, clip, source):
    media = {"list": [clip["img"]] * T, "folder": clip["folder"], "mp4": clip["mp4"]}[source]
    out = predictor.segment(media, "the red circle")
    assert "[SEG]" in out.text and out.prompt == "Please segment the red circle in this video."
    assert len(out.masks) == 1 and out.masks[0].shape == (T, 64, 64) and out.masks[0].dtype == bool


@pytest.mark.parametrize("source", ["folder", "mp4", "long"])
def test_two_expressions_decode_the_video_once(predictor, clip, source):
    media = [clip["img"]] * 45 if source == "long" else clip[source]  # long: key frames 4, 13, 22, 31, 40
    n = 45 if source == "long" else T
    one = load_video(media)
    single = predictor.segment(one, "the red circle")
    assert one.num_decoded == n
    both_src = load_video(media)
    both = predictor.segment(both_src, ["the red circle", "the blue square"])
    assert both_src.num_decoded == n  # every frame decoded once for both expressions
    assert [m.shape for o in both for m in o.masks] == [(n, 64, 64)] * 2
    np.testing.assert_array_equal(both[0].masks[0], single.masks[0])  # sharing the state changes nothing


def test_video_frames_are_decoded_lazily(clip):
    v = load_video(clip["mp4"])
    assert v.num_decoded == 0 and len(v) == T and v.size == (64, 64)
    assert v[3].size == (64, 64) and v.num_decoded == 1  # a jump decodes one frame
    assert v[4].size == (64, 64) and v.num_decoded == 1 + min(v.run, T - 4)  # in order: a run ahead
    assert v[5] is not None and v.num_decoded == 1 + min(v.run, T - 4)  # from the run


def test_one_frame_video_is_a_one_frame_clip(predictor, clip, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(clip["img"]).save(folder / "00000.jpg")
    with pytest.warns(UserWarning, match="single frame"):
        out = predictor.segment(str(folder), "the red circle")
    assert [m.shape for m in out.masks] == [(1, 64, 64)] * len(out.masks)


def test_bad_input_gets_clear_errors(predictor, tmp_path, clip):
    img, _, _ = two_shapes(64)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read image .*broken.jpg"):
        predictor.segment(str(bad), "the circle")
    with pytest.raises(InputError, match="image not found: .*missing.png"):
        predictor.segment(str(tmp_path / "missing.png"), "the circle")
    badv = tmp_path / "broken.mp4"
    badv.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="cannot read video .*broken.mp4"):
        predictor.segment(str(badv), "the circle")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(InputError, match="no frames .* in folder .*empty_folder"):
        predictor.segment(str(empty), "the circle")
    for prompt in ("", "   "):
        with pytest.raises(InputError, match="the prompt is empty"):
            predictor.chat(img, prompt)
    with pytest.raises(InputError, match="the prompt is empty"):
        predictor.segment(clip["mp4"], ["the circle", ""])
    with pytest.raises(InputError, match="must be .*uint8"):
        predictor.segment(np.zeros((8, 8, 3), np.float32), "the circle")


def test_very_large_image_is_refused_before_decoding(predictor, tmp_path):
    path = str(tmp_path / "huge.png")
    Image.new("1", (9000, 5000)).save(path)  # 45 MP, small on disk and in memory
    with pytest.raises(InputError, match=r"huge.png is 9000x5000 \(45.0 MP\), over the limit of 40.0 MP"):
        predictor.segment(path, "the circle")
    small = DeSa2VAPredictor(predictor.model, max_pixels=1000)
    with pytest.raises(InputError, match="over the limit"):
        small.segment(np.zeros((64, 64, 3), np.uint8), "the circle")


def test_from_pretrained_errors(tmp_path, tiny_mllm_path, tiny_sam2_ckpt):
    from conftest import write_tiny_sa2va

    with pytest.raises(CheckpointError, match="not a saved DeSa2VA/Sa2VA model folder"):
        DeSa2VAPredictor.from_pretrained(str(tmp_path))
    src = write_tiny_sa2va(tmp_path / "sa2va", tiny_mllm_path, tiny_sam2_ckpt)
    with pytest.raises(CheckpointError, match="convert it with tools/import_sa2va.py"):
        DeSa2VAPredictor.from_pretrained(src)
