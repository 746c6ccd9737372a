"""Projected cost of the full LaionCele build: ``make cost-model`` (``python -m bench.cost_model``).

Every figure is computed from a named input, and every input says where it comes from: a key of
``bench/results.json`` (measured by ``make bench`` on this project's code), a ratio from the sample run's
manifests (``output/sample/<stage>/manifest.json``, when a sample was built), a constant with its published
source, or a FALLBACK (labelled so) used when the measurement is missing. Prints one table with the assumptions
beside each number and writes it to ``bench/cost_model.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results.json"
OUT = BENCH / "cost_model.json"
SAMPLE_ROOT = REPO / "output" / "sample"
LAION_CAPTIONS_FILE = REPO / "sample" / "laion_captions_9600.parquet"


@dataclass(frozen=True)
class Const:
    value: float
    unit: str
    source: str


# Published figures (the MagicNaming paper, LAION / Re-LAION announcements, img2dataset's README).
CONSTANTS: dict[str, Const] = {
    "relaion5b_pairs": Const(5_526_641_167, "rows", "Re-LAION-5B release (2024): 5,526,641,167 pairs"),
    "laion2b_en_pairs": Const(
        2_320_000_000, "rows", "LAION-5B paper: 2.32B English pairs (names are mined there)"
    ),
    "paper_identities": Const(42_000, "identities", "MagicNaming (arXiv 2412.14902): ~42k identities"),
    "paper_images": Const(810_000, "images", "MagicNaming (arXiv 2412.14902): ~810k images"),
    "img2dataset_images_per_s_per_16_cores": Const(
        1_350, "images/s", "img2dataset README: ~1,350 images/s per 16-core machine"
    ),
    "link_rot_per_month": Const(
        0.01, "fraction/month", "img2dataset / LAION reports: ~1% of URLs die per month"
    ),
    "laion5b_release": Const(2022.25, "year", "LAION-5B released March 2022 (URL age for link rot)"),
    # Labelled assumptions: no measurement exists in this project for these yet.
    "original_image_bytes": Const(
        250_000, "bytes", "ASSUMPTION: mean original web image (JPEG, ~1 MP) fetched"
    ),
    "face_row_bytes": Const(2_300, "bytes", "512 float32 ArcFace embedding (2,048 B) + box, landmarks, ids"),
    "target_row_bytes": Const(65_536, "bytes", "8 x 2048 float32 SDXL name embedding (laioncele.targets)"),
}

# Used only when results.json (or the sample's manifests) lack the measurement; always printed as FALLBACK.
FALLBACKS: dict[str, Const] = {
    "names_captions_per_s_per_core": Const(
        1_000, "captions/s", "FALLBACK: shared/README, spaCy sm NER ~1,000-1,500 captions/s per core"
    ),
    "candidate_fraction": Const(
        0.01,
        "of English rows",
        "FALLBACK ASSUMPTION: 1% of English captions name a person kept as a candidate",
    ),
    "ingest_keep_fraction": Const(
        1.0, "of rows", "FALLBACK: no ingest drops assumed (size filter unmeasured)"
    ),
    "stored_image_bytes": Const(
        60_000, "bytes", "FALLBACK ASSUMPTION: 512 px JPEG q95 as stored by download"
    ),
    "faces_images_per_s_gpu": Const(
        200, "images/s/GPU", "FALLBACK ASSUMPTION: SCRFD-10G@640 + ArcFace-R50, onnxruntime CUDA, one A10G"
    ),
    "faces_images_per_s_cpu_offline": Const(
        6, "images/s", "FALLBACK: shared/README, dlib HOG ~80 ms/image + descriptor ~80 ms/face, one core"
    ),
    "faces_per_image": Const(1.5, "faces/image", "FALLBACK ASSUMPTION: mean kept faces per person photo"),
    "identity_cpu_s_per_face": Const(2e-5, "CPU-s/face", "FALLBACK ASSUMPTION: batched centroid cleaning"),
    "kept_fraction_of_faced_images": Const(
        0.3, "of images", "FALLBACK ASSUMPTION: images kept by identity cleaning"
    ),
    "targets_names_per_s_gpu": Const(500, "names/s/GPU", "FALLBACK ASSUMPTION: two SDXL text encoders, fp16"),
    "training_samples_per_s_gpu": Const(
        400,
        "samples/s/GPU",
        "FALLBACK ASSUMPTION: cached-feature MLP training; CLIP feature pass at 400 img/s",
    ),
    "training_epochs": Const(10, "epochs", "TrainingConfig.epochs default"),
}


@dataclass
class Inputs:
    """Resolved inputs: value plus where it came from, recorded as they are looked up."""

    results: dict[str, Any]
    sample_root: Path
    used: dict[str, dict[str, Any]] = field(default_factory=dict)

    def const(self, name: str) -> float:
        c = CONSTANTS[name]
        self.used[name] = {"value": c.value, "unit": c.unit, "source": c.source}
        return c.value

    def measured(self, name: str, key: str, transform: Any = None, note: str = "") -> float:
        """``results.json`` at dotted ``key`` (optionally transformed), else FALLBACKS[name]."""
        node: Any = self.results
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, int | float) and not isinstance(node, bool) and node > 0:
            value = transform(node) if transform else node
            source = f"bench/results.json:{key}" + (f" ({note})" if note else "")
            stamp = self.results.get(key.split(".")[0], {}).get("measured_at")
            self.used[name] = {
                "value": value,
                "unit": "",
                "source": source + (f", measured {stamp}" if stamp else ""),
            }
            return value
        fb = FALLBACKS[name]
        self.used[name] = {
            "value": fb.value,
            "unit": fb.unit,
            "source": f"{fb.source} (results.json lacks {key})",
        }
        return fb.value

    def sample_ratio(self, name: str, numerator: str, denominator: str) -> float:
        """rows of one sample stage / rows (or rows_in) of another, from the sample's manifests, else FALLBACK."""

        def rows(spec: str) -> float | None:
            stage, _, column = spec.partition(":")
            path = self.sample_root / stage / "manifest.json"
            if not path.is_file():
                return None
            return json.loads(path.read_text()).get(column or "rows")

        num, den = rows(numerator), rows(denominator)
        if num is not None and den:
            value = num / den
            source = f"sample manifests: {numerator} / {denominator} under {self.sample_root}"
            self.used[name] = {"value": value, "unit": "ratio", "source": source}
            return value
        fb = FALLBACKS[name]
        self.used[name] = {"value": fb.value, "unit": fb.unit, "source": f"{fb.source} (no sample manifests)"}
        return fb.value

    def file_bytes_per_row(self, name: str, path: Path) -> float:
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(path).metadata.num_rows
        value = path.stat().st_size / rows
        self.used[name] = {
            "value": value,
            "unit": "bytes/row",
            "source": f"{path.relative_to(REPO)}: {path.stat().st_size} bytes / {rows} real LAION rows (URL, TEXT only: "
            "a lower bound for full metadata)",
        }
        return value


@dataclass
class StageCost:
    stage: str
    rows_in: float
    rows_out: float
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    network_bytes: float = 0.0
    storage_bytes: float = 0.0
    assumptions: list[str] = field(default_factory=list)


def url_availability(inputs: Inputs) -> float:
    """Fraction of URLs still alive at the measurement date, by the monthly link-rot rate."""
    stamp = str(inputs.results.get("ingest", {}).get("measured_at", ""))[:10]
    today = date.fromisoformat(stamp) if stamp else date.today()
    months = (today.year + (today.month - 1) / 12 - inputs.const("laion5b_release")) * 12
    inputs.used["url_age_months"] = {
        "value": round(months, 1),
        "unit": "months",
        "source": f"from laion5b_release to {today.isoformat()} (results.json ingest.measured_at, else today)",
    }
    return (1 - inputs.const("link_rot_per_month")) ** months


def project(inputs: Inputs) -> list[StageCost]:
    hours = 1 / 3600
    stages: list[StageCost] = []

    # ingest: every Re-LAION-5B row is read from object storage, cleaned and sharded.
    pairs = inputs.const("relaion5b_pairs")
    ingest_rate = inputs.measured(
        "ingest_rows_per_s_per_cpu",
        "ingest.stage_ray_2cpu_rows_per_s",
        lambda v: v / 2,
        "Ray stage on 2 CPUs, / 2",
    )
    keep = inputs.sample_ratio("ingest_keep_fraction", "ingest:rows", "ingest:rows_in")
    meta_row = inputs.file_bytes_per_row("metadata_bytes_per_row", LAION_CAPTIONS_FILE)
    ingested = pairs * keep
    stages.append(
        StageCost(
            "ingest",
            pairs,
            ingested,
            cpu_hours=pairs / ingest_rate * hours,
            network_bytes=pairs * meta_row,
            storage_bytes=ingested * meta_row,
            assumptions=[
                f"{pairs:,.0f} rows at {ingest_rate:,.0f} rows/s per CPU",
                f"keep {keep:.3f}; {meta_row:.0f} B/row read and stored",
            ],
        )
    )

    # ner + names + candidates: English captions through the name extractor.
    english = inputs.const("laion2b_en_pairs")
    names_rate = inputs.measured("names_captions_per_s_per_core", "names.stage_captions_per_s_per_core")
    candidate_fraction = inputs.sample_ratio("candidate_fraction", "candidates:rows", "ner:rows_in")
    candidates = english * candidate_fraction
    stages.append(
        StageCost(
            "names",
            english,
            candidates,
            cpu_hours=english / names_rate * hours,
            storage_bytes=candidates * meta_row,
            assumptions=[
                f"{english:,.0f} English captions at {names_rate:,.0f} captions/s per core",
                f"candidate rows = {candidate_fraction:.4f} of captions",
            ],
        )
    )

    # download: candidates' URLs, minus link rot.
    alive = url_availability(inputs)
    per_core = inputs.const("img2dataset_images_per_s_per_16_cores") / 16
    fetched = candidates * alive
    original = inputs.const("original_image_bytes")
    stored = inputs.sample_ratio("stored_image_bytes", "download:bytes", "download:rows")
    stages.append(
        StageCost(
            "download",
            candidates,
            fetched,
            cpu_hours=candidates / per_core * hours,
            network_bytes=fetched * original,
            storage_bytes=fetched * stored,
            assumptions=[
                f"{alive:.3f} of URLs alive ({inputs.used['url_age_months']['value']} months at 1%/month)",
                f"img2dataset rate {per_core:.1f} images/s per core",
                f"{original / 1e3:.0f} kB fetched, {stored / 1e3:.1f} kB stored per image",
            ],
        )
    )

    # faces: detection + embedding on GPU (CPU-hours shown for the offline dlib backend, measured).
    gpu_rate = inputs.measured("faces_images_per_s_gpu", "faces.insightface_gpu.batched.images_per_s")
    cpu_rate = inputs.measured(
        "faces_images_per_s_cpu_offline", "faces.offline.batched.images_per_s", None, "one process"
    )
    faces_per_image = inputs.sample_ratio("faces_per_image", "faces:rows", "faces:rows_in")
    faces = fetched * faces_per_image
    stages.append(
        StageCost(
            "faces",
            fetched,
            faces,
            gpu_hours=fetched / gpu_rate * hours,
            storage_bytes=faces * inputs.const("face_row_bytes"),
            assumptions=[
                f"GPU: {gpu_rate:,.0f} images/s per GPU (CPU-only alternative, offline dlib backend at "
                f"{cpu_rate:.2f} images/s: {fetched / cpu_rate * hours:,.0f} CPU-h, not in the totals)",
                f"{faces_per_image:.2f} faces per image",
            ],
        )
    )

    # identities: cleaning over all faces (one CPU job, faiss).
    identity_rate = inputs.measured(
        "identity_cpu_s_per_face",
        "identity.ours.clean_cpu_s",
        lambda v: v / max(float(inputs.results["identity"].get("n_faces", 0)), 1.0),
        "CPU-s / identity.n_faces",
    )
    kept = inputs.sample_ratio("kept_fraction_of_faced_images", "dataset/images:rows", "faces:rows_in")
    identities_images = fetched * kept
    stages.append(
        StageCost(
            "identities",
            faces,
            identities_images,
            cpu_hours=faces * identity_rate * hours,
            assumptions=[
                f"{identity_rate:.2e} CPU-s per face",
                f"{kept:.3f} of downloaded images kept; forward projection {identities_images:,.0f} vs paper "
                f"{inputs.const('paper_images'):,.0f} images (dataset and training below use the paper's size)",
            ],
        )
    )

    # targets: one 8x2048 embedding per identity (the paper's identity count).
    identities = inputs.const("paper_identities")
    targets_rate = inputs.measured("targets_names_per_s_gpu", "targets.cuda.names_per_s")
    stages.append(
        StageCost(
            "targets",
            identities,
            identities,
            gpu_hours=identities / targets_rate * hours,
            storage_bytes=identities * inputs.const("target_row_bytes"),
            assumptions=[f"{identities:,.0f} identities at {targets_rate:,.0f} names/s per GPU"],
        )
    )

    # dataset + training on the paper's final size.
    images = inputs.const("paper_images")
    train_rate = inputs.measured("training_samples_per_s_gpu", "training.gpu.cached_samples_per_s")
    epochs = FALLBACKS["training_epochs"].value
    inputs.used["training_epochs"] = asdict(FALLBACKS["training_epochs"])
    stages.append(
        StageCost(
            "dataset",
            identities_images,
            images,
            storage_bytes=images * stored,
            assumptions=[
                f"{images:,.0f} images (paper) x {stored / 1e3:.1f} kB; join and copy: CPU negligible"
            ],
        )
    )
    stages.append(
        StageCost(
            "training",
            images,
            images,
            gpu_hours=images * (epochs + 1) / train_rate * hours,
            assumptions=[f"{epochs:.0f} epochs + 1 feature pass at {train_rate:,.0f} samples/s per GPU"],
        )
    )
    return stages


def funnel_source(sample_root: Path) -> str:
    have = [
        s
        for s in ("ingest", "ner", "candidates", "download", "faces", "dataset/images")
        if (sample_root / s / "manifest.json").is_file()
    ]
    if len(have) == 6:
        return f"sample manifests under {sample_root}"
    return f"fallback constants (sample manifests missing under {sample_root}: build the sample for measured ratios)"


def human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}{unit}"
    return f"{n:.1f}{unit}"


def render(stages: list[StageCost], used: dict[str, dict[str, Any]], source: str) -> str:
    lines = [
        f"{'stage':11s} {'rows in':>8s} {'rows out':>8s} {'CPU-h':>9s} {'GPU-h':>8s} {'network':>8s} {'storage':>8s}  assumptions"
    ]
    for s in stages:
        lines.append(
            f"{s.stage:11s} {human(s.rows_in):>8s} {human(s.rows_out):>8s} {s.cpu_hours:>9,.0f} {s.gpu_hours:>8,.1f} "
            f"{human(s.network_bytes, 'B'):>8s} {human(s.storage_bytes, 'B'):>8s}  {'; '.join(s.assumptions)}"
        )
    total = {
        k: sum(getattr(s, k) for s in stages)
        for k in ("cpu_hours", "gpu_hours", "network_bytes", "storage_bytes")
    }
    lines.append(
        f"{'TOTAL':11s} {'':8s} {'':8s} {total['cpu_hours']:>9,.0f} {total['gpu_hours']:>8,.1f} "
        f"{human(total['network_bytes'], 'B'):>8s} {human(total['storage_bytes'], 'B'):>8s}"
    )
    lines += ["", f"funnel ratios: {source}", "inputs:"]
    lines += [
        f"  {name:34s} {v['value']:>14,.6g} {v.get('unit', ''):14s} {v['source']}" for name, v in used.items()
    ]
    return "\n".join(lines)


def build(results_path: Path = RESULTS, sample_root: Path = SAMPLE_ROOT) -> dict[str, Any]:
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    inputs = Inputs(results, sample_root)
    stages = project(inputs)
    return {
        "results_file": str(results_path),
        "funnel_source": funnel_source(sample_root),
        "stages": [asdict(s) for s in stages],
        "totals": {
            k: sum(getattr(s, k) for s in stages)
            for k in ("cpu_hours", "gpu_hours", "network_bytes", "storage_bytes")
        },
        "inputs": inputs.used,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--sample-root", type=Path, default=SAMPLE_ROOT)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    table = build(args.results, args.sample_root)
    stages = [StageCost(**s) for s in table["stages"]]
    print(render(stages, table["inputs"], table["funnel_source"]))
    args.out.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
