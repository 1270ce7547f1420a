"""SAM-2 video memory for `SAM2Grounding`: a video state over lazily read frames, key frames as
conditioning, propagation forward and backward with all objects in one state, frame features reused.

A key frame of an object is either the decoder's output on it (a one-row `DecoderOutput`: what inference
gives, METHOD.md 3.5) or a mask. A decoder output is put into the state as the frame's output exactly as
SAM-2 would have produced it: its low-res logits (not re-thresholded), the object pointer of its mask
token and object score; SAM-2's memory encoder then encodes the memory from those logits, as Sa2VA's
video inference does. A mask (bool, or logits > 0; e.g. a user's annotation) goes through SAM-2's
`add_new_mask`.

Memory does not grow with the video's length: frames are read and preprocessed one at a time, SAM-2
caches the features of the latest frame only, and the tracked frames' outputs (memory features, masks,
object pointers) are released once SAM-2's memory window has passed them (`release_frames`); what grows is
the caller's output masks (`propagate`'s (n_obj, T, H, W) bool, or nothing with `propagate_iter`)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch

from ...common.image_processing import ImageLike, logits_to_masks, sam2_frames


class LazySAM2Frames:
    """Frames preprocessed for SAM-2 on access, one at a time, on CPU (what the video state reads)."""

    def __init__(self, frames: Sequence[ImageLike], size: int):
        self.frames, self.size = frames, size

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> torch.Tensor:
        return sam2_frames([self.frames[i]], self.size)[0]


class VideoMemory:
    """Mixed into `SAM2Grounding` (needs `sam2_model` and `image_size`)."""

    def init_video_state(self, frames, video_size: Tuple[int, int], offload_state_to_cpu: bool = False) -> dict:
        """A SAM2VideoPredictor inference state over `frames` (indexable, item i -> (3, S, S) CPU tensor).

        Same fields as sam2's `init_state`, which only accepts a path; frames stay on CPU and are moved
        to the device one at a time when their features are computed.
        """
        m = self.sam2_model
        device = m.device
        return {
            "images": frames, "num_frames": len(frames), "offload_video_to_cpu": True,
            "offload_state_to_cpu": offload_state_to_cpu, "video_height": int(video_size[0]),
            "video_width": int(video_size[1]), "device": device,
            "storage_device": torch.device("cpu") if offload_state_to_cpu else device,
            "point_inputs_per_obj": {}, "mask_inputs_per_obj": {}, "cached_features": {}, "constants": {},
            "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(), "obj_ids": [],
            "output_dict_per_obj": {}, "temp_output_dict_per_obj": {}, "frames_tracked_per_obj": {},
        }

    def video_features(self, features, images: torch.Tensor,
                       frame_indices: Sequence[int]) -> Dict[int, Tuple[torch.Tensor, Dict[str, Any]]]:
        """Features from `encode_frames` (row i = frame `frame_indices[i]`, `images` the encoded (T, 3, S, S))
        in the form of SAM-2's video-state cache, {frame: (image, backbone_out)}, so propagation does
        not encode those frames again (the high-resolution levels projected as SAM-2's forward_image does)."""
        m = self.sam2_model
        out = {}
        for row, f in enumerate(frame_indices):
            fpn = [level[row:row + 1] for level in features.fpn]
            if m.use_high_res_features_in_sam:
                fpn[0] = m.sam_mask_decoder.conv_s0(fpn[0])
                fpn[1] = m.sam_mask_decoder.conv_s1(fpn[1])
            out[int(f)] = (images[row:row + 1].to(m.device).float(),
                           {"backbone_fpn": fpn, "vision_pos_enc": [p[row:row + 1] for p in features.pos]})
        return out

    @torch.inference_mode()
    def propagate_iter(self, frames, video_size: Tuple[int, int],
                       key_frame_masks: Mapping[int, Mapping[int, torch.Tensor]],
                       key_features: Optional[Mapping[int, Tuple[torch.Tensor, Dict[str, Any]]]] = None
                       ) -> Iterator[Tuple[int, List[int], torch.Tensor]]:
        """Yield (frame_idx, obj_ids, logits (n_obj, H, W)) for every frame exactly once.

        key_frame_masks: {obj_id: {frame_idx: key}}, key a one-row `DecoderOutput` of that object on that
        frame, or a mask (h, w) bool / logits (> 0 is foreground) at any resolution. Forward from the
        earliest key frame to the end, then backward from it to frame 0, through SAM-2's memory.
        key_features (`video_features`): frames already encoded, used instead of encoding them again.
        The logits are at `video_size` (SAM-2's bilinear resize of its low-res logits).
        """
        if not key_frame_masks or not all(key_frame_masks.values()):
            raise ValueError("propagate needs at least one key-frame mask for every object")
        if isinstance(frames, torch.Tensor):
            frames = frames.cpu()
        elif not (isinstance(frames, (list, tuple)) and len(frames) and isinstance(frames[0], torch.Tensor)):
            frames = LazySAM2Frames(frames, self.image_size)  # (reading frames[0] of a lazy video would decode it)
        m = self.sam2_model
        was_training = m.training
        m.eval()  # SAM-2's track_step keeps object scores (needed by the video state) only in eval mode
        try:
            yield from self._propagate(m, frames, video_size, key_frame_masks, key_features or {})
        finally:
            m.train(was_training)

    def _propagate(self, m, frames, video_size, key_frame_masks, key_features):
        state = self.init_video_state(frames, video_size)
        by_frame: Dict[int, List[Tuple[Any, torch.Tensor]]] = {}
        for obj_id, per_frame in key_frame_masks.items():
            for f, mask in per_frame.items():
                if not 0 <= f < len(frames):
                    raise ValueError(f"key frame {f} of object {obj_id} is outside the video (0..{len(frames) - 1})")
                by_frame.setdefault(int(f), []).append((obj_id, mask))
        # Frame by frame: SAM-2 caches the image features of the latest frame, so each key frame is
        # encoded at most once for all its objects (object by object it would be encoded once per object).
        # Features already computed (key_features) are put in SAM-2's feature cache, which it replaces by
        # the latest frame's on a miss: refilled before each use (adding masks, consolidating them).
        for f in sorted(by_frame):
            state["cached_features"] = dict(key_features)
            for obj_id, key in by_frame[f]:
                if isinstance(key, torch.Tensor):
                    m.add_new_mask(state, frame_idx=f, obj_id=obj_id, mask=(key > 0).cpu())
                else:
                    self._seed(m, state, f, obj_id, key)
        state["cached_features"] = dict(key_features)
        start = min(f for per_frame in key_frame_masks.values() for f in per_frame)
        window = self.memory_window()
        for f, obj_ids, masks in m.propagate_in_video(state, start_frame_idx=start, reverse=False):
            yield f, list(obj_ids), masks[:, 0]
            self.release_frames(state, f, start, window)
        if start > 0:
            for f, obj_ids, masks in m.propagate_in_video(state, start_frame_idx=start, reverse=True):
                if f != start:
                    yield f, list(obj_ids), masks[:, 0]
                self.release_frames(state, f, start, window)

    def memory_window(self) -> int:
        """How far back (in frames) SAM-2 reads a tracked frame's output: its memory bank (num_maskmem frames
        at the evaluation stride, `_prepare_memory_conditioned_features`) and its object pointers
        (max_obj_ptrs_in_encoder frames)."""
        m = self.sam2_model
        ptrs = m.max_obj_ptrs_in_encoder if m.use_obj_ptrs_in_encoder else 0
        return max(m.num_maskmem * m.memory_temporal_stride_for_eval + 2, ptrs)

    @staticmethod
    def release_frames(state, frame_idx: int, start: int, window: int) -> None:
        """Drop the tracked (non-conditioning) outputs that SAM-2 will not read again, so the state's memory
        does not grow with the video: those more than `window` frames from the current one, except the
        `window` frames after the start, which the backward pass reads first. Key frames are kept."""
        for per_obj in state["output_dict_per_obj"].values():
            outs = per_obj["non_cond_frame_outputs"]
            for f in [f for f in outs if abs(f - frame_idx) > window and not start < f <= start + window]:
                del outs[f]

    @staticmethod
    def _seed(m, state, frame_idx: int, obj_id, key) -> None:
        """A decoder output as the object's conditioning output on `frame_idx` (the fields SAM-2's
        `_run_single_frame_inference` stores; the memory is encoded from `pred_masks` when propagation starts)."""
        if key.low_res_logits.shape[0] != 1:
            raise ValueError(f"object {obj_id}, frame {frame_idx}: one decoder output row per (object, frame), "
                             f"got {key.low_res_logits.shape[0]}")
        obj_idx = m._obj_id_to_idx(state, obj_id)
        device = state["device"]
        score = key.object_score_logits.float().to(device)
        state["temp_output_dict_per_obj"][obj_idx]["cond_frame_outputs"][frame_idx] = {
            "maskmem_features": None, "maskmem_pos_enc": None,
            "pred_masks": key.low_res_logits.float().to(state["storage_device"]),
            "obj_ptr": m.object_pointer(key.mask_token.to(device, m.no_obj_ptr.dtype), score),
            "object_score_logits": score,
        }

    def propagate(self, frames, video_size: Tuple[int, int],
                  key_frame_masks: Mapping[int, Mapping[int, torch.Tensor]],
                  key_features: Optional[Mapping[int, Tuple[torch.Tensor, Dict[str, Any]]]] = None,
                  postprocess: str = "direct") -> torch.Tensor:
        """(n_obj, T, H, W) bool masks (H, W = video_size), objects in the order of key_frame_masks.
        postprocess (`image_processing.logits_to_masks`): 'direct' thresholds SAM-2's logits resized to
        video_size; 'sa2va' has SAM-2 resize them to its own input size, then resizes those, sigmoid > 0.5."""
        n_frames = len(frames)
        out = torch.zeros(len(key_frame_masks), n_frames, *video_size, dtype=torch.bool)
        order = {obj_id: i for i, obj_id in enumerate(key_frame_masks)}
        state_size = (self.image_size, self.image_size) if postprocess == "sa2va" else tuple(video_size)
        for f, obj_ids, logits in self.propagate_iter(frames, state_size, key_frame_masks, key_features):
            masks = logits_to_masks(logits, tuple(video_size), postprocess, self.image_size).cpu()
            for j, obj_id in enumerate(obj_ids):
                out[order[obj_id], f] = masks[j]
        return out
