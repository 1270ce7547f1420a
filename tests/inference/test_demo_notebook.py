"""demo.ipynb executes top to bottom with nbclient on the CPU, on a saved tiny model, and draws its overlays."""
import os
import sys

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(ROOT, "demo.ipynb")


def test_notebook_is_saved_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_and_draws_overlays(seg_model_folder, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    out = tmp_path / "demo_out"
    monkeypatch.setenv("DESA2VA_DEMO_MODEL", seg_model_folder)
    monkeypatch.setenv("DESA2VA_DEMO_OUT", str(out))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])  # the venv's kernel
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    by_tag = {t: c for c in nb.cells for t in c.metadata.get("tags", [])}

    def outputs(tag, mime):
        return [o for o in by_tag[tag].outputs if mime in o.get("data", {})]

    assert len(outputs("image-overlay", "image/png")) == 1
    assert len(outputs("video-overlay", "image/png")) == 1 and len(outputs("video-overlay", "image/gif")) == 1
    assert len(outputs("gcg-overlay", "text/html")) == 1 and len(outputs("gcg-overlay", "image/png")) == 1
    text = "".join(o.get("text", "") for o in by_tag["image-overlay"].outputs)
    assert "Please segment the red circle in this image. -> " in text and "[SEG]" in text
    qa = "".join(o.get("text", "") for o in by_tag["qa"].outputs)
    assert "image:" in qa and "video:" in qa
    for name in ("image_segmentation.png", "video_segmentation.gif", "video_segmentation.mp4", "grounded_caption.png"):
        assert (out / name).stat().st_size > 0, name
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
