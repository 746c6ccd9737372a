"""A tiny random-weight SDXL for trying inference offline: no download, builds in about a second on a CPU.

Built from configs the way diffusers' own SDXL tests build theirs. The text encoders keep CLIP's real
49,408-token vocabulary and SDXL's real tokenisation (``laioncele.targets.tokenizers``) but are a few layers of width 32
and 64 (different on purpose, so a mix-up of the two halves shows up in shapes); the UNet and VAE are a few
channels wide. Its images are noise: it exercises the code path (name prepending, recalibration, the CLI), not
the model. ``python -m inference.tiny DIR`` writes it as a diffusers folder that ``--model DIR`` loads; see
docs/inference_offline.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from laioncele.targets.encode import TINY_TEXT_WIDTHS, build_tiny_text_encoders

TEXT_WIDTH_1, TEXT_WIDTH_2 = TINY_TEXT_WIDTHS
PROJECTION_DIM = 16
CROSS_ATTENTION_DIM = TEXT_WIDTH_1 + TEXT_WIDTH_2  # the name/prompt embedding width D (SDXL: 2048)
ADDITION_TIME_EMBED_DIM = 8


def build_tiny_sdxl_pipeline(seed: int = 0) -> Any:
    """A complete ``StableDiffusionXLPipeline`` on CPU with the shipped SDXL tokenizers and tiny random models."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    from laioncele.targets.tokenizers import build_sdxl_tokenizers

    text_encoder, text_encoder_2 = build_tiny_text_encoders(seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(2, 4),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=ADDITION_TIME_EMBED_DIM,
        transformer_layers_per_block=(1, 2),
        # six micro-conditioning numbers (original size, crop, target size) plus the pooled text embedding
        projection_class_embeddings_input_dim=6 * ADDITION_TIME_EMBED_DIM + PROJECTION_DIM,
        cross_attention_dim=CROSS_ATTENTION_DIM,
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=128,
    )
    tokenizer, tokenizer_2 = build_sdxl_tokenizers()
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu")


def save_tiny_sdxl(directory: str | Path, seed: int = 0) -> Path:
    """Write the tiny SDXL as a diffusers folder (``model_index.json`` and its parts) and return its path."""
    directory = Path(directory)
    build_tiny_sdxl_pipeline(seed).save_pretrained(directory)
    return directory


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.tiny",
        description="Write a tiny random-weight SDXL diffusers folder, for `python -m inference generate --model DIR`.",
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"tiny SDXL (random weights, D={CROSS_ATTENTION_DIM}): {save_tiny_sdxl(args.directory, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
