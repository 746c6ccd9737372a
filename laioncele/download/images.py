"""Turn downloaded bytes into a stored image: validate and normalise with PIL, re-encode with img2dataset.

img2dataset's ``Resizer`` does the resize (longest side to ``image_size``, ratio kept, never upscaled) and
the JPEG/WebP encode, and mattes alpha onto white. It decodes with OpenCV's ``IMREAD_UNCHANGED``, which
ignores EXIF orientation, keeps 16-bit samples (then mattes alpha as if 8-bit), reads only the first GIF
frame when it reads GIFs at all, and fills a truncated JPEG with grey instead of failing. So ours, before it:

- a pixel cap read from the header before any decode (decompression bombs -> ``bomb``);
- a full PIL decode that fails on truncated/corrupt data (-> ``decode_error``), markup sniffing
  (-> ``not_image``);
- first frame of animations, EXIF rotation applied, CMYK/palette/16-bit/float converted to 8-bit RGB(A)/L.

An image that needs none of that (8-bit RGB/L JPEG/PNG/WebP, no rotation) reaches the Resizer as the
original bytes; any other goes as a lossless PNG of the normalised pixels.

The Resizer guards its OpenCV calls by redirecting process-wide stdout/stderr, which is not thread safe, so
``ImageEncoder`` serialises calls to it with a lock.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from img2dataset.resizer import Resizer
from PIL import Image, ImageOps, UnidentifiedImageError

from laioncele.config import DownloadConfig

_PASS_THROUGH_FORMATS = {"JPEG", "PNG", "WEBP"}
_PASS_THROUGH_MODES = {"RGB", "L"}
_EXIF_ORIENTATION = 0x0112


class ImageRejected(Exception):
    """Bytes that cannot become a stored image; ``reason`` is one of the documented failure reasons."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    format: str  # "jpg" or "webp"
    width: int
    height: int
    original_width: int  # after EXIF rotation, before resize
    original_height: int
    sha256: str  # of ``data``


def looks_like_markup(data: bytes) -> bool:
    """HTML/XML error pages served with a 200 (and often an image content type)."""
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<!--", b"{"))


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float grey to 8-bit L by scaling (PIL's own convert clips 16-bit values at 255)."""
    arr = np.asarray(image)
    if image.mode == "F":
        arr = arr * 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else arr
    elif image.mode.startswith("I;16") or float(arr.max(initial=0)) > 255:
        arr = arr / 257.0
    return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8), mode="L")


def normalise(image: Image.Image) -> Image.Image:
    """First frame, EXIF orientation applied, 8-bit RGB, RGBA or L."""
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    if image.getexif().get(_EXIF_ORIENTATION, 1) not in (None, 1):  # exif_transpose copies even when upright
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _to_8bit(image)
    if image.mode in ("RGB", "L", "RGBA"):
        return image
    if image.mode in ("LA", "PA", "La", "RGBa") or "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("RGB")  # CMYK, YCbCr, P, 1, LAB, HSV


def _can_pass_through(image: Image.Image, data: bytes) -> bool:
    """True when OpenCV will decode ``data`` to the same pixels PIL would show: 8-bit, upright, one frame."""
    if image.format not in _PASS_THROUGH_FORMATS or image.mode not in _PASS_THROUGH_MODES:
        return False
    if getattr(image, "n_frames", 1) != 1 or image.getexif().get(_EXIF_ORIENTATION, 1) not in (None, 1):
        return False
    # PIL shows a 16-bit RGB PNG as 8-bit "RGB"; OpenCV's IMREAD_UNCHANGED would keep 16 bits.
    return image.format != "PNG" or (len(data) > 24 and data[24] == 8)


class ImageEncoder:
    """Validate, normalise and re-encode one image at a time (thread safe, reusable)."""

    def __init__(self, config: DownloadConfig | None = None) -> None:
        self.config = config or DownloadConfig()
        self._resizer = Resizer(
            image_size=self.config.image_size,
            resize_mode="keep_ratio_largest",
            resize_only_if_bigger=True,
            encode_quality=self.config.encode_quality,
            encode_format=self.config.encode_format,
        )
        self._lock = threading.Lock()

    def _open_checked(self, data: bytes) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))  # header only
        except Image.DecompressionBombError as err:
            raise ImageRejected("bomb", str(err)) from None
        except UnidentifiedImageError:
            if looks_like_markup(data):
                raise ImageRejected("not_image", "markup where an image was expected") from None
            raise ImageRejected("decode_error", "unrecognised image data") from None
        except Exception as err:  # noqa: BLE001 - any parser failure on hostile bytes is a decode error
            raise ImageRejected("decode_error", f"{type(err).__name__}: {err}") from None
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageRejected("decode_error", f"empty image {width}x{height}")
        if width * height > self.config.max_pixels:
            raise ImageRejected("bomb", f"{width}x{height} exceeds {self.config.max_pixels} pixels")
        return image

    def _prepare(self, data: bytes) -> bytes:
        """Bytes the Resizer can trust: the original ones or a PNG of the normalised pixels."""
        image = self._open_checked(data)
        pass_through = _can_pass_through(image, data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                if pass_through:
                    if image.format == "JPEG":  # the whole stream is still read: truncation still fails
                        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
                    image.load()
                    return data
                normalised = normalise(image)
                normalised.load()
        except Image.DecompressionBombError as err:
            raise ImageRejected("bomb", str(err)) from None
        except Exception as err:  # noqa: BLE001 - truncated or corrupt data, in any decoder
            raise ImageRejected("decode_error", f"{type(err).__name__}: {err}") from None
        buffer = io.BytesIO()
        normalised.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    def encode(self, data: bytes) -> EncodedImage:
        """Re-encode ``data`` or raise ``ImageRejected`` with the failure reason."""
        prepared = self._prepare(data)
        with self._lock:
            out, width, height, orig_w, orig_h, err = self._resizer(io.BytesIO(prepared))
        if err is not None or out is None:
            raise ImageRejected("decode_error", f"resizer: {err}")
        return EncodedImage(
            data=out,
            format=self.config.encode_format,
            width=int(width),
            height=int(height),
            original_width=int(orig_w),
            original_height=int(orig_h),
            sha256=hashlib.sha256(out).hexdigest(),
        )
