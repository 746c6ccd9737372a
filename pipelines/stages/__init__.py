"""The pipeline's stages, in data-flow order."""

from __future__ import annotations

from pipelines.stage import Stage
from pipelines.stages.dataset import DATASET_STAGE
from pipelines.stages.download import DOWNLOAD_STAGE
from pipelines.stages.faces import FACES_STAGE
from pipelines.stages.identity import IDENTITY_STAGE
from pipelines.stages.ingest import INGEST_STAGE
from pipelines.stages.names import CANDIDATES_STAGE, NAMES_STAGE, NER_STAGE
from pipelines.stages.targets import TARGETS_STAGE

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        INGEST_STAGE,
        NER_STAGE,
        NAMES_STAGE,
        CANDIDATES_STAGE,
        DOWNLOAD_STAGE,
        FACES_STAGE,
        IDENTITY_STAGE,
        TARGETS_STAGE,
        DATASET_STAGE,
    )
}
ORDER: list[str] = list(STAGES)
