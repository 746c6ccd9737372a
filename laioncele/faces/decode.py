"""Bytes -> RGB uint8 array for face detection, never crashing on the odd web image.

Every rejected image raises ``ImageRejected`` with a reason string (counted by the stage); every fix-up applied
on the way (grayscale, CMYK, palette, alpha, 16-bit, EXIF rotation, downscale) is reported in ``notes`` so the
stage can count those too. Huge images are decoded at reduced size (JPEG draft mode) and downscaled to
``max_side``; ``scale`` (<= 1) maps detections back: original = detected / scale.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

REJECT_REASONS = ("empty", "decode_error", "bomb", "too_small")


class ImageRejected(Exception):
    """An image the faces stage cannot use; ``reason`` is one of ``REJECT_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class DecodedImage:
    rgb: np.ndarray  # HxWx3 uint8
    scale: float  # decoded size / original size (<= 1)
    original_size: tuple[int, int]  # (width, height) as stored
    notes: list[str] = field(default_factory=list)


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        notes.append("converted_high_bit_depth")
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), mode="L")
        mode = "L"
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        notes.append("converted_palette")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        notes.append("removed_alpha")
        rgba = image.convert("RGBA")
        matte = Image.new(
            "RGBA", rgba.size, (255, 255, 255, 255)
        )  # transparent -> white, as img2dataset does
        return Image.alpha_composite(matte, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("converted_cmyk")
    elif mode in ("L", "1"):
        notes.append("converted_grayscale")
    else:
        notes.append(f"converted_{mode.lower()}")
    return image.convert("RGB")


def decode_image_detailed(
    data: bytes, max_side: int = 1600, min_side: int = 48, max_pixels: int = 89_478_485
) -> DecodedImage:
    """Decode, orient, convert to RGB and downscale; raise ``ImageRejected`` for unusable input."""
    if not data:
        raise ImageRejected("empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: our own pixel cap decides
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected("bomb", f"{width}x{height} pixels")
            if min(width, height) < min_side:
                raise ImageRejected("too_small", f"{width}x{height}")
            if max(width, height) > max_side and image.format == "JPEG":
                image.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 size: far cheaper
            image.load()
            oriented = ImageOps.exif_transpose(image)
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageRejected("decode_error", f"{type(exc).__name__}: {exc}") from None
    notes: list[str] = []
    if oriented is not image:
        notes.append("exif_rotated")
        if oriented.size != image.size:
            width, height = height, width
    image = _to_rgb(oriented, notes)
    longest = max(image.size)
    if longest > max_side:
        factor = max_side / longest
        new_size = (max(1, round(image.size[0] * factor)), max(1, round(image.size[1] * factor)))
        image = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        notes.append("downscaled")
    elif image.size != (width, height):
        notes.append("downscaled")  # JPEG draft alone brought it under max_side
    scale = image.size[0] / width
    return DecodedImage(
        np.ascontiguousarray(np.asarray(image, dtype=np.uint8)), scale, (width, height), notes
    )


def decode_image(data: bytes, max_side: int = 1600, min_side: int = 48) -> tuple[np.ndarray, float]:
    """(RGB uint8 array, scale) for detection; raises ``ImageRejected`` (with ``.reason``) when unusable."""
    decoded = decode_image_detailed(data, max_side=max_side, min_side=min_side)
    return decoded.rgb, decoded.scale
