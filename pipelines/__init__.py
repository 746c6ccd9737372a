"""Ray Data wiring of the LaionCele stages.

Architecture, one job per module:
- ``cli``      the one command line: ``python -m pipelines run [STAGE|all] --config FILE --set key=value``.
- ``runtime``  starts or joins Ray (local instance, or ``ray.address`` / ``RAY_ADDRESS``).
- ``stage``    what a stage is: its units of work, its per-unit task class, its schema and config sections.
- ``runner``   runs one stage resumably: plans units, skips committed ones, maps the rest over a Ray Data
               actor pool (each task writes its own shards atomically), then writes the manifest.
- ``stages/``  one module per stage (ingest, ...): the callable task class that calls into ``laioncele``.
The logic of every stage lives in ``laioncele``; this package only distributes it.
"""

import laioncele.offline_env  # noqa: F401  (first: offline env defaults before any dependency import)
