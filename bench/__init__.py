"""Benchmarks (`make bench`): each module's ``run()`` returns a dict that lands in ``bench/results.json``."""
