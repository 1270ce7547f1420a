"""Import a released Sa2VA checkpoint (Hugging Face folder) into the project's saved-model format.

    python tools/import_sa2va.py pretrained/Sa2VA-4B --save-path pretrained/Sa2VA-4B-imported

The result loads with `DeSa2VAPredictor.from_pretrained(OUT)` / `models.builder.load_pretrained(OUT)` as
the sa2va arm (stage 2, decouple False; Sa2VA's inference: first five frames as key frames, no reprompt), is evaluated by the
evaluation scripts like any trained model, and can start DeSa2VA training
(configs/desa2va_*_from_sa2va.py). No remote code runs; every source key must be used and every target
key filled (an error names the key otherwise). After writing, the folder is loaded once to check it
(`--skip-verify` skips that).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from projects.desa2va.models.sa2va_import import DEFAULT_SAM2_CONFIG, import_sa2va

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="Sa2VA Hugging Face folder (config.json, *.safetensors, tokenizer)")
    p.add_argument("--save-path", required=True, help="output folder")
    p.add_argument("--sam2-config", default=DEFAULT_SAM2_CONFIG,
                   help=f"SAM-2 config the grounding weights belong to (default {DEFAULT_SAM2_CONFIG})")
    p.add_argument("--skip-verify", action="store_true", help="do not load the written folder to check it")
    a = p.parse_args(argv)
    from projects.desa2va.models.checkpoint_io import CheckpointError

    try:
        summary = import_sa2va(a.src, a.save_path, a.sam2_config)
        if not a.skip_verify:
            from projects.desa2va.models.builder import load_pretrained

            load_pretrained(a.save_path, torch_dtype="bfloat16")
    except CheckpointError as e:
        print(f"[import_sa2va] error: {e}", file=sys.stderr)
        return 1
    print(f"[import_sa2va] wrote {a.save_path}: {summary['mllm_tensors']} MLLM, {summary['sam2_tensors']} SAM-2 and "
          f"{summary['head_tensors']} projection tensors" + ("" if a.skip_verify else "; loads strictly"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
