"""gcg_eval.py on a hand-written GranD-f val layout with a scripted tiny model."""
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from conftest import ScriptedHead
from projects.desa2va.evaluation import gcg_eval


def _rle(m):
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": list(m.shape), "counts": r["counts"].decode()}


def test_parse_answer():
    caption, phrases = gcg_eval.parse_answer("<p> A man </p> [SEG] rides <p> a horse </p> [SEG] .<|im_end|>")
    assert caption == "A man rides a horse." and phrases == ["A man", "a horse"]


@pytest.fixture
def gcg(tmp_path, save_tiny_model):
    (tmp_path / "images").mkdir()
    caps = {"images": [], "annotations": []}
    masks = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    for k in ("sa_1", "sa_2"):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "images" / f"{k}.jpg")
        caps["images"].append({"id": k, "file_name": f"{k}.jpg", "height": 32, "width": 32})
        caps["annotations"].append({"id": len(caps["annotations"]) + 1, "image_id": k,
                                    "caption": "A box on dark ground.", "labels": ["A box"]})
        masks["images"].append({"id": k, "file_name": f"{k}.jpg", "height": 32, "width": 32})
        m = np.zeros((32, 32), bool)
        m[4:20, 4:20] = True
        masks["annotations"].append({"id": len(masks["annotations"]) + 1, "image_id": k, "category_id": 1,
                                     "segmentation": _rle(m), "iscrowd": 0, "area": int(m.sum()), "bbox": [4, 4, 16, 16]})
    (tmp_path / "val_gcg_coco_caption_gt.json").write_text(json.dumps(caps))
    (tmp_path / "val_gcg_coco_mask_gt.json").write_text(json.dumps(masks))
    save_tiny_model(tmp_path / "m", max_new_tokens=40, reprompt_iters=0)
    return tmp_path


def test_gcg_eval_end_to_end(gcg, monkeypatch):
    real = gcg_eval.load_model

    def load(path, device, **kw):
        model = real(path, device, **kw)
        tok = model.mllm.tokenizer
        script = tok("<p> A box </p> [SEG] on dark ground.", add_special_tokens=False).input_ids + \
            [tok.convert_tokens_to_ids("<|im_end|>")]
        real_generate = model.mllm.generate

        def generate(*a, **k):
            model.mllm.causal_lm.lm_head = ScriptedHead(script, len(tok))
            return real_generate(*a, **k)
        model.mllm.generate = generate
        return model
    monkeypatch.setattr(gcg_eval, "load_model", load)
    m = gcg_eval.main(["--model_path", str(gcg / "m"), "--gt_dir", str(gcg), "--image_folder", str(gcg / "images"),
                       "--work_dir", str(gcg / "out")])
    lines = [json.loads(x) for x in open(gcg / "out" / "results.jsonl")]
    assert [r["key"] for r in lines] == ["sa_1", "sa_2"]
    assert all(r["caption"] == "A box on dark ground." and r["phrases"] == ["A box"] and len(r["masks"]) == 1
               for r in lines)
    assert m["num_failed"] == 0 and 0 <= m["mask_AP50"] <= 1 and 0 <= m["mIoU"] <= 1 and 0 <= m["recall"] <= 1
    assert "CIDEr" in m or m["caption_metrics"].startswith("skipped: pycocoevalcap")
