"""The pipeline's stages, in data-flow order."""

from __future__ import annotations

from pipelines.stage import Stage
from pipelines.stages.ingest import INGEST_STAGE
from pipelines.stages.names import CANDIDATES_STAGE, NAMES_STAGE, NER_STAGE

STAGES: dict[str, Stage] = {
    stage.name: stage for stage in (INGEST_STAGE, NER_STAGE, NAMES_STAGE, CANDIDATES_STAGE)
}
ORDER: list[str] = list(STAGES)
