"""Old flat module paths (``laioncele.names_rules``, ``laioncele.shards`` ...) kept importable after the move to
stage packages, so user code, notebooks and ``python -m laioncele.laion_synth`` keep working.

``MOVED`` is the one table of old -> new paths. An old path imports as the very module object of the new one
(the same functions, classes and state, not a copy), through a finder on ``sys.meta_path`` that
``laioncele/__init__`` installs. ``lazy_facade`` gives a package whose name was a module (``laioncele.names``)
that module's names, imported on first use so that importing a light sibling stays light.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from types import CodeType, ModuleType
from typing import Any

MOVED: dict[str, str] = {
    "laioncele.schema": "laioncele.io.schema",
    "laioncele.shards": "laioncele.io.shards",
    "laioncele.storage": "laioncele.io.storage",
    "laioncele.names_text": "laioncele.names.text",
    "laioncele.names_lexicon": "laioncele.names.lexicon",
    "laioncele.names_rules": "laioncele.names.rules",
    "laioncele.names_prefilter": "laioncele.names.prefilter",
    "laioncele.names_confidence": "laioncele.names.confidence",
    "laioncele.names_evidence": "laioncele.names.evidence",
    "laioncele.name_index": "laioncele.names.index",
    "laioncele.netsafety": "laioncele.download.netsafety",
    "laioncele.images": "laioncele.download.images",
    "laioncele.identity_graph": "laioncele.identity.graph",
    "laioncele.identity_input": "laioncele.identity.inputs",
    "laioncele.identity_merge": "laioncele.identity.merge",
    "laioncele.tokenizers": "laioncele.targets.tokenizers",
    "laioncele.stats": "laioncele.report.stats",
    "laioncele.dataset_card": "laioncele.report.dataset_card",
    "laioncele.truth_check": "laioncele.report.truth_check",
    "laioncele.laion_synth": "laioncele.synth.laion",
    "laioncele.laion_synth_corpus": "laioncele.synth.corpus",
    "laioncele.synthetic": "laioncele.synth.embeddings",
    "laioncele.sample_data": "laioncele.synth.sample",
    "laioncele.identity_truth": "laioncele.synth.identity_truth",
    "laioncele.faces_truth": "laioncele.synth.faces_truth",
}


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the new module; ``get_code`` serves ``python -m <old path>``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.target_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the new module ran when it was imported); the import system has just set the module's
        ``__spec__`` to the old path's: give it back its own."""
        module.__spec__ = self.target_spec

    def get_code(self, fullname: str) -> CodeType | None:
        spec = importlib.util.find_spec(self.target)
        assert spec is not None and spec.loader is not None
        return spec.loader.get_code(self.target)  # type: ignore[attr-defined]


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        real = importlib.util.find_spec(new)
        return importlib.util.spec_from_loader(
            fullname, _AliasLoader(new), origin=real.origin if real else None
        )


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def lazy_facade(package: str, module: str) -> Callable[[str], Any]:
    """A package ``__getattr__``: a submodule by its name, else the attribute of ``module`` (imported on first
    use), so ``from laioncele.names import NameExtractor`` keeps meaning what it meant before the move."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        try:
            return getattr(importlib.import_module(module), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
