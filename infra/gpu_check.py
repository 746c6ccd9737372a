"""One-shot GPU acceptance check: the real training and inference code on a CUDA device, with timings.

Runs, on ``cuda`` when there is one (else on CPU, with a note: use ``--quick`` there):

1. ``train``: ``encoder_training.train.train`` on a synthetic dataset in the real shard format with tiny random
   CLIP towers: the feature-cache pass, a few hundred cached-feature steps under bf16 autocast (the loss must
   fall), a short end-to-end run (augmentation, last tower block unfrozen), the export, and the exported encoder
   loaded by ``inference.encoder.load_name_encoder`` on the device (predictions must match the CPU's).
2. ``ddp``: ``train_loop`` under ``torchrun --nproc_per_node=1`` with NCCL (gloo on CPU) and the head wrapped in
   ``DistributedDataParallel``: what Ray Train's ``prepare_model`` does on each worker.
3. ``throughput_head``: cached-feature training samples/s with the production head (768 + 1280 -> 2048 ->
   2048 -> 8 x 2048) through the real loop, bf16 and fp32, against the head's pure-compute ceiling.
4. ``throughput_towers``: images/s of the feature cache's ``FeatureExtractor`` over randomly initialised ViT-L/14-
   and ViT-bigG/14-sized CLIP vision towers (at ``training.feature_precision``'s default and at fp32, with the
   default's cosine to fp32; a whole shard through ``extract`` incl. JPEG decode), per-tower bf16, fp16/bf16
   weights, end-to-end forward+backward with the last two blocks trainable, and the CPU preprocessing rate.
5. ``inference``: a tiny random SDXL pipeline (``inference/tiny.py``) in fp16 on the device: text and
   encoder-predicted name embeddings, recalibration and 2-step name-prepended generation; timing of
   ``prepend_name`` + ``recalibrate`` at SDXL width.

Results go to ``<out>/gpu_check.json`` (rewritten after every check, so a timeout keeps what finished)::

    PYTHONUNBUFFERED=1 python3 infra/gpu_check.py --out /tmp/gpucheck            # on the GPU machine
    .venv/bin/python infra/gpu_check.py --out /tmp/gpucheck --quick               # CPU smoke run of the same
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (also by torchrun): the project's packages live in the root
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SDXL_WIDTHS = (768, 1280)  # projection widths of CLIP ViT-L/14 and OpenCLIP ViT-bigG/14
NAME_TOKENS, SDXL_DIM = 8, 2048
QUICK_TOWERS = {  # the real towers' code path, CPU-sized
    f"tiny-{projection_dim}": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=16,
        image_size=64,
        projection_dim=projection_dim,
    )
    for projection_dim in SDXL_WIDTHS
}


# ---------------------------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> float:
    """Median wall time of ``fn`` after ``warmup`` calls, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def loss_drop(history: list[tuple[int, float]], window: int = 10) -> dict[str, float]:
    losses = [v for _, v in history]
    window = max(1, min(window, len(losses) // 3))
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    return {"loss_first": first, "loss_last": last, "loss_ratio": last / first if first else math.nan}


def training_config(dataset_dir: Path, output_root: Path, *overrides: str):
    from laioncele.config import load_config

    return load_config(
        None,
        [
            f"run.output_root={output_root}",
            f"training.dataset_dir={dataset_dir}",
            "training.trainer=local",
            "training.crop_margin=0.2",
            "training.val_identity_fraction=0.0",
            "training.val_image_fraction=0.2",
            "training.progress_bars=false",
            "training.checkpoint_every=100000",
            *overrides,
        ],
    )


class Checks:
    """Runs named checks, each isolated (an exception fails that check only), and keeps the JSON current."""

    def __init__(self, out_dir: Path, header: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.report: dict[str, Any] = {**header, "checks": {}}

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        print(f"\n=== {name}", flush=True)
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as error:  # one broken check must not hide the others' results
            traceback.print_exc()
            result = {"pass": False, "error": f"{type(error).__name__}: {error}"[:2000]}
        result["seconds"] = round(time.perf_counter() - started, 2)
        self.report["checks"][name] = result
        print(json.dumps({name: result}, indent=1, default=str), flush=True)
        self.write()
        return result

    def write(self) -> None:
        checks = self.report["checks"].values()
        self.report["all_pass"] = bool(checks) and all(c.get("pass") for c in checks)
        path = self.out_dir / "gpu_check.json"
        path.write_text(json.dumps(self.report, indent=1, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- 1. training


def check_train(work: Path, device: torch.device, quick: bool) -> dict[str, Any]:
    from encoder_training.data import decode_image, face_crop
    from encoder_training.synthetic import write_synthetic_dataset
    from encoder_training.train import train
    from inference.encoder import load_name_encoder
    from laioncele.shards import read_shards

    dataset = write_synthetic_dataset(
        work / "dataset_small",
        n_identities=16,
        images_per_identity=24,
        num_tokens=NAME_TOKENS,
        embedding_dim=96,
    )
    epochs = 8 if quick else 60  # ~5 steps per epoch at batch 64
    config = training_config(
        dataset,
        work / "run_cached",
        "training.towers=tiny",
        "training.hidden_dim=256",
        "training.batch_size=64",
        "training.lr=0.003",
        "training.warmup_steps=20",
        f"training.epochs={epochs}",
        "training.eval_every=100",
        f"training.device={device}",
    )
    cached = train(config)
    drop = loss_drop(cached.history)
    steady = cached.step_seconds[5:] or cached.step_seconds
    result: dict[str, Any] = {
        "mode": cached.mode,
        "steps": cached.step,
        "bf16_autocast": config.training.bf16 and device.type == "cuda",
        **drop,
        "median_step_ms": 1000 * float(np.median(steady)),
        "val_image_metrics": cached.metrics.get("val_image", {}),
        "exported": cached.export_dir is not None,
    }
    loss_ok = math.isfinite(drop["loss_last"]) and drop["loss_ratio"] < 0.7

    e2e_config = training_config(
        dataset,
        work / "run_e2e",
        "training.towers=tiny",
        "training.mode=end_to_end",
        "training.augment=true",
        "training.unfreeze_last_blocks=1",
        "training.hidden_dim=256",
        "training.batch_size=32",
        "training.lr=0.001",
        "training.warmup_steps=2",
        "training.epochs=1",
        f"training.max_steps={4 if quick else 12}",
        f"training.device={device}",
    )
    e2e = train(e2e_config)
    e2e_losses = [v for _, v in e2e.history]
    result["end_to_end"] = {
        "steps": e2e.step,
        "loss_first": e2e_losses[0],
        "loss_last": e2e_losses[-1],
        "median_step_ms": 1000 * float(np.median(e2e.step_seconds)),
    }
    e2e_ok = e2e.step > 0 and all(math.isfinite(v) for v in e2e_losses)

    # The export, loaded by the inference side on the device, must predict what it predicts on CPU.
    table = read_shards(dataset / "images", columns=["image", "bbox"]).slice(0, 8)
    crops = [
        face_crop(decode_image(data), bbox, 0.2)
        for data, bbox in zip(table["image"].to_pylist(), table["bbox"].to_pylist(), strict=True)
    ]
    on_device = load_name_encoder(cached.export_dir, device=device)
    on_cpu = load_name_encoder(cached.export_dir, device="cpu")
    predicted = on_device.predict(crops)
    reference = on_cpu.predict(crops)
    max_diff = float((predicted - reference).abs().max())
    scale = float(reference.abs().max())
    result["encoder_predict"] = {
        "shape": list(predicted.shape),
        "model_device": str(next(on_device.model.parameters()).device),
        "max_abs_diff_vs_cpu": max_diff,
        "ref_abs_max": scale,
    }
    predict_ok = (
        tuple(predicted.shape) == (8, NAME_TOKENS, 96)
        and bool(torch.isfinite(predicted).all())
        and max_diff <= 2e-2 * max(scale, 1.0)
    )
    result["pass"] = bool(loss_ok and e2e_ok and predict_ok and cached.export_dir)
    result["_export_dir"] = cached.export_dir
    result["_features_dir"] = str(work / "run_cached" / "encoder" / "features")
    result["_dataset"] = str(dataset)
    return result


# ---------------------------------------------------------------------------------------------- 2. DDP


def check_ddp(work: Path, device: torch.device, quick: bool, train_result: dict[str, Any]) -> dict[str, Any]:
    """``train_loop`` under torchrun, 1 process, the head wrapped in DDP (NCCL on CUDA)."""
    from encoder_training.train import TrainPaths

    if "_features_dir" not in train_result:
        raise RuntimeError("needs the feature cache of the train check, which did not get that far")
    output_dir = work / "run_ddp"
    shutil.copytree(train_result["_features_dir"], output_dir / "features")
    config = training_config(
        Path(train_result["_dataset"]),
        work / "unused",
        "training.towers=tiny",
        "training.hidden_dim=256",
        "training.batch_size=64",
        "training.lr=0.003",
        "training.warmup_steps=10",
        f"training.epochs={6 if quick else 30}",
        "training.eval_every=100",
    )
    spec = {
        "training": config.training.model_dump(mode="json"),
        "paths": {"dataset_dir": train_result["_dataset"], "output_dir": str(output_dir)},
        "sources": [str(work / "run_cached" / "encoder" / "tiny_towers" / f"tower{i}") for i in (0, 1)],
        "mode": "cached",
        "result": str(work / "ddp_result.json"),
    }
    if not TrainPaths(**spec["paths"]).features.is_dir():  # train_loop reads the cache the train check built
        raise RuntimeError("feature cache copy is missing")
    spec_path = work / "ddp_spec.json"
    spec_path.write_text(json.dumps(spec))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=1",
        str(Path(__file__).resolve()),
        "--ddp-worker",
        str(spec_path),
    ]
    print("[ddp] " + " ".join(command), flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, timeout=150, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        return {"pass": False, "error": f"torchrun exited {proc.returncode}", "wall_s": seconds}
    result = json.loads(Path(spec["result"]).read_text())
    result["torchrun_wall_s"] = round(seconds, 2)
    result["pass"] = bool(
        result["wrapped_in_ddp"]
        and result["all_reduce_ok"]
        and result["loss_ratio"] < 0.7
        and result["steps"] > 0
    )
    return result


def ddp_worker(spec_path: str) -> int:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from encoder_training.train import TrainPaths, train_loop
    from laioncele.config import TrainingConfig

    spec = json.loads(Path(spec_path).read_text())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    probe = torch.full((4,), float(rank + 1), device=device)
    dist.all_reduce(probe)
    all_reduce_ok = bool(torch.all(probe == world * (world + 1) / 2))
    wrapped: list[str] = []

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        ddp = DistributedDataParallel(module, device_ids=[local_rank] if use_cuda else None)
        wrapped.append(type(ddp).__name__)
        return ddp

    result = train_loop(
        TrainingConfig.model_validate(spec["training"]),
        TrainPaths(**spec["paths"]),
        spec["sources"],
        spec["mode"],
        rank=rank,
        world_size=world,
        device=device,
        wrap_model=wrap,
    )
    if rank == 0:
        steady = result.step_seconds[5:] or result.step_seconds
        out = {
            "backend": backend,
            "world_size": world,
            "device": str(device),
            "all_reduce_ok": all_reduce_ok,
            "wrapped_in_ddp": wrapped == ["DistributedDataParallel"],
            "steps": result.step,
            **loss_drop(result.history),
            "median_step_ms": 1000 * float(np.median(steady)),
            "exported": result.export_dir is not None,
        }
        Path(spec["result"]).write_text(json.dumps(out))
    dist.destroy_process_group()
    return 0


# ---------------------------------------------------------------------------------------------- 3. head throughput


def check_head_throughput(work: Path, device: torch.device, quick: bool) -> dict[str, Any]:
    """Cached-feature training with the production head through ``train`` (loop overhead included)."""
    from encoder_training.model import NameHead, build_tiny_towers
    from encoder_training.synthetic import write_synthetic_dataset
    from encoder_training.train import train

    n_ids, per_id = (16, 8) if quick else (64, 32)
    dataset = write_synthetic_dataset(
        work / "dataset_sdxl",
        n_identities=n_ids,
        images_per_identity=per_id,
        num_tokens=NAME_TOKENS,
        embedding_dim=SDXL_DIM,
        image_size=48,
        rows_per_shard=512,
    )
    # Tiny towers whose projections are ViT-L/14's and bigG/14's widths: the head is exactly the production one.
    towers = build_tiny_towers(work / "towers_sdxl_width", seed=0, projection_dims=SDXL_WIDTHS)
    hidden = 2048
    runs = (
        [(32, True, 6), (32, False, 6)] if quick else [(256, True, 60), (1024, True, 40), (1024, False, 25)]
    )
    result: dict[str, Any] = {
        "head": f"{sum(SDXL_WIDTHS)} -> {hidden} -> {hidden} -> {NAME_TOKENS}x{SDXL_DIM}"
    }
    for batch, bf16, steps in runs:
        config = training_config(
            dataset,
            work / "run_head",
            f"training.tower_models=[{towers[0]}, {towers[1]}]",
            f"training.hidden_dim={hidden}",
            f"training.batch_size={batch}",
            f"training.bf16={str(bf16).lower()}",
            "training.epochs=1000",
            f"training.max_steps={steps}",
            "training.eval_every=100000",
            "training.resume=false",
            f"training.device={device}",
        )
        run = train(config)
        steady = run.step_seconds[min(5, len(run.step_seconds) - 1) :]
        median = float(np.median(steady))
        key = f"loop_b{batch}_{'bf16' if bf16 and device.type == 'cuda' else 'fp32'}"
        result[key] = {"samples_per_s": batch / median, "median_step_ms": 1000 * median, "steps": run.step}

    # Ceiling: the same head, optimizer and loss with inputs already on the device (no loop, no host copies).
    torch.manual_seed(0)
    head = NameHead(sum(SDXL_WIDTHS), hidden, NAME_TOKENS, SDXL_DIM).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4)
    batch = runs[1][0] if quick else 1024
    x = torch.randn(batch, sum(SDXL_WIDTHS), device=device)
    y = torch.randn(batch, NAME_TOKENS, SDXL_DIM, device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = head(x)
        loss = torch.nn.functional.mse_loss(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        optimizer.step()

    seconds = median_seconds(step, device, warmup=3, iters=5 if quick else 30)
    params = sum(p.numel() for p in head.parameters())
    result["ceiling_on_device"] = {
        "batch": batch,
        "samples_per_s": batch / seconds,
        "median_step_ms": 1000 * seconds,
        "head_params_M": round(params / 1e6, 2),
        "matmul_tflops": 6 * params * batch / seconds / 1e12,
    }
    result["pass"] = all(
        math.isfinite(v["samples_per_s"])
        for k, v in result.items()
        if isinstance(v, dict) and "samples_per_s" in v
    )
    return result


# ---------------------------------------------------------------------------------------------- 4. towers


def check_tower_throughput(work: Path, device: torch.device, quick: bool) -> dict[str, Any]:
    """Feature extraction (``FeatureExtractor``) and end-to-end forward+backward at the real towers' sizes."""
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from encoder_training.features import FeatureExtractor
    from encoder_training.model import SDXL_TOWER_CONFIGS, TowerFeatures, set_trainable_blocks
    from encoder_training.synthetic import write_synthetic_dataset
    from laioncele.config import TrainingConfig
    from laioncele.shards import read_shards

    shapes = QUICK_TOWERS if quick else SDXL_TOWER_CONFIGS
    image_size = next(iter(shapes.values()))["image_size"]
    towers = []
    for name, kwargs in shapes.items():
        torch.manual_seed(0)
        started = time.perf_counter()
        with torch.device(device):
            tower = CLIPVisionModelWithProjection(CLIPVisionConfig(**kwargs)).eval()
        print(f"[towers] built {name} on {device} in {time.perf_counter() - started:.1f}s", flush=True)
        towers.append(tower)
    processors = [
        CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
        for _ in towers
    ]
    features = TowerFeatures(towers, processors, normalize=True)
    result: dict[str, Any] = {
        "towers": {
            name: {"params_M": round(sum(p.numel() for p in t.parameters()) / 1e6, 1)}
            for name, t in zip(shapes, towers, strict=True)
        },
        "attn_implementation": getattr(towers[0].config, "_attn_implementation", None),
        "image_size": image_size,
    }

    # CPU side: PIL crops -> pixel tensors (the image processor), the other half of the feature pass.
    rng = np.random.default_rng(0)
    crops = [Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(64)]
    seconds = median_seconds(lambda: features.pixel_values(crops), torch.device("cpu"), warmup=1, iters=3)
    result["preprocess_cpu_images_per_s_1proc"] = len(crops) / seconds

    def pixels(batch: int) -> list[torch.Tensor]:
        return [torch.randn(batch, 3, image_size, image_size, device=device)] * len(towers)

    iters = 3 if quick else 5
    batch_default = 8 if quick else TrainingConfig().feature_batch_size
    batch_half = 8 if quick else 256
    runs: dict[str, dict[str, float]] = {}
    # The feature cache's own path: FeatureExtractor.embed at the configured (default) precision, then fp32.
    default_precision = TrainingConfig().feature_precision
    extractor = FeatureExtractor(
        [], "", crop_margin=0.2, device=str(device), precision=default_precision, towers=features
    )
    fp32_extractor = FeatureExtractor(
        [], "", crop_margin=0.2, device=str(device), precision="float32", towers=features
    )
    result["feature_precision"] = {"config": default_precision, "resolved": extractor.precision}
    tag = f"extract_{default_precision}_{extractor.precision}"
    for batch in (batch_default, batch_half):
        x = pixels(batch)
        s = median_seconds(lambda x=x: extractor.embed(x), device, warmup=2, iters=iters)
        runs[f"{tag}_b{batch}"] = {"batch": batch, "images_per_s": batch / s}
    x = pixels(batch_default)
    s = median_seconds(lambda: fp32_extractor.embed(x), device, warmup=1, iters=iters)
    runs[f"extract_float32_b{batch_default}"] = {"batch": batch_default, "images_per_s": batch_default / s}
    # The default precision's features against fp32's, at the real towers' sizes (random weights).
    x = pixels(batch_default)
    reduced, reference = extractor.embed(x), fp32_extractor.embed(x)
    cosine = torch.nn.functional.cosine_similarity(reduced, reference, dim=-1)
    result["vs_float32"] = {
        "cosine_min": float(cosine.min()),
        "max_abs_diff": float((reduced - reference).abs().max()),
        "dtype": str(reduced.dtype),
    }
    # The whole per-shard call (JPEG decode, face crop, preprocessing on one CPU core, towers): one actor's rate.
    dataset = write_synthetic_dataset(
        work / "dataset_towers", n_identities=8, images_per_identity=4 if quick else 32, image_size=256
    )
    table = read_shards(dataset / "images")
    out = extractor.extract(table.slice(0, batch_default))  # warm-up
    started = time.perf_counter()
    out = extractor.extract(table)
    sync(device)
    seconds = time.perf_counter() - started
    runs[f"extract_shard_{extractor.precision}_b{extractor.batch_size}_1proc"] = {
        "batch": extractor.batch_size,
        "images": table.num_rows,
        "images_per_s": table.num_rows / seconds,
        "finite": bool(np.isfinite(out["features"]).all() and (out["reason"] == "ok").all()),
    }
    # Per-tower bf16 numbers: which tower dominates.
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for name, tower in zip(shapes, towers, strict=True):
            x1 = torch.randn(batch_half, 3, image_size, image_size, device=device)
            s = median_seconds(lambda t=tower, x1=x1: t(pixel_values=x1), device, warmup=1, iters=iters)
            runs[f"tower_{name}_bf16_autocast"] = {"batch": batch_half, "images_per_s": batch_half / s}

    # End-to-end training step shape: towers frozen but the last 2 blocks, bf16 autocast, forward + backward.
    batch_e2e = 8 if quick else 64
    for tower in towers:
        set_trainable_blocks(tower, 2)
        tower.train()
    x = pixels(batch_e2e)

    def fwd_bwd() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = features(x)
        out.float().pow(2).mean().backward()

    s = median_seconds(fwd_bwd, device, warmup=1, iters=iters)
    runs["e2e_fwd_bwd_bf16_last2_blocks"] = {"batch": batch_e2e, "images_per_s": batch_e2e / s}
    for tower in towers:
        tower.requires_grad_(False)
        tower.zero_grad(set_to_none=True)
        tower.eval()

    # Half-precision weights (what a feature actor could load): fp16 then bf16.
    for dtype in (torch.float16, torch.bfloat16):
        if device.type != "cuda" and dtype == torch.float16:
            continue
        features.to(dtype)
        x = pixels(batch_half)
        with torch.no_grad():
            out = features(x)
            finite = bool(torch.isfinite(out).all())
            s = median_seconds(lambda x=x: features(x), device, warmup=1, iters=iters)
        runs[f"extract_{str(dtype).removeprefix('torch.')}_weights"] = {
            "batch": batch_half,
            "images_per_s": batch_half / s,
            "finite": finite,
        }
    if device.type == "cuda":
        result["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    result["runs"] = runs
    result["pass"] = all(
        math.isfinite(r["images_per_s"]) and r.get("finite", True) for r in runs.values()
    ) and bool(result["vs_float32"]["cosine_min"] > 0.99)
    return result


# ---------------------------------------------------------------------------------------------- 5. inference


def check_inference(device: torch.device, quick: bool, train_result: dict[str, Any]) -> dict[str, Any]:
    from encoder_training.data import decode_image, face_crop
    from inference.conditioning import named_prompt_embeds
    from inference.encoder import load_name_encoder
    from inference.interpolate import interpolate
    from inference.pipeline import calibrated, generate, resolve_dtype, text_name_embedding
    from inference.prepend import prepend_name
    from inference.recalibrate import recalibrate
    from inference.tiny import build_tiny_sdxl_pipeline
    from laioncele.shards import read_shards

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


# ---------------------------------------------------------------------------------------------- main


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0], "torch": torch.__version__}
    for module in ("transformers", "diffusers", "pydantic", "numpy", "pyarrow"):
        try:
            out[module] = __import__(module).__version__
        except Exception:  # report, don't fail: a missing package shows up in the check that needs it
            out[module] = None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.json")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="CPU-sized runs of the same code")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument(
        "--only", default=None, help="comma-separated subset of train,ddp,throughput_head,towers,inference"
    )
    parser.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        return ddp_worker(args.ddp_worker)

    started = time.perf_counter()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    header: dict[str, Any] = {"device": str(device), "quick": args.quick, "versions": versions()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        header["gpu"] = {
            "name": torch.cuda.get_device_name(device),
            "capability": list(torch.cuda.get_device_capability(device)),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "cuda": torch.version.cuda,
        }
    else:
        header["note"] = (
            "no CUDA device: ran on CPU; these are NOT GPU numbers (a smoke run of the code path)"
        )
        print(f"[gpu_check] {header['note']}", flush=True)
    only = set(args.only.split(",")) if args.only else None
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    checks = Checks(out_dir, header)

    def wanted(name: str) -> bool:
        return only is None or name in only

    train_result: dict[str, Any] = {}
    if wanted("train") or wanted("ddp") or wanted("inference"):
        train_result = checks.run("train", lambda: check_train(work, device, args.quick))
    if wanted("ddp"):
        checks.run("ddp", lambda: check_ddp(work, device, args.quick, train_result))
    if wanted("throughput_head"):
        checks.run("throughput_head", lambda: check_head_throughput(work, device, args.quick))
    if wanted("towers"):
        checks.run("throughput_towers", lambda: check_tower_throughput(work, device, args.quick))
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the towers check's weights are gone with its frame
    if wanted("inference"):
        checks.run("inference", lambda: check_inference(device, args.quick, train_result))
    for result in checks.report["checks"].values():  # scratch paths are for the checks, not the record
        for key in [k for k in result if k.startswith("_")]:
            del result[key]
    checks.report["total_seconds"] = round(time.perf_counter() - started, 1)
    checks.write()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n[gpu_check] all_pass={checks.report['all_pass']} -> {out_dir / 'gpu_check.json'}", flush=True)
    return 0 if checks.report["all_pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
