"""LaionCele: the library behind the identity-name dataset (schemas, shards, stages' logic). No Ray imports here.

One package per stage it serves (mirroring ``pipelines/stages/``): ``io`` (schemas, shards, storage), ``ingest``,
``names``, ``download``, ``faces``, ``identity``, ``targets``, ``report``; ``synth`` (known-truth generators for
tests, the sample and benchmarks); ``testing`` (shared test fixtures); ``config`` (the one typed configuration).
"""

from laioncele import _moved

__version__ = "0.1.0"

_moved.install()
