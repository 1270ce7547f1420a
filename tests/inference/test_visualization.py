"""projects/desa2va/visualization.py: overlays, contours, side-by-side panels, strips, mp4 / GIF output."""
import numpy as np
import pytest
from PIL import Image

from conftest import two_shapes
from projects.desa2va import visualization as vis


def test_overlay_colours_each_object_and_outlines_it():
    img, circle, square = two_shapes(128)
    out = vis.overlay(img, [circle, square], alpha=0.5, contour=0)
    cy, cx = 40, 40
    assert tuple(out[cy, cx]) == tuple(np.round(0.5 * img[cy, cx] + 0.5 * np.array(vis.color(0))).astype(int))
    assert tuple(out[90, 85]) == tuple(np.round(0.5 * img[90, 85] + 0.5 * np.array(vis.color(1))).astype(int))
    assert (out[5, 5] == img[5, 5]).all()  # background untouched
    outlined = vis.overlay(img, [square], alpha=0.0, contour=1)
    assert tuple(outlined[70, 85]) == vis.color(0) and tuple(outlined[90, 85]) == tuple(img[90, 85])  # edge only
    assert len(set(vis.PALETTE)) == len(vis.PALETTE)


def test_overlay_refuses_a_mask_of_another_size():
    img, circle, _ = two_shapes(128)
    with pytest.raises(ValueError, match="mask 0 is 64x64, the image is 128x128"):
        vis.overlay(img, [np.zeros((64, 64), bool)])


def test_side_by_side_and_strip_shapes():
    img, circle, square = two_shapes(64)
    panel = vis.side_by_side(img, [circle], [square])
    assert panel.shape[0] == 64 + 22 and panel.shape[1] == 2 * 64 + 4
    strip = vis.frame_strip([img] * 20, max_frames=5, width=32)
    assert strip.shape[1] == 5 * 32 + 4 * 4


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_write_video_round_trips(tmp_path, ext):
    img, circle, _ = two_shapes(64)
    frames = [vis.overlay(np.roll(img, 4 * t, axis=1), [np.roll(circle, 4 * t, axis=1)]) for t in range(5)]
    path = vis.write_video(frames, str(tmp_path / f"clip{ext}"), fps=5)
    if ext == ".gif":
        with Image.open(path) as g:
            assert g.n_frames == 5 and g.size == (64, 64)
    else:
        import decord

        vr = decord.VideoReader(path)
        assert len(vr) == 5 and vr[0].shape == (64, 64, 3)
        assert np.abs(vr[2].asnumpy().astype(int) - frames[2]).mean() < 12  # lossy, but the same picture
    with pytest.raises(ValueError, match=r"must be .mp4 or .gif"):
        vis.write_video(frames, str(tmp_path / "clip.avi"))


def test_grounded_phrases_and_html_share_colours():
    answer = "A <p>red circle</p> [SEG] beside <p>a square</p>[SEG], and [SEG]."
    assert vis.grounded_phrases(answer) == ["red circle", "a square", None]
    html = vis.grounded_html(answer)
    assert html.index(vis.hex_color(0)) < html.index("red circle") < html.index(vis.hex_color(1)) < html.index("a square")
    assert "[object 3]" in html and "<p>red" not in html
