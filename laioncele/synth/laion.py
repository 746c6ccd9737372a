"""Generate LAION-shaped metadata parquet, with LAION's quirks, for tests and benchmarks.

Columns as LAION ships them (URL, TEXT, WIDTH, HEIGHT, similarity, punsafe, pwatermark, LANGUAGE), and the
noise ingest must survive: missing URLs, empty and whitespace captions, captions that are not valid UTF-8,
tiny images, duplicate URLs, NaN scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_SUBJECTS = [
    "Brad Pitt",
    "angelina jolie",
    "Kate Middleton",
    "a golden retriever",
    "Vintage Oak Table",
    "Tom Hanks",
    "the Eiffel Tower",
    "Scarlett Johansson",
    "Handpainted Gold Tree",
    "Matt Damon",
]
_CONTEXTS = [
    "at the premiere in Los Angeles",
    "Stock Photo",
    "wedding dress",
    "oil painting on canvas",
    "- Getty Images",
    "on the red carpet",
    "iPhone case",
    "poster print",
    "in the garden",
    "photo by J. Doe",
]
_LANGS = ["en", "en", "en", "de", "fr", "es", None]


def generate_laion_table(n_rows: int, seed: int = 0, bad_fraction: float = 0.02) -> pa.Table:
    """A LAION-shaped table; ``bad_fraction`` of rows get each kind of defect."""
    rng = np.random.default_rng(seed)
    subjects = rng.integers(0, len(_SUBJECTS), n_rows)
    contexts = rng.integers(0, len(_CONTEXTS), n_rows)
    urls: list[str | None] = [f"https://img.example.org/{seed}/{i:09d}.jpg" for i in range(n_rows)]
    texts: list[bytes | None] = [
        f"{_SUBJECTS[s]} {_CONTEXTS[c]} #{i}".encode()
        for i, (s, c) in enumerate(zip(subjects, contexts, strict=True))
    ]
    width = rng.integers(64, 2048, n_rows).astype(np.int64)
    height = rng.integers(64, 2048, n_rows).astype(np.int64)
    similarity = rng.uniform(0.25, 0.45, n_rows)
    n_bad = int(n_rows * bad_fraction)
    if n_bad:
        bad = rng.permutation(n_rows)[: 5 * n_bad].reshape(5, n_bad)
        for i in bad[0]:
            urls[i] = None if i % 2 else ""
        for i in bad[1]:
            texts[i] = b"   " if i % 2 else None
        for i in bad[2]:
            texts[i] = b"caf\xe9 \xff broken utf-8"
        width[bad[3]] = 8
        for i in bad[4]:
            urls[i] = urls[(i + 1) % n_rows]  # duplicate URL
        similarity[bad[4][: n_bad // 2]] = np.nan
    return pa.table(
        {
            "URL": pa.array(urls, pa.string()),
            "TEXT": pa.array(
                texts, pa.binary()
            ),  # binary, so invalid UTF-8 survives as LAION's files have it
            "WIDTH": pa.array(width.astype(float)),
            "HEIGHT": pa.array(height.astype(float)),
            "similarity": pa.array(similarity),
            "punsafe": pa.array(rng.uniform(0, 1, n_rows).astype(np.float32)),
            "pwatermark": pa.array(rng.uniform(0, 1, n_rows).astype(np.float32)),
            "LANGUAGE": pa.array([_LANGS[i] for i in rng.integers(0, len(_LANGS), n_rows)], pa.string()),
        }
    )


def write_laion_parquet(
    path: str | Path, n_rows: int, seed: int = 0, row_group_size: int = 10_000, bad_fraction: float = 0.02
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(generate_laion_table(n_rows, seed, bad_fraction), path, row_group_size=row_group_size)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m laioncele.synth.laion --rows N --seed S --out DIR``: the known-truth corpus of
    ``laioncele.synth.corpus`` (parquet shards and truth.json under DIR)."""
    import argparse  # noqa: PLC0415

    from laioncele.synth.corpus import PERSON_CONTEXT_SHARE, write_corpus  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m laioncele.synth.laion", description=main.__doc__)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows-per-shard", type=int, default=100_000)
    parser.add_argument(
        "--person-context-share",
        type=float,
        default=None,
        help="share of mentions written in a person context (default: real LAION's, PERSON_CONTEXT_SHARE)",
    )
    args = parser.parse_args(argv)
    share = PERSON_CONTEXT_SHARE if args.person_context_share is None else args.person_context_share
    truth = write_corpus(args.out, args.rows, args.seed, args.rows_per_shard, share)
    mentions = sum(len(p["rows"]) for p in truth["identities"])
    print(f"{args.rows} rows, {len(truth['identities'])} identities, {mentions} mentions -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
