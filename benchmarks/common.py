"""What the benchmark scripts share: the repository on sys.path, where a result goes (JSON file and a row
of `benchmarks/RESULTS.md` with machine, device, date and commit), models built from a config with
random weights, timing that waits for the GPU, and peak memory."""
from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "tools")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import torch  # noqa: E402

RESULTS_MD = os.path.join(ROOT, "benchmarks", "RESULTS.md")
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")

# Dense bf16 tensor-core peaks (FLOP/s) for model FLOPs utilisation; other devices report mfu = null.
PEAK_BF16_FLOPS = (("H100 PCIe", 756e12), ("H100", 989.4e12), ("H200", 989.4e12), ("H800", 989.4e12),
                   ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12))


def commit() -> str:
    try:
        out = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                      stderr=subprocess.DEVNULL).strip()
        dirty = subprocess.call(["git", "diff", "--quiet", "HEAD", "--", "projects", "configs", "tools",
                                 ":(glob)benchmarks/*.py"], cwd=ROOT, stderr=subprocess.DEVNULL)
        return out + ("+dirty" if dirty else "")
    except Exception:
        return "unknown"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu, {torch.get_num_threads()} threads"


def peak_flops(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS if k in name), None)


def pick_device(arg: Optional[str]) -> torch.device:
    if arg:
        return torch.device(arg)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """perf_counter after the device has finished its queued work."""
    sync(device)
    return time.perf_counter()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> Dict[str, Any]:
    """GPU: peak allocated by torch since the last reset; CPU: the process's peak resident set (whole run)."""
    if device.type == "cuda":
        return {"peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3),
                "memory_kind": "cuda max_memory_allocated"}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_memory_gb": round(rss_kb / 2 ** 20, 3), "memory_kind": "process peak RSS"}


class ExclusiveTimer:
    """Wall time per named region, exclusive of nested regions (a region inside another pauses it), with
    the device synchronised at each boundary. Hooks add regions around modules and functions; `active`
    False makes them no-ops (timed steps run unsynchronised)."""

    def __init__(self, device: torch.device):
        self.device, self.active = device, False
        self.totals: Dict[str, float] = {}
        self._stack: List[List[Any]] = []
        self._handles: List[Any] = []
        self._restore: List[Callable[[], None]] = []

    def push(self, name: str) -> None:
        if not self.active:
            return
        t = now(self.device)
        if self._stack:
            top = self._stack[-1]
            self.totals[top[0]] = self.totals.get(top[0], 0.0) + t - top[1]
        self._stack.append([name, t])

    def pop(self) -> None:
        if not self.active or not self._stack:
            return
        t = now(self.device)
        name, start = self._stack.pop()
        self.totals[name] = self.totals.get(name, 0.0) + t - start
        if self._stack:
            self._stack[-1][1] = t

    @contextlib.contextmanager
    def region(self, name: str):
        self.push(name)
        try:
            yield
        finally:
            self.pop()

    def on_module(self, module: torch.nn.Module, name: str) -> None:
        self._handles.append(module.register_forward_pre_hook(lambda *_: self.push(name)))
        self._handles.append(module.register_forward_hook(lambda *_: self.pop()))

    def on_function(self, owner: Any, attr: str, name: str) -> None:
        """Wrap `owner.attr` (a module-level function or an instance's method) in a region."""
        orig = getattr(owner, attr)

        def wrapped(*args, **kwargs):
            with self.region(name):
                return orig(*args, **kwargs)

        setattr(owner, attr, wrapped)
        self._restore.append(lambda: setattr(owner, attr, orig))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        for r in reversed(self._restore):
            r()
        self._handles, self._restore = [], []


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of `fn()` as torch counts them (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@contextlib.contextmanager
def gradient_checkpointing_off(model: torch.nn.Module):
    """Temporarily run without activation checkpointing (FLOP counts then hold no recomputation)."""
    flipped = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
    for m in flipped:
        m.gradient_checkpointing = False
    try:
        yield
    finally:
        for m in flipped:
            m.gradient_checkpointing = True


# ---------------------------------------------------------------------------------------------- models
def load_config(path: str):
    from mmengine.config import Config

    import projects.desa2va.registry  # noqa: F401

    return Config.fromfile(path, lazy_import=False)


def mllm_size(mllm_path: str) -> Optional[str]:
    m = re.search(r"InternVL2_5-(\d+B)", mllm_path)
    return m.group(1) if m else None


def random_init_folder(mllm_path: str, tmp: str) -> str:
    """An InternVL2.5 folder without weights: the real `config.json` of the size named in `mllm_path`
    (InternVL2_5-1B / -4B), or that folder's own config.json when it exists, and the tiny tokenizer
    (benchmarks feed token ids; the vocabulary size, hence the embedding and LM head, is the config's)."""
    import make_tiny_pretrained

    from projects.desa2va.models.mllm.arch_configs import internvl2_5_config

    folder = os.path.join(tmp, "random_init_" + os.path.basename(mllm_path.rstrip("/")))
    os.makedirs(folder, exist_ok=True)
    own = os.path.join(mllm_path, "config.json")
    if os.path.isfile(own):
        with open(own) as f:
            cfg = json.load(f)
    elif mllm_size(mllm_path):
        cfg = internvl2_5_config(mllm_size(mllm_path))
    else:
        raise SystemExit(f"--random-init: {mllm_path} has no config.json and its name gives no size "
                         "(InternVL2_5-1B / InternVL2_5-4B)")
    make_tiny_pretrained.build_tokenizer().save_pretrained(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    return folder


def ensure_tiny_pretrained(workspace: str = ROOT) -> str:
    """`<workspace>/pretrained/tiny` (the tiny configs' weights: the committed foundations, installed when
    missing; random stand-ins written on purpose are kept)."""
    import make_tiny_pretrained

    folder = os.path.join(workspace, "pretrained", "tiny")
    make_tiny_pretrained.ensure_tiny(folder)
    return folder


ARM_SWITCHES = {"desa2va": dict(decouple=True), "sa2va": dict(decouple=False)}


def model_config(cfg, mode: Optional[str], random_init: bool, tmp: str, **overrides) -> Dict[str, Any]:
    """The config's model dict for the arm `mode` ('desa2va' | 'sa2va': decouple on / off; None keeps the
    config's), with weights from the files it names, or, with `random_init`, the same architecture with
    random weights (no files read: no stage-1 hand-off, no SAM-2 checkpoint). A benchmark measures speed:
    the D_txt initialisation does not matter, so no stage-1 teacher and align_weight 0."""
    m = copy.deepcopy(cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model))
    if mode is not None:
        m.update(ARM_SWITCHES[mode])
        if not m["decouple"]:
            for k in ("stage1_checkpoint", "sa2va_init", "visual_proj", "align_weight"):
                m.pop(k, None)
    if random_init:
        m["mllm"]["model_path"] = random_init_folder(m["mllm"]["model_path"], tmp)
        m["mllm"]["load_weights"] = False
        m["grounding"]["checkpoint"] = None
        m.pop("sa2va_init", None)
    if m.get("stage1_checkpoint") and (random_init or not os.path.exists(m["stage1_checkpoint"])):
        m["stage1_checkpoint"] = None
        m["align_weight"] = 0.0
    m.update(overrides)
    return m


def build_model(cfg, mode: Optional[str], random_init: bool, tmp: str, workspace: str = ROOT, **overrides):
    """The model; the config's relative paths (pretrained/...) are read under `workspace`. Without a stage-1
    teacher the decoupled arm still computes the alignment term (weight builder.ALIGN_WEIGHT against the
    untrained W_rt), so that its cost is measured; only timing, never a result, comes from such a model."""
    import dataclasses

    from projects.desa2va.models.builder import ALIGN_WEIGHT, build_model as build

    with _cwd(workspace):
        model = build(model_config(cfg, mode, random_init, tmp, **overrides))
    if model.stage == 2 and model.decouple and model.weights.align == 0 and "align_weight" not in overrides:
        model.weights = dataclasses.replace(model.weights, align=ALIGN_WEIGHT)
    return model


def add_common_args(p, name: str) -> None:
    p.add_argument("--config", default="configs/desa2va_tiny.py")
    p.add_argument("--random-init", action="store_true", help="full-size architecture, random weights")
    p.add_argument("--device", default=None, help="default: cuda when available")
    p.add_argument("--workspace", default=ROOT, help="where the config's relative paths (pretrained/...) are")
    p.add_argument("--out", default=RESULTS_DIR, help=f"where {name}_<config>.json goes")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")


def setup(args):
    """(device, config path, config) for a benchmark's parsed arguments; the tiny weights are written
    when a tiny config runs without them."""
    device = pick_device(args.device)
    config = args.config if os.path.isabs(args.config) else os.path.join(ROOT, args.config)
    cfg = load_config(config)
    if not args.random_init and "tiny" in os.path.basename(config):
        ensure_tiny_pretrained(args.workspace)
    return device, config, cfg


def result_name(prefix: str, config: str, random_init: bool) -> str:
    return f"{prefix}_{os.path.splitext(os.path.basename(config))[0]}" + ("_random" if random_init else "")


@contextlib.contextmanager
def _cwd(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# ---------------------------------------------------------------------------------------------- results
def write_result(name: str, result: Dict[str, Any], out_dir: str, summary: str, record: bool,
                 device: str) -> str:
    """`<out_dir>/<name>.json` (with date, commit, machine, device), and unless `record` is False a row
    appended to RESULTS.md."""
    result = {"benchmark": name, "date": datetime.date.today().isoformat(), "commit": commit(),
              "machine": machine(), "device": device, **result}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    if record:
        append_row(name, result["date"], result["commit"], result["machine"], device, summary)
    print(f"[{name}] {summary}\n[{name}] wrote {path}" + (f" and a row of {RESULTS_MD}" if record else ""))
    return path


def append_row(name: str, date: str, rev: str, mach: str, device: str, summary: str) -> None:
    row = f"| {name} | {date} | {rev} | {mach} | {device} | {summary.replace('|', '/')} |\n"
    with open(RESULTS_MD, "a") as f:
        f.write(row)
