"""Dataset statistics for data engineers, as Polars frames over a run's shards.

Every table is scanned lazily (``pl.scan_ipc`` over the shards a manifest lists) and each question selects only
the columns it needs, so the image bytes of ``dataset/images`` are never read for a statistic. Stage
manifests answer the funnel questions (rows in and out, drop reasons) without touching any shard.

Functions take a run directory (``output/<run>``) or its ``dataset/`` directory, local or an ``s3://`` prefix
(read with Polars' own object-store reader at the configured endpoint: ``laioncele.io.storage``). Shard sizes and the manifest's
schema version are checked before scanning; sha256 checksums are not (``laioncele.io.shards.read_shards`` does
that when reading for real work).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from laioncele.config import ReportConfig
from laioncele.io.schema import DATASET_IDENTITIES, DATASET_IMAGES, SCHEMAS, schema_id
from laioncele.io.shards import MANIFEST_NAME, ShardError, load_manifest
from laioncele.io.storage import ObjectPath, as_path, polars_storage_options

# Pipeline stages in run order; the funnel lists those present in this order, then the dataset's tables.
STAGES = ("ingest", "ner", "names", "candidates", "download", "faces", "identities", "targets")
DATASET_DIRNAME = "dataset"
DATASET_TABLES = ("identities", "images")
UNKNOWN_LANGUAGE = "unknown"

FUNNEL_SCHEMA = {
    "stage": pl.String,
    "status": pl.String,
    "schema": pl.String,
    "rows_in": pl.Int64,
    "rows": pl.Int64,
    "dropped": pl.Int64,
    "kept_share": pl.Float64,
    "bytes": pl.Int64,
    "shards": pl.Int64,
    "top_drops": pl.String,
}


# ---------------------------------------------------------------------------------------------- locating


def resolve_dirs(path: str | Path | ObjectPath) -> tuple[Path | ObjectPath, Path | ObjectPath | None]:
    """(run dir, dataset dir or None) for a run directory or a dataset directory."""
    path = as_path(path)
    if (path / DATASET_DIRNAME).is_dir():
        return path, path / DATASET_DIRNAME
    if (path / "images" / MANIFEST_NAME).is_file() and path.name == DATASET_DIRNAME:
        return path.parent, path
    return path, None


def dataset_dir(path: str | Path | ObjectPath) -> Path | ObjectPath:
    _, dataset = resolve_dirs(path)
    if dataset is None:
        raise ShardError(
            f"{path} holds no built dataset (expected {as_path(path) / DATASET_DIRNAME}/images/)"
        )
    return dataset


def shard_paths(stage_dir: str | Path | ObjectPath, expected: Any | None = None) -> list[Path | ObjectPath]:
    """Paths of a finished stage's shards, after checking the manifest's schema and each shard's size."""
    stage_dir = as_path(stage_dir)
    manifest = load_manifest(stage_dir)
    found = (manifest["schema"]["name"], manifest["schema"]["version"])
    wanted = schema_id(expected) if expected is not None else None
    if wanted is not None and found != wanted:
        raise ShardError(f"{stage_dir} holds schema {found}, expected {wanted}")
    paths = []
    for record in manifest["shards"]:
        path = stage_dir / record["name"]
        if not path.is_file() or path.stat().st_size != record["bytes"]:
            raise ShardError(f"shard {path} listed in the manifest is missing or not {record['bytes']} bytes")
        paths.append(path)
    return paths


def scan_stage(stage_dir: str | Path, expected: Any | None = None) -> pl.LazyFrame:
    """A lazy frame over every shard of a finished stage (an empty frame of the schema when it has none)."""
    paths = shard_paths(stage_dir, expected)
    if paths:
        return scan_shard_files(paths)
    schema = expected if expected is not None else SCHEMAS.get(load_manifest(stage_dir)["schema"]["name"])
    if schema is None:
        raise ShardError(f"{stage_dir} has no shards and an unknown schema")
    return pl.from_arrow(schema.empty_table()).lazy()


def scan_shard_files(paths: list[Path | ObjectPath], **kwargs: Any) -> pl.LazyFrame:
    """``pl.scan_ipc`` over shard files of one store (local, or an object store at its endpoint)."""
    return pl.scan_ipc([str(p) for p in paths], storage_options=polars_storage_options(paths[0]), **kwargs)


def scan_images(path: str | Path) -> pl.LazyFrame:
    """The dataset's images (one row per kept face; ``DATASET_IMAGES``). Select columns before collecting."""
    return scan_stage(dataset_dir(path) / "images", DATASET_IMAGES)


def scan_identities(path: str | Path) -> pl.LazyFrame:
    """The dataset's identities (``DATASET_IDENTITIES``)."""
    return scan_stage(dataset_dir(path) / "identities", DATASET_IDENTITIES)


def dataset_manifest(path: str | Path) -> dict[str, Any]:
    """The dataset's top-level ``manifest.json`` (counts, checksums, config, text-encoder source); {} if absent."""
    file = dataset_dir(path) / MANIFEST_NAME
    return json.loads(file.read_text()) if file.is_file() else {}


# ---------------------------------------------------------------------------------------------- funnel


def _stage_row(name: str, stage_dir: Path | ObjectPath, top: int) -> dict[str, Any]:
    if not (stage_dir / MANIFEST_NAME).is_file():
        return {"stage": name, "status": "incomplete"}
    try:
        manifest = load_manifest(stage_dir)
    except ShardError as exc:
        return {"stage": name, "status": f"unreadable: {exc}"}
    drops = {str(k): int(v) for k, v in (manifest.get("drops") or {}).items()}
    rows_in, rows = int(manifest.get("rows_in", 0)), int(manifest.get("rows", 0))
    ranked = sorted(drops.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "stage": name,
        "status": "complete",
        "schema": f"{manifest['schema']['name']}/v{manifest['schema']['version']}",
        "rows_in": rows_in,
        "rows": rows,
        "dropped": sum(drops.values()),
        "kept_share": rows / rows_in if rows_in else None,
        "bytes": int(manifest.get("bytes", 0)),
        "shards": len(manifest.get("shards", [])),
        "top_drops": ", ".join(f"{k}={v}" for k, v in ranked[:top]),
    }


def _stage_dirs(path: str | Path) -> list[tuple[str, Path | ObjectPath]]:
    run, dataset = resolve_dirs(path)
    found = [(name, run / name) for name in STAGES if (run / name).is_dir()]
    if dataset is not None:
        found += [(f"dataset/{t}", dataset / t) for t in DATASET_TABLES if (dataset / t).is_dir()]
    return found


def funnel(path: str | Path, top_drops: int = 3) -> pl.DataFrame:
    """One row per stage present (run order, then the dataset tables): rows in/out, dropped rows and the
    main drop reasons, from the manifests alone. A stage directory without a manifest shows "incomplete".

    ``rows`` counts each stage's own unit (faces count faces, identities count identities), so compare
    ``rows_in`` with ``rows`` within a stage rather than across stages."""
    rows = [_stage_row(name, d, top_drops) for name, d in _stage_dirs(path)]
    return pl.DataFrame(rows, schema=FUNNEL_SCHEMA)


def drop_reasons(path: str | Path) -> pl.DataFrame:
    """Every (stage, reason, count) from the manifests, with the count's share of the stage's ``rows_in``."""
    rows = []
    for name, stage_dir in _stage_dirs(path):
        if not (stage_dir / MANIFEST_NAME).is_file():
            continue
        manifest = load_manifest(stage_dir)
        rows_in = int(manifest.get("rows_in", 0))
        for reason, count in (manifest.get("drops") or {}).items():
            share = int(count) / rows_in if rows_in else None
            rows.append(
                {"stage": name, "reason": str(reason), "count": int(count), "share_of_rows_in": share}
            )
    frame = pl.DataFrame(
        rows,
        schema={"stage": pl.String, "reason": pl.String, "count": pl.Int64, "share_of_rows_in": pl.Float64},
    )
    order = {name: i for i, (name, _) in enumerate(_stage_dirs(path))}
    return (
        frame.with_columns(pl.col("stage").replace_strict(order, default=len(order)).alias("_order"))
        .sort(["_order", "count", "reason"], descending=[False, True, False])
        .drop("_order")
    )


# ---------------------------------------------------------------------------------------------- identities


def identity_summary(path: str | Path) -> pl.DataFrame:
    """Per identity: the images actually in the dataset (count, similarity mean/min/max) next to what the
    identities table declares. Identities without images and images of unknown identities both show up."""
    per_image = (
        scan_images(path)
        .select("identity_id", "similarity")
        .group_by("identity_id")
        .agg(
            pl.len().cast(pl.Int64).alias("n_images"),
            pl.col("similarity").mean().alias("mean_similarity"),
            pl.col("similarity").min().alias("min_similarity"),
            pl.col("similarity").max().alias("max_similarity"),
        )
    )
    declared = scan_identities(path).select(
        "identity_id",
        "name",
        pl.col("n_images").cast(pl.Int64).alias("declared_n_images"),
        "runner_up_share",
        pl.col("aliases").list.len().alias("n_aliases"),
    )
    return (
        declared.join(per_image, on="identity_id", how="full", coalesce=True)
        .with_columns(pl.col("n_images").fill_null(0))
        .select(
            "identity_id",
            "name",
            "n_images",
            "declared_n_images",
            "mean_similarity",
            "min_similarity",
            "max_similarity",
            "runner_up_share",
            "n_aliases",
        )
        .collect()
    )


def identities_by_image_count(path: str | Path) -> pl.DataFrame:
    """Identities from most to fewest images (ties by id)."""
    return identity_summary(path).sort(["n_images", "identity_id"], descending=[True, False])


def images_per_identity(path: str | Path, bins: list[int] | None = None) -> pl.DataFrame:
    """Histogram of images per identity: ``n_images -> n_identities`` for every observed count, or, with
    ``bins`` (ascending lower edges), ``[edge, next edge)`` bins labelled by their lower edge."""
    counts = identity_summary(path).select("n_images")
    if bins:
        edges = sorted(bins)
        label = pl.lit(None, dtype=pl.Int64)
        for edge in edges:
            label = pl.when(pl.col("n_images") >= edge).then(pl.lit(edge, dtype=pl.Int64)).otherwise(label)
        counts = counts.with_columns(label.alias("n_images")).drop_nulls("n_images")
    return counts.group_by("n_images").agg(pl.len().cast(pl.Int64).alias("n_identities")).sort("n_images")


def similarity_summary(
    path: str | Path, quantiles: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)
) -> pl.DataFrame:
    """Distribution of face-to-centroid similarity: over all kept faces ("face") and over identities' mean
    similarity ("identity_mean"), one row each with count, mean, std, min, quantiles, max."""
    per_face = scan_images(path).select(pl.col("similarity").cast(pl.Float64).alias("value"))
    per_identity = (
        scan_images(path)
        .select("identity_id", "similarity")
        .group_by("identity_id")
        .agg(pl.col("similarity").cast(pl.Float64).mean().alias("value"))
        .select("value")
    )

    def describe(frame: pl.LazyFrame, level: str) -> pl.LazyFrame:
        value = pl.col("value")
        return frame.select(
            pl.lit(level).alias("level"),
            pl.len().cast(pl.Int64).alias("count"),
            value.mean().alias("mean"),
            value.std().alias("std"),
            value.min().alias("min"),
            *(value.quantile(q, interpolation="linear").alias(f"p{round(q * 100):02d}") for q in quantiles),
            value.max().alias("max"),
        )

    return pl.concat([describe(per_face, "face"), describe(per_identity, "identity_mean")]).collect()


def similarity_histogram(
    path: str | Path, n_bins: int = 20, lo: float | None = 0.0, hi: float | None = 1.0
) -> pl.DataFrame:
    """Counts of kept faces per similarity bin of equal width over ``[lo, hi]`` (values outside are clipped
    into the end bins, so the counts always sum to the number of faces). ``lo``/``hi`` None: the data's own
    min/max, so a backend whose faces all sit in 0.97-0.99 (dlib) gets all its bins, not one bar."""
    if lo is None or hi is None:
        bounds = scan_images(path).select(
            pl.col("similarity").cast(pl.Float64).min().alias("lo"),
            pl.col("similarity").cast(pl.Float64).max().alias("hi"),
        )
        data_lo, data_hi = bounds.collect().row(0)
        lo = (data_lo if data_lo is not None else 0.0) if lo is None else lo
        hi = (data_hi if data_hi is not None else 1.0) if hi is None else hi
        if hi - lo < 1e-6:  # one value (or none): a small window around it
            lo, hi = lo - 0.005, hi + 0.005
    width = (hi - lo) / n_bins
    index = ((pl.col("similarity").cast(pl.Float64) - lo) / width).floor().clip(0, n_bins - 1).cast(pl.Int64)
    counts = (
        scan_images(path)
        .select(index.alias("bin"))
        .group_by("bin")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .collect()
    )
    bins = pl.DataFrame({"bin": list(range(n_bins))}, schema={"bin": pl.Int64})
    return (
        bins.join(counts, on="bin", how="left")
        .with_columns(
            pl.col("count").fill_null(0),
            (lo + pl.col("bin") * width).alias("bin_start"),
            (lo + (pl.col("bin") + 1) * width).alias("bin_end"),
        )
        .select("bin_start", "bin_end", "count")
    )


def language_mix(path: str | Path) -> pl.DataFrame:
    """Caption languages of the kept images (null as "unknown"): images, their share, identities touched."""
    return (
        scan_images(path)
        .select(pl.col("language").fill_null(UNKNOWN_LANGUAGE), "identity_id")
        .group_by("language")
        .agg(
            pl.len().cast(pl.Int64).alias("n_images"), pl.col("identity_id").n_unique().alias("n_identities")
        )
        .with_columns((pl.col("n_images") / pl.col("n_images").sum()).alias("share"))
        .sort(["n_images", "language"], descending=[True, False])
        .collect()
    )


FLAG_SIGNALS = ("low_mean_similarity", "low_min_similarity", "high_runner_up_share")


def least_pure_identities(
    path: str | Path, n: int | None = 20, config: ReportConfig | None = None
) -> pl.DataFrame:
    """Identities most likely to mix people, worst first, with the QA flags each one earns.

    Ordering: each identity is ranked on three signals (lowest mean similarity, lowest min similarity, highest
    runner_up_share); its ``impurity_rank`` is its best (smallest) rank, so an identity that is the worst on
    any one signal comes first. Ties go to the lower mean similarity.

    ``flag`` is not a rank: it lists (comma-separated) the signals whose absolute threshold in ``config``
    (``ReportConfig.flag_similarity`` by the identity's face backend, ``flag_max_runner_up_share``) the
    identity crosses, and is null when it crosses none, so a clean dataset shows no flag."""
    config = config or ReportConfig()
    frame = identity_summary(path).filter(pl.col("n_images") > 0)
    backends = scan_identities(path).select("identity_id", "face_backend").collect()
    frame = frame.join(backends, on="identity_id", how="left")
    ranks = {
        "low_mean_similarity": pl.col("mean_similarity").rank("min"),
        "low_min_similarity": pl.col("min_similarity").rank("min"),
        "high_runner_up_share": pl.col("runner_up_share").fill_null(0.0).rank("min", descending=True),
    }
    frame = frame.with_columns(*(expr.alias(f"_rank_{key}") for key, expr in ranks.items()))
    rank_cols = [f"_rank_{key}" for key in ranks]

    def threshold(field: str) -> pl.Expr:
        table = {b: getattr(t, field) for b, t in config.flag_similarity.items()}
        return pl.col("face_backend").replace_strict(table, default=None, return_dtype=pl.Float64)

    crossed = {
        "low_mean_similarity": pl.col("mean_similarity") < threshold("min_mean_similarity"),
        "low_min_similarity": pl.col("min_similarity") < threshold("min_similarity"),
        "high_runner_up_share": pl.col("runner_up_share") > config.flag_max_runner_up_share,
    }
    flag = pl.concat_list(
        [pl.when(expr.fill_null(False)).then(pl.lit(key)).otherwise(None) for key, expr in crossed.items()]
    ).list.drop_nulls()
    out = (
        frame.with_columns(
            pl.min_horizontal(rank_cols).cast(pl.Int64).alias("impurity_rank"),
            pl.when(flag.list.len() > 0).then(flag.list.join(", ")).otherwise(None).alias("flag"),
        )
        .sort(["impurity_rank", "mean_similarity", "identity_id"])
        .drop(*rank_cols, "face_backend")
    )
    return out.head(n) if n is not None else out


def overview(path: str | Path) -> pl.DataFrame:
    """Headline numbers of the dataset as (metric, value) rows, for a report's first table."""
    summary = identity_summary(path)
    faces = similarity_summary(path).row(0, named=True)
    images_meta = load_manifest(dataset_dir(path) / "images")
    counts = summary["n_images"]
    metrics: list[tuple[str, str]] = [
        ("identities", f"{summary.height:,}"),
        ("images", f"{int(counts.sum()):,}"),
        ("images per identity (mean)", f"{counts.mean():.2f}" if summary.height else "-"),
        ("images per identity (median)", f"{counts.median():.1f}" if summary.height else "-"),
        ("images per identity (min / max)", f"{counts.min()} / {counts.max()}" if summary.height else "-"),
        ("face-to-centroid similarity (mean)", f"{faces['mean']:.3f}" if faces["count"] else "-"),
        ("face-to-centroid similarity (min)", f"{faces['min']:.3f}" if faces["count"] else "-"),
        ("languages", f"{language_mix(path).height}"),
        ("image shards (bytes)", f"{images_meta['bytes']:,}"),
    ]
    return pl.DataFrame(metrics, schema={"metric": pl.String, "value": pl.String}, orient="row")


def consistency_checks(path: str | Path) -> pl.DataFrame:
    """Counts of rows breaking the dataset's invariants (all should be 0)."""
    summary = identity_summary(path)
    images = scan_images(path).select("sample_id", "identity_id", "similarity")
    duplicates = images.group_by("sample_id", "identity_id").len().filter(pl.col("len") > 1).collect().height
    bad_similarity = images.filter(~pl.col("similarity").is_between(-1.0001, 1.0001)).collect().height
    checks = {
        "identities_without_images": summary.filter(pl.col("n_images") == 0).height,
        "images_of_unknown_identity": int(summary.filter(pl.col("name").is_null())["n_images"].sum()),
        "declared_count_mismatch": summary.filter(
            pl.col("name").is_not_null() & (pl.col("n_images") != pl.col("declared_n_images"))
        ).height,
        "duplicate_image_rows": duplicates,
        "similarity_out_of_range": bad_similarity,
    }
    return pl.DataFrame(
        {"check": list(checks), "n_bad": list(checks.values())},
        schema={"check": pl.String, "n_bad": pl.Int64},
    )
