"""benchmarks/gpu_check.sh as far as a CPU allows: its wheel set (benchmarks/gpu_wheels.sh) covers every package
the project imports that the GPU machine's image lacks, installs into a fresh target folder for Python 3.12 and
fits the 64 MiB a device call carries; the DeepSpeed training step it runs works (on CPU, tiny config); the
script parses; the video-memory benchmark runs."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Top-level modules the GPU machine's image provides (the device tool's KINDS.md package list, 2026-11-17),
# under their import names; torch, numpy and the rest of its scientific stack included.
MACHINE = set("""absl accelerate aiofiles aiohappyeyeballs aiohttp aiosignal anyio attr attrs botorch build certifi
charset_normalizer chex click cloudpickle cmake colorama contourpy coverage cuda cupy cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fontTools formulaic frozenlist fsspec gpytorch grpc h11 h5py hf_xet
httpcore httpx humanize hypothesis idna imageio iniconfig jax jaxlib jaxtyping jinja2 joblib kiwisolver lazy_loader
lightning lightning_utilities linear_operator lineax llvmlite lxml markdown markdown_it markupsafe matplotlib mdurl
ml_dtypes mpi4py mpl_toolkits mpmath msgpack multidict multipledispatch mypy_extensions nanobind narwhals networkx ninja
numba numpy numpyro nvidia onnx onnx_ir onnxruntime onnxscript cv2 optax opt_einsum optimistix orbax packaging pandas
pathspec patsy peft PIL pip pluggy portalocker prometheus_client propcache google psutil pyarrow pybind11 cpuinfo
pygments pyparsing pyproject_hooks pyre_extensions pytest dateutil pytorch_lightning yaml regex requests rich
sacrebleu safetensors scikit_build_core skimage sklearn scipy seaborn sentencepiece sentence_transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch_geometric torchmetrics torchvision tqdm transformers
treescope triton typer typing_extensions typing_inspect urllib3 uvloop wadler_lindig werkzeug wheel wrapt xarray xxhash
yarl zipp _yaml pkg_resources _distutils_hack jaraco more_itertools backports cython_runtime torchgen""".split())
# there, but in versions this project does not run with: they travel too
REPLACED = {"transformers", "tokenizers", "peft"}
OPTIONAL = {"brotli", "decord", "mmcv", "gradio"}  # not imported on the GPU check's path (video files, the app)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    dest = tmp_path_factory.mktemp("whl")
    out = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_wheels.sh"), str(dest)], capture_output=True,
                         text=True, env=dict(os.environ, PYTHON=sys.executable))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return dest


def _imported_top_level():
    code = ("import sys; before = set(sys.modules)\n"
            "import projects.desa2va.registry, projects.desa2va.engine, projects.desa2va.inference, "
            "projects.desa2va.evaluation.ref_vos_eval\n"
            "import sam2.build_sam, deepspeed, hydra, omegaconf\n"
            "mods = {m.split('.')[0] for m in sys.modules} - {m.split('.')[0] for m in before}\n"
            "print('MODS ' + ' '.join(sorted(m for m in mods if m not in sys.stdlib_module_names and not m.startswith('_'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("MODS ")]  # (DeepSpeed prints to stdout too)
    return set(line[-1].split()[1:]) - {"projects"}


def test_wheels_cover_what_the_machine_lacks_and_install(wheels, tmp_path):
    target = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                          "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                          "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                          "--platform", "manylinux2014_x86_64", "--target", str(target)]
                         + sorted(str(w) for w in wheels.glob("*.whl")), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    installed = {p.name for p in target.iterdir()}
    need = (_imported_top_level() - MACHINE - OPTIONAL) | REPLACED
    missing = sorted(m for m in need if m not in installed)
    assert not missing, f"imported by the project, absent on the GPU machine and not in benchmarks/gpu_wheels.sh: {missing}"
    assert (target / "sam2" / "configs" / "sam2" / "sam2_hiera_l.yaml").is_file()  # hydra configs travel
    assert (target / "deepspeed" / "__init__.py").is_file() and (target / "xtuner" / "engine").is_dir()
    size = sum(w.stat().st_size for w in wheels.glob("*.whl"))
    assert size < 40 * 2 ** 20, size  # with the working tree, inside the 64 MiB a call carries
    versions = {w.name.split("-")[0].lower().replace("_", "-"): w.name.split("-")[1] for w in wheels.glob("*.whl")}
    assert versions["transformers"] == "4.48.0" and versions["deepspeed"] == "0.16.2"
    assert len(versions) == len(list(wheels.glob("*.whl")))  # one version of each


def test_gpu_check_script_parses_and_names_its_steps():
    path = os.path.join(ROOT, "benchmarks", "gpu_check.sh")
    assert subprocess.run(["bash", "-n", path]).returncode == 0
    text = open(path).read()
    for needle in ("configs/desa2va_1b.py", "configs/desa2va_4b.py", "--deepspeed", "inference_latency.py",
                   "video_memory.py", "--frames 20 200", "/tmp/site"):
        assert needle in text, needle


def test_deepspeed_train_step_on_cpu(tmp_path, tiny_pretrained):
    """The training step gpu_check.sh runs, through a one-process DeepSpeed engine (the CPU json, bf16)."""
    (tmp_path / "pretrained").mkdir()
    os.symlink(tiny_pretrained, tmp_path / "pretrained" / "tiny")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "train_step.py"), "--workspace", str(tmp_path),
                          "--deepspeed", os.path.join(ROOT, "configs", "deepspeed", "zero2.json"), "--steps", "1",
                          "--warmup", "1", "--batch-size", "1", "--workloads", "image", "--modes", "desa2va",
                          "--no-flops", "--no-record", "--out", str(tmp_path / "out"),
                          "--precision", "bf16"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT, MASTER_PORT="29593"))
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "train_step_desa2va_tiny.json").read_text())["modes"]["desa2va"]
    assert res["deepspeed"].endswith("zero2.json") and res["precision"] == "bf16"
    w = res["workloads"]["image"]
    assert w["step_s"] > 0 and all(0 < v < 100 for v in w["losses"].values()), w["losses"]
