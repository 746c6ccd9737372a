"""Write a diffusers SDXL pipeline as one original-format (LDM / "A1111") .safetensors checkpoint, for tests.

Community SDXL fine-tunes ship as such single files. diffusers reads them (``from_single_file``) but has no
writer in the package, so this is the inverse of its loaders' key mapping, in the spirit of diffusers'
``scripts/convert_diffusers_to_original_sdxl.py`` but derived from the model's own config instead of SDXL's
hard-coded block counts, so the tiny test UNet (2 levels) converts as well as the real one (3 levels).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}  # fmt: skip
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}  # fmt: skip


def _resnet_tail(tail: str) -> str:
    head, _, rest = tail.partition(".")
    return f"{_RESNET.get(head, head)}.{rest}"


def unet_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    per_level = config.layers_per_block + 1  # resnets (+ attentions) then one down/upsampler per level
    up_has_attention = ["CrossAttn" in kind for kind in config.up_block_types]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module in _UNET_TOP:
            new = f"{_UNET_TOP[module]}.{param}"
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            i, kind, j, tail = int(m[1]), m[2], int(m[3]), m[4]
            slot = 0 if kind == "resnets" else 1
            tail = _resnet_tail(tail) if kind == "resnets" else tail
            new = f"input_blocks.{per_level * i + j + 1}.{slot}.{tail}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{per_level * (int(m[1]) + 1)}.0.op.{m[2]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            i, kind, j, tail = int(m[1]), m[2], int(m[3]), m[4]
            slot = 0 if kind == "resnets" else 1
            tail = _resnet_tail(tail) if kind == "resnets" else tail
            new = f"output_blocks.{per_level * i + j}.{slot}.{tail}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            i = int(m[1])
            new = f"output_blocks.{per_level * i + per_level - 1}.{2 if up_has_attention[i] else 1}.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet_tail(m[2])}"
        elif key.startswith("mid_block.attentions.0."):
            new = "middle_block.1." + key.removeprefix("mid_block.attentions.0.")
        else:
            raise KeyError(f"no LDM name for UNet parameter {key}")
        out["model.diffusion_model." + new] = value
    return out


_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    levels = len(config.block_out_channels)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(
            r"decoder\.up_blocks\.(\d+)\.resnets\.",
            lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.",
            new,
        )
        new = re.sub(
            r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
            lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.",
            new,
        )
        new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for diffusers_name, ldm_name in _VAE_ATTENTION.items():
                new = new.replace(f"attn_1.{diffusers_name}.", f"attn_1.{ldm_name}.")
            if value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        out["first_stage_model." + new] = value
    return out


def clip_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Text encoder 1 (OpenAI CLIP) keeps transformers' names under ``conditioner.embedders.0.transformer.``."""
    return {
        "conditioner.embedders.0.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
        for k, v in state.items()
        if not k.endswith("position_ids")
    }


def open_clip_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Text encoder 2 in OpenCLIP's layout: fused q/k/v, transposed projection, ``resblocks``."""
    prefix = "conditioner.embedders.1.model."
    top = {"text_model.embeddings.position_embedding.weight": "positional_embedding",
           "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
           "text_model.final_layer_norm.weight": "ln_final.weight",
           "text_model.final_layer_norm.bias": "ln_final.bias"}  # fmt: skip
    out: dict[str, torch.Tensor] = {
        prefix + "text_projection": state["text_projection.weight"].T.contiguous()
    }
    fused: dict[str, list[torch.Tensor | None]] = {}
    for key, value in state.items():
        if key in top:
            out[prefix + top[key]] = value
            continue
        m = re.match(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key)
        if not m:
            continue
        layer, tail = m[1], m[2]
        qkv = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", tail)
        if qkv:
            slot = fused.setdefault(
                f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{qkv[2]}", [None] * 3
            )
            slot["qkv".index(qkv[1])] = value
            continue
        tail = (
            tail.replace("self_attn.", "attn.").replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
        )
        tail = tail.replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj")
        out[f"{prefix}transformer.resblocks.{layer}.{tail}"] = value
    for key, parts in fused.items():
        out[key] = torch.cat(parts)  # type: ignore[arg-type]
    return out


def save_single_file(pipe: Any, path: Path) -> Path:
    """All four trained parts of ``pipe`` in one .safetensors file, named as SDXL's original checkpoints are."""
    from safetensors.torch import save_file

    state = {
        **unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config),
        **vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config),
        **clip_to_ldm(pipe.text_encoder.state_dict()),
        **open_clip_to_ldm(pipe.text_encoder_2.state_dict()),
    }
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
