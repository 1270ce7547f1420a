"""tools/dist.sh and tools/slurm.sh on CPU: two torchrun processes (gloo) train the tiny config with
DeepSpeed ZeRO-2; a run stopped after N iterations and resumed repeats the uninterrupted run's losses."""
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_synthetic_data  # noqa: E402

# a larger, constant learning rate so that a resume which lost the weights or the optimizer state shows
SHORT = ["train_cfg.max_iters=5", "train_dataloader.batch_size=2", "train_dataloader.sampler.batch_size=2",
         "default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=1",
         "default_hooks.checkpoint.max_keep_ckpts=3", "optim_wrapper.optimizer.lr=0.003",
         "param_scheduler.0.start_factor=1.0", "param_scheduler.0.end=1", "param_scheduler.1.begin=1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_pretrained):
    run = tmp_path_factory.mktemp("dist")
    (run / "pretrained").mkdir()
    os.symlink(tiny_pretrained, run / "pretrained" / "tiny")
    make_synthetic_data.main(["--out", str(run / "data" / "synthetic"), "--train-images", "8", "--val-images", "2",
                              "--train-videos", "2", "--val-videos", "1", "--frames", "4"])
    return run


def _env(**extra):
    env = dict(os.environ, PYTHON=sys.executable, **extra)
    env.pop("OMP_NUM_THREADS", None)  # dist.sh shares the cores between its processes
    return env


def _dist(run, nproc, *args, port="29531"):
    return subprocess.run(["bash", os.path.join(ROOT, "tools", "dist.sh"), "train",
                           os.path.join(ROOT, "configs", "desa2va_tiny.py"), str(nproc)] + list(args),
                          cwd=run, env=_env(PORT=port), capture_output=True, text=True)


def _losses(log):
    return {int(m.group(1)): float(m.group(2))
            for m in re.finditer(r"Iter\(train\) \[(\d+)/\d+\].*?\sloss: ([\d.]+)", log)}


def test_two_processes_deepspeed_zero2_resume_repeats_the_losses(run_dir):
    full = _dist(run_dir, 2, "--work-dir", "full", "--cfg-options", *SHORT)
    log = full.stdout + full.stderr
    assert full.returncode == 0, log[-4000:]
    assert "2 CPU process(es), gloo" in log and "zero_optimization" in log  # the CPU ZeRO-2 json was used
    assert "Distributed training: True" in log and re.search(r"world_size \.+ 2", log)  # DeepSpeed's config dump
    full_losses = _losses(log)
    assert sorted(full_losses) == [1, 2, 3, 4, 5]
    assert len(set(full_losses.values())) > 1
    # keep the last 3 checkpoints, each a DeepSpeed folder with one optimizer shard per rank
    kept = sorted(p for p in os.listdir(run_dir / "full") if p.startswith("iter_"))
    assert kept == ["iter_3.pth", "iter_4.pth", "iter_5.pth"]
    shards = sorted(os.listdir(run_dir / "full" / "iter_3.pth"))
    assert shards == ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
                      "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    states = torch.load(run_dir / "full" / "iter_3.pth" / "mp_rank_00_model_states.pt", map_location="cpu",
                        weights_only=False)
    assert len(states["rng_states"]) == 2  # one per rank
    assert not any(k.startswith(("grounding.sam2_model.image_encoder", "mllm.vision_model"))
                   for k in states["module"])  # trainable weights only
    assert any("lora_A" in k for k in states["module"])

    # as if the run had stopped after iteration 3: resume from it and finish
    shutil.copytree(run_dir / "full", run_dir / "cut", ignore=shutil.ignore_patterns("iter_4.pth", "iter_5.pth"))
    (run_dir / "cut" / "last_checkpoint").write_text(str(run_dir / "cut" / "iter_3.pth"))
    resumed = _dist(run_dir, 2, "--work-dir", "cut", "--resume", "auto", "--cfg-options", *SHORT)
    rlog = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, rlog[-4000:]
    assert "Resume checkpoint from" in rlog
    again = _losses(rlog)
    assert sorted(again) == [4, 5]
    assert all(again[i] == full_losses[i] for i in (4, 5)), (full_losses, again)


def test_deepspeed_checkpoint_exports(run_dir, monkeypatch):
    import convert_to_hf
    from projects.desa2va.inference import predict
    from projects.desa2va.models.builder import load_pretrained

    ckpt = run_dir / "full" / "iter_5.pth"
    if not ckpt.is_dir():
        pytest.skip("needs the checkpoint of test_two_processes_deepspeed_zero2_resume_repeats_the_losses")
    monkeypatch.chdir(run_dir)
    config = os.path.join(ROOT, "configs", "desa2va_tiny.py")
    assert convert_to_hf.main([config, str(run_dir / "full"), "--save-path", str(run_dir / "export")]) == 0
    module = torch.load(ckpt / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]
    exported = load_pretrained(str(run_dir / "export"))
    sd = exported.state_dict()
    heads = [k for k in module if k.startswith(("head.decoupler.", "head.text_decoder."))][:5]
    assert heads
    for k in heads:
        assert torch.equal(sd[k], module[k]), k


def _fake_slurm(bindir, record):
    """`srun` that records its arguments and runs the command as task 0 of 1; `scontrol` naming localhost."""
    srun = bindir / "srun"
    srun.write_text(f"""#!/usr/bin/env bash
echo "$@" > {record}
while [ ! -x "$1" ]; do shift; done  # up to the interpreter (an absolute path here)
export SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 SLURM_NODELIST=localhost
exec "$@"
""")
    (bindir / "scontrol").write_text("#!/usr/bin/env bash\necho 127.0.0.1\n")
    for f in (srun, bindir / "scontrol"):
        f.chmod(f.stat().st_mode | stat.S_IEXEC)


def test_slurm_launcher(run_dir, tmp_path):
    _fake_slurm(tmp_path, tmp_path / "srun_args")
    env = _env(PATH=f"{tmp_path}:{os.environ['PATH']}", PORT="29541", OMP_NUM_THREADS="2")
    out = subprocess.run(["bash", os.path.join(ROOT, "tools", "slurm.sh"), "gpu", "tinyjob",
                          os.path.join(ROOT, "configs", "desa2va_tiny.py"), "1", "--work-dir", "slurm",
                          "--cfg-options", "train_cfg.max_iters=1", "train_dataloader.batch_size=2",
                          "train_dataloader.sampler.batch_size=2", "default_hooks.logger.interval=1"],
                         cwd=run_dir, env=env, capture_output=True, text=True)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    args = (tmp_path / "srun_args").read_text()
    assert "-p gpu --job-name=tinyjob --gres=gpu:1 --ntasks=1 --ntasks-per-node=1" in args
    assert "--launcher slurm --deepspeed" in args and "configs/deepspeed/zero2.json" in args  # GPU json, "auto" dtypes
    assert "Iter(train) [1/1]" in out.stdout + out.stderr
    assert os.path.isdir(run_dir / "slurm" / "iter_1.pth")


def test_launchers_refuse_bad_arguments(tmp_path):
    out = subprocess.run(["bash", os.path.join(ROOT, "tools", "dist.sh"), "train", "x.py"], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "usage" in out.stderr
    out = subprocess.run(["bash", os.path.join(ROOT, "tools", "dist.sh"), "test", "x.py", "1"], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "unknown task" in out.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"bf16": {"enabled": true}}')
    from projects.desa2va.engine import read_deepspeed_json

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="bad.json enables bf16, which needs a GPU"):
            read_deepspeed_json(str(bad))
    bad.write_text("{oops")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_deepspeed_json(str(bad))
