"""Tiny ONNX graphs with the exact signatures of insightface's buffalo_l models, for tests and benchmarks.

They let insightface's real loading (``model_zoo.get_model`` routing), pre-processing, SCRFD decoding and NMS,
alignment and batched ArcFace calls run without the real weights.

Fake SCRFD (det_10g signature: input ``1x3xHxW`` dynamic; 9 outputs = scores, bboxes, keypoints for strides
8, 16, 32; 2 anchors per location): the stride-32 score of a cell is the cell's mean normalised intensity
clipped to [0, 1], so a white 32x32 cell of the detector input scores ~1 and a black one 0; strides 8 and 16
score 0. Box distances are constant ``(0, 0, 1, 1)`` strides, so a detection's box is exactly its cell, and the
five keypoints sit at ``KEYPOINTS_IN_CELL`` (fractions of the cell). A bright square aligned to one stride-32
cell of the detector's input therefore decodes to that square's box, with a score set by its grey level:
``score = (grey - 127.5) / 128``.

Fake ArcFace (w600k_r50 signature: input ``Nx3x112x112``, one output ``Nx512``): 4x4 average pooling, flatten,
then a fixed random linear projection, so embeddings are deterministic, differ between crops and can be
recomputed in NumPy (``arcface_reference``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
STRIDES = (8, 16, 32)
DETECTING_STRIDE = 32
ANCHORS = 2
KEYPOINTS_IN_CELL = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], dtype=np.float32)
ARCFACE_POOL = 4
ARCFACE_DIM = 512


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name=name)


def scrfd_model() -> onnx.ModelProto:
    nodes = [helper.make_node("ReduceMean", ["input.1"], ["grey"], axes=[1], keepdims=1, name="grey")]
    inits = [
        _const("zero", np.array(0.0, np.float32)),
        _const("one", np.array(1.0, np.float32)),
        _const("flat_shape", np.array([-1, 1], np.int64)),
        _const("box_distance", np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)),
        _const("kps_distance", KEYPOINTS_IN_CELL.reshape(1, 10)),
    ]
    outputs = {"score": [], "bbox": [], "kps": []}
    for s in STRIDES:
        gain = 1.0 if s == DETECTING_STRIDE else 0.0
        inits.append(_const(f"gain_{s}", np.array(gain, np.float32)))
        nodes += [
            helper.make_node("AveragePool", ["grey"], [f"pool_{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Mul", [f"pool_{s}", f"gain_{s}"], [f"gained_{s}"]),
            helper.make_node("Clip", [f"gained_{s}", "zero", "one"], [f"clipped_{s}"]),
            helper.make_node("Transpose", [f"clipped_{s}"], [f"hwc_{s}"], perm=[0, 2, 3, 1]),
            helper.make_node("Concat", [f"hwc_{s}"] * ANCHORS, [f"anchors_{s}"], axis=3),
            helper.make_node("Reshape", [f"anchors_{s}", "flat_shape"], [f"score_{s}"]),
            helper.make_node("Mul", [f"score_{s}", "zero"], [f"zeros_{s}"]),
            helper.make_node("Add", [f"zeros_{s}", "box_distance"], [f"bbox_{s}"]),
            helper.make_node("Add", [f"zeros_{s}", "kps_distance"], [f"kps_{s}"]),
        ]
        for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            outputs[kind].append(
                helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [f"n{s}", width])
            )
    graph = helper.make_graph(
        nodes,
        "fake_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])],
        outputs["score"] + outputs["bbox"] + outputs["kps"],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def arcface_projection(seed: int = 0) -> np.ndarray:
    features = 3 * (112 // ARCFACE_POOL) ** 2
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((features, ARCFACE_DIM)) / np.sqrt(features)).astype(np.float32)


def arcface_model(seed: int = 0) -> onnx.ModelProto:
    nodes = [
        helper.make_node(
            "AveragePool",
            ["input.1"],
            ["pooled"],
            kernel_shape=[ARCFACE_POOL] * 2,
            strides=[ARCFACE_POOL] * 2,
            name="pool",
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["flat", "projection"], ["embedding"], name="project"),
    ]
    graph = helper.make_graph(
        nodes,
        "fake_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", ARCFACE_DIM])],
        initializer=[_const("projection", arcface_projection(seed))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def arcface_reference(crops_rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the fake ArcFace computes for RGB uint8 crops (N, 112, 112, 3), before L2 normalisation."""
    blob = (crops_rgb.astype(np.float32) - 127.5) / 127.5
    n, size = blob.shape[0], 112 // ARCFACE_POOL
    pooled = blob.reshape(n, size, ARCFACE_POOL, size, ARCFACE_POOL, 3).mean(axis=(2, 4))
    return pooled.transpose(0, 3, 1, 2).reshape(n, -1) @ arcface_projection(seed)


def write_buffalo_like(directory: Path, seed: int = 0) -> Path:
    """A model directory laid out like buffalo_l (det_10g.onnx + w600k_r50.onnx) holding the fake graphs."""
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(scrfd_model(), str(directory / "det_10g.onnx"))
    onnx.save(arcface_model(seed), str(directory / "w600k_r50.onnx"))
    return directory


def draw_face_squares(size: tuple[int, int], squares: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A black RGB image (height, width) with grey squares (x, y, side, grey) the fake SCRFD detects."""
    image = np.zeros((size[0], size[1], 3), dtype=np.uint8)
    for x, y, side, grey in squares:
        image[y : y + side, x : x + side] = grey
    return image
