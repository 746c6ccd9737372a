"""Benchmark identity cleaning at LAION scale: 1M faces over 50k names, vs a per-name NumPy all-pairs loop.

Each measurement runs in a fresh subprocess so its peak RSS is its own (the peak is reset after the corpus is
generated, so it counts what cleaning adds on top of its input). The baseline (one Python iteration per name:
full similarity matrix, densest-face seed, centroid refinement, best face per image) runs on a subset of names
and is extrapolated linearly in the number of names; the output says so.

    .venv/bin/python bench/identity_bench.py --n-faces 1000000 --n-names 50000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FACES_PER_IMAGE = 1.66  # measured on the generator's defaults (multi-face photos, copies, co-star captions)


def _vm_peak_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _reset_peak() -> None:
    with contextlib.suppress(OSError):  # Linux: reset VmHWM so the next peak is cleaning's own
        Path("/proc/self/clear_refs").write_text("5")


def _spec(n_faces: int, n_names: int, dim: int, seed: int):
    from laioncele.synth.embeddings import SyntheticSpec

    return SyntheticSpec(n_names=n_names, dim=dim, mean_images=n_faces / n_names / FACES_PER_IMAGE, seed=seed)


def baseline_clean(faces, min_images: int = 5, edge: float = 0.45, keep: float = 0.5) -> int:
    """The straightforward way: a Python loop over names, all-pairs NumPy similarity per name."""
    samples = faces.column("sample_id").to_pylist()
    names = faces.column("names").to_pylist()
    emb = faces.column("embedding").combine_chunks().flatten().to_numpy().reshape(faces.num_rows, -1)
    by_name: dict[str, list[int]] = {}
    for row, row_names in enumerate(names):
        for name in row_names:
            by_name.setdefault(" ".join(name.casefold().split()), []).append(row)
    kept = 0
    for rows in by_name.values():
        images = np.array([samples[r] for r in rows], dtype=object)
        if len(set(images)) < min_images:
            continue
        x = emb[rows]
        sim = x @ x.T
        adj = (sim >= edge) & (images[:, None] != images[None, :])
        seed = adj.sum(1).argmax()
        members = adj[seed] | (np.arange(len(rows)) == seed)
        for _ in range(3):
            centroid = x[members].mean(0)
            centroid /= np.linalg.norm(centroid)
            s = x @ centroid
            best: dict[str, int] = {}
            for i, img in enumerate(images):
                if s[i] >= keep and (img not in best or s[i] > s[best[img]]):
                    best[img] = i
            members = np.zeros(len(rows), bool)
            members[list(best.values())] = True
        kept += int(members.sum()) if members.sum() >= min_images else 0
    return kept


def _child(args: dict) -> dict:
    from laioncele.identity.clean import clean_identities
    from laioncele.synth.embeddings import evaluate, generate

    n_names, n_faces = args["n_names"], args["n_faces"]
    if args["mode"] == "baseline":  # same distribution, fewer names
        n_names, n_faces = args["baseline_names"], n_faces * args["baseline_names"] // n_names
    t0 = time.perf_counter()
    corpus = generate(_spec(n_faces, n_names, args["dim"], args["seed"]))
    out: dict = {"generate_s": round(time.perf_counter() - t0, 2), "faces": corpus.faces.num_rows}
    out["rss_before_gb"] = round(_vm_peak_gb(), 2)
    _reset_peak()
    faces = corpus.faces
    if args["mode"] == "baseline":
        t0 = time.perf_counter()
        c0 = time.process_time()
        kept = baseline_clean(faces)
        out.update(subset_faces=faces.num_rows, subset_names=n_names, baseline_s=time.perf_counter() - t0)
        out["baseline_cpu_s"] = time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        ours = clean_identities(faces)
        out.update(
            ours_subset_s=time.perf_counter() - t0, baseline_kept=kept, ours_subset_kept=ours.images.num_rows
        )
        out["ours_subset_cpu_s"] = time.process_time() - c0
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        result = clean_identities(faces)
        out["clean_s"] = round(time.perf_counter() - t0, 2)
        out["clean_cpu_s"] = round(
            time.process_time() - c0, 2
        )  # the 2-core box is shared: CPU time is steadier
        out["peak_rss_during_clean_gb"] = round(_vm_peak_gb(), 2)
        out["stats"] = result.stats
        out["drops"] = result.drops
        out["name_drops"] = result.name_drops
        if args["quality"]:
            out["quality"] = evaluate(result, corpus)
    return out


def _run_child(**args) -> dict:
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(args)]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(
    n_faces: int = 1_000_000,
    n_names: int = 50_000,
    dim: int = 512,
    baseline_names: int = 2_000,
    quality: bool = True,
    seed: int = 0,
) -> dict:
    """Time and peak memory of ``clean_identities`` on a synthetic corpus, and of the per-name baseline."""
    ours = _run_child(mode="ours", n_faces=n_faces, n_names=n_names, dim=dim, seed=seed, quality=quality)
    base = _run_child(
        mode="baseline", n_faces=n_faces, n_names=n_names, dim=dim, seed=seed, baseline_names=baseline_names
    )
    scale = n_names / base["subset_names"]
    extrapolated = base["baseline_s"] * scale
    extrapolated_cpu = base["baseline_cpu_s"] * scale
    return {
        "n_faces": ours["faces"],
        "n_names": n_names,
        "dim": dim,
        "ours": ours,
        "baseline": {
            **base,
            "extrapolated": True,
            "note": f"per-name loop run on {base['subset_names']} of {n_names} names, scaled linearly by names",
            "baseline_full_estimate_s": round(extrapolated, 1),
            "baseline_full_estimate_cpu_s": round(extrapolated_cpu, 1),
        },
        "speedup_vs_baseline": round(extrapolated / max(ours["clean_s"], 1e-9), 1),
        "speedup_vs_baseline_cpu": round(extrapolated_cpu / max(ours["clean_cpu_s"], 1e-9), 1),
        "subset_speedup_cpu": round(base["baseline_cpu_s"] / max(base["ours_subset_cpu_s"], 1e-9), 1),
        "machine_cpus": len(__import__("os").sched_getaffinity(0)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n-faces", type=int, default=1_000_000)
    parser.add_argument("--n-names", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--baseline-names", type=int, default=2_000)
    parser.add_argument("--no-quality", action="store_true")
    ns = parser.parse_args()
    if ns.child:
        print(json.dumps(_child(json.loads(ns.child)), default=str))
    else:
        report = run(ns.n_faces, ns.n_names, ns.dim, ns.baseline_names, quality=not ns.no_quality)
        print(json.dumps(report, indent=2, default=str))
