"""Run the benchmarks and merge their results into bench/results.json.

``python -m bench`` runs every benchmark; ``python -m bench ingest names`` runs only those. Results of other
benchmarks already in the file are kept, so one slow benchmark can be re-run alone.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
import traceback

from bench.results_file import RESULTS, merge_results

BENCHMARKS = [
    "ingest",
    "names",
    "names_identity",
    "download",
    "faces",
    "identity",
    "targets",
    "training",
    "pipeline",
    "scale",
]


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", default=None, help=f"benchmarks to run (default: all of {BENCHMARKS})"
    )
    args = parser.parse_args()
    failed = 0
    for name in args.names or BENCHMARKS:
        try:
            module = importlib.import_module(f"bench.{name}_bench")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}_bench":
                print(f"[bench] {name}: no benchmark module yet, skipped")
                continue
            raise
        print(f"[bench] {name} ...", flush=True)
        started = time.time()
        try:
            result = module.run()
        except Exception:
            traceback.print_exc()
            failed += 1
            continue
        result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        result["machine"] = machine()
        merge_results((name,), result)  # the file as it is now: other keys may have changed meanwhile
        print(json.dumps(result, indent=2, sort_keys=True))
    print(f"[bench] results in {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
