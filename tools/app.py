"""Gradio app: upload an image or a video, type a prompt, get the answer and the mask overlay.

    python tools/app.py --model_path work_dirs/quickstart/model [--host 127.0.0.1] [--port 7860]

`--model_path`: a saved model folder (tools/convert_to_hf.py or tools/import_sa2va.py). The app binds to
localhost unless `--host` says otherwise, runs offline (no analytics, no share link), and refuses uploads
over `--max_upload_mb` (Gradio's upload limit, and checked again before decoding) and images over
`--max_megapixels`, with a message. Mode "chat" asks the prompt as typed; "segment" asks
"Please segment <prompt> in this image/video.". A video answer comes as a strip of overlaid frames and
the overlaid clip (mp4). The HTTP API endpoint is `/predict` (gradio_client:
`Client(url).predict(image, video, prompt, mode, api_name="/predict")`).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODES = ("chat", "segment")


class Handler:
    """What the app does with one request, independent of Gradio (tests call it directly too)."""

    def __init__(self, predictor, max_upload_mb: float = 50.0, out_dir: Optional[str] = None, fps: float = 10.0):
        self.predictor, self.max_bytes, self.fps = predictor, int(max_upload_mb * 2 ** 20), fps
        self.out_dir = out_dir or tempfile.mkdtemp(prefix="desa2va_app_")
        os.makedirs(self.out_dir, exist_ok=True)
        self.served = 0

    def __call__(self, image: Optional[str], video: Optional[str], prompt: str, mode: str = "chat"):
        """-> (answer text, overlay image path, overlay clip path or None). Raises InputError with a message."""
        from projects.desa2va import visualization as vis
        from projects.desa2va.inference import InputError, load_image, load_video

        if (image is None) == (video is None):
            raise InputError("upload either an image or a video (not both)")
        path = image if image is not None else video
        size = os.path.getsize(path)
        if size > self.max_bytes:
            raise InputError(f"the upload is {size / 2 ** 20:.1f} MB, over the limit of {self.max_bytes / 2 ** 20:.0f} MB")
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {mode!r}")
        p = self.predictor
        ask = p.chat if mode == "chat" else p.segment
        self.served += 1
        stem = os.path.join(self.out_dir, f"{self.served:06d}")
        if image is not None:
            img = load_image(image, p.max_pixels)
            out = ask(img, prompt)
            return out.text, vis.save_image(vis.overlay(img, out.masks), stem + "_overlay.png"), None
        frames = load_video(video, p.max_pixels)
        out = ask(frames, prompt)
        shown = vis.video_overlays((frames[t] for t in range(len(frames))), out.masks)
        strip = vis.save_image(vis.frame_strip(shown, max_frames=6, width=240), stem + "_strip.png")
        return out.text, strip, vis.write_video(shown, stem + "_overlay.mp4", fps=self.fps)


def build_app(handler: Handler, title: str = "DeSa2VA"):
    import gradio as gr

    from projects.desa2va.inference import InputError

    def predict(image, video, prompt, mode):
        try:
            return handler(image, video, prompt, mode)
        except InputError as e:
            raise gr.Error(str(e))

    return gr.Interface(
        fn=predict, title=title, api_name="predict", flagging_mode="never",
        description="Upload an image or a video, type a question or (mode 'segment') a referring expression.",
        inputs=[gr.Image(type="filepath", label="image"), gr.File(label="video (mp4 or another format decord reads)"),
                gr.Textbox(label="prompt", value="Please segment the person."),
                gr.Radio(list(MODES), value="chat", label="mode")],
        outputs=[gr.Textbox(label="answer"), gr.Image(type="filepath", label="overlay (video: frame strip)"),
                 gr.File(label="overlaid clip (video)")])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", required=True)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--max_upload_mb", type=float, default=50.0)
    p.add_argument("--max_megapixels", type=float, default=40.0)
    a = p.parse_args(argv)
    from projects.desa2va.inference import DeSa2VAPredictor

    predictor = DeSa2VAPredictor.from_pretrained(a.model_path, device=a.device,
                                                 max_pixels=int(a.max_megapixels * 1e6))
    app = build_app(Handler(predictor, a.max_upload_mb))
    app.queue(default_concurrency_limit=1)  # one model, one request at a time
    app.launch(server_name=a.host, server_port=a.port, share=False, show_error=True,
               max_file_size=int(a.max_upload_mb * 2 ** 20), prevent_thread_lock=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
