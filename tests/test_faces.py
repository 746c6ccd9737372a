"""Faces stage: offline (dlib) backend on real photos, insightface code path on generated ONNX graphs,
image decoding of bad input, and the per-batch stage with its drop reasons."""

from __future__ import annotations

import csv
import io
import itertools
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from PIL import Image

from laioncele.config import FacesConfig
from laioncele.faces import (
    FaceStage,
    ImageRejected,
    columns_to_table,
    decode_image,
    decode_image_detailed,
    load_backend,
)
from laioncele.io.schema import FACES, schema_id
from laioncele.testing.onnx_models import (
    KEYPOINTS_IN_CELL,
    arcface_reference,
    draw_face_squares,
    write_buffalo_like,
)


def _insightface_image(name: str) -> Path:
    import insightface

    return Path(insightface.__file__).parent / "data" / "images" / name


def _load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _encode(image: np.ndarray | Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    out = io.BytesIO()
    pil.save(out, format=fmt, **kwargs)
    return out.getvalue()


# ---------------------------------------------------------------- offline backend on real photos


@pytest.fixture(scope="module")
def offline():
    return load_backend("offline")


@pytest.fixture(scope="module")
def labelled(face_photos: Path, offline):
    """Every fixture photo with its labels and the offline backend's faces (one batched analyze call)."""
    rows = list(csv.DictReader((face_photos / "labels.csv").open(encoding="utf-8")))
    faces = offline.analyze([_load_rgb(face_photos / row["file"]) for row in rows])
    return [(row, found) for row, found in zip(rows, faces, strict=True)]


def test_the_shipped_photos_are_the_shared_fixture_photos(face_photos: Path, shared_dir: Path) -> None:
    """The repo's copy stands in for ../shared/fixtures/faces in every photo test, so it must be the same bytes."""
    shared = shared_dir / "fixtures" / "faces"
    files = [row["file"] for row in csv.DictReader((shared / "labels.csv").open(encoding="utf-8"))]
    assert len(files) == 64
    for name in ["labels.csv", *files]:
        assert (face_photos / name).read_bytes() == (shared / name).read_bytes(), name


def test_offline_finds_the_person_in_every_single_person_photo(labelled):
    singles = [(row, faces) for row, faces in labelled if row["n_faces"] == "1"]
    assert len(singles) == 62
    for row, faces in singles:
        assert faces, f"no face found in {row['file']}"
        # Blurred bystanders may be detected too (img54.jpg has one), but far smaller than the subject.
        sizes = sorted((f.size for f in faces), reverse=True)
        assert all(s < 0.5 * sizes[0] for s in sizes[1:]), (row["file"], sizes)


def test_offline_counts_people_in_group_photos(labelled, offline):
    by_file = {row["file"]: faces for row, faces in labelled}
    assert len(by_file["couple.jpg"]) == 2
    # 7 people: 2 cut at the image edge; HOG is a frontal detector and also misses the tilted close-up.
    assert 4 <= len(by_file["selfie-many-people.jpg"]) <= 7
    assert len(offline.detect([_load_rgb(_insightface_image("t1.jpg"))])[0]) == 6


def test_offline_finds_no_face_in_face_free_images(offline):
    import skimage.data

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    smooth = np.repeat(np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None], 300, axis=0).repeat(3, axis=2)
    images = [skimage.data.coffee(), skimage.data.rocket(), skimage.data.chelsea(), noise, smooth]
    assert [len(f) for f in offline.analyze(images)] == [0] * len(images)


def test_offline_embeddings_separate_same_from_different_people(labelled, offline):
    singles = [(row["names"], faces[0].embedding) for row, faces in labelled if row["n_faces"] == "1"]
    outcomes = Counter()
    for (name_a, emb_a), (name_b, emb_b) in itertools.combinations(singles, 2):
        same = name_a == name_b
        predicted = float(emb_a @ emb_b) >= offline.match_threshold
        outcomes[(same, predicted)] += 1
    total = sum(outcomes.values())
    accuracy = (outcomes[(True, True)] + outcomes[(False, False)]) / total
    print(
        f"offline pair accuracy {accuracy:.4f} over {total} pairs at cosine {offline.match_threshold}: {outcomes}"
    )
    assert total == 62 * 61 // 2
    assert accuracy >= 0.97
    assert outcomes[(True, True)] / (outcomes[(True, True)] + outcomes[(True, False)]) >= 0.9


def test_offline_faces_have_the_contract_shape_and_conventions(labelled):
    row, faces = next((r, f) for r, f in labelled if r["file"] == "img1.jpg")
    face = faces[0]
    assert face["bbox"] is face.bbox and face["embedding"] is face.embedding
    assert face.bbox.shape == (4,) and face.landmarks.shape == (5, 2)
    assert face.embedding.dtype == np.float32 and face.embedding.shape == (128,)
    assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5
    assert 0.5 <= face.det_score <= 1.0
    left_eye, right_eye, nose, left_mouth, right_mouth = face.landmarks
    x1, y1, x2, y2 = face.bbox
    assert all(x1 - 5 <= x <= x2 + 5 and y1 - 5 <= y <= y2 + 5 for x, y in face.landmarks)
    assert left_eye[0] < nose[0] < right_eye[0]  # image left/right, as insightface orders them
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    assert left_mouth[0] < right_mouth[0]


def test_offline_batched_descriptors_equal_one_at_a_time(face_photos, offline):
    images = [_load_rgb(face_photos / name) for name in ("couple.jpg", "img3.jpg", "img13.jpg")]
    faces = offline.detect(images)
    batched = offline.embed(images, faces)
    for image, image_faces, batched_faces in zip(images, faces, batched, strict=True):
        single = offline.embed([image], [image_faces])[0]
        for a, b in zip(single, batched_faces, strict=True):
            np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5)


def test_offline_mirror_image_is_the_same_person(labelled, offline):
    by_file = {row["file"]: faces for row, faces in labelled}
    a, b = by_file["img11.jpg"][0].embedding, by_file["img11_reflection.jpg"][0].embedding
    c = by_file["img13.jpg"][0].embedding  # Mark Zuckerberg
    assert float(a @ b) >= offline.match_threshold > float(a @ c)


# ---------------------------------------------------------------- insightface path on generated ONNX graphs


@pytest.fixture(scope="module")
def fake_model_dir(tmp_path_factory) -> Path:
    return write_buffalo_like(tmp_path_factory.mktemp("models") / "buffalo_l")


@pytest.fixture(scope="module")
def insight(fake_model_dir):
    return load_backend("insightface", model_dir=str(fake_model_dir), providers="cpu")


def test_insightface_loads_through_the_model_zoo(insight):
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    assert isinstance(insight.detector, SCRFD) and insight.detector.use_kps
    assert isinstance(insight.recognizer, ArcFaceONNX)
    assert insight.embedding_dim == 512 and insight.crop_size == 112
    assert insight.providers == ["CPUExecutionProvider"]
    assert "det_10g.onnx" in insight.version and "w600k_r50.onnx" in insight.version


def test_insightface_loader_names_a_missing_directory(tmp_path):
    missing = tmp_path / "nowhere" / "buffalo_l"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        load_backend("insightface", model_dir=str(missing))
    assert str(missing) in str(info.value) and "det_10g.onnx" in str(info.value)


def test_insightface_loader_names_a_missing_file(tmp_path):
    directory = write_buffalo_like(tmp_path / "buffalo_l")
    (directory / "w600k_r50.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="is missing w600k_r50.onnx") as info:
        load_backend("insightface", model_dir=str(directory))
    assert str(directory) in str(info.value)


def test_insightface_decodes_the_controlled_detections(insight):
    # 1280 px image -> 640 px detector input (scale 0.5): a 64 px square on a 64 px grid fills one stride-32 cell.
    image = draw_face_squares((1280, 1280), [(128, 64, 64, 255), (640, 640, 64, 230), (64, 1024, 64, 160)])
    faces = insight.analyze([image])[0]
    assert len(faces) == 2  # grey 160 scores (160 - 127.5) / 128 = 0.25, under the 0.5 threshold
    np.testing.assert_allclose(faces[0].bbox, [128, 64, 192, 128], atol=0.5)
    np.testing.assert_allclose(faces[1].bbox, [640, 640, 704, 704], atol=0.5)
    assert faces[0].det_score == pytest.approx((255 - 127.5) / 128, abs=0.01)
    assert faces[1].det_score == pytest.approx((230 - 127.5) / 128, abs=0.01)
    np.testing.assert_allclose(faces[1].landmarks, np.array([640, 640]) + KEYPOINTS_IN_CELL * 64, atol=0.5)
    assert insight.analyze([np.zeros((300, 500, 3), np.uint8)]) == [[]]


def test_insightface_embeddings_are_batched_and_match_the_graph(insight):
    from insightface.utils.face_align import norm_crop

    images = [
        draw_face_squares((1280, 1280), [(128, 64, 64, 255), (640, 640, 64, 230)]),
        draw_face_squares((640, 640), [(320, 96, 32, 250)]),
    ]
    images[1][96:128, 320:336, 0] = 40  # a different crop content: embeddings must differ
    faces = insight.detect(images)
    assert [len(f) for f in faces] == [2, 1]
    batched = insight.embed(images, faces)
    one_at_a_time = [
        insight.embed([image], [[face]])[0][0] for image, fs in zip(images, faces, strict=True) for face in fs
    ]
    flat = [face for fs in batched for face in fs]
    for a, b in zip(flat, one_at_a_time, strict=True):
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5)
        assert abs(float(np.linalg.norm(a.embedding)) - 1.0) < 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        crops = np.stack(
            [norm_crop(im, face.landmarks, 112) for im, fs in zip(images, faces, strict=True) for face in fs]
        )
    expected = arcface_reference(crops)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(np.stack([f.embedding for f in flat]), expected, atol=1e-4)
    assert float(flat[0].embedding @ flat[2].embedding) < 0.99


def test_insightface_chunks_recognition_calls(fake_model_dir):
    backend = load_backend(
        "insightface", model_dir=str(fake_model_dir), providers="cpu", recognition_batch_size=2
    )
    calls = []
    original = backend.recognizer.get_feat
    backend.recognizer.get_feat = lambda imgs: calls.append(len(imgs)) or original(imgs)
    image = draw_face_squares((640, 640), [(32 * i, 64, 32, 255) for i in range(0, 10, 2)])
    faces = backend.analyze([image])
    assert len(faces[0]) == 5 and calls == [2, 2, 1]


# ---------------------------------------------------------------- decoding bad input


def test_decode_rejects_unusable_bytes_by_reason():
    photo = draw_face_squares((200, 300), [(10, 10, 50, 200)])
    jpeg = _encode(photo, "JPEG")
    cases = {
        "empty": b"",
        "decode_error": b"<html>not an image</html>",
        "too_small": _encode(np.zeros((20, 400, 3), np.uint8)),
    }
    for reason, data in cases.items():
        with pytest.raises(ImageRejected) as info:
            decode_image(data, max_side=1600, min_side=48)
        assert info.value.reason == reason
    with pytest.raises(ImageRejected) as info:
        decode_image_detailed(jpeg[: len(jpeg) // 2])
    assert info.value.reason == "decode_error"
    with pytest.raises(ImageRejected) as info:
        decode_image_detailed(jpeg, max_pixels=100 * 100)
    assert info.value.reason == "bomb"


def test_decode_converts_odd_modes_to_rgb():
    grey = (np.arange(100 * 120) % 251).astype(np.uint8).reshape(100, 120)
    rgba = np.dstack([np.full((100, 120, 3), 10, np.uint8), np.zeros((100, 120), np.uint8)])
    cmyk = Image.new("CMYK", (120, 100), (0, 255, 255, 0))  # pure red
    cases = {
        "converted_grayscale": _encode(grey),
        "removed_alpha": _encode(rgba),
        "converted_cmyk": _encode(cmyk, "JPEG", quality=95),
        "converted_palette": _encode(Image.fromarray(grey).convert("P")),
        "converted_high_bit_depth": _encode(Image.fromarray((grey.astype(np.int32) * 257).astype(np.uint16))),
    }
    for note, data in cases.items():
        decoded = decode_image_detailed(data)
        assert note in decoded.notes, (note, decoded.notes)
        assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (100, 120, 3) and decoded.scale == 1.0
    assert (decode_image_detailed(cases["removed_alpha"]).rgb == 255).all()  # transparent: white matte
    red = decode_image_detailed(cases["converted_cmyk"]).rgb.reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    np.testing.assert_allclose(
        decode_image_detailed(cases["converted_high_bit_depth"]).rgb[..., 0], grey, atol=1
    )


def test_decode_downscales_huge_images_and_reports_the_scale():
    huge = np.zeros((3000, 4000, 3), np.uint8)
    for data in (_encode(huge), _encode(huge, "JPEG")):  # plain resize, and JPEG draft decoding
        rgb, scale = decode_image(data, max_side=1000)
        assert rgb.shape == (750, 1000, 3) and scale == pytest.approx(0.25)


# ---------------------------------------------------------------- the per-batch stage


def test_stage_maps_a_batch_to_face_rows_and_counts_every_drop(insight):
    config = FacesConfig(max_faces_per_image=5, min_face_size=40, max_image_side=1600, min_image_side=48)
    stage = FaceStage(config, backend=insight)
    huge = draw_face_squares((4000, 4000), [(800, 1200, 200, 255)])  # decoded at 0.4, detected at 0.16
    batch = {
        "sample_id": np.array(
            ["one", "crowd", "none", "weak", "small", "grey", "broken", "tiny", "huge"], object
        ),
        "image": np.array(
            [
                _encode(draw_face_squares((1280, 1280), [(128, 64, 64, 255)])),
                _encode(draw_face_squares((1280, 1280), [(128 * i, 64, 64, 255) for i in range(6)])),
                _encode(np.zeros((640, 640, 3), np.uint8)),
                _encode(draw_face_squares((1280, 1280), [(128, 64, 64, 160)])),
                _encode(draw_face_squares((640, 640), [(128, 64, 32, 255)])),  # a 32 px face < min_face_size
                _encode(draw_face_squares((1280, 1280), [(640, 640, 64, 255)])[..., 0]),  # greyscale PNG
                b"\xff\xd8\xff\xe0 truncated",
                _encode(np.zeros((30, 30, 3), np.uint8)),
                _encode(huge),
            ],
            object,
        ),
    }
    columns = stage(batch)
    status = dict(zip(columns["sample_id"], columns["status"], strict=True))
    assert status == {
        "one": "ok",
        "crowd": "crowd",
        "none": "no_face",
        "weak": "no_face",
        "small": "faces_filtered",
        "grey": "ok",
        "broken": "decode_error",
        "tiny": "too_small",
        "huge": "ok",
    }
    assert len(columns["sample_id"]) == 9 and all(len(v) == 9 for v in columns.values())
    row = list(columns["sample_id"]).index("huge")
    np.testing.assert_allclose(columns["bbox"][row], [800, 1200, 1000, 1400], atol=1.0)
    assert (columns["image_width"][row], columns["image_height"][row]) == (4000, 4000)
    crowd = list(columns["sample_id"]).index("crowd")
    assert columns["n_faces_detected"][crowd] == 6 and columns["n_faces_kept"][crowd] == 0
    assert columns["face_index"][crowd] == -1 and not columns["embedding"][crowd].any()
    assert stage.counts["ok"] == 3 and stage.counts["faces"] == 3 and stage.counts["decode_error"] == 1
    assert stage.counts["downscaled"] == 1 and stage.counts["converted_grayscale"] == 1
    table = columns_to_table(columns)
    assert table.schema.equals(FACES, check_metadata=True) and schema_id(table.schema) == ("faces", 2)
    ok = table.filter(pc.equal(table["status"], "ok"))
    assert ok.num_rows == 3 and ok["embedding"].null_count == 0 and len(ok["embedding"][0]) == 512
    assert table["embedding"].null_count == 6


def test_stage_with_the_offline_backend_on_real_photo_bytes(face_photos, offline):
    couple = (face_photos / "couple.jpg").read_bytes()
    cmyk = _encode(Image.open(face_photos / "img1.jpg").convert("CMYK"), "JPEG", quality=95)
    stage = FaceStage(FacesConfig(backend="offline"), backend=offline)
    columns = stage(
        {"sample_id": np.array(["couple", "cmyk", "bad"], object), "image": [couple, cmyk, b"xx"]}
    )
    assert list(columns["sample_id"]) == ["couple", "couple", "cmyk", "bad"]
    assert list(columns["status"]) == ["ok", "ok", "ok", "decode_error"]
    assert list(columns["face_index"]) == [0, 1, 0, -1]
    assert columns["embedding"].shape == (4, 128) and set(columns["backend"]) == {"offline"}
    assert stage.counts["converted_cmyk"] == 1


def test_stage_isolates_an_image_that_crashes_the_backend(insight):
    class Flaky:
        """Wraps the real backend; fails on any batch containing a 333-pixel-wide image."""

        name, version, embedding_dim, match_threshold = "flaky", "1", 512, 0.4

        def detect(self, images):
            if any(image.shape[1] == 333 for image in images):
                raise RuntimeError("poisoned")
            return insight.detect(images)

        def embed(self, images, faces):
            return insight.embed(images, faces)

    stage = FaceStage(FacesConfig(), backend=Flaky())
    good = _encode(draw_face_squares((1280, 1280), [(128, 64, 64, 255)]))
    columns = stage(
        {
            "sample_id": np.array(["a", "b"], object),
            "image": [good, _encode(np.zeros((100, 333, 3), np.uint8))],
        }
    )
    assert list(columns["status"]) == ["ok", "backend_error"]


def test_offline_estimated_landmarks_agree_with_the_68_point_model(face_photos, offline):
    """The 5-point model's nose tip and mouth corners are template estimates; check them against measurements."""
    measured_backend = load_backend("offline", landmarks=68)
    images = [_load_rgb(face_photos / name) for name in ("img1.jpg", "img13.jpg", "couple.jpg", "img30.jpg")]
    pairs = [
        (a, b)
        for fa, fb in zip(offline.detect(images), measured_backend.detect(images), strict=True)
        for a, b in zip(fa, fb, strict=True)
    ]
    assert len(pairs) == 5
    for estimated, measured in pairs:
        eye_distance = np.linalg.norm(measured.landmarks[1] - measured.landmarks[0])
        error = np.linalg.norm(estimated.landmarks - measured.landmarks, axis=1) / eye_distance
        assert error[:2].max() < 0.05 and error[2:].max() < 0.35, error
