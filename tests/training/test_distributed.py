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

# a cosine schedule decaying over the 6 iterations (1 of warm-up), at a learning rate where a resume that lost or
# misplaced any weight, moment or schedule step shows in the bits
SHORT = ["train_cfg.max_iters=6", "train_dataloader.batch_size=2", "train_dataloader.sampler.batch_size=2",
         "default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=3",
         "default_hooks.checkpoint.max_keep_ckpts=3", "optim_wrapper.optimizer.lr=0.003",
         "param_scheduler.0.end=1", "param_scheduler.1.begin=1", "param_scheduler.1.end=6",
         "model.stage1_checkpoint=None", "model.align_weight=0.0"]  # no stage 1 (D_txt from SAM-2)
DS_FILES = ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "zero_pp_rank_1_mp_rank_00_optim_states.pt"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_pretrained):
    run = tmp_path_factory.mktemp("dist")
    (run / "pretrained").mkdir()
    os.symlink(tiny_pretrained, run / "pretrained" / "tiny")
    make_synthetic_data.main(["--out", str(run / "data" / "synthetic"), "--train-images", "8", "--val-images", "2",
                              "--train-videos", "2", "--val-videos", "1", "--frames", "4"])
    return run


def _env(**extra):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OMP_NUM_THREADS", None)  # dist.sh shares the cores between its processes (unless told)
    env.update(extra)
    return env


def _dist(run, nproc, *args, port="29531", **env):
    return subprocess.run(["bash", os.path.join(ROOT, "tools", "dist.sh"), "train",
                           os.path.join(ROOT, "configs", "desa2va_tiny.py"), str(nproc)] + list(args),
                          cwd=run, env=_env(PORT=port, **env), capture_output=True, text=True)


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def _same_deepspeed_checkpoints(a, b):
    """Model states and every rank's optimizer shard (fp32 partitions, Adam moments, steps) bit for bit."""
    from conftest import assert_same_state

    for name in DS_FILES:
        x, y = _load(a / name), _load(b / name)
        for key in ("module", "optimizer_state_dict", "carried_state", "param_schedulers"):
            if key in x or key in y:
                assert_same_state(x.get(key), y.get(key), f"{name}:{key}")


def _losses(log):
    return {int(m.group(1)): float(m.group(2))
            for m in re.finditer(r"Iter\(train\) \[(\d+)/\d+\].*?\sloss: ([\d.]+)", log)}


def test_two_processes_deepspeed_zero2_resume_is_bit_exact(run_dir):
    full = _dist(run_dir, 2, "--work-dir", "full", "--cfg-options", *SHORT)
    log = full.stdout + full.stderr
    assert full.returncode == 0, log[-4000:]
    assert "2 CPU process(es), gloo" in log and "zero_optimization" in log  # the CPU ZeRO-2 json was used
    assert "Distributed training: True" in log and re.search(r"world_size \.+ 2", log)  # DeepSpeed's config dump
    full_losses = _losses(log)
    assert sorted(full_losses) == [1, 2, 3, 4, 5, 6]
    assert len(set(full_losses.values())) > 1
    lrs = [float(x) for x in re.findall(r"\slr: ([\d.e+-]+)", log)]
    assert lrs[1] > lrs[3] > lrs[5] > 0  # the cut falls inside the cosine decay
    # the checkpoints: each a DeepSpeed folder with one optimizer shard per rank
    kept = sorted(p for p in os.listdir(run_dir / "full") if p.startswith("iter_"))
    assert kept == ["iter_3.pth", "iter_6.pth"]
    assert sorted(os.listdir(run_dir / "full" / "iter_3.pth")) == DS_FILES
    states = _load(run_dir / "full" / "iter_3.pth" / "mp_rank_00_model_states.pt")
    assert len(states["rng_states"]) == 2  # one per rank
    assert not any(k.startswith(("grounding.sam2_model.image_encoder", "mllm.vision_model"))
                   for k in states["module"])  # trainable weights only
    assert any("lora_A" in k for k in states["module"])
    # W_rt (frozen, from stage 1) travels beside them
    assert sorted(states["carried_state"]) == ["head.real_text_proj.proj.bias", "head.real_text_proj.proj.weight"]

    # as if the run had stopped after iteration 3: resume from it and finish
    shutil.copytree(run_dir / "full", run_dir / "cut", ignore=shutil.ignore_patterns("iter_6.pth"))
    (run_dir / "cut" / "last_checkpoint").write_text(str(run_dir / "cut" / "iter_3.pth"))
    resumed = _dist(run_dir, 2, "--work-dir", "cut", "--resume", "auto", "--cfg-options", *SHORT)
    rlog = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, rlog[-4000:]
    assert "Resume checkpoint from" in rlog
    again = _losses(rlog)
    assert sorted(again) == [4, 5, 6]
    assert all(again[i] == full_losses[i] for i in (4, 5, 6)), (full_losses, again)
    _same_deepspeed_checkpoints(run_dir / "full" / "iter_6.pth", run_dir / "cut" / "iter_6.pth")
    moved = _load(run_dir / "full" / "iter_6.pth" / DS_FILES[0])["module"]
    assert any(not torch.equal(moved[k], states["module"][k]) for k in moved)  # (the weights did move after the cut)


def test_two_nodes_of_one_process_train_as_one_node_of_two(run_dir):
    """dist.sh with NNODES=2 and NODE_RANK=0/1 on one machine: one rendezvous of world size 2, the same
    losses and checkpoint as one node with two processes."""
    if not (run_dir / "full" / "iter_6.pth").is_dir():
        pytest.skip("needs the run of test_two_processes_deepspeed_zero2_resume_is_bit_exact")
    args = ["--work-dir", "nodes", "--cfg-options", *SHORT]
    env = dict(NNODES="2", MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")  # the threads of one node of two processes
    cmd = ["bash", os.path.join(ROOT, "tools", "dist.sh"), "train", os.path.join(ROOT, "configs", "desa2va_tiny.py"),
           "1"] + args
    procs = [subprocess.Popen(cmd, cwd=run_dir, env=_env(PORT="29561", NODE_RANK=str(r), **env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert re.search(r"world_size \.+ 2", logs[0])
    assert _losses(logs[0]) == _losses(_read_log(run_dir / "full")), (_losses(logs[0]), _losses(_read_log(run_dir / "full")))
    _same_deepspeed_checkpoints(run_dir / "full" / "iter_6.pth", run_dir / "nodes" / "iter_6.pth")


def _read_log(work_dir):
    """The rank-0 log mmengine wrote under a work dir."""
    logs = sorted(str(p) for p in work_dir.glob("*/*.log"))
    assert logs, work_dir
    return "\n".join(open(p).read() for p in logs[:1])


def test_deepspeed_step_in_bf16_on_cpu(run_dir):
    """zero2.json with model.precision=bf16 on CPU: DeepSpeed ZeRO-2 over the policy's weights (frozen bf16,
    trainable fp32 under autocast), finite losses, trainable weights saved in fp32."""
    out = _dist(run_dir, 1, "--work-dir", "bf16", "--cfg-options", *SHORT[1:], "train_cfg.max_iters=2",
                "model.precision=bf16", port="29571", DEEPSPEED=os.path.join(ROOT, "configs", "deepspeed", "zero2.json"))
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "[train] precision bf16" in log
    losses = _losses(log)
    assert sorted(losses) == [1, 2] and all(0 < v < 100 for v in losses.values())
    module = _load(run_dir / "bf16" / "iter_2.pth" / DS_FILES[0])["module"]
    assert module and {v.dtype for v in module.values()} == {torch.float32}


def test_deepspeed_checkpoint_exports(run_dir, monkeypatch):
    import convert_to_hf
    from projects.desa2va.models.builder import load_pretrained

    ckpt = run_dir / "full" / "iter_6.pth"
    if not ckpt.is_dir():
        pytest.skip("needs the checkpoint of test_two_processes_deepspeed_zero2_resume_is_bit_exact")
    monkeypatch.chdir(run_dir)
    config = os.path.join(ROOT, "configs", "desa2va_tiny.py")
    assert convert_to_hf.main([config, str(run_dir / "full"), "--save-path", str(run_dir / "export")]) == 0
    states = _load(ckpt / "mp_rank_00_model_states.pt")
    module = {k: v for k, v in {**states["module"], **states["carried_state"]}.items()
              if k.startswith(("head.", "grounding."))}  # (the MLLM's LoRA is merged on export)
    exported = load_pretrained(str(run_dir / "export"))
    sd = exported.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in module.items()), [k for k, v in module.items() if not torch.equal(sd[k], v)]
    assert "head.real_text_proj.proj.weight" in module  # W_rt came with the checkpoint, not from a fresh build
    assert any(k.startswith(("head.decoupler.", "head.text_decoder.")) for k in module)


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
                          "model.stage1_checkpoint=None", "model.align_weight=0.0",
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
    from projects.desa2va.engine import read_deepspeed_json

    bad.write_text('{"bf16": {"enabled": true}}')
    with pytest.raises(ValueError, match="bad.json sets bf16.enabled=true but model.precision is 'fp32'"):
        read_deepspeed_json(str(bad), "fp32")
    bad.write_text('{"fp16": {"enabled": true}}')
    with pytest.raises(ValueError, match="bad.json enables fp16"):
        read_deepspeed_json(str(bad))
    bad.write_text("{oops")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_deepspeed_json(str(bad))
