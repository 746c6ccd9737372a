"""Check 5, ``inference``: a tiny random SDXL pipeline on the device, text and encoder names, prepend + recalibrate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.gpu_checks.common import NAME_TOKENS, SDXL_DIM, median_seconds


def check_inference(device: torch.device, quick: bool, train_result: dict[str, Any]) -> dict[str, Any]:
    from encoder_training.data import decode_image, face_crop
    from inference.conditioning import named_prompt_embeds
    from inference.encoder import load_name_encoder
    from inference.interpolate import interpolate
    from inference.pipeline import calibrated, generate, resolve_dtype, text_name_embedding
    from inference.prepend import prepend_name
    from inference.recalibrate import recalibrate
    from inference.tiny import build_tiny_sdxl_pipeline
    from laioncele.io.shards import read_shards

    dtype = resolve_dtype(device, "auto")  # float16 on CUDA, as load_sdxl picks
    pipe = build_tiny_sdxl_pipeline(seed=0).to(device, dtype)
    result: dict[str, Any] = {"dtype": str(dtype), "unet_device": str(pipe.unet.device)}
    names = text_name_embedding(pipe, ["Brad Pitt", "Cher"])
    dim = names.shape[-1]
    mean = names.mean(dim=0)
    names = calibrated(names, mean, delta=1.2, name_scale=float(names[0].norm()))
    blend = interpolate(names[0], names[1], 0.5)
    batch = torch.stack([names[0], names[1], blend])
    images = generate(pipe, "a portrait photo", batch, steps=2, height=64, width=64, seed=3)
    arrays = [np.asarray(image, dtype=np.float32) for image in images]
    result["text_names"] = {
        "sizes": [list(image.size) for image in images],
        "distinct": bool(np.abs(arrays[0] - arrays[1]).max() > 0),
    }
    # The same conditioning straight into the pipeline, decoded to float: any NaN/inf shows here.
    embeds = named_prompt_embeds(pipe, ["a portrait photo"] * 3, batch)
    out = pipe(
        **embeds,
        num_inference_steps=2,
        height=64,
        width=64,
        generator=[torch.Generator("cpu").manual_seed(3) for _ in range(3)],
        output_type="np",
    ).images
    result["np_output"] = {"shape": list(out.shape), "finite": bool(np.isfinite(out).all())}
    ok = (
        result["text_names"]["sizes"] == [[64, 64]] * 3
        and result["text_names"]["distinct"]
        and tuple(out.shape) == (3, 64, 64, 3)
        and result["np_output"]["finite"]
    )

    # Encoder-predicted names (the train check's export, on the device) -> recalibrate -> generate.
    if train_result.get("_export_dir"):
        encoder = load_name_encoder(train_result["_export_dir"], device=device)
        dataset = Path(train_result["_dataset"])
        table = read_shards(dataset / "images", columns=["image", "bbox"]).slice(0, 2)
        crops = [
            face_crop(decode_image(d), b, encoder.crop_margin)
            for d, b in zip(table["image"].to_pylist(), table["bbox"].to_pylist(), strict=True)
        ]
        predicted = calibrated(encoder.predict(crops), encoder.mean, delta=1.5)
        images = generate(pipe, "a photo of a person", predicted, steps=2, height=64, width=64)
        result["encoder_names"] = {
            "shape": list(predicted.shape),
            "sizes": [list(image.size) for image in images],
        }
        ok = ok and tuple(predicted.shape) == (2, NAME_TOKENS, dim) and len(images) == 2
    else:
        result["encoder_names"] = "skipped: the train check produced no export"

    # prepend + recalibrate at SDXL width on the device, a batch of prompts.
    b = 4 if quick else 64
    prompt = torch.randn(b, 77, SDXL_DIM, device=device, dtype=dtype)
    name = torch.randn(b, NAME_TOKENS, SDXL_DIM, device=device, dtype=dtype)
    f_mean = torch.randn(NAME_TOKENS, SDXL_DIM, device=device)
    iters = 20 if quick else 200
    prepend_s = median_seconds(lambda: prepend_name(prompt, name), device, warmup=5, iters=iters)
    recal_s = median_seconds(
        lambda: recalibrate(name, f_mean, delta=1.3, name_scale=60.0), device, warmup=5, iters=iters
    )
    both_s = median_seconds(
        lambda: prepend_name(prompt, recalibrate(name, f_mean, delta=1.3, name_scale=60.0)),
        device,
        warmup=5,
        iters=iters,
    )
    combined = prepend_name(prompt, recalibrate(name, f_mean, delta=1.3, name_scale=60.0))
    result["prepend_recalibrate"] = {
        "batch": b,
        "prepend_us": 1e6 * prepend_s,
        "recalibrate_us": 1e6 * recal_s,
        "both_us": 1e6 * both_s,
        "out_dtype": str(combined.dtype),
        "out_device": str(combined.device),
        "finite": bool(torch.isfinite(combined).all()),
    }
    ok = ok and combined.dtype == dtype and combined.device.type == device.type
    ok = ok and result["prepend_recalibrate"]["finite"]
    result["pass"] = bool(ok)
    return result
