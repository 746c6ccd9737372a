"""SDXL with a name: load any SDXL checkpoint, then generate with a name embedding prepended to the prompt.

One readable path, in diffusers' own terms (shapes for SDXL; K = 8 name tokens, D = 2048, P = 1280):

1. load:      ``load_sdxl`` takes a diffusers repo id, a local diffusers folder, or one ``.safetensors`` file
              (community fine-tunes) through diffusers' own loaders.
2. name:      a name embedding (K, D) from the image encoder (``inference.encoder``), from a real name's text
              (``text_name_embedding``), or a blend of two (``inference.interpolate``).
3. recalibrate: F' = mean + delta * (F - mean), F'' = name_scale * F' / ||F'|| (``inference.recalibrate``).
4. condition: the prompt through both text encoders -> prompt_embeds (B, 77, D); the name goes in after BOS
              (``inference.prepend_name``); the negative prompt and both pooled embeddings (B, P) are untouched.
5. denoise + decode: the pipeline's own loop (with its progress bar) -> PIL images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inference.conditioning import named_prompt_embeds
from inference.recalibrate import recalibrate

if TYPE_CHECKING:
    from PIL import Image

    from laioncele.config import InferenceConfig

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


class ModelNotFoundError(FileNotFoundError):
    """The SDXL model (folder, file or repo id) is not where the user said, or not in the local cache."""


class MissingMeanError(ValueError):
    """Recalibration strength (eq. 4) was asked for without the dataset's mean name embedding."""


def resolve_dtype(device: torch.device, dtype: str | torch.dtype | None) -> torch.dtype:
    """``auto``: float16 on CUDA, float32 elsewhere (half precision is slow or unsupported on CPU)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def _looks_like_path(model: str) -> bool:
    # A repo id is "owner/name"; anything with more parts, a leading ./ ~ or /, or a file suffix is a path.
    return (
        model.startswith((".", "/", "~"))
        or model.count("/") > 1
        or "\\" in model
        or model.endswith(SINGLE_FILE_SUFFIXES)
    )


def load_sdxl(
    model: str | Path,
    *,
    config_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = "auto",
    variant: str | None = None,
    progress_bar: bool = True,
) -> Any:
    """A ``StableDiffusionXLPipeline`` from a repo id, a diffusers folder, or a single-file checkpoint.

    Single files go through ``StableDiffusionXLPipeline.from_single_file``. It needs the diffusers configs that
    describe the checkpoint's architecture: with ``config_dir`` (a local diffusers SDXL folder, e.g. the base
    model's) everything is read locally; without it diffusers looks them up in its hub cache, which works
    offline only when SDXL's configs were cached before.
    """
    from diffusers import StableDiffusionXLPipeline

    torch_device = torch.device(
        device if device is not None else "cuda" if torch.cuda.is_available() else "cpu"
    )
    torch_dtype = resolve_dtype(torch_device, dtype)
    source = str(model)
    path = Path(source).expanduser()
    if path.is_file() or source.endswith(SINGLE_FILE_SUFFIXES):
        if not path.is_file():
            raise ModelNotFoundError(f"model file {path} does not exist")
        if config_dir is not None and not (Path(config_dir) / "model_index.json").is_file():
            raise ModelNotFoundError(
                f"--config-dir {config_dir} is not a diffusers SDXL folder (it has no model_index.json)"
            )
        kwargs: dict[str, Any] = {"torch_dtype": torch_dtype}
        if config_dir is not None:
            kwargs.update(config=str(config_dir), local_files_only=True)
        try:
            pipe = StableDiffusionXLPipeline.from_single_file(str(path), **kwargs)
        except (OSError, ValueError) as error:
            hint = "" if config_dir else " (pass config_dir / --config-dir: a local diffusers SDXL folder)"
            raise ModelNotFoundError(
                f"could not load the single-file checkpoint {path}{hint}: {error}"
            ) from error
    elif path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelNotFoundError(
                f"{path} is not a diffusers pipeline folder (it has no model_index.json)"
            )
        pipe = StableDiffusionXLPipeline.from_pretrained(str(path), dtype=torch_dtype, variant=variant)
    elif _looks_like_path(source):
        raise ModelNotFoundError(f"model {source} does not exist")
    else:
        try:
            pipe = StableDiffusionXLPipeline.from_pretrained(source, dtype=torch_dtype, variant=variant)
        except OSError as error:
            raise ModelNotFoundError(
                f"could not load the SDXL repo {source!r} (not in the local cache when offline?): {error}"
            ) from error
    pipe.set_progress_bar_config(disable=not progress_bar)
    return pipe.to(torch_device)


def load_sdxl_from_config(config: InferenceConfig, progress_bar: bool = True) -> Any:
    return load_sdxl(
        config.model,
        config_dir=config.config_dir,
        device=config.device,
        dtype=config.dtype,
        variant=config.variant,
        progress_bar=progress_bar,
    )


def text_name_embedding(pipe: Any, names: str | Sequence[str], num_tokens: int = 8) -> torch.Tensor:
    """The name embedding of real names as text (paper Fig. 1): (N, K, D) float32 on CPU.

    Same positions and layers as the dataset's targets (``laioncele.targets.encode_names``), computed with this
    pipeline's own tokenizers and text encoders, so a fine-tune's text side is honoured.
    """
    from laioncele.targets.encode import encode_names

    names = [names] if isinstance(names, str) else list(names)
    embeddings, _pooled = encode_names(
        names, pipe.tokenizer, pipe.tokenizer_2, pipe.text_encoder, pipe.text_encoder_2, num_tokens=num_tokens
    )
    return torch.from_numpy(embeddings)


def calibrated(
    name_embeds: torch.Tensor,
    mean: torch.Tensor | None,
    delta: float = 1.0,
    name_scale: float | None = None,
) -> torch.Tensor:
    """``recalibrate`` with a clear error when eq. 4 is asked for but no dataset mean is known."""
    if delta != 1.0 and mean is None:
        raise MissingMeanError("delta != 1 needs the dataset mean name embedding: pass the encoder export")
    reference = mean if mean is not None else torch.zeros(name_embeds.shape[-2:])
    return recalibrate(name_embeds, reference, delta=delta, name_scale=name_scale)


def generate(
    pipe: Any,
    prompt: str,
    name_embeds: torch.Tensor,
    *,
    negative_prompt: str | None = None,
    steps: int = 30,
    guidance_scale: float = 5.0,
    seed: int = 0,
    vary_seed: bool = False,
    height: int | None = None,
    width: int | None = None,
) -> list[Image.Image]:
    """One image per name: ``name_embeds`` (K, D) gives one image, (B, K, D) gives B images.

    Every image uses the same prompt and, by default, the same starting noise (``seed``), so a batch of names
    differs only by identity: what an interpolation strip needs. ``vary_seed`` seeds image i with ``seed + i``
    instead (several samples of one name, matching ``generate_plain``).
    """
    # name: (K, D) -> (B, K, D)
    names = name_embeds if name_embeds.ndim == 3 else name_embeds.unsqueeze(0)
    batch = names.shape[0]
    # condition: prompt_embeds (B, 77, D) with the name after BOS; pooled (B, P); negatives untouched
    embeds = named_prompt_embeds(
        pipe,
        [prompt] * batch,
        names,
        negative_prompt=None if negative_prompt is None else [negative_prompt] * batch,
    )
    # one generator per image: identical starting latents (B, 4, H/8, W/8) unless vary_seed
    generators = [torch.Generator("cpu").manual_seed(seed + i * vary_seed) for i in range(batch)]
    # denoise + decode: diffusers' loop (progress bar included) -> B PIL images
    return pipe(
        **embeds,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        generator=generators,
        output_type="pil",
    ).images


def generation_options(config: InferenceConfig) -> dict[str, Any]:
    """The sampling settings ``generate`` and ``generate_plain`` take, read from the inference config."""
    return {
        "negative_prompt": config.negative_prompt,
        "steps": config.steps,
        "guidance_scale": config.guidance_scale,
        "seed": config.seed,
        "height": config.height,
        "width": config.width,
    }


def generate_plain(
    pipe: Any,
    prompt: str,
    *,
    negative_prompt: str | None = None,
    steps: int = 30,
    guidance_scale: float = 5.0,
    seed: int = 0,
    height: int | None = None,
    width: int | None = None,
    num_images: int = 1,
) -> list[Image.Image]:
    """Plain SDXL with the same settings and noise as ``generate``: the FID reference of the evaluation."""
    return pipe(
        prompt=[prompt] * num_images,
        negative_prompt=None if negative_prompt is None else [negative_prompt] * num_images,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        generator=[torch.Generator("cpu").manual_seed(seed + i) for i in range(num_images)],
        output_type="pil",
    ).images


def image_strip(images: Sequence[Image.Image]) -> Image.Image:
    """Images side by side, left to right (an interpolation strip)."""
    from PIL import Image

    height = max(image.height for image in images)
    strip = Image.new("RGB", (sum(image.width for image in images), height), "white")
    x = 0
    for image in images:
        strip.paste(image.convert("RGB"), (x, 0))
        x += image.width
    return strip
