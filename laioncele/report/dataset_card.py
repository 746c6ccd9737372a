"""The dataset card: ``output/<run>/dataset/README.md`` in the Hugging Face card format, written at build time.

A YAML header (licence, tags, size category, a gate prompt) for the Hub, then what a user must know before
training on LAION-derived face data: where the rows came from and how many each stage dropped (from the stage
manifests alone, no shard is scanned), how many identities and images, how images spread over identities,
which opt-out list the build honoured and which removals were applied since, the licence and consent caveats,
how to ask for removal, and the config hash and code version that reproduce the build.

No identity name or caption is written into the card: the card is public text and carries no one's name.
The opt-out list is given by its size and a fingerprint for the same reason (naming the people who asked to be
left out would single them out).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import laioncele
from laioncele.config import Config
from laioncele.download.fetch import normalise_name
from laioncele.io.shards import MANIFEST_NAME, ShardError, atomic_write_bytes, load_manifest, read_shards
from laioncele.io.storage import ObjectPath, as_path

CARD_NAME = "README.md"
REMOVALS_FILE = "removals.json"  # written by laioncele.removal
# Stages in run order (as laioncele.report.stats.STAGES); the dataset's own parts follow them in the funnel.
FUNNEL_STAGES = ("ingest", "ner", "names", "candidates", "download", "faces", "identities", "targets")
PARTS = ("images", "identities")
# The sections that decide the dataset's content: same hash, same dataset (resources and paths excluded).
DATASET_SECTIONS = ("input", "ingest", "names", "download", "faces", "identity", "targets")
IMAGE_BINS = (1, 5, 10, 20, 50, 100, 200, 500)
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def dataset_parts(root: str | Path | ObjectPath) -> dict[str, dict[str, Any]]:
    """Per part of ``dataset/`` (images, identities): rows, bytes, shards, the sub-manifest's sha256, schema."""
    root = as_path(root)
    parts = {}
    for name in PARTS:
        manifest = load_manifest(root / name)
        parts[name] = {
            "rows": manifest["rows"],
            "bytes": manifest["bytes"],
            "shards": len(manifest["shards"]),
            "manifest_sha256": hashlib.sha256((root / name / MANIFEST_NAME).read_bytes()).hexdigest(),
            "schema": manifest["schema"],
        }
    return parts


def build_config_hash(config: Config) -> str:
    return config.section_hash(*DATASET_SECTIONS)


def opt_out_fingerprint(names: list[str]) -> str:
    """sha256 of the normalised, sorted, de-duplicated list: compare lists without publishing them."""
    keys = sorted({k for k in (normalise_name(n) for n in names) if k})
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def code_version() -> str:
    """The package version and, in a git checkout, the commit (``+dirty`` with uncommitted tracked changes)."""
    version = f"laioncele {laioncele.__version__}"
    repo = Path(laioncele.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} (git {commit}{'+dirty' if dirty else ''})"


def funnel_rows(run_dir: Path | ObjectPath) -> list[dict[str, Any]]:
    """One entry per finished stage present: rows in, rows out, drops by reason (largest first)."""
    rows = []
    for name, path in [(s, run_dir / s) for s in FUNNEL_STAGES] + [
        (f"dataset/{p}", run_dir / "dataset" / p) for p in PARTS
    ]:
        try:
            manifest = load_manifest(path)
        except ShardError:
            continue
        drops = sorted(
            ((k, int(v)) for k, v in (manifest.get("drops") or {}).items()), key=lambda kv: (-kv[1], kv[0])
        )
        rows.append(
            {
                "stage": name,
                "rows_in": int(manifest["rows_in"]),
                "rows": int(manifest["rows"]),
                "drops": drops,
            }
        )
    return rows


def image_distribution(counts: np.ndarray) -> list[tuple[str, int]]:
    """(bin label, identities) for images-per-identity bins; empty bins included so the shape reads at a glance."""
    edges = [*IMAGE_BINS, np.inf]
    out = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        label = f"{low}+" if high == np.inf else (f"{low}" if high - low == 1 else f"{low}-{int(high) - 1}")
        out.append((label, int(((counts >= low) & (counts < high)).sum())))
    return out


def _size_category(n: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>1M")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def removals_log(dataset_dir: str | Path | ObjectPath) -> list[dict[str, Any]]:
    """What ``remove`` applied since the build, oldest first (``dataset/removals.json``; [] when none)."""
    path = as_path(dataset_dir) / REMOVALS_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def render_card(dataset_dir: str | Path | ObjectPath, config: Config) -> str:
    """The card's text, from the built dataset's manifests, identities table and removal log."""
    dataset_dir = as_path(dataset_dir)
    removals = removals_log(dataset_dir)
    parts = dataset_parts(dataset_dir)
    n_images, n_identities = parts["images"]["rows"], parts["identities"]["rows"]
    counts = np.asarray(
        read_shards(dataset_dir / "identities", columns=["n_images"]).column(0).to_pylist(), np.int64
    )
    header = {
        "pretty_name": f"LaionCele ({config.run.name})",
        "license": "other",
        "license_name": "laion-derived-no-licence-granted",
        "license_details": "Images remain the property of their copyright holders; no licence is granted. "
        "See 'Licence and consent'.",
        "task_categories": ["text-to-image", "image-feature-extraction"],
        "tags": ["faces", "identities", "laion", "sdxl", "name-embeddings", "personal-data"],
        "size_categories": [_size_category(n_images)],
        "extra_gated_prompt": "This dataset holds photos of identifiable people collected from the web without "
        "their consent. Agree to use it for research only, to honour removal requests, and not to identify, "
        "track or impersonate anyone.",
    }
    funnel = funnel_rows(dataset_dir.parent)
    funnel_table = _table(
        ["stage", "rows in", "rows out", "dropped (top reasons)"],
        [
            [r["stage"], r["rows_in"], r["rows"], ", ".join(f"{k} {v}" for k, v in r["drops"][:4]) or "-"]
            for r in funnel
        ],
    )
    quantiles = (
        "min {:d}, median {:.0f}, 90th percentile {:.0f}, max {:d}".format(
            int(counts.min()), *np.percentile(counts, [50, 90]), int(counts.max())
        )
        if counts.size
        else "no identities"
    )
    opt_out = config.names.opt_out_names
    removal_rows = [
        [r.get("at", "?"), r.get("names", 0), r.get("identities", 0), r.get("images", 0)] for r in removals
    ]
    removal_text = (
        _table(["applied at (UTC)", "names requested", "identities removed", "images removed"], removal_rows)
        if removal_rows
        else "No removal has been applied since the build."
    )
    body = f"""# LaionCele: {config.run.name}

Photos of named people from LAION-5B metadata, each with the face that matches the name's identity and the
SDXL text-encoder embedding of the name as a training target (MagicNaming, arXiv 2412.14902).

## Contents

- **{n_identities}** identities, **{n_images}** images (one kept face per image).
- `images/`: Arrow shards (`dataset_images`): image bytes as downloaded, caption, source URL, face box and
  landmarks, face embedding, face-to-identity similarity.
- `identities/`: Arrow shards (`dataset_identities`): name, aliases, image count, the 8-token name-embedding
  target, face centroid.
- `manifest.json`: counts and checksums of both parts; trainer-ready exports (WebDataset, Hugging Face
  `datasets`, parquet) are written by `python -m pipelines export` (docs/exports.md).

## Funnel

Each stage's rows in and out, from its manifest (stages count their own unit: faces count faces,
identities count identities).

{funnel_table}

## Images per identity

{quantiles}.

{_table(["images", "identities"], [list(b) for b in image_distribution(counts)])}

## Opt-out list used

The build left out every person on its opt-out list (`names.opt_out_names`) before any image was
requested: **{len(opt_out)}** names, list fingerprint `sha256:{opt_out_fingerprint(opt_out)}` (the names are
not published here). Removals applied after the build:

{removal_text}

## Licence and consent

- LAION distributes URLs and captions, not images, and grants no rights to the images: every image remains
  the property of its copyright holder. This dataset stores image bytes fetched from those URLs; redistributing
  them may need the holders' permission in your jurisdiction.
- The people shown did not consent to being in this dataset. Names come from web captions and faces were
  matched automatically: some images will show someone other than the named person.
- Face images and names are personal data (biometric data where used to identify someone, e.g. under the
  GDPR). Use it for research on name-conditioned generation only; do not use it to identify, track or
  impersonate people, or to generate deceptive or sexual images of real people.
- Sites that opted out with `X-Robots-Tag: noai`/`noimageai` headers were skipped at download time; LAION's
  own safety and watermark scores are not a guarantee that content is safe.

## Removal requests

Anyone shown in or named by this dataset can ask to be removed: {config.export.removal_contact}. Give the name
(and any alias) you are listed under; no proof of identity beyond what is needed to find the rows is asked.
Maintainers apply a request with

    python -m pipelines remove --names FILE

which drops the named identities (and every image whose caption names them) from the dataset and every
export, rewrites the manifests and this card, and leaves every other shard byte-identical. Add the names to
`names.opt_out_names` so a rebuild never collects them again.

## Provenance

- Config hash (sections {", ".join(DATASET_SECTIONS)}): `{build_config_hash(config)}`
- Code version: `{code_version()}`
- Text encoder: `{config.targets.source}`; face backend: `{config.faces.backend}`
"""
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def write_card(dataset_dir: str | Path | ObjectPath, config: Config) -> Path | ObjectPath:
    path = as_path(dataset_dir) / CARD_NAME
    atomic_write_bytes(path, render_card(dataset_dir, config).encode())
    return path
