"""A stand-in for DeSa2VAModel in the evaluation scripts: it answers from a script the test wrote, so the
metrics of a run can be recomputed independently from the fixture's masks and the script.

Script: {key: {"text": answer, "masks": [one entry per [SEG]]}}; an image entry is one RLE, a video
entry a list of RLEs (one per frame). A key is an expression occurring in the question (the longest
such wins), or, where every sample is asked the same question, `@image=<v>` (the image's mean value,
rounded) or `@region=<n>` (the pixel count of the first region mask). A question without an entry
raises, as a failing model would. `frames_seen` logs the mean value of every frame a video call
received, in order.

Run from a subprocess (the resume tests):
    python tests/evaluation/scripted.py SCRIPT.json MODULE [script arguments...]
with SCRIPTED_DELAY=<seconds> slowing every call down.
"""
import json
import os
import sys
import time

import numpy as np
from pycocotools import mask as mask_utils


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(x) for x in r["size"]], "counts": r["counts"].decode()}


def unrle(r: dict) -> np.ndarray:
    return mask_utils.decode({"size": r["size"], "counts": r["counts"].encode()}).astype(bool)


class ScriptedModel:
    def __init__(self, script: dict, delay: float = 0.0):
        self.script, self.delay = script, delay
        self.frames_seen, self.questions = [], []

    def _entry(self, question: str, image=None, region_masks=None) -> dict:
        self.questions.append(question)
        time.sleep(self.delay)
        keys = [k for k in self.script if k in question]
        if image is not None:
            keys.append(f"@image={int(round(float(np.asarray(image).mean())))}")
        if region_masks is not None:
            keys.append(f"@region={int(np.asarray(region_masks[0]).sum())}")
        hits = [k for k in keys if k in self.script]
        if not hits:
            raise KeyError(f"no scripted answer for {question!r} ({keys})")
        return self.script[max(hits, key=len)]

    def predict_video(self, questions, frames):
        self.frames_seen.append([float(np.asarray(f).mean()) for f in frames])
        out = []
        for q in questions:
            e = self._entry(q)
            out.append({"text": e["text"], "masks": [np.stack([unrle(r) for r in m]) for m in e.get("masks", [])]})
        return out

    def predict(self, question, image=None, frames=None, region_masks=None):
        e = self._entry(question, image, region_masks)
        return {"text": e["text"], "masks": [unrle(m) for m in e.get("masks", [])]}


def install(module, script: dict, monkeypatch=None, delay: float = 0.0) -> ScriptedModel:
    """Make `module.main` load a ScriptedModel (returned, to inspect what it was asked) and route the
    scripts' calls of `inference.predict` / `predict_video` to it; with pytest's `monkeypatch` the real
    loader and predict paths come back after the test."""
    from projects.desa2va.evaluation import common, refsav_eval

    model = ScriptedModel(script, delay)
    patches = [(m, "load_model", lambda path, device, **overrides: model) for m in {module, refsav_eval}]
    for target in {module, common, refsav_eval}:
        if hasattr(target, "predict"):
            patches.append((target, "predict", lambda m, *a, **k: m.predict(*a, **k)))
        if hasattr(target, "predict_video"):
            patches.append((target, "predict_video", lambda m, *a, **k: m.predict_video(*a, **k)))
    for target, name, value in patches:
        if monkeypatch is None:
            setattr(target, name, value)
        else:
            monkeypatch.setattr(target, name, value)
    return model


if __name__ == "__main__":
    import importlib

    path, name, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    module = importlib.import_module(f"projects.desa2va.evaluation.{name}")
    install(module, json.load(open(path)), delay=float(os.environ.get("SCRIPTED_DELAY", "0")))
    module.main(argv)
