"""The pipeline's stages, in data-flow order.

``STAGES`` imports a stage's module only when that stage is looked up. A Ray worker that unpickles one stage's
task class imports this package first, so eager imports here would make every worker pay for every stage's
dependencies (torch, img2dataset, insightface: ~2.5 s and ~400 MB each) before its first unit.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from pipelines.stage import Stage

# stage name -> (module under pipelines.stages, attribute): the data-flow order is this dict's order.
_STAGE_MODULES: dict[str, tuple[str, str]] = {
    "ingest": ("ingest", "INGEST_STAGE"),
    "ner": ("names", "NER_STAGE"),
    "names": ("names", "NAMES_STAGE"),
    "candidates": ("names", "CANDIDATES_STAGE"),
    "download": ("download", "DOWNLOAD_STAGE"),
    "faces": ("faces", "FACES_STAGE"),
    "identities": ("identity", "IDENTITY_STAGE"),
    "targets": ("targets", "TARGETS_STAGE"),
    "dataset": ("dataset", "DATASET_STAGE"),
}


class _LazyStages(Mapping[str, Stage]):
    """Name -> Stage, importing each stage's module on first access."""

    def __getitem__(self, name: str) -> Stage:
        if name not in _STAGE_MODULES:
            raise KeyError(name)
        module, attribute = _STAGE_MODULES[name]
        stage = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        if stage.name != name:
            raise RuntimeError(f"{module}.{attribute} is stage {stage.name!r}, registered as {name!r}")
        return stage

    def __iter__(self) -> Iterator[str]:
        return iter(_STAGE_MODULES)

    def __len__(self) -> int:
        return len(_STAGE_MODULES)


STAGES: Mapping[str, Stage] = _LazyStages()
ORDER: list[str] = list(_STAGE_MODULES)
