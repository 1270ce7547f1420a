"""gcg_eval.py on GLaMM's GCG ground-truth layout with scripted answers: mask AP50, mIoU, recall (word F1
and a BERT folder) and caption metrics recomputed here; a failed image counts as no masks and an empty
caption."""
import json

import numpy as np
import pytest

import release_fixtures as rf
import scripted
from conftest import ScriptedHead
from projects.desa2va.evaluation import gcg_eval, metrics
from scripted import rle


def test_parse_answer():
    caption, phrases = gcg_eval.parse_answer("<p> A man </p> [SEG] rides <p> a horse </p> [SEG] .<|im_end|>")
    assert caption == "A man rides a horse." and phrases == ["A man", "a horse"]


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture
def gcg(tmp_path, tiny_mllm_path, monkeypatch):
    import os

    gt = rf.gcg(tmp_path)
    os.makedirs(tmp_path / "m")
    os.symlink(tiny_mllm_path, tmp_path / "m" / "mllm")
    man, horse = gt["sa_1"][2]
    dogs, ball = gt["sa_2"][2]
    dogs_pred = np.roll(dogs, 3, axis=1)  # IoU 0.75 with the dogs
    script = {"@image=50": {"text": "<p> A man </p> [SEG] rides <p> a horse </p> [SEG] near the river bank.",
                            "masks": [rle(man), rle(horse)]},
              "@image=100": {"text": "<p> Two puppies </p> [SEG] play with <p> a ball </p> [SEG] on grass.",
                             "masks": [rle(dogs_pred), rle(rf.box(0, 5, 40, 48))]}}  # sa_3 (150): the model fails
    scripted.install(gcg_eval, script, monkeypatch)
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)  # no Java: the pure-Python caption path
    argv = ["--model_path", str(tmp_path / "m"), "--gt_dir", str(tmp_path), "--image_folder", str(tmp_path / "images"),
            "--work_dir", str(tmp_path / "out"), "--bert_path", str(tmp_path / "no_bert")]
    return tmp_path, gt, argv, dogs_pred


def coco_ap50(tp_fp, num_gt):
    """COCO's 101-point interpolated AP from the detections' TP/FP flags in score order."""
    tp, fp = np.cumsum(tp_fp), np.cumsum(~np.asarray(tp_fp))
    rec, prec = tp / num_gt, tp / (tp + fp)
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    return np.mean([prec[rec >= r].max() if (rec >= r).any() else 0.0 for r in np.linspace(0, 1, 101)])


def test_gcg_metrics_recomputed(gcg):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    tmp, gt, argv, dogs_pred = gcg
    with pytest.warns(UserWarning, match="recall_word_f1 uses word-level F1"):
        m = gcg_eval.main(argv)
    recs = [json.loads(x) for x in open(tmp / "out" / "results.jsonl")]
    assert [r["key"] for r in recs] == ["sa_1", "sa_2", "sa_3"] and m["num_images"] == 3 and m["num_failed"] == 1
    assert recs[0]["caption"] == "A man rides a horse near the river bank." and recs[0]["phrases"] == ["A man", "a horse"]
    assert "no scripted answer" in recs[2]["error"]
    # AP50: in score order (all 1.0, image order) TP TP TP FP, 5 ground-truth masks
    assert m["mask_AP50"] == pytest.approx(100 * coco_ap50([True, True, True, False], 5), abs=1e-9)
    assert m["mask_AP50"] == pytest.approx(100 * 61 / 101, abs=1e-9)
    # mIoU: image 1 matches exactly, image 2 matches the dogs only, image 3 has nothing
    dogs = gt["sa_2"][2][0]
    assert m["mIoU"] == pytest.approx(100 * (1 + iou(dogs_pred, dogs) + 0) / 3, abs=1e-9)
    # recall: 2 + 1 ("Two puppies" for "Two dogs": word F1 0.5; the ball's IoU is 0) of 5 phrases
    assert m["recall_word_f1"] == pytest.approx(60.0) and "recall" not in m and "not comparable" in m["recall_note"]
    # captions, tokenised as PTB would (lower case, "." dropped); the failed image's caption is empty
    tok = {"sa_1": "a man rides a horse near the river bank", "sa_2": "two puppies play with a ball on grass",
           "sa_3": ""}
    refs = {k: [v[0].lower().rstrip(".")] for k, v in gt.items()}
    hyps = {k: [v] for k, v in tok.items()}
    assert m["Bleu_4"] == pytest.approx(100 * Bleu(4).compute_score(refs, hyps, verbose=0)[0][3], abs=1e-9)
    assert m["CIDEr"] == pytest.approx(100 * Cider().compute_score(refs, hyps)[0], abs=1e-9)
    assert m["caption_tokenizer"].startswith("python") and set(m["caption_skipped"]) == {"METEOR", "SPICE"}
    assert "Java" in m["caption_skipped"]["METEOR"] and "METEOR" not in m
    assert m["num_empty_gt"] == 0 and m["num_absent_gt"] == 0


def test_recall_with_a_bert_folder(gcg):
    """GLaMM's similarity: cosine of BERT's mean-pooled last states, from a local folder (a tiny random BERT in
    the Hugging Face format here). The recall is recomputed with the same model called directly."""
    import torch
    from transformers import AutoTokenizer, BertModel

    tmp, gt, argv, dogs_pred = gcg
    rf.write_tiny_bert(tmp / "bert")
    m = gcg_eval.main(argv[:-1] + [str(tmp / "bert")])
    tok, model = AutoTokenizer.from_pretrained(str(tmp / "bert")), BertModel.from_pretrained(str(tmp / "bert")).eval()

    def sim(a, b):
        with torch.no_grad():
            x, y = (model(**tok(t, return_tensors="pt")).last_hidden_state[0].mean(0).double() for t in (a, b))
        return float(x @ y / (x.norm() * y.norm()))
    # greedy on IoU; a best pair counts only with similarity >= 0.5. Image 1: its two identical phrases
    # (similarity 1); image 2: "Two dogs" / "Two puppies" at IoU 0.75, then nothing (the ball's IoU is 0)
    assert sim("A man", "A man") == pytest.approx(1.0)
    ours = metrics.BertSimilarity(str(tmp / "bert"))
    assert ours("Two dogs", "Two puppies") == pytest.approx(sim("Two dogs", "Two puppies"))
    hits = 2 + (sim("Two dogs", "Two puppies") >= 0.5)
    assert "recall_word_f1" not in m and "recall_note" not in m
    assert m["recall"] == pytest.approx(100 * hits / 5)


def test_gcg_ground_truth_files_are_overridable(gcg):
    import os

    tmp, gt, argv, _ = gcg
    os.rename(tmp / "val_gcg_coco_caption_gt.json", tmp / "caps.json")
    os.rename(tmp / "val_gcg_coco_mask_gt.json", tmp / "masks.json")
    with pytest.warns(UserWarning):
        m = gcg_eval.main(argv + ["--caption_gt_file", str(tmp / "caps.json"), "--mask_gt_file", str(tmp / "masks.json")])
    assert m["mask_AP50"] == pytest.approx(100 * 61 / 101)


def test_real_model_end_to_end(tmp_path, save_tiny_model, monkeypatch):
    """The tiny model itself, scripted at its LM head to answer one grounded phrase: the answer is parsed, its
    mask decoded by SAM-2 and scored."""
    gt = rf.gcg(tmp_path)
    save_tiny_model(tmp_path / "m", max_new_tokens=40, reprompt_iters=0)
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
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning):
        m = gcg_eval.main(["--model_path", str(tmp_path / "m"), "--gt_dir", str(tmp_path), "--image_folder",
                           str(tmp_path / "images"), "--work_dir", str(tmp_path / "out"), "--bert_path", "none"])
    lines = [json.loads(x) for x in open(tmp_path / "out" / "results.jsonl")]
    assert [r["key"] for r in lines] == sorted(gt)
    assert all(r["caption"] == "A box on dark ground." and r["phrases"] == ["A box"] and len(r["masks"]) == 1
               for r in lines)
    assert m["num_failed"] == 0
    preds = [scripted.unrle(r["masks"][0]) for r in lines]
    # mIoU: each image's single prediction matched to its best ground-truth mask (greedy, one pair)
    best = [max(iou(p, g) for g in gt[k][2]) for p, k in zip(preds, sorted(gt))]
    assert m["mIoU"] == pytest.approx(100 * np.mean(best), abs=1e-9)
