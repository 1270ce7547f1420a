"""InternVL2.5 MLLM wrapper: InternViT -> pixel shuffle -> mlp1 -> Qwen2 LLM, built and loaded by key name.

Built from the `config.json` of an InternVL2.5 folder (`model_type internvl_chat`), weights read from
`model.safetensors` (single or sharded) with the original key names
(`vision_model.*`, `mlp1.*`, `language_model.model.*`, `language_model.lm_head.weight`), the
tokenizer from the same folder. No `trust_remote_code`.

Responsibilities:
- grounding tokens (`[SEG]`, `<p>`, `</p>`, `<vp>`, `</vp>`) added exactly once; new embedding rows
  initialised to the mean of the existing rows; with a frozen LLM (LoRA) `train_embeddings` chooses what
  of the input embeddings and LM head trains: 'full' (Sa2VA's recipe: both matrices, every row),
  'grounding_rows' (only the grounding-token rows receive gradient) or 'none';
- LoRA through peft, freeze switches, gradient checkpointing, SDPA (flash-attention 2 when installed and
  on GPU);
- `forward`: LM loss + last-layer hidden states at `[SEG]` input positions;
- `generate`: greedy text + the hidden state of every generated `[SEG]` (read when `[SEG]` is fed back
  as input, i.e. at its input position, as in training).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from ...common import special_tokens as st
from ...common.internvl_config import ConfigError, ImageGeometry, read_internvl_config
from ...common.tokenizer import add_grounding_tokens
from ..checkpoint_io import CheckpointError, check_state_dict, read_safetensors_folder
from .generation import GenerationOutput, greedy_generate
from .intern_vit import InternVisionConfig, InternVisionModel
from .saving import merged_state_dict, save_mllm_folder
from .visual_prompts import ImageTokenMismatchError, region_tokens

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class MLLMOutput:
    loss: Optional[torch.Tensor]        # LM cross-entropy, None without labels
    seg_hidden: torch.Tensor            # (n_seg, d) last-layer states at [SEG] input positions, batch order
    seg_batch_index: torch.Tensor       # (n_seg,) sample index of each row of seg_hidden
    hidden_states: Optional[torch.Tensor] = None  # (B, L, d) when requested


def default_attn_implementation() -> str:
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def pixel_shuffle(x: torch.Tensor, scale: float, version: str = "v2") -> torch.Tensor:
    """(N, H, W, C) -> (N, H*scale, W*scale, C/scale^2); InternVL's space-to-depth ("v2" transposes back)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, int(w * scale), int(c / scale))
    x = x.permute(0, 2, 1, 3).reshape(n, int(w * scale), int(h * scale), int(c / (scale * scale)))
    if version != "v1":
        x = x.permute(0, 2, 1, 3)
    return x.contiguous()


TRAIN_EMBEDDINGS = ("grounding_rows", "full", "none")


class InternVLMLLM(nn.Module):
    """InternVL2.5 (InternViT + mlp1 + Qwen2) with grounding tokens.

    Args:
        model_path: an InternVL2.5 folder (config.json, model.safetensors[.index.json], tokenizer).
        torch_dtype: 'float32' | 'bfloat16' | 'float16' (or a torch dtype).
        load_weights: False builds the architecture with random weights (tests, benchmarks).
        lora: None or a dict of peft LoraConfig arguments (r, lora_alpha, lora_dropout, target_modules).
        freeze_vision / freeze_llm / freeze_projector: requires_grad switches; LoRA implies freeze_llm.
        train_embeddings: 'full' | 'grounding_rows' (default) | 'none': what of the input embeddings and
            the LM head trains when the LLM is frozen (see above).
        gradient_checkpointing: for the vision encoder and the LLM.
        attn_implementation: 'sdpa' | 'flash_attention_2' | 'eager'; None picks flash-attention 2 only
            when it is installed and a GPU is present, else SDPA.
    """

    def __init__(self, model_path: str, torch_dtype: Union[str, torch.dtype] = "float32",
                 load_weights: bool = True, lora: Optional[Dict[str, Any]] = None,
                 freeze_vision: bool = True, freeze_llm: bool = True, freeze_projector: bool = False,
                 train_embeddings: str = "grounding_rows", gradient_checkpointing: bool = False,
                 attn_implementation: Optional[str] = None):
        super().__init__()
        self.model_path = model_path
        try:
            config = read_internvl_config(model_path)
        except ConfigError as e:
            raise CheckpointError(str(e)) from e
        self.tokenizer = self._load_tokenizer(model_path)
        dtype = DTYPES[torch_dtype] if isinstance(torch_dtype, str) else torch_dtype
        if load_weights:
            # Build without allocating or initialising weights, then take the checkpoint's tensors.
            state = read_safetensors_folder(model_path)
            with torch.device("meta"):
                self._build(config, attn_implementation)
            check_state_dict(self, state, source=model_path)
            self.load_state_dict(state, strict=True, assign=True)
            self._rebuild_rotary()
        else:
            self._build(config, attn_implementation)
        self.to(dtype)
        self._resolve_image_token_ids()
        self.add_grounding_tokens()
        self.configure_training(lora=lora, freeze_vision=freeze_vision, freeze_llm=freeze_llm,
                                freeze_projector=freeze_projector,
                                train_embeddings=train_embeddings,
                                gradient_checkpointing=gradient_checkpointing)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Dict[str, Any], attn_implementation: str = "sdpa") -> "InternVLMLLM":
        """Architecture only (no tokenizer, no weights), e.g. under `torch.device('meta')` to count sizes."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._build(config, attn_implementation)
        return self

    def _build(self, config: Dict[str, Any], attn_implementation: Optional[str]) -> None:
        self.config = config
        vcfg = InternVisionConfig.from_dict(config["vision_config"])
        llm_dict = dict(config["llm_config"])
        llm_dict.pop("attn_implementation", None)
        llm_cfg = Qwen2Config(**llm_dict)
        llm_cfg._attn_implementation = attn_implementation or default_attn_implementation()
        self.downsample_ratio = float(config.get("downsample_ratio", 0.5))
        self.ps_version = config.get("ps_version", "v2")
        self.select_layer = int(config.get("select_layer", -1))
        self.geometry = ImageGeometry.from_config(config)  # tiling of images and frames (one place)
        self.tile_size, self.num_image_token = self.geometry.tile_size, self.geometry.num_image_token
        vit_out = vcfg.hidden_size * int(1 / self.downsample_ratio) ** 2
        d = llm_cfg.hidden_size
        self.vision_model = InternVisionModel(vcfg)
        self.mlp1 = nn.Sequential(nn.LayerNorm(vit_out), nn.Linear(vit_out, d), nn.GELU(), nn.Linear(d, d))
        self.language_model: nn.Module = Qwen2ForCausalLM(llm_cfg)
        self.hidden_size = d
        self.grounding_token_ids: List[int] = []

    def _rebuild_rotary(self) -> None:
        """Non-persistent buffers (RoPE inverse frequencies) are not in checkpoints: recompute them."""
        lm = self.language_model
        lm.model.rotary_emb = type(lm.model.rotary_emb)(config=lm.config)
        left = [n for n, t in list(self.named_parameters()) + list(self.named_buffers()) if t.is_meta]
        if left:
            raise CheckpointError(f"{self.model_path}: tensors left uninitialised after loading: {left[:10]}")

    @staticmethod
    def _load_tokenizer(model_path: str):
        try:
            return AutoTokenizer.from_pretrained(model_path, trust_remote_code=False, use_fast=True)
        except Exception as e:
            raise CheckpointError(f"cannot load the tokenizer of {model_path}: {e}") from e

    def _resolve_image_token_ids(self) -> None:
        vocab = self.tokenizer.get_vocab()
        for tok in (st.IMG_START, st.IMG_END, st.IMG_CONTEXT, st.IM_END):
            if tok not in vocab:
                raise CheckpointError(f"tokenizer of {self.model_path} lacks {tok!r}: not an InternVL2.5 tokenizer")
        self.img_context_token_id = vocab[st.IMG_CONTEXT]
        self.img_start_token_id = vocab[st.IMG_START]
        self.img_end_token_id = vocab[st.IMG_END]
        self.eos_token_ids = sorted({vocab[st.IM_END]} | ({self.tokenizer.eos_token_id}
                                                         if self.tokenizer.eos_token_id is not None else set()))

    def add_grounding_tokens(self) -> List[int]:
        """Add [SEG], <p>, </p>, <vp>, </vp> once; returns the ids that were new."""
        new_tokens = add_grounding_tokens(self.tokenizer)
        vocab = self.tokenizer.get_vocab()
        new_ids = [vocab[t] for t in new_tokens]
        self.grounding_token_ids = [vocab[t] for t in st.GROUNDING_TOKENS]
        self.seg_token_id = vocab[st.SEG]
        self.vp_start_id, self.vp_end_id = vocab[st.VP_START], vocab[st.VP_END]
        if new_ids:
            self._init_new_rows(new_ids)
        return new_ids

    @torch.no_grad()
    def _init_new_rows(self, new_ids: Sequence[int]) -> None:
        lm = self.causal_lm
        n_old = lm.get_input_embeddings().weight.shape[0]
        need = max(len(self.tokenizer), max(new_ids) + 1)
        if need > n_old:
            lm.resize_token_embeddings(need, mean_resizing=False)
        keep = torch.ones(n_old, dtype=torch.bool)
        keep[[i for i in new_ids if i < n_old]] = False
        for emb in (lm.get_input_embeddings(), lm.get_output_embeddings()):
            w = emb.weight
            w[list(new_ids)] = w[:n_old][keep].float().mean(0).to(w.dtype)

    def configure_training(self, lora: Optional[Dict[str, Any]] = None, freeze_vision: bool = True,
                           freeze_llm: bool = True, freeze_projector: bool = False,
                           train_embeddings: str = "grounding_rows", gradient_checkpointing: bool = False) -> None:
        if train_embeddings not in TRAIN_EMBEDDINGS:
            raise ValueError(f"mllm.train_embeddings must be one of {TRAIN_EMBEDDINGS}, got {train_embeddings!r}")
        if lora and not freeze_llm:
            raise ValueError("lora with freeze_llm=False: LoRA trains adapters on a frozen LLM; choose one")
        self.vision_model.requires_grad_(not freeze_vision)
        self.mlp1.requires_grad_(not freeze_projector)
        self.language_model.requires_grad_(not freeze_llm)
        if lora:
            from peft import LoraConfig, get_peft_model

            args = dict(lora)
            args.setdefault("target_modules", list(LORA_TARGETS))
            args.setdefault("task_type", "CAUSAL_LM")
            self.language_model = get_peft_model(self.language_model, LoraConfig(**args))
        self._row_hooks = getattr(self, "_row_hooks", [])
        if freeze_llm and train_embeddings == "grounding_rows":
            self._train_token_rows_only(self.grounding_token_ids)
        elif freeze_llm and train_embeddings == "full":  # Sa2VA: get_input/output_embeddings().requires_grad_(True)
            lm = self.causal_lm
            for emb in (lm.get_input_embeddings(), lm.get_output_embeddings()):
                emb.weight.requires_grad_(True)
        if gradient_checkpointing:
            self.vision_model.encoder.gradient_checkpointing = True
            self.causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def _train_token_rows_only(self, ids: Sequence[int]) -> None:
        """Make only rows `ids` of the input embeddings and LM head trainable (gradient mask)."""
        for h in self._row_hooks:
            h.remove()
        self._row_hooks = []
        lm = self.causal_lm
        for emb in {id(e): e for e in (lm.get_input_embeddings(), lm.get_output_embeddings())}.values():
            w = emb.weight
            mask = torch.zeros(w.shape[0], 1, dtype=torch.bool)
            mask[list(ids)] = True
            w.requires_grad_(True)
            self._row_hooks.append(w.register_hook(lambda g, m=mask: g * m.to(g.device, g.dtype)))

    # ------------------------------------------------------------------ saving (saving.py)
    def merged_state_dict(self) -> Dict[str, torch.Tensor]:
        """Weights in the InternVL2.5 checkpoint layout with LoRA merged; the model is not modified."""
        return merged_state_dict(self)

    def save_pretrained(self, folder: str) -> None:
        """An InternVL2.5-format folder that `InternVLMLLM(folder)` loads strictly, LoRA merged."""
        save_mllm_folder(self, folder)

    # ------------------------------------------------------------------ accessors
    @property
    def causal_lm(self) -> Qwen2ForCausalLM:
        """The Qwen2ForCausalLM (inside the peft wrapper when LoRA is on)."""
        lm = self.language_model
        return lm.get_base_model() if hasattr(lm, "get_base_model") else lm

    def get_input_embeddings(self) -> nn.Embedding:
        return self.causal_lm.get_input_embeddings()

    # ------------------------------------------------------------------ vision
    def extract_visual_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) tiles -> (N, num_image_token, d) LLM-space visual tokens."""
        vm = self.vision_model
        x = vm.embeddings(pixel_values.to(vm.embeddings.patch_embedding.weight.dtype))
        layers = vm.encoder.layers
        upto = len(layers) + self.select_layer + 1 if self.select_layer < 0 else self.select_layer + 1
        if upto == len(layers):
            x = vm.encoder(x)
        else:
            for layer in layers[:upto]:
                x = layer(x)
        x = x[:, 1:]  # drop CLS
        n, l, c = x.shape
        side = int(round(l ** 0.5))
        x = pixel_shuffle(x.reshape(n, side, side, c), self.downsample_ratio, self.ps_version)
        return self.mlp1(x.reshape(n, -1, x.shape[-1]))

    def build_inputs_embeds(self, input_ids: torch.Tensor, pixel_values: Optional[torch.Tensor] = None,
                            num_tiles: Optional[Sequence[int]] = None,
                            region_masks: Optional[Sequence[Optional[torch.Tensor]]] = None) -> torch.Tensor:
        """Token embeddings with `<IMG_CONTEXT>` positions replaced by visual tokens, in order.

        `<IMG_CONTEXT>` tokens inside `<vp> ... </vp>` are region (visual prompt) tokens: region k of a
        sample (region_masks[b][k], (H, W) bool) takes the visual tokens of the cells it covers on its
        single tile's token grid (`region_token_cells`), row-major, regions in order.
        A count mismatch is an ImageTokenMismatchError (never silently patched); with `num_tiles`
        (tiles per sample) it names the sample.
        """
        embeds = self.get_input_embeddings()(input_ids)
        ctx = input_ids == self.img_context_token_id
        depth = torch.cumsum((input_ids == self.vp_start_id).int(), 1) - torch.cumsum((input_ids == self.vp_end_id).int(), 1)
        in_region = ctx & (depth > 0)
        ctx = ctx & ~in_region
        n_tiles = 0 if pixel_values is None else int(pixel_values.shape[0])
        if num_tiles is not None:
            if sum(num_tiles) != n_tiles:
                raise ImageTokenMismatchError(f"num_tiles sums to {sum(num_tiles)} but pixel_values has {n_tiles} tiles")
            per_sample = ctx.sum(1).tolist()
            for b, (got, tiles) in enumerate(zip(per_sample, num_tiles)):
                if got != tiles * self.num_image_token:
                    raise ImageTokenMismatchError(
                        f"sample {b}: {got} {st.IMG_CONTEXT} tokens but {tiles} tile(s) x "
                        f"{self.num_image_token} = {tiles * self.num_image_token} visual tokens")
        n_ctx = int(ctx.sum())
        if n_ctx != n_tiles * self.num_image_token:
            raise ImageTokenMismatchError(f"{n_ctx} {st.IMG_CONTEXT} tokens in the batch but {n_tiles} tile(s) x "
                                          f"{self.num_image_token} = {n_tiles * self.num_image_token} visual tokens")
        if n_tiles == 0:
            if bool(in_region.any()):
                raise ImageTokenMismatchError("region tokens without an image")
            return embeds
        vis = self.extract_visual_tokens(pixel_values).to(embeds.dtype)
        embeds = embeds.masked_scatter(ctx.unsqueeze(-1), vis.reshape(-1, vis.shape[-1]))
        if bool(in_region.any()):
            embeds = embeds.masked_scatter(in_region.unsqueeze(-1), region_tokens(vis, in_region, num_tiles,
                                                                                   region_masks, self.num_image_token))
        return embeds

    # ------------------------------------------------------------------ training forward
    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None, pixel_values: Optional[torch.Tensor] = None,
                num_tiles: Optional[Sequence[int]] = None, position_ids: Optional[torch.Tensor] = None,
                region_masks: Optional[Sequence[Optional[torch.Tensor]]] = None,
                return_hidden_states: bool = False) -> MLLMOutput:
        """input_ids/labels (B, L), pixel_values (N_tiles, 3, S, S) of all samples in order.

        The LM loss is computed only where labels != -100 (logits are never materialised for prompt
        tokens, which matters with a 150k vocabulary).
        """
        embeds = self.build_inputs_embeds(input_ids, pixel_values, num_tiles, region_masks)
        h = self.causal_lm.model(inputs_embeds=embeds, attention_mask=attention_mask,
                                 position_ids=position_ids, use_cache=False).last_hidden_state
        loss = None
        if labels is not None:
            target = labels[:, 1:]
            valid = target != -100
            if bool(valid.any()):
                logits = self.causal_lm.lm_head(h[:, :-1][valid]).float()
                loss = F.cross_entropy(logits, target[valid])
            else:
                loss = h.sum() * 0.0
        seg = input_ids == self.seg_token_id
        return MLLMOutput(loss=loss, seg_hidden=h[seg], seg_batch_index=seg.nonzero()[:, 0],
                          hidden_states=h if return_hidden_states else None)

    # ------------------------------------------------------------------ generation
    def generate(self, input_ids: torch.Tensor, pixel_values: Optional[torch.Tensor] = None,
                 max_new_tokens: int = 128, region_masks: Optional[Sequence[torch.Tensor]] = None,
                 stop_words: Sequence[str] = ()) -> GenerationOutput:
        """Greedy decoding of one prompt (input_ids (1, L)) with a KV cache (`generation.greedy_generate`)."""
        return greedy_generate(self, input_ids, pixel_values, max_new_tokens, region_masks, stop_words)
