"""Evaluation (paper Table 1): CLIP-TI, FID against plain SDXL, identity consistency, on tiny models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_sdxl import build_tiny_sdxl_pipeline

from inference.encoder import load_face_backend, read_reference
from inference.eval import (
    ALL,
    PROMPT_SETS,
    ClipImageFeatures,
    Identity,
    clip_ti_scores,
    evaluate,
    fid_metric,
    identity_consistency,
    load_clip,
    measurement_backend,
    reference_face_embeddings,
)
from inference.pipeline import text_name_embedding
from laioncele.config import InferenceConfig


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random CLIP saved with its processor (CLIP's real tokenizer) and loaded back like a real one."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from laioncele.targets.tokenizers import EOS_TOKEN, build_clip_tokenizer

    text = dict(vocab_size=49_408, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                num_hidden_layers=2, max_position_embeddings=77, bos_token_id=49_406, eos_token_id=49_407,
                pad_token_id=49_407)  # fmt: skip
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                  num_hidden_layers=2)  # fmt: skip
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("clip")
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(
        directory
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=build_clip_tokenizer(EOS_TOKEN)).save_pretrained(
        directory
    )
    return directory


@pytest.fixture(scope="module")
def clip(clip_dir):
    return load_clip(str(clip_dir))


def _noise_images(n: int, seed: int, size: int = 48) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def test_prompt_sets_and_measurement_backend():
    assert set(PROMPT_SETS) == {"scene", "action", "style", "emotion"}
    assert all(len(prompts) == 5 for prompts in PROMPT_SETS.values())
    assert measurement_backend("insightface") == "offline" and measurement_backend("offline") == "insightface"


def test_clip_ti_matches_the_clipscore_formula(clip):
    model, processor = clip
    images = _noise_images(3, seed=1)
    prompts = ["a photo of a dog", "an oil painting", "a red car"]
    scores = clip_ti_scores(images, prompts, clip)
    assert scores.shape == (3,) and np.isfinite(scores).all() and ((scores >= 0) & (scores <= 100)).all()
    with torch.no_grad():  # the formula by hand, one image at a time
        for image, prompt, score in zip(images, prompts, scores, strict=True):
            inputs = processor(text=[prompt], images=[image], return_tensors="pt", padding=True)
            out = model(**inputs)
            cosine = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds).item()
            assert score == pytest.approx(100 * max(cosine, 0.0), abs=1e-3)


def test_fid_in_clip_space_is_zero_for_identical_sets_and_grows_with_difference(clip):
    features = ClipImageFeatures(clip)
    assert features(torch.zeros(2, 3, 40, 40, dtype=torch.uint8)).shape == (2, 16)

    def fid(real: list[Image.Image], fake: list[Image.Image]) -> float:
        from inference.eval import _to_uint8_batch

        metric = fid_metric("clip", clip)
        metric.update(_to_uint8_batch(real), real=True)
        metric.update(_to_uint8_batch(fake), real=False)
        return float(metric.compute())

    base = _noise_images(6, seed=2)
    flat = [Image.new("RGB", (48, 48), (40 * i, 200 - 30 * i, 90)) for i in range(6)]
    same, different = fid(base, base), fid(base, flat)
    assert abs(same) < 1e-2 and different > same + 1e-2


def test_identity_consistency_separates_people_on_real_photos(face_photos):
    backend = load_face_backend("offline")  # the measurement backend when the dataset used insightface
    references = reference_face_embeddings(
        [read_reference(face_photos / f"img{i}.jpg") for i in (1, 2)], backend
    )
    same, found_same = identity_consistency([read_reference(face_photos / "img4.jpg")], references, backend)
    other, found_other = identity_consistency(
        [read_reference(face_photos / "img40.jpg")], references, backend
    )
    blank, found_blank = identity_consistency([Image.new("RGB", (96, 96), "gray")], references, backend)
    assert (found_same, found_other, found_blank) == (1, 1, 0) and blank == []
    assert same[0] > backend.match_threshold > other[0]


def test_evaluation_runs_end_to_end_and_emits_the_table(clip, face_photos, tmp_path):
    pipe = build_tiny_sdxl_pipeline(seed=0)
    backend = load_face_backend("offline")
    references = reference_face_embeddings([read_reference(face_photos / "img1.jpg")], backend)
    # the name embedding is a stand-in (a text name); the references make identity consistency run
    identities = [Identity("photo", text_name_embedding(pipe, "Angelina Jolie")[0], references)]
    settings = InferenceConfig(
        model="tiny", steps=2, height=32, width=32, eval_fid_features="clip", eval_images_per_prompt=2
    )
    prompt_sets = {name: prompts[:1] for name, prompts in PROMPT_SETS.items()}
    report = evaluate(pipe, identities, settings, face_backend=backend, clip=clip, prompt_sets=prompt_sets)

    assert [row.prompt_set for row in report.rows] == [*PROMPT_SETS, ALL]
    assert [row.n_images for row in report.rows] == [2, 2, 2, 2, 8]
    for row in report.rows:
        assert 0 <= row.clip_ti <= 100
        assert row.fid is not None and math.isfinite(row.fid) and row.fid >= -1e-6
        assert row.face_detection_rate is not None and 0 <= row.face_detection_rate <= 1
        assert row.id_consistency is None or -1 <= row.id_consistency <= 1
    overall = report.rows[-1]
    assert overall.clip_ti == pytest.approx(np.mean([row.clip_ti for row in report.rows[:-1]]), abs=1e-3)

    markdown = report.to_markdown()
    assert markdown.splitlines()[0].startswith(
        "| prompt set | images | CLIP-TI | FID vs SDXL | ID consistency"
    )
    assert len(markdown.strip().splitlines()) == 2 + 5
    md_path, json_path = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    assert [row["prompt_set"] for row in data["rows"]] == [*PROMPT_SETS, ALL]
    assert data["settings"]["face_measurement_backend"] == backend.name
    assert md_path.read_text() == markdown
    print(markdown)


def test_evaluate_command_writes_the_table(clip_dir, tmp_path, capsys):
    from inference.cli import main

    pipeline_dir = tmp_path / "sdxl"
    build_tiny_sdxl_pipeline(seed=0).save_pretrained(pipeline_dir)
    argv = ["evaluate", "--name", "Cher", "--model", str(pipeline_dir), "--out-dir", str(tmp_path / "eval")]
    argv += ["--clip-model", str(clip_dir), "--fid-features", "clip", "--prompts-per-set", "1"]
    argv += ["--images-per-prompt", "1", "--steps", "2", "--height", "32", "--width", "32", "--quiet"]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "eval" / "eval.json").read_text())["rows"]
    assert [row["n_images"] for row in rows] == [1, 1, 1, 1, 4]
    assert all(row["fid"] is None for row in rows[:-1])  # one image per set: no covariance
    assert math.isfinite(rows[-1]["fid"]) and 0 <= rows[-1]["clip_ti"] <= 100
    assert all(row["id_consistency"] is None and row["face_detection_rate"] is None for row in rows)
    assert "| all | 4 |" in capsys.readouterr().out
    missing_clip = argv[:]
    missing_clip[missing_clip.index("--clip-model") + 1] = str(tmp_path / "no-clip")
    assert main(missing_clip) == 2 and "CLIP model" in capsys.readouterr().err
