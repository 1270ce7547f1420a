"""`projects.desa2va` imports from any directory once the project is installed."""
import subprocess
import sys


def test_import_from_another_directory(tmp_path):
    code = "import projects.desa2va, projects.desa2va.models.mllm, projects.desa2va.models.grounding; " \
           "print(projects.desa2va.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("projects/desa2va/__init__.py")
