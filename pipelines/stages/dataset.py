"""Dataset stage: the final LaionCele dataset, ``dataset/images/`` + ``dataset/identities/`` + a top manifest.

Images: one unit per download shard. Each task joins, shard-locally, the kept identity images with their bytes,
URL and caption (download) and face geometry and embedding (faces, whose units came from the same download
shard), so no task ever needs the whole corpus; the joins are Arrow lookups in ``laioncele.dataset_rows``. Identities: written when the stage finishes, joining the
identities table with the name targets. ``dataset/manifest.json`` then records counts, both sub-manifests'
checksums, the config and the text-encoder source; ``mean_name_embedding.npy`` (F_mean) is copied beside it, and
``README.md``, the dataset card (``laioncele.report.dataset_card``), is written last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from laioncele.config import Config
from laioncele.dataset_rows import (
    FACE_COLUMNS,
    KEPT_COLUMNS,
    TARGET_COLUMNS,
    dataset_identities,
    dataset_images,
)
from laioncele.io import schema
from laioncele.io.shards import (
    MANIFEST_NAME,
    UnitRecord,
    atomic_write_json,
    load_manifest,
    read_shard,
    read_shards,
    write_shards,
)
from laioncele.io.storage import copy_file
from laioncele.report.dataset_card import dataset_parts, removals_log, write_card
from laioncele.targets.encode import text_encoder_revision
from pipelines.runner import UnitTask, stage_dir
from pipelines.stage import Resources, SideOutput, Stage, Unit, units_per_shard
from pipelines.stages.targets import MEAN_FILE

IDENTITIES_DIR = "identities"


def dataset_root(config: Config) -> Path:
    return stage_dir(config, "dataset").parent


def plan(config: Config, upstream_dir: Path | None) -> list[Unit]:
    return units_per_shard(stage_dir(config, "download"))


class DatasetImagesTask(UnitTask):
    def __init__(self, config: dict[str, Any], out_dir: str, config_hash: str) -> None:
        super().__init__(config, out_dir, config_hash)
        self.kept = read_shards(stage_dir(self.config, "identities"), columns=KEPT_COLUMNS)
        self.faces_dir = stage_dir(self.config, "faces")
        self.faces_manifest = load_manifest(self.faces_dir)
        self.download_dir = stage_dir(self.config, "download")

    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        shard = payload["shard"]
        images = read_shard(self.download_dir, shard)
        # the faces shards made from this download shard, only the kept images' faces
        parts = [
            read_shard(self.faces_dir, record).select(FACE_COLUMNS)
            for record in self.faces_manifest["shards"]
            if shard["name"] in record["inputs"]
        ]
        faces = pa.concat_tables(parts) if parts else schema.FACES.empty_table().select(FACE_COLUMNS)
        faces = faces.filter(pc.is_in(faces.column("sample_id"), value_set=self.kept.column("sample_id")))
        table = dataset_images(images, self.kept, faces)
        drops = {"not_kept_by_identity": images.num_rows - table.num_rows}
        return self.write(unit_id, table, schema.DATASET_IMAGES, images.num_rows, drops, [shard["name"]])


def identities_table(config: Config) -> pa.Table:
    """Identities joined with their name targets (identities whose name could not be encoded are left out)."""
    idents = read_shards(stage_dir(config, "identities") / "table")
    return dataset_identities(idents, read_shards(stage_dir(config, "targets"), columns=TARGET_COLUMNS))


def finish(config: Config, out_dir: Path) -> dict[str, Any]:
    root = dataset_root(config)
    identities = identities_table(config)
    id_manifest = write_shards(
        identities,
        root / IDENTITIES_DIR,
        schema=schema.DATASET_IDENTITIES,
        stage="dataset_identities",
        config_hash=config.section_hash("targets", "identity"),
        rows_per_shard=config.shards.rows_per_shard,
    )
    mean = stage_dir(config, "targets") / MEAN_FILE
    if mean.is_file():
        copy_file(mean, root / MEAN_FILE)
    return {"identities": id_manifest["rows"]}


def write_top_manifest(config: Config) -> dict[str, Any]:
    """dataset/manifest.json: what a consumer checks first (counts, sub-manifest checksums, provenance)."""
    root = dataset_root(config)
    parts = dataset_parts(root)
    top = {
        "dataset": "LaionCele",
        "run": config.run.name,
        "parts": parts,
        "mean_name_embedding": MEAN_FILE if (root / MEAN_FILE).is_file() else None,
        "text_encoder_source": config.targets.source,
        "text_encoder_revision": text_encoder_revision(config.targets.source),
        "face_backend": config.faces.backend,
        "config": config.model_dump(mode="json"),
        "removals": removals_log(root),  # applied by `python -m pipelines remove` since the build
    }
    atomic_write_json(root / MANIFEST_NAME, top)
    write_card(root, config)  # README.md, the Hugging Face dataset card
    return top


DATASET_STAGE = Stage(
    name="dataset",
    schema=schema.DATASET_IMAGES,
    config_sections=("identity", "targets"),
    upstream="targets",
    # image bytes, face geometry, kept images (its units are the download shards)
    inputs=("download", "faces", "identities"),
    plan=plan,
    task=DatasetImagesTask,
    resources=lambda config: Resources(concurrency=2, num_cpus=1),
    finish=finish,
    after=write_top_manifest,
    description="final dataset: images/ + identities/ shard directories, top manifest, F_mean",
    side_outputs=(
        SideOutput(
            f"../{IDENTITIES_DIR}", "finish", "identities with their name targets (dataset_identities)"
        ),
        SideOutput(f"../{MEAN_FILE}", "finish", "F_mean, copied from targets"),
        SideOutput(f"../{MANIFEST_NAME}", "after", "the top manifest: counts, checksums, config, provenance"),
        SideOutput("../README.md", "after", "the dataset card"),
    ),
)
