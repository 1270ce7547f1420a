"""tools/train.py on the tiny config: trains through mmengine on CPU, checkpoints, and refuses a wrong
data path before loading any model."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_synthetic_data  # noqa: E402
import make_tiny_pretrained  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_pretrained):
    run = tmp_path_factory.mktemp("train")
    (run / "pretrained").mkdir()
    os.symlink(tiny_pretrained, run / "pretrained" / "tiny")
    make_synthetic_data.main(["--out", str(run / "data" / "synthetic"), "--train-images", "8", "--val-images", "2",
                              "--train-videos", "2", "--val-videos", "1", "--frames", "4"])
    return run


def _proxy_stage1(make_model, run, name, seed=0):
    """A stage-1 checkpoint of the tiny config's SAM-2 (the 128 px proxy's), the teacher of the alignment term."""
    ckpt = os.path.join(str(run), "pretrained", "tiny", make_tiny_pretrained.SAM2_PROXY_FILE)
    path = str(run / name)
    make_model("text_pretrain", seed=seed, grounding_overrides=dict(
        model_config=make_tiny_pretrained.SAM2_PROXY_CONFIG, checkpoint=ckpt)).save_stage1(path)
    return path


def _train(run, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"),
                           os.path.join(ROOT, "configs", "desa2va_tiny.py")] + list(extra),
                          cwd=run, env=env, capture_output=True, text=True)


def test_tiny_config_trains_and_checkpoints(run_dir, make_model):
    _proxy_stage1(make_model, run_dir, "stage1.pth")
    out = _train(run_dir, "--work-dir", "wd", "--cfg-options", "train_cfg.max_iters=2",
                 "train_dataloader.batch_size=2", "train_dataloader.sampler.batch_size=2",
                 "default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=2",
                 f"model.stage1_checkpoint={run_dir / 'stage1.pth'}")
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    for term in ("loss_lm", "loss_text_bce", "loss_visual_dice", "loss_fused_bce", "loss_align", "loss_orth"):
        assert term in log
    assert os.path.isfile(run_dir / "wd" / "iter_2.pth")
    import torch

    state = torch.load(run_dir / "wd" / "iter_2.pth", map_location="cpu", weights_only=False)["state_dict"]
    assert any("lora_A" in k for k in state) and any(k.startswith("head.decoupler.") for k in state)
    assert not any(k.startswith(("grounding.sam2_model.image_encoder", "mllm.vision_model"))
                   for k in state)  # frozen weights are not stored, but for W_rt, which no pretrained file holds:
    stage1 = torch.load(run_dir / "stage1.pth", map_location="cpu", weights_only=False)["state_dict"]
    for k in ("real_text_proj.proj.weight", "real_text_proj.proj.bias"):
        assert torch.equal(state["head." + k], stage1[k]), k


def test_wrong_data_path_stops_before_loading_models(run_dir, tmp_path):
    out = _train(tmp_path)  # no data/ here
    assert out.returncode != 0
    assert "data paths not found" in out.stderr and "data/synthetic/refcoco" in out.stderr
    assert "Loading" not in out.stderr and "Iter(train)" not in out.stderr


def test_exported_folder_holds_the_trained_weights(run_dir, monkeypatch, make_model):
    """Trained for 4 iterations at a constant 3e-3 (weights far from their start), exported: the folder's
    heads are the checkpoint's bit for bit, not the initial ones, W_rt is stage 1's, and the exported model
    decodes as the trained one."""
    import numpy as np
    import torch

    import convert_to_hf
    from projects.desa2va.inference import predict
    from projects.desa2va.models.builder import load_pretrained

    stage1 = _proxy_stage1(make_model, run_dir, "stage1_export.pth", seed=3)
    out = _train(run_dir, "--work-dir", "long", "--cfg-options", "train_cfg.max_iters=4", "train_dataloader.batch_size=2",
                 "train_dataloader.sampler.batch_size=2", "default_hooks.checkpoint.interval=4",
                 "optim_wrapper.optimizer.lr=0.003", "param_scheduler.0.start_factor=1.0", "param_scheduler.0.end=1",
                 "param_scheduler.1.begin=1", "param_scheduler.1.end=1000", f"model.stage1_checkpoint={stage1}")
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = run_dir / "long" / "iter_4.pth"
    monkeypatch.chdir(run_dir)
    config = os.path.join(ROOT, "configs", "desa2va_tiny.py")
    assert convert_to_hf.main([config, str(ckpt), "--save-path", str(run_dir / "export")]) == 0
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    exported = load_pretrained(str(run_dir / "export"))
    initial = convert_to_hf.build_model(config)  # what an export that ignored the checkpoint would hold
    sd, sd0 = exported.state_dict(), initial.state_dict()
    heads = [k for k in state if k.startswith("head.")]
    assert heads and all(torch.equal(sd[k], state[k]) for k in heads), [k for k in heads if not torch.equal(sd[k], state[k])]
    moved = [float((state[k] - sd0[k]).abs().mean()) for k in heads if k.startswith("head.decoupler.")]
    assert moved and min(moved) > 1e-4, moved  # training moved every decoupler weight measurably
    w_rt = torch.load(stage1, map_location="cpu", weights_only=False)["state_dict"]["real_text_proj.proj.weight"]
    assert torch.equal(sd["head.real_text_proj.proj.weight"], w_rt)
    assert not torch.equal(sd0["head.real_text_proj.proj.weight"], w_rt)
    trained = convert_to_hf.load_trained_model(config, str(ckpt))
    size = trained.grounding.image_size
    feats = trained.grounding.encode_frames(torch.randn(1, 3, size, size))
    h = torch.randn(2, trained.mllm.hidden_size)
    with torch.no_grad():
        a = trained.decode_objects(feats, h, torch.zeros(2, dtype=torch.long)) > 0
        b = exported.decode_objects(feats, h, torch.zeros(2, dtype=torch.long)) > 0
    assert (a == b).float().mean() > 0.999
    img = np.random.RandomState(0).randint(0, 255, (64, 64, 3), dtype=np.uint8)
    assert predict(trained, "Please segment the red circle.", image=img)["text"] == \
        predict(exported, "Please segment the red circle.", image=img)["text"]
    # a checkpoint without W_rt (written before it travelled) is refused, naming it
    old = {k: v for k, v in state.items() if not k.startswith("head.real_text_proj")}
    torch.save({"state_dict": old}, run_dir / "old.pth")
    with pytest.raises(Exception, match="missing .*head.real_text_proj.proj"):
        convert_to_hf.load_trained_model(config, str(run_dir / "old.pth"))
    with pytest.raises(Exception, match="checkpoint not found"):
        convert_to_hf.load_trained_model(config, str(run_dir / "nope.pth"))


def _losses(log):
    import re

    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"Iter\(train\) \[(\d+)/\d+\].*?\sloss: ([\d.]+)", log)}


# a cosine schedule that decays over the 6 iterations (1 of warm-up), at a learning rate where a resume that
# lost or misplaced any weight, moment or schedule step shows in the bits
COSINE = ["train_cfg.max_iters=6", "default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=3",
          "train_dataloader.batch_size=2", "train_dataloader.sampler.batch_size=2", "optim_wrapper.optimizer.lr=0.003",
          "param_scheduler.0.end=1", "param_scheduler.1.begin=1", "param_scheduler.1.end=6",
          "model.stage1_checkpoint=None", "model.align_weight=0.0"]  # no stage 1 (D_txt from SAM-2)


def test_resumed_run_matches_the_uninterrupted_one_bit_for_bit(run_dir):
    import shutil

    import torch

    from conftest import assert_same_state

    full = _train(run_dir, "--work-dir", "full", "--cfg-options", *COSINE)
    assert full.returncode == 0, full.stderr[-2000:]
    lrs = [float(x) for x in __import__("re").findall(r"\slr: ([\d.e+-]+)", full.stdout + full.stderr)]
    assert len(lrs) == 6 and lrs[1] > lrs[3] > lrs[5] > 0  # resumed inside the decay
    # as if it had stopped after 3 iterations: keep only iter_3 and resume from it
    shutil.copytree(run_dir / "full", run_dir / "cut", ignore=shutil.ignore_patterns("iter_6.pth"))
    (run_dir / "cut" / "last_checkpoint").write_text(str(run_dir / "cut" / "iter_3.pth"))
    resumed = _train(run_dir, "--work-dir", "cut", "--resume", "auto", "--cfg-options", *COSINE)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed epoch: 0, iter: 3" in resumed.stdout + resumed.stderr
    a, b = _losses(full.stdout + full.stderr), _losses(resumed.stdout + resumed.stderr)
    assert set(b) == {4, 5, 6} and all(a[i] == b[i] for i in (4, 5, 6)), (a, b)
    x, y = (torch.load(d / "iter_6.pth", map_location="cpu", weights_only=False) for d in (run_dir / "full", run_dir / "cut"))
    start = torch.load(run_dir / "full" / "iter_3.pth", map_location="cpu", weights_only=False)
    assert x["optimizer"]["state"] and any(not torch.equal(x["state_dict"][k], start["state_dict"][k])
                                           for k in x["state_dict"])  # the weights moved after the cut
    for key in ("state_dict", "optimizer", "param_schedulers"):
        assert_same_state(x[key], y[key], key)
