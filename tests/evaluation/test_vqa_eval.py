"""vqa_eval.py: exact-match and multiple-choice scoring, failures recorded, one result per question."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import ScriptedHead
from projects.desa2va.evaluation import common, vqa_eval


def test_normalisation_and_choice_parsing():
    assert vqa_eval.normalize("The Red Circle.<|im_end|>") == "red circle"
    assert vqa_eval.parse_choice("B. a cat", 3) == "B" and vqa_eval.parse_choice("(C)", 3) == "C"
    assert vqa_eval.parse_choice("Answer: A", 2) == "A" and vqa_eval.parse_choice("D", 3) is None
    assert vqa_eval.parse_choice("no idea", 3) is None


@pytest.fixture
def qa(tmp_path, save_tiny_model):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    items = [{"id": "q1", "image": "a.png", "question": "How many shapes?", "answer": "Three."},
             {"id": "q2", "image": "a.png", "question": "Which colour?", "answer": "B", "choices": ["red", "blue"]},
             {"id": "q3", "image": "missing.png", "question": "?", "answer": "x"}]
    (tmp_path / "qa.json").write_text(json.dumps(items))
    save_tiny_model(tmp_path / "m", max_new_tokens=6)
    return tmp_path


def test_vqa_eval_scores_and_records_failures(qa, monkeypatch):
    real = common.load_model

    def load(path, device, **kw):  # answers "three" then "B" (scripted), whatever the question
        model = real(path, device, **kw)
        tok = model.mllm.tokenizer
        eos = tok.convert_tokens_to_ids("<|im_end|>")
        answers = iter([tok("three", add_special_tokens=False).input_ids + [eos],
                        tok("B", add_special_tokens=False).input_ids + [eos]])
        real_generate = model.mllm.generate

        def generate(*a, **k):
            model.mllm.causal_lm.lm_head = ScriptedHead(next(answers), len(tok))
            return real_generate(*a, **k)
        model.mllm.generate = generate
        return model
    monkeypatch.setattr(vqa_eval, "load_model", load)
    m = vqa_eval.main(["--model_path", str(qa / "m"), "--data_file", str(qa / "qa.json"), "--image_folder", str(qa),
                       "--work_dir", str(qa / "out")])
    lines = [json.loads(x) for x in open(qa / "out" / "results.jsonl")]
    assert [r["key"] for r in lines] == ["q1", "q2", "q3"]
    assert lines[0]["correct"] and lines[1]["correct"] and "image not found" in lines[2]["error"]
    assert m["num_failed"] == 1 and m["accuracy"] == pytest.approx(100 * 2 / 3)  # the failure counts as wrong
