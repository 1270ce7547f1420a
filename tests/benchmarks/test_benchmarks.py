"""The training-step, inference-latency and ablation benchmarks run end to end with a minimal budget on the
tiny configs (so they cannot rot), and record their results the way RESULTS.md expects."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import ablation  # noqa: E402
import common  # noqa: E402
import inference_latency  # noqa: E402
import make_synthetic_data  # noqa: E402
import train_step  # noqa: E402


@pytest.fixture
def workspace(tmp_path, tiny_pretrained):
    (tmp_path / "pretrained").mkdir()
    os.symlink(tiny_pretrained, tmp_path / "pretrained" / "tiny")
    return tmp_path


@pytest.fixture
def results_md(tmp_path, monkeypatch):
    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\n\n<!-- ablation:start -->\nNot yet run.\n<!-- ablation:end -->\n\n## Log\n\n"
                  "| benchmark | date | commit | machine | device | result |\n|---|---|---|---|---|---|\n"
                  "| old | 2026-01-01 | abc | m | d | kept |\n")
    monkeypatch.setattr(common, "RESULTS_MD", str(md))
    return md


def test_train_step_both_modes(workspace, results_md, tmp_path):
    out = tmp_path / "out"
    res = train_step.main(["--workspace", str(workspace), "--steps", "1", "--warmup", "0", "--batch-size", "1",
                           "--workloads", "image", "text", "--out", str(out)])
    saved = json.loads((out / "train_step_desa2va_tiny.json").read_text())
    assert saved["modes"] == res["modes"] and saved["commit"] and saved["device"].startswith("cpu")
    d, s = res["modes"]["desa2va"], res["modes"]["sa2va"]
    assert d["trainable_params"] > s["trainable_params"]  # D_txt, MID and the gate train on top
    for mode in (d, s):
        img, txt = mode["workloads"]["image"], mode["workloads"]["text"]
        assert img["step_s"] > 0 and img["samples_per_s"] == pytest.approx(1 / img["step_s"], rel=0.01)
        split = img["split_s"]
        for part in ("LLM", "vision encoder", "SAM-2 image encoder", "decoders", "losses"):
            assert split[f"forward: {part}"] > 0, part
        assert split["backward"] > 0 and img["tflops_per_step"] > 0 and img["mfu"] is None  # no GPU peak
        assert "forward: SAM-2 image encoder" not in txt["split_s"]  # text-only: no SAM-2 work
        assert img["tokens_per_batch"] > txt["tokens_per_batch"] / 4 and img["peak_memory_gb"] > 0
    assert "loss_align" in d["workloads"]["image"]["losses"] and "loss_mask_bce" in s["workloads"]["image"]["losses"]
    # the image workload really has 6 tiles and 5 objects
    assert d["workloads"]["image"]["workload"] == {"tiles": 6, "objects": 5, "frames": 1}
    assert d["workloads"]["text"]["workload"] == {"tiles": 0, "objects": 0, "frames": 0}
    rows = results_md.read_text().splitlines()
    assert rows[-2].startswith("| old |") and rows[-1].startswith("| train_step_desa2va_tiny |")
    assert "DeSa2VA" in rows[-1] and "Sa2VA" in rows[-1]


def test_inference_latency_modes_and_objects(workspace, tmp_path):
    res = inference_latency.main(["--workspace", str(workspace), "--repeats", "1", "--frames", "6",
                                  "--objects", "1", "2", "--modes", "desa2va", "sa2va", "--out", str(tmp_path),
                                  "--no-record"])
    assert set(res["modes"]) == {"desa2va", "sa2va"}
    for r in res["modes"].values():
        q = r["query"]
        assert q["latency_s"] > 0 and q["image_tokens"] == 5 * 16  # 5 key frames of 16 tiny tokens
        for part in ("MLLM (tiles, prefill, decoding)", "SAM-2 image encoder", "decoders (+ reprompt)"):
            assert q["split_s"][part] > 0
        assert set(r["propagation"]) == {"1", "2"} and all(p["fps"] > 0 for p in r["propagation"].values())
    assert res["modes"]["desa2va"]["reprompt_iters"] == 1 and res["modes"]["sa2va"]["reprompt_iters"] == 0
    # each of the 6 frames is encoded once by SAM-2 per query: 5 key frames + 1 propagated frame
    assert res["modes"]["desa2va"]["propagation"]["2"]["frames_encoded"] == 6


def test_ablation_runs_resumes_and_records(workspace, results_md, tmp_path):
    make_synthetic_data.main(["--out", str(workspace / "data" / "synthetic"), "--train-images", "8",
                              "--val-images", "2", "--train-videos", "2", "--val-videos", "1", "--frames", "4"])
    args = ["--workspace", str(workspace), "--seeds", "0", "1", "--few-seeds", "1",
            "--variants", "sa2va", "keyframes_first_5", "fusion_mean",
            "--stage1-iters", "2", "--stage2-iters", "2", "--image-limit", "2", "--video-limit", "1",
            "--out", str(tmp_path / "out")]
    res = ablation.main(args)
    table = res["table"]
    assert list(table) == ["sa2va", "desa2va", "fusion_mean", "keyframes_first_5"]  # the evaluated model is trained too
    # main variants on both seeds, the others (and inference variants of them) on the first only
    assert table["sa2va"]["seeds"] == [0, 1] and table["desa2va"]["seeds"] == [0, 1]
    assert table["fusion_mean"]["seeds"] == [0] and table["keyframes_first_5"]["seeds"] == [0, 1]
    for name in ("sa2va", "desa2va"):
        for key in ("image_ciou", "video_jf"):
            cell = table[name][key]
            assert cell["mean"] == pytest.approx(sum(cell["values"]) / 2, abs=1e-4)
    d = table["sa2va"]["image_ciou"]["diff"]  # paired with DeSa2VA's seeds
    diffs = [a - b for a, b in zip(table["sa2va"]["image_ciou"]["values"], table["desa2va"]["image_ciou"]["values"])]
    assert d["seeds"] == [0, 1] and d["mean"] == pytest.approx(sum(diffs) / 2, abs=1e-4)
    assert table["fusion_mean"]["image_ciou"]["diff"] is None  # one common seed: no interval
    assert "image_ciou" not in table["keyframes_first_5"] and "video_jf" in table["keyframes_first_5"]
    runs = res["runs"]
    assert runs["sa2va"][0]["image_samples"] == 2 and runs["desa2va"][0]["video_samples"] >= 1
    cfg = json.loads((workspace / "work_dirs/ablation/sa2va/seed0/model/desa2va_config.json").read_text())
    assert (cfg["model"]["stage"], cfg["model"]["decouple"]) == (2, False)
    md = results_md.read_text()
    assert "| keyframes_first_5 |" in md and "Not yet run." not in md and "| all shapes |" in md
    assert md.index("<!-- ablation:end -->") < md.index("| old |") < md.index("| ablation |")  # log stays last
    # a second run reuses every finished job
    stamp = os.path.getmtime(workspace / "work_dirs/ablation/sa2va/seed0/result.json")
    again = ablation.main(args + ["--no-record"])
    assert again["table"] == table
    assert os.path.getmtime(workspace / "work_dirs/ablation/sa2va/seed0/result.json") == stamp
    # a finished job of other settings (here the evaluation set) stops the run instead of entering the table
    other = list(args)
    other[other.index("--image-limit") + 1] = "1"
    with pytest.raises(SystemExit, match="sa2va/seed0/result.json was made with other settings"):
        ablation.main(other + ["--no-record"])


def test_paired_difference_interval_by_hand():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.303 -> half width 4.303 * 0.1 / sqrt(3)
    got = ablation.paired_difference({0: 0.6, 1: 0.7, 2: 0.9, 7: 1.0}, {0: 0.5, 1: 0.5, 2: 0.6, 3: 0.0})
    half = 4.303 * 0.1 / 3 ** 0.5
    assert got["seeds"] == [0, 1, 2] and got["mean"] == pytest.approx(0.2, abs=1e-4)
    assert (got["low"], got["high"]) == (pytest.approx(0.2 - half, abs=1e-4), pytest.approx(0.2 + half, abs=1e-4))
    assert ablation.paired_difference({0: 0.6}, {0: 0.5}) is None


def test_trivial_baseline_is_every_shape(workspace):
    """The all-shapes baseline recomputed by hand on two images of the synthetic val split."""
    import numpy as np

    from projects.desa2va.common.masks import decode_segmentation
    from projects.desa2va.evaluation.metrics import j_and_f

    data = workspace / "data" / "synthetic"
    make_synthetic_data.main(["--out", str(data), "--train-images", "2", "--val-images", "2", "--train-videos", "1",
                              "--val-videos", "1", "--frames", "3"])
    got = ablation.trivial_baseline(str(workspace), 3, 0)
    import pickle
    refs = [r for r in pickle.load(open(data / "refcoco" / "refs(unc).p", "rb")) if r["split"] == "val"]
    coco = json.loads((data / "refcoco" / "instances.json").read_text())
    masks = {a["id"]: (a["image_id"], decode_segmentation(a["segmentation"], 128, 128)) for a in coco["annotations"]}
    pairs = [(masks[r["ann_id"]][1], np.any([m for i, m in masks.values() if i == r["image_id"]], 0))
             for r in refs for _ in r["sentences"]][:3]
    inter = sum((g & p).sum() for g, p in pairs)
    union = sum((g | p).sum() for g, p in pairs)
    assert got["image_samples"] == 3 and got["image_ciou"] == pytest.approx(inter / union, abs=1e-4)
    assert 0 < got["image_ciou"] < 1  # every shape covers the referred one and more
    meta = json.loads((data / "mevis" / "valid_u" / "meta_expressions.json").read_text())["videos"]
    rles = json.loads((data / "mevis" / "valid_u" / "mask_dict.json").read_text())
    (vid, v), = meta.items()

    def frames(ids):
        return np.any([[decode_segmentation(m, 128, 128) for m in rles[str(a)]] for a in ids], 0)
    every = frames([a for e in v["expressions"].values() for a in e["anno_id"]])
    jf = [sum(j_and_f(list(every), list(frames(e["anno_id"])))) / 2 for e in v["expressions"].values()]
    assert got["video_samples"] == len(jf) and got["video_jf"] == pytest.approx(np.mean(jf), abs=1e-4)


def test_memory_budget_counts_the_4b_run(tmp_path):
    import memory_budget

    res = memory_budget.main(["--config", "configs/desa2va_1b.py", "--out", str(tmp_path)])
    c = res["counts"]
    # by hand from InternVL2.5-1B's LLM (896 wide, 128-wide K/V, 4864 MLP, 24 layers) and LoRA r 128 on the 7 projections
    d, kv, i, r = 896, 128, 4864, 128
    per_layer = r * ((d + d) + 2 * (d + kv) + (d + d) + 2 * (d + i) + (i + d))
    assert c["trainable"]["LoRA"] == 24 * per_layer
    assert c["trainable"]["embeddings + LM head"] == 2 * 151674 * d
    assert c["trainable_total"] + c["frozen_total"] == c["all_params"]
    b = res["budget"]
    gib = 2 ** 30
    t = c["trainable_total"]
    assert b["fixed_gb"]["trainable weights (fp32)"] == round(4 * t / gib, 2)
    assert b["fixed_gb"]["AdamW moments (fp32, ZeRO-2 partition)"] == round(8 * t / 8 / gib, 2)
    assert b["activations_per_sample_gb"]["saved layer inputs"] == round(24 * 8192 * d * 2 / gib, 2)
    free = 80 - b["fixed_total_gb"] - 4
    assert b["max_batch_typical"] == int(free // b["per_sample_typical_gb"]) > b["max_batch_worst"] >= 1


def test_video_memory_runs_each_length_in_its_own_process(workspace, results_md, tmp_path):
    import video_memory

    res = video_memory.main(["--workspace", str(workspace), "--frames", "3", "7", "--height", "48", "--width", "64",
                             "--out", str(tmp_path / "out")])
    runs = res["runs"]
    assert [r["frames"] for r in runs] == [3, 7]
    for r in runs:
        assert r["peak_memory_gb"] > 0 and r["frames_per_s"] > 0 and r["sam2_image_size"] == 128  # the tiny config's SAM-2
        assert r["output_masks_mb"] == round(r["frames"] * 48 * 64 / 2 ** 20, 1)
    assert res["peak_ratio_longest_over_shortest"] == round(runs[1]["peak_memory_gb"] / runs[0]["peak_memory_gb"], 3)
    assert results_md.read_text().splitlines()[-1].startswith("| video_memory_desa2va_tiny |")


def test_every_trained_ablation_arm_builds_and_trains_a_step(workspace, make_model, monkeypatch):
    """Each trained arm of the ablation, as its driver passes it (configs/desa2va_tiny.py + the arm's options
    through train.py's --cfg-options parser + the stage-1 hand-off), builds, carries its switches and takes
    one loss step on a 3-frame clip with the loss terms its switches call for."""
    import argparse

    import torch
    from conftest import collate_samples, moving_clip, prompt_sample
    from mmengine.config import Config, DictAction
    from mmengine.registry import MODELS

    import make_tiny_pretrained
    import projects.desa2va.registry  # noqa: F401

    monkeypatch.chdir(workspace)  # the config's paths are relative: pretrained/tiny, as in a clone
    stage1 = str(workspace / "stage1.pth")
    make_model("text_pretrain", grounding_overrides=dict(
        model_config=make_tiny_pretrained.SAM2_PROXY_CONFIG,
        checkpoint=str(workspace / "pretrained" / "tiny" / make_tiny_pretrained.SAM2_PROXY_FILE))).save_stage1(stage1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    frames, masks = moving_clip()
    saved = torch.load(stage1, map_location="cpu", weights_only=False)["state_dict"]
    for name, (_, uses_stage1, opts) in ablation.TRAINED.items():
        cli = ablation._cli_options(dict(opts, **{"model.stage1_checkpoint": stage1 if uses_stage1 else None}))
        cfg = Config.fromfile(ablation.STAGE2, lazy_import=False)
        cfg.merge_from_dict(parser.parse_args(["--cfg-options"] + cli).cfg_options)
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        s = model.settings
        for key, value in opts.items():
            if value is not None:
                assert s[key[len("model."):]] == value, (name, key)
        decoupled = s["decouple"]
        if uses_stage1:  # the stage-1 hand-off reached the model: W_rt is stage 1's
            assert torch.equal(model.head.real_text_proj.proj.weight, saved["real_text_proj.proj.weight"]), name
        sample = prompt_sample(model, frames, "Please segment the red circle and the blue square.", masks,
                               answer="Sure, [SEG] and [SEG].")
        model.train()
        losses = model(collate_samples(model, [sample], [["the red circle", "the blue square"]]), mode="loss")
        assert all(torch.isfinite(v).all() for v in losses.values()), name
        branches = ("text", "visual", "fused") if decoupled else ("mask",)
        want = {"loss_lm"} | {f"loss_{b}_{k}" for b in branches for k in ("bce", "dice")}
        want |= {"loss_align"} if decoupled and uses_stage1 and s["align_weight"] > 0 else set()
        want |= {"loss_orth"} if decoupled and s["orth_weight"] > 0 else set()
        assert set(k for k in losses if "memory" not in k) == want, name
        assert any("memory" in k for k in losses) == (name == "train_with_memory"), name
        if decoupled:  # triple supervision on, but for fused_loss_only
            on = losses["loss_text_dice"].item() > 0 and losses["loss_visual_dice"].item() > 0
            assert on == (name != "fused_loss_only"), name
        sum(losses.values()).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads), name
