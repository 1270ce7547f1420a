"""tools/train.py on the tiny config: trains through mmengine on CPU, checkpoints, and refuses a wrong
data path before loading any model."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_synthetic_data  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_pretrained):
    run = tmp_path_factory.mktemp("train")
    (run / "pretrained").mkdir()
    os.symlink(tiny_pretrained, run / "pretrained" / "tiny")
    make_synthetic_data.main(["--out", str(run / "data" / "synthetic"), "--train-images", "8", "--val-images", "2",
                              "--train-videos", "2", "--val-videos", "1", "--frames", "4"])
    return run


def _train(run, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"),
                           os.path.join(ROOT, "configs", "desa2va_tiny.py")] + list(extra),
                          cwd=run, env=env, capture_output=True, text=True)


def test_tiny_config_trains_and_checkpoints(run_dir, make_model):
    make_model("text_pretrain").save_stage1(str(run_dir / "stage1.pth"))  # the teacher of the alignment term
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
    assert not any(k.startswith(("grounding.sam2_model.image_encoder", "mllm.vision_model", "head.real_text_proj"))
                   for k in state)  # frozen weights are not stored


def test_wrong_data_path_stops_before_loading_models(run_dir, tmp_path):
    out = _train(tmp_path)  # no data/ here
    assert out.returncode != 0
    assert "data paths not found" in out.stderr and "data/synthetic/refcoco" in out.stderr
    assert "Loading" not in out.stderr and "Iter(train)" not in out.stderr


def test_exported_folder_gives_the_checkpoints_masks(run_dir, monkeypatch):
    import numpy as np
    import torch

    import convert_to_hf
    from projects.desa2va.inference import predict
    from projects.desa2va.models.builder import load_pretrained

    ckpt = run_dir / "wd" / "iter_2.pth"
    if not ckpt.is_file():  # normally written by test_tiny_config_trains_and_checkpoints
        assert _train(run_dir, "--work-dir", "wd", "--cfg-options", "train_cfg.max_iters=2",
                      "default_hooks.checkpoint.interval=2").returncode == 0
    monkeypatch.chdir(run_dir)
    config = os.path.join(ROOT, "configs", "desa2va_tiny.py")
    assert convert_to_hf.main([config, str(ckpt), "--save-path", str(run_dir / "export")]) == 0
    trained = convert_to_hf.load_trained_model(config, str(ckpt))
    exported = load_pretrained(str(run_dir / "export"))
    feats = trained.grounding.encode_frames(torch.randn(1, 3, 256, 256))
    h = torch.randn(2, trained.mllm.hidden_size)
    with torch.no_grad():
        a = trained.decode_objects(feats, h, torch.zeros(2, dtype=torch.long)) > 0
        b = exported.decode_objects(feats, h, torch.zeros(2, dtype=torch.long)) > 0
    assert (a == b).float().mean() > 0.999
    img = np.random.RandomState(0).randint(0, 255, (64, 64, 3), dtype=np.uint8)
    assert predict(trained, "Please segment the red circle.", image=img)["text"] == \
        predict(exported, "Please segment the red circle.", image=img)["text"]
    with pytest.raises(Exception, match="checkpoint not found"):
        convert_to_hf.load_trained_model(config, str(run_dir / "nope.pth"))


def _losses(log):
    import re

    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"Iter\(train\) \[(\d+)/\d+\].*?\sloss: ([\d.]+)", log)}


def test_resumed_run_reproduces_the_uninterrupted_losses(run_dir):
    common = ["--cfg-options", "train_cfg.max_iters=4", "default_hooks.logger.interval=1",
              "default_hooks.checkpoint.interval=2", "train_dataloader.batch_size=2",
              "train_dataloader.sampler.batch_size=2"]
    full = _train(run_dir, "--work-dir", "full", *common)
    assert full.returncode == 0, full.stderr[-2000:]
    cut = _train(run_dir, "--work-dir", "cut", *common)
    assert cut.returncode == 0
    # as if it had stopped after 2 iterations: keep only iter_2 and resume from it
    os.remove(run_dir / "cut" / "iter_4.pth")
    (run_dir / "cut" / "last_checkpoint").write_text(str(run_dir / "cut" / "iter_2.pth"))
    resumed = _train(run_dir, "--work-dir", "cut", "--resume", "auto", *common)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _losses(full.stdout + full.stderr), _losses(resumed.stdout + resumed.stderr)
    assert set(b) == {3, 4} and all(a[i] == b[i] for i in (3, 4)), (a, b)
