"""Inference pipeline: loading SDXL (folder, single file), reference photos -> name embedding, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sdxl_single_file import save_single_file
from tiny_sdxl import TEXT_WIDTH_1, TEXT_WIDTH_2, build_tiny_sdxl_pipeline

from inference.cli import main
from inference.encoder import (
    ExportError,
    NoFaceError,
    UnreadableImageError,
    detect_main_face,
    load_face_backend,
    load_name_encoder,
    predict_name_embedding,
    read_reference,
)
from inference.pipeline import ModelNotFoundError, generate, load_sdxl, text_name_embedding

D = TEXT_WIDTH_1 + TEXT_WIDTH_2
TINY = ["--steps", "2", "--height", "64", "--width", "64", "--quiet"]


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sdxl") / "tiny"
    build_tiny_sdxl_pipeline(seed=0).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A real encoder export (encoder_training's format) with tiny random CLIP towers and a D-wide head."""
    from encoder_training.export import export_model
    from encoder_training.model import NameEncoder, NameHead, build_tiny_towers, load_tower_features

    root = tmp_path_factory.mktemp("encoder")
    sources = build_tiny_towers(root / "towers")
    features = load_tower_features(sources)
    torch.manual_seed(0)
    head = NameHead(features.out_dim, 32, 8, D)
    mean = np.random.default_rng(0).normal(size=(8, D)).astype(np.float32)
    return export_model(
        root / "export",
        NameEncoder(features, head),
        tower_sources=sources,
        save_towers=True,
        normalize_features=True,
        crop_margin=0.4,
        mean_embedding=mean,
        towers_not_meaningful=True,
    )


@pytest.fixture(scope="module")
def faces(face_photos):
    return face_photos


@pytest.fixture(scope="module")
def no_face_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("refs") / "gradient.png"
    ramp = np.linspace(0, 255, 128, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (128, 1))] * 3, axis=-1)).save(path)
    return path


def test_two_step_generation_with_a_prepended_name_from_a_diffusers_folder(sdxl_dir):
    pipe = load_sdxl(sdxl_dir, progress_bar=False)
    names = text_name_embedding(pipe, ["Brad Pitt", "Cher"])
    assert names.shape == (2, 8, D) and names.dtype == torch.float32
    images = generate(pipe, "a portrait photo", names, steps=2, height=64, width=64, seed=3)
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    a, b = (np.asarray(image, dtype=np.float32) for image in images)
    assert np.abs(a - b).max() > 0  # same seed and prompt: only the name differs
    again = generate(pipe, "a portrait photo", names[0], steps=2, height=64, width=64, seed=3)
    np.testing.assert_array_equal(np.asarray(again[0]), np.asarray(images[0]))


def test_single_file_checkpoint_loads_its_own_weights_with_a_local_config_dir(sdxl_dir, tmp_path):
    original = load_sdxl(sdxl_dir, progress_bar=False)
    checkpoint = save_single_file(original, tmp_path / "finetune.safetensors")
    config_dir = (
        tmp_path / "base"
    )  # same architecture, different weights: configs come from here, weights not
    build_tiny_sdxl_pipeline(seed=1).save_pretrained(config_dir)
    pipe = load_sdxl(checkpoint, config_dir=config_dir, progress_bar=False)
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        loaded, expected = getattr(pipe, part).state_dict(), getattr(original, part).state_dict()
        assert loaded.keys() == expected.keys(), part
        assert all(torch.equal(loaded[k], expected[k]) for k in expected), part
    base_unet = load_sdxl(config_dir, progress_bar=False).unet.state_dict()
    assert not all(
        torch.equal(base_unet[k], expected_v) for k, expected_v in original.unet.state_dict().items()
    )
    image = generate(pipe, "a photo", text_name_embedding(pipe, "Cher")[0], steps=2, height=64, width=64)[0]
    assert np.isfinite(np.asarray(image, dtype=np.float32)).all()


def test_missing_models_fail_clearly(tmp_path, sdxl_dir):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_sdxl(tmp_path / "missing.safetensors")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_sdxl(str(tmp_path / "no" / "such" / "dir"))
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load_sdxl(tmp_path)
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load_sdxl(tmp_path / "x.safetensors", config_dir=tmp_path)


def test_reference_photos_give_a_name_embedding(export_dir, faces, no_face_image, tmp_path):
    encoder = load_name_encoder(export_dir)
    assert encoder.mean.shape == (8, D) and encoder.crop_margin == 0.4
    backend = load_face_backend("offline")
    refs = [faces / "img1.jpg", faces / "img2.jpg"]
    each = predict_name_embedding(encoder, refs, backend, average=False)
    assert each.shape == (2, 8, D) and torch.isfinite(each).all()
    torch.testing.assert_close(predict_name_embedding(encoder, refs, backend), each.mean(dim=0))
    # the crop the encoder saw is a square around the face, and the face is still in it
    image = read_reference(refs[0])
    face = detect_main_face(image, backend)
    from inference.encoder import square_face_crop

    crop = square_face_crop(image, face.bbox, 0.4)
    assert crop.width == crop.height and detect_main_face(crop, backend) is not None
    with pytest.raises(NoFaceError, match="gradient.png"):
        predict_name_embedding(encoder, [refs[0], no_face_image], backend)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        predict_name_embedding(encoder, [broken], backend)


def test_bad_exports_fail_clearly(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        load_name_encoder(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ExportError, match="not a readable encoder export"):
        load_name_encoder(tmp_path)


def test_cli_generate_and_interpolate_end_to_end(sdxl_dir, export_dir, faces, tmp_path, capsys):
    out = tmp_path / "out.png"
    argv = ["generate", "--ref", str(faces / "img1.jpg"), "--ref", str(faces / "img2.jpg")]
    argv += ["--prompt", "a photo of a person", "--out", str(out), "--model", str(sdxl_dir)]
    argv += ["--encoder", str(export_dir), "--delta", "1.5", "--name-scale", "20", *TINY]
    assert main(argv) == 0
    assert Image.open(out).size == (64, 64)

    strip = tmp_path / "strip.png"
    argv = [
        "interpolate",
        "--name",
        "Brad Pitt",
        "--name",
        "Cher",
        "--t",
        "0",
        "0.5",
        "1",
        "--method",
        "lerp",
    ]
    argv += ["--prompt", "a photo", "--out", str(strip), "--model", str(sdxl_dir), *TINY]
    assert main(argv) == 0
    frames = np.asarray(Image.open(strip))
    assert frames.shape == (64, 3 * 64, 3)
    assert np.abs(frames[:, :64].astype(int) - frames[:, 128:].astype(int)).max() > 0


def test_cli_errors_are_clear(sdxl_dir, export_dir, no_face_image, tmp_path, capsys):
    common = ["--prompt", "p", "--out", str(tmp_path / "o.png"), *TINY]
    cases = [
        (
            ["generate", "--ref", str(no_face_image), "--model", str(sdxl_dir), "--encoder", str(export_dir)],
            "no face",
        ),
        (["generate", "--ref", str(no_face_image), "--model", str(sdxl_dir)], "--encoder"),
        (["generate", "--name", "Cher", "--model", str(tmp_path / "nope")], "does not exist"),
        (
            ["generate", "--name", "Cher", "--model", str(sdxl_dir), "--encoder", str(tmp_path / "x")],
            "export",
        ),
        (["generate", "--name", "Cher", "--model", str(sdxl_dir), "--delta", "2"], "mean name embedding"),
        (["interpolate", "--name", "Cher", "--model", str(sdxl_dir)], "exactly two"),
    ]
    for argv, message in cases:
        assert main(argv + common) == 2, argv
        assert message in capsys.readouterr().err, argv
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "interpolate" in capsys.readouterr().out
