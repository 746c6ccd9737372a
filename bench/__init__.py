"""Benchmarks (`make bench`): each module's ``run()`` returns a dict that lands in ``bench/results.json``."""

import laioncele.offline_env  # noqa: F401  (first: offline env defaults before any dependency import)
