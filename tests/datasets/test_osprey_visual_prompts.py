"""Visual prompts: the region cell rule, the Osprey reader, and the model filling region tokens."""
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from projects.desa2va.common.image_processing import region_token_cells
from projects.desa2va.datasets.base import collate
from projects.desa2va.datasets.osprey import OspreyDataset
from projects.desa2va.datasets.template import SampleError
from projects.desa2va.models.mllm import ImageTokenMismatchError

H, W = 40, 40  # tiny model: 4x4 token grid -> 10x10 px per cell


def _rle(m):
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": list(m.shape), "counts": r["counts"].decode()}


def test_region_cells():
    m = np.zeros((H, W), bool)
    m[12, 25] = True  # one pixel -> the cell (1, 2)
    cells = region_token_cells(m, 4)
    assert cells.sum() == 1 and cells[1, 2]
    m[:, :] = False
    m[0:20, 0:10] = True  # exactly cells (0, 0) and (1, 0)
    assert [list(x) for x in region_token_cells(m, 4).nonzero()] == [[0, 1], [0, 0]]
    assert region_token_cells(np.ones((H, W), bool), 4).all()


@pytest.fixture
def osprey(tmp_path):
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (H, W, 3), dtype=np.uint8)).save(
        tmp_path / "000000000009.jpg")
    a = np.zeros((H, W), bool)
    a[0:20, 0:10] = True       # 2 cells
    b = np.zeros((H, W), bool)
    b[25:40, 15:40] = True     # rows 2-3, cols 1-3: 6 cells
    conv = [{"file_name": "COCO_train2014_000000000009.jpg", "height": H, "width": W,
             "annotation": [{"segmentation": _rle(a)}, {"segmentation": _rle(b)}],
             "conversations": [{"from": "human", "value": "What is in <region1>?"},
                               {"from": "gpt", "value": "A red cup, left of <region2>."},
                               {"from": "human", "value": "And <region2>?"}, {"from": "gpt", "value": "A table."}]}]
    detailed = [dict(conv[0], conversations=None, description=["<region1>: A red cup.", "<region2>: A wooden table."])]
    (tmp_path / "conv.json").write_text(json.dumps(conv))
    (tmp_path / "detailed.json").write_text(json.dumps(detailed))
    return tmp_path, a, b


def test_osprey_conversation_layout(osprey, tiny_mllm_path):
    folder, a, b = osprey
    ds = OspreyDataset(data_file=str(folder / "conv.json"), image_folder=str(folder), model_path=tiny_mllm_path,
                       on_bad_sample="raise", sam_size=64)
    raw = ds.load(0, random.Random(0))
    assert np.array_equal(raw.region_masks[0], a) and np.array_equal(raw.region_masks[1], b)
    s = ds[0]
    text = ds.tokenizer.decode(s["input_ids"])
    assert "There are 2 part regions in the picture: region1 <vp>" + "<IMG_CONTEXT>" * 2 + "</vp>, region2 <vp>" \
        + "<IMG_CONTEXT>" * 6 + "</vp>. What is in region1?" in text
    assert "A red cup, left of region2." in text and "And region2?" in text and "<region" not in text
    assert s["num_tiles"] == 1 and s["region_masks"].shape == (2, H, W)
    ctx = ds.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert s["input_ids"].tolist().count(ctx) == ds.geometry.num_image_token + 8


def test_osprey_detailed_layout_and_empty_region(osprey, tiny_mllm_path):
    folder, a, b = osprey
    ds = OspreyDataset(data_file=str(folder / "detailed.json"), image_folder=str(folder), layout="detailed",
                       model_path=tiny_mllm_path, on_bad_sample="raise")
    raw = ds.load(0, random.Random(0))
    assert [t[1] for t in raw.turns] == ["A red cup.", "A wooden table."]
    assert "region1" in raw.turns[0][0] and "region2" in raw.turns[1][0]
    rec = json.loads((folder / "conv.json").read_text())
    rec[0]["annotation"][1]["segmentation"] = _rle(np.zeros((H, W), bool))
    (folder / "empty.json").write_text(json.dumps(rec))
    bad = OspreyDataset(data_file=str(folder / "empty.json"), image_folder=str(folder), model_path=tiny_mllm_path,
                        on_bad_sample="raise")
    with pytest.raises(SampleError, match="region 2 has an empty mask"):
        bad[0]


def test_model_fills_region_tokens_with_the_covered_cells(osprey, tiny_mllm_path, make_model):
    folder, a, b = osprey
    ds = OspreyDataset(data_file=str(folder / "conv.json"), image_folder=str(folder), model_path=tiny_mllm_path,
                       on_bad_sample="raise", sam_size=256)
    s = ds[0]
    model = make_model("desa2va")
    mllm = model.mllm
    ids, pv, rm = s["input_ids"][None], s["pixel_values"], [s["region_masks"]]
    with torch.no_grad():
        embeds = mllm.build_inputs_embeds(ids, pv, [1], rm)
        vis = mllm.extract_visual_tokens(pv)[0].reshape(4, 4, -1)
    ctx = ids[0] == mllm.img_context_token_id
    depth = torch.cumsum(ids[0] == mllm.vp_start_id, 0) - torch.cumsum(ids[0] == mllm.vp_end_id, 0)
    region_pos = (ctx & (depth > 0)).nonzero()[:, 0]
    expected = torch.cat([vis[torch.from_numpy(region_token_cells(m, 4))] for m in (a, b)])
    assert torch.allclose(embeds[0, region_pos], expected)
    image_pos = (ctx & (depth == 0)).nonzero()[:, 0]
    assert torch.allclose(embeds[0, image_pos], vis.reshape(16, -1))
    with pytest.raises(ImageTokenMismatchError, match="8 region tokens but its 1 region mask"):
        mllm.build_inputs_embeds(ids, pv, [1], [s["region_masks"][:1]])
    # and a training step on the collated sample (a text answer: LM loss, zero mask terms)
    losses = model(collate([s])["data"], mode="loss")
    assert torch.isfinite(sum(losses.values())) and losses["loss_lm"] > 0
