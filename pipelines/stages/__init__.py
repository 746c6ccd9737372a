"""The pipeline's stages, in data-flow order."""

from __future__ import annotations

from pipelines.stage import Stage
from pipelines.stages.ingest import INGEST_STAGE

STAGES: dict[str, Stage] = {stage.name: stage for stage in (INGEST_STAGE,)}
ORDER: list[str] = list(STAGES)
