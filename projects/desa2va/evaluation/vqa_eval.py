"""Image / video question answering accuracy (a light stand-in for external VQA toolkits).

    python projects/desa2va/evaluation/vqa_eval.py --model_path P --data_file qa.json --image_folder DIR

`qa.json`: [{"id", "image": path | "video": path | "frames": [paths], "question", "answer",
"choices"?: [options]}]. With `choices` the question is asked as multiple choice ("A. ...", "B. ...";
"Answer with the option's letter.") and scored by the first option letter of the answer; otherwise by
exact match after normalisation (lower case, punctuation and articles removed). Videos are read with
decord (`--num_frames` uniformly sampled segments). LLaVA-format files (human/gpt conversations, the
first answer being the reference) are accepted too.

Outputs in `--work_dir`: `results.jsonl`, one line per question (`key` = id, `question`, `answer`,
`reference`, `correct`, `error`); `metrics.json`: `accuracy` x100 (a failed question counts as wrong) and
counts.
"""
from __future__ import annotations

import argparse
import os
import re
import string
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

from projects.desa2va.datasets.base import open_image, read_json  # noqa: E402
from projects.desa2va.datasets.video_io import open_video, read_frames, segment_indices  # noqa: E402
from projects.desa2va.inference.video import predict  # noqa: E402
from projects.desa2va.evaluation.common import (add_override_arg, init_distributed, load_model,  # noqa: E402
                                                parse_overrides, percent, print_table, run_and_merge,
                                                write_outputs)

LETTERS = string.ascii_uppercase


def normalize(text: str) -> str:
    text = text.lower().replace("<|im_end|>", "")
    text = "".join(c for c in text if c not in string.punctuation)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def parse_choice(answer: str, n: int):
    """The option letter the answer gives ("B", "(B)", "B. cat", "Answer: B"), or None."""
    m = re.search(r"\b([A-Z])\b", answer.strip())
    return m.group(1) if m and LETTERS.index(m.group(1)) < n else None


def as_item(d: dict) -> dict:
    if "question" in d:
        return d
    conv = d.get("conversations") or []
    if len(conv) < 2:
        raise ValueError(f"item {d.get('id')}: neither question/answer nor a conversation")
    return {**d, "question": conv[0]["value"].replace("<image>", "").strip(), "answer": conv[1]["value"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", required=True)
    add_override_arg(p)
    p.add_argument("--data_file", required=True)
    p.add_argument("--image_folder", default="")
    p.add_argument("--num_frames", type=int, default=5)
    p.add_argument("--work_dir", default=os.path.join("work_dirs", "eval", "vqa"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)
    for path in (a.data_file, a.model_path):
        if not os.path.exists(path):
            p.error(f"not found: {path}")
    items = [as_item(d) for d in read_json(a.data_file)][:a.limit]
    by_key = {str(d.get("id", i)): d for i, d in enumerate(items)}
    if len(by_key) != len(items):
        p.error(f"{a.data_file}: ids are not unique")
    rank, world, device = init_distributed()
    model = load_model(a.model_path, device, **parse_overrides(a.override))

    def evaluate(key):
        d = by_key[key]
        question = d["question"]
        choices = d.get("choices")
        if choices:
            question += "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
            question += "\nAnswer with the option's letter."
        if d.get("video"):
            path = os.path.join(a.image_folder, d["video"])
            reader = open_video(path, key)
            media = {"frames": read_frames(reader, segment_indices(len(reader), a.num_frames), path, key)}
        elif d.get("frames"):
            media = {"frames": [open_image(os.path.join(a.image_folder, f), key) for f in d["frames"]]}
        else:
            media = {"image": open_image(os.path.join(a.image_folder, d["image"]), key)}
        answer = predict(model, question, **media)["text"]
        if choices:
            gt = d["answer"].strip()
            gt = gt if gt in LETTERS[:len(choices)] else LETTERS[choices.index(gt)]
            correct = parse_choice(answer, len(choices)) == gt
        else:
            correct = normalize(answer) == normalize(d["answer"])
        return {"question": d["question"], "answer": answer, "reference": d["answer"], "correct": bool(correct)}

    records = run_and_merge(list(by_key), evaluate, work_dir=a.work_dir, rank=rank, world=world, resume=a.resume,
                            desc="vqa")
    if rank != 0:
        return {}
    metrics = {"accuracy": percent(sum(r.get("correct", False) for r in records) / max(len(records), 1)),
               "num_samples": len(records), "num_failed": sum(1 for r in records if "error" in r)}
    write_outputs(a.work_dir, records, metrics)
    print_table(f"VQA ({a.data_file})", metrics)
    return metrics


if __name__ == "__main__":
    main()
