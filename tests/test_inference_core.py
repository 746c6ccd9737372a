"""Inference core: Name Prepending (eq. 1), recalibration (eqs. 4-5), interpolation, and a tiny SDXL run."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_sdxl import TEXT_WIDTH_1, TEXT_WIDTH_2, build_tiny_sdxl_pipeline

from inference import interpolate, named_prompt_embeds, prepend_name, recalibrate
from laioncele.targets.encode import encode_names

D = TEXT_WIDTH_1 + TEXT_WIDTH_2


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_prepend_places_bos_name_then_shifted_prompt():
    prompt = _random(3, 77, D, seed=1)
    name = _random(3, 8, D, seed=2)
    out = prepend_name(prompt, name)
    assert out.shape == prompt.shape and out.dtype == prompt.dtype
    assert torch.equal(out[:, 0], prompt[:, 0])
    assert torch.equal(out[:, 1:9], name)
    assert torch.equal(out[:, 9:], prompt[:, 1:69])


def test_prepend_broadcasts_one_name_and_accepts_numpy():
    prompt = _random(2, 77, D, seed=3)
    name = _random(1, 8, D, seed=4)
    out = prepend_name(prompt, name)
    assert torch.equal(out[0, 1:9], name[0]) and torch.equal(out[1, 1:9], name[0])
    assert torch.equal(prepend_name(prompt, name[0]), out)  # (K, D) without a batch dimension
    out_np = prepend_name(prompt.numpy().astype(np.float16), name.numpy())
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float16
    np.testing.assert_array_equal(out_np[:, 9:], prompt.numpy().astype(np.float16)[:, 1:69])
    np.testing.assert_array_equal(out_np[:, 1:9], np.broadcast_to(name.numpy().astype(np.float16), (2, 8, D)))
    half = prepend_name(prompt.half(), name)  # the name follows the prompt's dtype
    assert half.dtype == torch.float16


@pytest.mark.parametrize(
    ("prompt_shape", "name_shape", "message"),
    [
        ((2, 77, D), (2, 8, D + 1), "width"),
        ((2, 77, D), (3, 8, D), "batch"),
        ((2, 77, D), (2, 77, D), "does not fit"),
        ((77, D), (8, D), "prompt_embeds"),
        ((2, 77, D), (D,), "name_embeds"),
    ],
)
def test_prepend_rejects_bad_shapes(prompt_shape, name_shape, message):
    with pytest.raises(ValueError, match=message):
        prepend_name(torch.zeros(prompt_shape), torch.zeros(name_shape))


def test_recalibrate_identity_strength_and_norms():
    name = _random(2, 8, D, seed=5)
    mean = _random(8, D, seed=6)
    assert torch.equal(recalibrate(name, mean), name)  # delta=1, no name_scale: unchanged
    strengthened = recalibrate(name, mean, delta=1.5)
    torch.testing.assert_close(strengthened, mean + 1.5 * (name - mean))
    torch.testing.assert_close(recalibrate(name, mean, delta=0.0), mean.expand(2, 8, D))

    scaled = recalibrate(name, mean, delta=1.2, name_scale=30.0)
    norms = torch.linalg.vector_norm(scaled, dim=(-2, -1))
    torch.testing.assert_close(norms, torch.full((2,), 30.0))
    direction = mean + 1.2 * (name - mean)
    torch.testing.assert_close(
        scaled / 30.0, direction / torch.linalg.vector_norm(direction, dim=(-2, -1), keepdim=True)
    )

    per_token = recalibrate(name, mean, name_scale=2.0, per_token=True)
    torch.testing.assert_close(torch.linalg.vector_norm(per_token, dim=-1), torch.full((2, 8), 2.0))
    whole_token_norms = torch.linalg.vector_norm(recalibrate(name, mean, name_scale=2.0), dim=-1)
    assert not torch.allclose(whole_token_norms, torch.full((2, 8), 2.0))


def test_recalibrate_keeps_dtype_and_numpy():
    big = (_random(1, 8, 2048, seed=7) * 40).half()  # squared norm overflows float16 if computed in it
    out = recalibrate(big, torch.zeros(8, 2048), name_scale=100.0)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert abs(float(torch.linalg.vector_norm(out.float())) - 100.0) < 0.5
    out_np = recalibrate(big.float().numpy(), np.zeros((8, 2048), np.float32), delta=2.0)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    np.testing.assert_allclose(out_np, 2.0 * big.float().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="mean"):
        recalibrate(big, torch.zeros(7, 2048), delta=2.0)


def test_interpolation_endpoints_and_norms():
    a = _random(2, 8, D, seed=8)
    b = _random(2, 8, D, seed=9)
    b = b * (
        torch.linalg.vector_norm(a, dim=(-2, -1), keepdim=True)
        / torch.linalg.vector_norm(b, dim=(-2, -1), keepdim=True)
    )
    for method in ("slerp", "lerp"):
        assert torch.equal(interpolate(a, b, 0.0, method=method), a)
        assert torch.equal(interpolate(a, b, 1.0, method=method), b)
    torch.testing.assert_close(interpolate(a, b, 0.5, method="lerp"), (a + b) / 2)
    norm_a = torch.linalg.vector_norm(a, dim=(-2, -1))
    for t in (0.25, 0.5, 0.9):
        blend = interpolate(a, b, t)
        torch.testing.assert_close(torch.linalg.vector_norm(blend, dim=(-2, -1)), norm_a)
        assert (torch.linalg.vector_norm(interpolate(a, b, t, method="lerp"), dim=(-2, -1)) < norm_a).all()
    per_token = interpolate(a, a * 2.0 + 0.0, 0.5, per_token=True)  # parallel rows: falls back to lerp
    torch.testing.assert_close(per_token, a * 1.5)
    out_np = interpolate(a.numpy(), b.numpy(), 0.3)
    assert isinstance(out_np, np.ndarray)
    np.testing.assert_allclose(out_np, interpolate(a, b, 0.3).numpy(), rtol=1e-6)
    with pytest.raises(ValueError):
        interpolate(a, b[:, :4], 0.5)
    with pytest.raises(ValueError):
        interpolate(a, b, 0.5, method="cubic")


def test_package_import_does_not_load_diffusers():
    code = "import sys, inference; assert 'diffusers' not in sys.modules, 'diffusers imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_sdxl_pipeline(seed=0)


def test_named_prompt_embeds_touch_only_the_positive_tokens(pipe):
    name_embeds, _ = encode_names(
        ["Taylor Swift"], pipe.tokenizer, pipe.tokenizer_2, pipe.text_encoder, pipe.text_encoder_2
    )
    kwargs = named_prompt_embeds(
        pipe, "a photo of a person", torch.from_numpy(name_embeds), negative_prompt="blurry"
    )
    with torch.no_grad():
        positive, negative, pooled, negative_pooled = pipe.encode_prompt(
            "a photo of a person",
            device="cpu",
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt="blurry",
        )
    assert torch.equal(kwargs["negative_prompt_embeds"], negative)
    assert torch.equal(kwargs["pooled_prompt_embeds"], pooled)
    assert torch.equal(kwargs["negative_pooled_prompt_embeds"], negative_pooled)
    prompt_embeds = kwargs["prompt_embeds"]
    assert torch.equal(prompt_embeds[:, 0], positive[:, 0])
    assert torch.equal(prompt_embeds[:, 1:9], torch.from_numpy(name_embeds))
    assert torch.equal(prompt_embeds[:, 9:], positive[:, 1:69])


def test_two_step_generation_with_a_prepended_name(pipe):
    def generate(**embeds: torch.Tensor) -> np.ndarray:
        return pipe(
            **embeds,
            num_inference_steps=2,
            height=64,
            width=64,
            guidance_scale=5.0,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="np",
        ).images

    name_embeds, _ = encode_names(
        ["Cher"], pipe.tokenizer, pipe.tokenizer_2, pipe.text_encoder, pipe.text_encoder_2
    )
    named = named_prompt_embeds(pipe, "a portrait photo", torch.from_numpy(name_embeds))
    with torch.no_grad():
        positive, negative, pooled, negative_pooled = pipe.encode_prompt(
            "a portrait photo", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True
        )
    plain = {
        "prompt_embeds": positive,
        "pooled_prompt_embeds": pooled,
        "negative_prompt_embeds": negative,
        "negative_pooled_prompt_embeds": negative_pooled,
    }
    image_named = generate(**named)
    image_plain = generate(**plain)
    assert image_named.shape == image_plain.shape == (1, 64, 64, 3)
    assert np.isfinite(image_named).all()
    np.testing.assert_array_equal(generate(**plain), image_plain)  # same seed, same inputs: same image
    assert np.abs(image_named - image_plain).max() > 1e-4
