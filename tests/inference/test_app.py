"""tools/app.py: the Gradio app launched on a free loopback port, driven through its HTTP API."""
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import two_shapes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(seg_model_folder, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", NO_PROXY="127.0.0.1,localhost")
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "app.py"), "--model_path", seg_model_folder,
                                 "--port", str(port), "--max_upload_mb", "1"], stdout=f, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    import requests

    deadline = time.time() + 180
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the app did not start:\n{open(log).read()[-3000:]}")
        time.sleep(1)
    yield url, proc, log
    proc.terminate()
    proc.wait(timeout=30)


def test_binds_to_loopback_only(app):
    url, proc, log = app
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.socket() as s:  # listening on 127.0.0.1 ...
        assert s.connect_ex(("127.0.0.1", port)) == 0
    other = [ip for ip in socket.gethostbyname_ex(socket.gethostname())[2] if not ip.startswith("127.")]
    for ip in other:  # ... and not on the machine's other addresses
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((ip, port)) != 0


def test_image_and_prompt_give_answer_and_overlay(app, tmp_path):
    from gradio_client import Client, handle_file

    url, _, _ = app
    img, circle, square = two_shapes(128)
    path = str(tmp_path / "shapes.png")
    Image.fromarray(img).save(path)
    client = Client(url, verbose=False)
    answer, overlay, clip = client.predict(handle_file(path), None, "Please segment the red circle in this image.",
                                           "chat", api_name="/predict")
    assert "[SEG]" in answer and clip is None
    shown = np.asarray(Image.open(overlay).convert("RGB"))
    assert shown.shape == img.shape and (shown != img).any()  # the mask is drawn over the image


def test_bad_requests_get_messages(app, tmp_path):
    from gradio_client import Client, handle_file

    url, _, _ = app
    img, _, _ = two_shapes(64)
    path = str(tmp_path / "shapes.png")
    Image.fromarray(img).save(path)
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="the prompt is empty"):
        client.predict(handle_file(path), None, "  ", "chat", api_name="/predict")
    with pytest.raises(Exception, match="upload either an image or a video"):
        client.predict(None, None, "the circle", "chat", api_name="/predict")
    big = str(tmp_path / "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(2 * 2 ** 20))  # 2 MB, over the app's 1 MB limit
    with pytest.raises(Exception, match="(?i)size|large|limit"):
        client.predict(None, handle_file(big), "the circle", "chat", api_name="/predict")


def test_handler_renders_a_video(seg_model_folder, tmp_path):
    """The app's handler on a frame folder: the answer, a frame strip and an mp4 clip (no browser needed)."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import app as app_module

    from projects.desa2va.inference import DeSa2VAPredictor

    img, _, _ = two_shapes(64)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(4):
        Image.fromarray(img).save(folder / f"{t:03d}.jpg")
    handler = app_module.Handler(DeSa2VAPredictor.from_pretrained(seg_model_folder), out_dir=str(tmp_path / "out"))
    answer, strip, clip = handler(None, str(folder), "the red circle", "segment")
    assert "[SEG]" in answer and strip.endswith(".png") and clip.endswith(".mp4") and os.path.getsize(clip) > 0
    import decord

    assert len(decord.VideoReader(clip)) == 4
