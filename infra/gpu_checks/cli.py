"""One-shot GPU acceptance check: the real training and inference code on a CUDA device, with timings.

The command line of ``infra/gpu_check.py`` (which lists the checks): runs them in order, each isolated, and
writes ``<out>/gpu_check.json``; ``--ddp-worker`` is what each ``torchrun`` process of the ddp check runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from infra.gpu_checks.common import Checks
from infra.gpu_checks.ddp import check_ddp, ddp_worker
from infra.gpu_checks.head import check_head_throughput
from infra.gpu_checks.inference import check_inference
from infra.gpu_checks.towers import check_tower_throughput
from infra.gpu_checks.training import check_train

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
