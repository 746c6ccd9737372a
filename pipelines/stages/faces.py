"""Faces stage: downloaded images -> one row per kept face (box, landmarks, L2-normalised embedding).

Runs ``laioncele.faces.stage.FaceStage`` in a Ray actor pool: the backend (insightface on onnxruntime, CUDA when
present; or the offline dlib backend) loads once per actor and maps image batches. Images without a kept face
are counted by reason (``no_face``, ``crowd``, ``decode_error``, ...) and not written. Each face row carries its
sample's caption names (display form, from ``candidates/names_table``) and image hash
(``laioncele.faces.sample_names``), so the identities stage reads this stage alone. The accounting is in images:
``rows_in`` images, each dropped under one reason or kept, and ``expanded`` the faces rows beyond one per kept
image.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from laioncele.config import Config
from laioncele.faces.sample_names import DOWNLOAD_COLUMNS, with_sample_names
from laioncele.faces.stage import OK, FaceStage, columns_to_table
from laioncele.io import schema
from laioncele.io.shards import UnitRecord, read_shards
from pipelines.runner import UnitTask, stage_dir
from pipelines.stage import Resources, Stage, Unit, read_unit_rows, units_per_shard


def plan(config: Config, upstream_dir: Path | None) -> list[Unit]:
    return units_per_shard(upstream_dir, config.faces.rows_per_unit)


class FacesTask(UnitTask):
    def __init__(self, config: dict[str, Any], out_dir: str, config_hash: str) -> None:
        super().__init__(config, out_dir, config_hash)
        self.stage = FaceStage(self.config.faces)
        self.download_dir = stage_dir(self.config, "download")
        self.names_table = read_shards(
            stage_dir(self.config, "candidates") / "names_table", columns=["name_key", "display_name"]
        )

    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        rows = read_unit_rows(self.download_dir, payload).select([*DOWNLOAD_COLUMNS, "image"])
        self.stage.counts.clear()
        parts = []
        batch_size = self.config.faces.batch_size
        for start in range(0, rows.num_rows, batch_size):
            batch = rows.slice(start, batch_size)
            columns = self.stage(
                {
                    "sample_id": batch.column("sample_id").to_numpy(zero_copy_only=False),
                    "image": batch.column("image").to_numpy(zero_copy_only=False),
                }
            )
            parts.append(columns_to_table(columns))
        table = pa.concat_tables(parts) if parts else schema.FACES.empty_table()
        image_rows = table.filter(pc.equal(table.column("face_index"), -1))
        drops = Counter(image_rows.column("status").to_pylist())
        faces = with_sample_names(table.filter(pc.equal(table.column("status"), OK)), rows, self.names_table)
        images_with_faces = len(set(faces.column("sample_id").to_pylist()))
        stats = {
            "faces": faces.num_rows,
            "images_with_faces": images_with_faces,
            "decode_notes": {
                k: v for k, v in self.stage.counts.items() if k not in drops and k not in ("faces", OK)
            },
        }
        # Counted in images: each image is dropped under one reason or kept with its faces, and the faces
        # after an image's first are ``expanded`` (rows == images in - dropped + expanded).
        return self.write(
            unit_id,
            faces,
            schema.FACES,
            rows.num_rows,
            drops,
            [payload["shard"]["name"]],
            stats,
            expanded=faces.num_rows - images_with_faces,
        )


FACES_STAGE = Stage(
    name="faces",
    schema=schema.FACES,
    config_sections=("faces",),
    upstream="download",
    inputs=("candidates",),  # its names table: the display form of each face's caption names
    plan=plan,
    task=FacesTask,
    resources=lambda config: Resources(
        concurrency=config.faces.concurrency, num_cpus=1, num_gpus=config.faces.num_gpus_per_actor
    ),
    description="face detection + embeddings (insightface/onnxruntime or offline dlib)",
)
