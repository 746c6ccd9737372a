"""Opt-out after release: drop named people from a built dataset and from every export of it.

``python -m pipelines remove --names FILE`` (one name per line, ``#`` comments) matches names as the download
stage's opt-out does (``laioncele.download.OptOutMatcher``: case-, accent- and punctuation-insensitive):

- an identity goes when its name, an alias or its id matches ("removed_on_request"), with all its images;
- an image of someone else goes too when its caption names a listed person ("caption_names_removed_person"):
  a couple photo captioned with both names shows the person who asked; the identity it belonged to keeps its
  other images, with ``n_images`` lowered (an identity left with none goes as "no_images_left").

Only the files that held a removed row are rewritten, under a new name (``-rmN``), in the order that keeps a
crash harmless: new files, then commit records and manifests (switched atomically), then the replaced files are
deleted. Every other shard and export file keeps its name and bytes. Exports are cleaned before the dataset,
so re-running after a crash finds the same rows in the dataset and finishes the job. Each removal is logged
in ``dataset/removals.json`` (counts and a fingerprint of the list, not the names) and the card is rewritten.

F_mean (``mean_name_embedding.npy``) is recomputed over the remaining identities. Stage directories upstream
of ``dataset/`` (download, faces, ...) are build intermediates, not released, and
are not touched: add the names to ``names.opt_out_names`` so a rebuild never collects them again.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from laioncele.config import Config
from laioncele.download.fetch import OptOutMatcher
from laioncele.export import exports_registry, remove_from_export, revision_name
from laioncele.io.shards import (
    MANIFEST_NAME,
    UNITS_DIR,
    atomic_write_bytes,
    atomic_write_json,
    iter_shards,
    load_manifest,
    read_shard,
    read_shards,
)
from laioncele.io.storage import ObjectPath, as_path
from laioncele.report.dataset_card import (
    REMOVALS_FILE,
    dataset_parts,
    opt_out_fingerprint,
    removals_log,
    write_card,
)
from laioncele.targets.encode import embeddings_from_table, mean_name_embedding

MEAN_FILE = "mean_name_embedding.npy"  # as pipelines.stages.targets.MEAN_FILE

REASON_IDENTITY = "removed_on_request"
REASON_CAPTION = "caption_names_removed_person"
REASON_EMPTY = "no_images_left"


def read_names(path: str | Path) -> list[str]:
    """Names from a removal-request file: one per line, blank lines and ``#`` comments ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@dataclass
class RemovalPlan:
    identity_ids: dict[str, str] = field(default_factory=dict)  # identity_id -> reason
    sample_ids: dict[str, str] = field(default_factory=dict)  # sample_id -> reason
    images_lost: Counter[str] = field(default_factory=Counter)  # kept identity -> images removed by caption


def plan_removal(dataset_dir: str | Path | ObjectPath, names: list[str]) -> RemovalPlan:
    """Which identities and images of the dataset the names cover (nothing is written)."""
    dataset_dir = as_path(dataset_dir)
    matcher = OptOutMatcher(names)
    plan = RemovalPlan()
    identities = read_shards(
        dataset_dir / "identities", columns=["identity_id", "name", "aliases", "n_images"]
    )
    n_images = {}
    for row in identities.to_pylist():
        n_images[row["identity_id"]] = row["n_images"]
        if matcher.matches([row["name"], *row["aliases"], row["identity_id"]], None):
            plan.identity_ids[row["identity_id"]] = REASON_IDENTITY
    images = read_shards(dataset_dir / "images", columns=["sample_id", "identity_id", "caption"])
    for row in images.to_pylist():
        if row["identity_id"] in plan.identity_ids:
            plan.sample_ids[row["sample_id"]] = REASON_IDENTITY
        elif matcher.matches(None, row["caption"]):
            plan.sample_ids[row["sample_id"]] = REASON_CAPTION
            plan.images_lost[row["identity_id"]] += 1
    for identity_id, lost in plan.images_lost.items():
        if lost >= n_images.get(identity_id, 0):
            plan.identity_ids[identity_id] = REASON_EMPTY
    return plan


# An edit maps one shard's table to (new table, removed rows by reason), or None when it removes nothing.
ShardEdit = Callable[[pa.Table], tuple[pa.Table, Counter[str]] | None]


def _images_edit(plan: RemovalPlan) -> ShardEdit:
    def edit(table: pa.Table) -> tuple[pa.Table, Counter[str]] | None:
        ids = table.column("sample_id").to_pylist()
        reasons = Counter(plan.sample_ids[s] for s in ids if s in plan.sample_ids)
        if not reasons:
            return None
        keep = pa.array([s not in plan.sample_ids for s in ids])
        return table.filter(keep), reasons

    return edit


def _identities_edit(plan: RemovalPlan) -> ShardEdit:
    def edit(table: pa.Table) -> tuple[pa.Table, Counter[str]] | None:
        ids = table.column("identity_id").to_pylist()
        reasons = Counter(plan.identity_ids[i] for i in ids if i in plan.identity_ids)
        lowered = [plan.images_lost.get(i, 0) for i in ids]
        if not reasons and not any(lowered):
            return None
        counts = np.asarray(table.column("n_images").to_pylist(), np.int32) - np.asarray(lowered, np.int32)
        index = table.schema.get_field_index("n_images")
        table = table.set_column(index, table.schema.field(index), pa.array(counts, pa.int32()))
        keep = pa.array([i not in plan.identity_ids for i in ids])
        return table.filter(keep), reasons

    return edit


def _ipc_bytes(table: pa.Table, compression: str | None) -> bytes:
    options = pa.ipc.IpcWriteOptions(compression=None if compression in (None, "none") else compression)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def rewrite_stage(
    stage_dir: Path | ObjectPath, edit: ShardEdit, revision: int, compression: str | None = "zstd"
) -> Counter[str]:
    """Apply ``edit`` to every shard of a finished stage; only changed shards are rewritten (new names), their
    units' commit records and the manifest are updated, so reads verify and a resume sees the stage complete."""
    manifest = load_manifest(stage_dir)
    removed: Counter[str] = Counter()
    renamed: dict[str, dict[str, Any]] = {}  # old shard name -> new record fields
    shard_reasons: dict[str, Counter[str]] = {}
    for record in manifest["shards"]:
        result = edit(read_shard(stage_dir, record))
        if result is None:
            continue
        table, reasons = result
        data = _ipc_bytes(table, compression)
        name = revision_name(record["name"], revision)
        atomic_write_bytes(stage_dir / name, data)
        renamed[record["name"]] = {
            "name": name,
            "rows": table.num_rows,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        shard_reasons[record["name"]] = reasons
        removed.update(reasons)
    if not renamed:
        return removed
    for unit in sorted({s["unit"] for s in manifest["shards"] if s["name"] in renamed}):
        path = stage_dir / UNITS_DIR / f"{unit}.json"
        if not path.is_file():
            continue
        unit_record = json.loads(path.read_text())
        drops = Counter(unit_record.get("drops", {}))
        for shard in unit_record["shards"]:
            drops.update(shard_reasons.get(shard["name"], {}))
            shard.update(renamed.get(shard["name"], {}))
        unit_record["drops"] = dict(sorted(drops.items()))
        atomic_write_json(path, unit_record)
    for shard in manifest["shards"]:
        shard.update(renamed.get(shard["name"], {}))
    manifest["rows"] = sum(s["rows"] for s in manifest["shards"])
    manifest["bytes"] = sum(s["bytes"] for s in manifest["shards"])
    manifest["drops"] = dict(sorted((Counter(manifest.get("drops", {})) + removed).items()))
    atomic_write_json(stage_dir / MANIFEST_NAME, manifest)
    for old in renamed:
        (stage_dir / old).unlink(missing_ok=True)
    return removed


def remove_names(
    dataset_dir: str | Path | ObjectPath,
    names: list[str],
    config: Config | None = None,
    extra_exports: list[str] = (),
    compression: str | None = "zstd",
) -> dict[str, Any]:
    """Remove ``names`` from the dataset and every export; returns (and logs) what was removed where."""
    dataset_dir = as_path(dataset_dir)
    plan = plan_removal(dataset_dir, names)
    log = removals_log(dataset_dir)
    revision = len(log) + 1
    drop_keys = set(plan.sample_ids)
    exports: dict[str, Any] = {}
    locations = sorted(
        {*(loc for locs in exports_registry(dataset_dir).values() for loc in locs), *extra_exports}
    )
    for location in locations:
        out = as_path(location)
        if not (out / "export.json").is_file():
            exports[location] = "missing (not rewritten)"
            continue
        exports[location] = remove_from_export(out, drop_keys, REASON_IDENTITY, revision) if drop_keys else {}
    images = rewrite_stage(dataset_dir / "images", _images_edit(plan), revision, compression)
    identities = rewrite_stage(dataset_dir / "identities", _identities_edit(plan), revision, compression)
    if identities:
        rewrite_mean_embedding(dataset_dir)
    entry = {
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "names": len(names),
        "names_sha256": opt_out_fingerprint(names),
        "identities": sum(identities.values()),
        "images": sum(images.values()),
        "image_reasons": dict(sorted(images.items())),
        "identity_reasons": dict(sorted(identities.items())),
        "exports": exports,
    }
    log.append(entry)
    atomic_write_json(dataset_dir / REMOVALS_FILE, log)
    _refresh_top_manifest(dataset_dir, log)
    if config is not None:
        write_card(dataset_dir, config)
    return entry


def rewrite_mean_embedding(dataset_dir: Path | ObjectPath) -> None:
    """F_mean (paper eq. 4) is the mean over the identities' name embeddings: recompute it without the removed
    ones (the targets stage computed it over the same identities), so no trace of their target remains."""
    path = dataset_dir / MEAN_FILE
    if not path.is_file():
        return
    arrays = [
        embeddings_from_table(t)[0].astype(np.float32)
        for _, t in iter_shards(
            dataset_dir / "identities", ["name_embedding", "pooled_embedding", "num_tokens", "embedding_dim"]
        )
        if t.num_rows
    ]
    if not arrays:
        path.unlink()
        return
    buffer = io.BytesIO()
    np.save(buffer, mean_name_embedding(arrays).astype(np.float32))
    atomic_write_bytes(path, buffer.getvalue())


def _refresh_top_manifest(dataset_dir: Path | ObjectPath, log: list[dict[str, Any]]) -> None:
    path = dataset_dir / MANIFEST_NAME
    if not path.is_file():
        return
    top = json.loads(path.read_text())
    if "parts" in top:
        top["parts"] = dataset_parts(dataset_dir)
    top["removals"] = log
    atomic_write_json(path, top)
