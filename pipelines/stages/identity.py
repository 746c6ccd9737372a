"""Identity stage: faces, each with the names its caption carries -> one clean identity per name (``clean_identities``).

One global unit: alias merging needs every name's centroid at once. ``clean_identities`` is vectorised over all
names (batched matmuls, faiss for large names and for the global alias index): 1M faces over 50k names clean in
about a minute on 2 cores (``make bench``), so the paper's scale (~810k kept images) fits one worker; the unit runs
as a Ray task on whichever node has the memory. The kept images are this stage's shards; the identities table is
written beside them in ``identities/table/``.

With ``identity.partitions`` = P > 1 the names are cleaned in P parallel units (faces grouped by
crc32(name key) % P), plus one ``merged`` unit. A partition unit writes its full result to
``partitions/part-XXXXX/`` (Arrow IPC + JSON, a subdirectory the manifest's stray-file sweep never touches) and
commits an empty shard set; the ``merged`` unit commits an empty placeholder. ``finish`` (which runs after every
unit is committed and before the manifest is built from the plan's commit records) merges the partition results
(``merge_partitions``) and rewrites the ``merged`` unit's commit with the merged images as its shards, so the
manifest lists exactly the merged images and the summed drops. A re-run repeats the merge idempotently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.feather as feather

from laioncele.config import Config
from laioncele.identity.clean import IdentityResult, clean_identities
from laioncele.identity.merge import merge_partitions, split_by_partition
from laioncele.io import schema
from laioncele.io.shards import (
    UnitRecord,
    atomic_write_bytes,
    atomic_write_json,
    finalize_stage,
    iter_shards,
    write_unit,
)
from laioncele.io.storage import ObjectPath, open_input
from pipelines.runner import UnitTask, stage_config_hash, stage_dir
from pipelines.stage import Resources, SideOutput, Stage, Unit

TABLE_DIR = "table"
PARTITIONS_DIR = "partitions"
MERGED_UNIT = "merged"
_RESULT_TABLES = ("identities", "images", "names")


# The faces columns identity cleaning reads; each face row carries its caption's names (display form) and its
# image's hash since faces schema v2 (``laioncele.faces.sample_names``), so this stage reads the faces alone.
FACE_COLUMNS = [
    "sample_id",
    "face_index",
    "bbox",
    "det_score",
    "embedding",
    "backend",
    "names",
    "image_sha256",
]


def _as_identity_input(faces: pa.Table, hash_column: str) -> pa.Table:
    """The faces columns under the names ``clean_identities`` reads: the image hash as ``identity.hash_column``."""
    if hash_column == "image_sha256":
        return faces
    return faces.rename_columns([hash_column if c == "image_sha256" else c for c in faces.column_names])


def iter_faces_with_names(config: Config) -> Iterator[pa.Table]:
    """Faces shards (status ok) one at a time, each face with its caption's names and image hash."""
    for _, faces in iter_shards(stage_dir(config, "faces"), columns=FACE_COLUMNS):
        yield _as_identity_input(faces, config.identity.hash_column)


def load_faces_with_names(config: Config) -> pa.Table:
    """Faces (status ok) with their caption's names (display form) and image hash."""
    shards = list(iter_faces_with_names(config))
    return pa.concat_tables(shards) if shards else _empty_faces_with_names(config)


def load_partition_faces(config: Config, partition: int) -> tuple[pa.Table, int]:
    """One partition's faces (see ``split_by_partition``) and the number of faces rows read, keeping only that
    partition's rows of each shard in memory: a partition task holds about 1/P of the embeddings."""
    kept, total = [], 0
    for shard in iter_faces_with_names(config):
        total += shard.num_rows
        kept.append(split_by_partition(shard, config.identity.partitions, only=partition)[0])
    return (pa.concat_tables(kept) if kept else _empty_faces_with_names(config)), total


def _empty_faces_with_names(config: Config) -> pa.Table:
    return _as_identity_input(schema.FACES.empty_table().select(FACE_COLUMNS), config.identity.hash_column)


def partition_dir(out_dir: Path, partition: int) -> Path:
    return out_dir / PARTITIONS_DIR / f"part-{partition:05d}"


def save_partition_result(path: Path, result: IdentityResult, faces_total: int) -> None:
    """Write one partition's result; ``result.json`` is written last and marks it complete."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "result.json").unlink(missing_ok=True)
    for name in _RESULT_TABLES:
        # Serialised in memory, then written all-or-nothing (temp file + rename locally, temp key + copy on S3).
        sink = pa.BufferOutputStream()
        feather.write_feather(getattr(result, name), sink, compression="zstd")
        atomic_write_bytes(path / f"{name}.arrow", sink.getvalue().to_pybytes())
    counters = {k: getattr(result, k) for k in ("drops", "name_drops", "face_drops", "stats")}
    atomic_write_json(path / "result.json", {**counters, "faces_total": faces_total})


def load_partition_result(path: Path) -> tuple[IdentityResult, int]:
    """(result, number of faces rows the whole stage read) of one partition."""
    meta = json.loads((path / "result.json").read_text())
    tables = {name: _read_feather(path / f"{name}.arrow") for name in _RESULT_TABLES}
    counters = {k: meta[k] for k in ("drops", "name_drops", "face_drops", "stats")}
    return IdentityResult(**tables, **counters), int(meta["faces_total"])


def _read_feather(path: Path | ObjectPath) -> pa.Table:
    if isinstance(path, ObjectPath):
        with open_input(path) as source:
            return feather.read_table(source)
    return feather.read_table(path)


def _unit_stats(result: IdentityResult) -> dict[str, Any]:
    return {
        "name_drops": result.name_drops,
        "face_drops": result.face_drops,
        "identities": result.identities.num_rows,
        "pairs_in": int(sum(result.drops.values()) + result.images.num_rows),
    }


class IdentityTask(UnitTask):
    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        if "partition" in payload:
            return self._process_partition(unit_id, int(payload["partition"]))
        if payload.get("merge"):  # placeholder: ``finish`` rewrites this commit with the merged images
            empty = schema.IDENTITY_IMAGES.empty_table()
            return self.write(unit_id, empty, schema.IDENTITY_IMAGES, 0, {}, ["faces"])
        faces = load_faces_with_names(self.config)
        result = clean_identities(faces, self.config.identity)
        stats = {
            "name_drops": result.name_drops,
            "face_drops": result.face_drops,
            "identities": result.identities.num_rows,
            "pairs_in": int(sum(result.drops.values()) + result.images.num_rows),
            "faces_in": faces.num_rows,
        }
        self.write(
            unit_id,
            schema.conform(result.identities, schema.IDENTITIES),
            schema.IDENTITIES,
            result.identities.num_rows,
            {},
            ["faces"],
            out_dir=self.out_dir / TABLE_DIR,
        )
        images = schema.conform(result.images, schema.IDENTITY_IMAGES)
        # Counted in candidates, (image, name) pairs with a usable face: each kept or dropped under one reason.
        candidates = int(result.stats["candidates_in"])
        return self.write(unit_id, images, schema.IDENTITY_IMAGES, candidates, result.drops, ["faces"], stats)

    def _process_partition(self, unit_id: str, partition: int) -> UnitRecord:
        """Clean one partition's names into its side directory; its main commit carries no rows (the merge's
        commit does), only this partition's statistics."""
        part, faces_total = load_partition_faces(self.config, partition)
        result = clean_identities(part, self.config.identity)
        save_partition_result(partition_dir(self.out_dir, partition), result, faces_total)
        stats = {"partition_faces": part.num_rows, "partition_identities": result.identities.num_rows}
        empty = schema.IDENTITY_IMAGES.empty_table()
        return self.write(unit_id, empty, schema.IDENTITY_IMAGES, 0, {}, ["faces"], stats)


def plan(config: Config, upstream_dir: Path | None) -> list[Unit]:
    partitions = config.identity.partitions
    if partitions > 1:
        units = [Unit(f"p{p:05d}", {"partition": p}) for p in range(partitions)]
        return [*units, Unit(MERGED_UNIT, {"merge": True})]
    return [Unit("all", {})]


def _merge_partition_results(config: Config, out_dir: Path) -> dict[str, Any]:
    """Merge every partition's result and commit it as the ``merged`` unit (images) and the table."""
    loaded = [load_partition_result(partition_dir(out_dir, p)) for p in range(config.identity.partitions)]
    result = merge_partitions([r for r, _ in loaded], config.identity)
    faces_total = loaded[0][1]
    config_hash = stage_config_hash(IDENTITY_STAGE, config)
    shards = config.shards
    sizes = {
        "rows_per_shard": shards.rows_per_shard,
        "bytes_per_shard": shards.bytes_per_shard,
        "compression": shards.compression,
    }
    stats = {**_unit_stats(result), "partitions": config.identity.partitions, "faces_in": faces_total}
    # the merged unit counts candidates, as the single one does
    candidates = int(result.stats["candidates_in"])
    for directory, table, target, rows_in, drops in (
        (out_dir / TABLE_DIR, result.identities, schema.IDENTITIES, result.identities.num_rows, {}),
        (out_dir, result.images, schema.IDENTITY_IMAGES, candidates, result.drops),
    ):
        write_unit(
            directory, MERGED_UNIT, schema.conform(table, target), target, config_hash=config_hash,
            rows_in=rows_in, drops=drops, stats=stats if directory == out_dir else {}, inputs=["faces"],
            **sizes,
        )  # fmt: skip
    manifest = finalize_stage(
        out_dir / TABLE_DIR, "identities_table", schema.IDENTITIES, config_hash, [MERGED_UNIT]
    )
    return {"identities": manifest["rows"], "table": f"{TABLE_DIR}/manifest.json", "partitions": len(loaded)}


def finish(config: Config, out_dir: Path) -> dict[str, Any]:
    if config.identity.partitions > 1:
        return _merge_partition_results(config, out_dir)
    manifest = finalize_stage(
        out_dir / TABLE_DIR,
        "identities_table",
        schema.IDENTITIES,
        stage_config_hash(IDENTITY_STAGE, config),
        ["all"],
    )
    return {"identities": manifest["rows"], "table": f"{TABLE_DIR}/manifest.json"}


IDENTITY_STAGE = Stage(
    name="identities",
    schema=schema.IDENTITY_IMAGES,
    config_sections=("identity",),
    upstream="faces",  # each face carries its caption's names and image hash: no other stage is read
    plan=plan,
    task=IdentityTask,
    resources=lambda config: Resources(concurrency=config.identity.partitions, num_cpus=1),
    finish=finish,
    description="one true identity per name (faiss), aliases merged, one face per image",
    side_outputs=(
        SideOutput(TABLE_DIR, "units", "the identities table (identities schema); manifest by finish"),
        SideOutput(PARTITIONS_DIR, "units", "each partition's result, with identity.partitions > 1"),
    ),
)
