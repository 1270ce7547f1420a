"""region_caption_eval.py: regions reach the model as visual prompts; answers are kept verbatim."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import ScriptedHead
from projects.desa2va.evaluation import metrics, region_caption_eval


def test_region_captions(tmp_path, save_tiny_model, monkeypatch):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.jpg")
    data = {"images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 40}],
            "annotations": [{"id": 7, "image_id": 1, "bbox": [0, 0, 10, 20], "caption": "a red cup"},
                            {"id": 8, "image_id": 1, "segmentation": [[20, 20, 39, 20, 39, 39, 20, 39]],
                             "caption": "a table that is brown"}]}
    (tmp_path / "caps.json").write_text(json.dumps(data))
    save_tiny_model(tmp_path / "m", max_new_tokens=20)
    seen = []
    real = region_caption_eval.load_model

    def load(path, device, **kw):
        model = real(path, device, **kw)
        tok = model.mllm.tokenizer
        script = tok("it is a table", add_special_tokens=False).input_ids + [tok.convert_tokens_to_ids("<|im_end|>")]
        real_generate = model.mllm.generate

        def generate(ids, *a, **k):
            seen.append((tok.decode(ids[0]), k.get("region_masks")))
            model.mllm.causal_lm.lm_head = ScriptedHead(script, len(tok))
            return real_generate(ids, *a, **k)
        model.mllm.generate = generate
        return model
    monkeypatch.setattr(region_caption_eval, "load_model", load)
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)  # no Java
    m = region_caption_eval.main(["--model_path", str(tmp_path / "m"), "--annotation_file", str(tmp_path / "caps.json"),
                                  "--image_folder", str(tmp_path), "--work_dir", str(tmp_path / "out")])
    lines = [json.loads(x) for x in open(tmp_path / "out" / "results.jsonl")]
    assert [r["key"] for r in lines] == ["7", "8"] and all(r["answer"] == "it is a table" for r in lines)  # "is" kept
    prompt, regions = seen[0]
    assert "region1 <vp>" + "<IMG_CONTEXT>" * 2 + "</vp>" in prompt  # a 10x20 box covers 2 cells of the 4x4 grid
    assert regions[0].shape == (40, 40) and int(regions[0].sum()) == 200
    assert m["num_failed"] == 0
    # "it is a table" against "a red cup" and "a table that is brown": pycocoevalcap's scorers on the same tokens
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    refs, hyps = {"7": ["a red cup"], "8": ["a table that is brown"]}, {"7": ["it is a table"], "8": ["it is a table"]}
    assert m["CIDEr"] == pytest.approx(100 * Cider().compute_score(refs, hyps)[0])
    assert m["Bleu_4"] == pytest.approx(100 * Bleu(4).compute_score(refs, hyps, verbose=0)[0][3])
    assert set(m["caption_skipped"]) == {"METEOR", "SPICE"} and m["caption_tokenizer"].startswith("python")
