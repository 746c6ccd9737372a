"""Tiny random-weight SDXL parts for tests: the pipeline is ``inference.tiny`` (a documented helper); the
text-side folder for loader tests lives here."""

from __future__ import annotations

from pathlib import Path

from inference.tiny import (  # noqa: F401  (re-exported for the tests)
    ADDITION_TIME_EMBED_DIM,
    CROSS_ATTENTION_DIM,
    PROJECTION_DIM,
    TEXT_WIDTH_1,
    TEXT_WIDTH_2,
    build_tiny_sdxl_pipeline,
)
from laioncele.targets.encode import build_tiny_text_encoders


def save_tiny_text_side(directory: Path, seed: int = 0) -> Path:
    """Write a diffusers-layout folder (tokenizer, tokenizer_2, text_encoder, text_encoder_2) for loader tests."""
    from laioncele.targets.tokenizers import build_sdxl_tokenizers

    text_encoder, text_encoder_2 = build_tiny_text_encoders(seed)
    tokenizer, tokenizer_2 = build_sdxl_tokenizers()
    text_encoder.save_pretrained(directory / "text_encoder")
    text_encoder_2.save_pretrained(directory / "text_encoder_2")
    tokenizer.save_pretrained(directory / "tokenizer")
    tokenizer_2.save_pretrained(directory / "tokenizer_2")
    return directory
