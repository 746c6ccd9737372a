"""Static HTML QA report of a built dataset: funnel, distributions, and face crops of the riskiest identities.

The report is a folder (``index.html``, ``plots/*.png``, ``crops/*.jpg``) with relative links only, so it opens
from disk in any browser and can be copied or archived as is. Every piece of text from the data (names,
captions, ids, drop reasons) is HTML-escaped: captions are scraped web text and must be treated as hostile.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image, UnidentifiedImageError

from laioncele.config import ReportConfig
from laioncele.io.schema import DATASET_IMAGES
from laioncele.io.shards import atomic_write_bytes
from laioncele.io.storage import ObjectPath, as_path, copy_file
from laioncele.report import stats

REPORT_DIRNAME = "report"
PLOTS_DIRNAME = "plots"
CROPS_DIRNAME = "crops"


@dataclass(frozen=True)
class Crop:
    identity_id: str
    sample_id: str
    similarity: float
    caption: str
    url: str
    file: str | None  # path relative to the report folder; None when no crop could be made
    problem: str | None = None  # why there is no crop


# ---------------------------------------------------------------------------------------------- crops


def crop_face(
    image_bytes: bytes, bbox: list[float] | None, config: ReportConfig
) -> tuple[Image.Image | None, str | None]:
    """The face region (bbox grown by ``crop_margin``) as an RGB thumbnail, or (None, reason)."""
    if bbox is None or len(bbox) != 4 or not all(v is not None and math.isfinite(v) for v in bbox):
        return None, "invalid_bbox"
    try:
        with Image.open(io.BytesIO(image_bytes)) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None, "undecodable_image"
    x1, y1, x2, y2 = bbox
    margin_x, margin_y = (x2 - x1) * config.crop_margin, (y2 - y1) * config.crop_margin
    box = (
        max(0, math.floor(x1 - margin_x)),
        max(0, math.floor(y1 - margin_y)),
        min(image.width, math.ceil(x2 + margin_x)),
        min(image.height, math.ceil(y2 + margin_y)),
    )
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None, "bbox_outside_image"
    crop = image.crop(box)
    crop.thumbnail((config.thumbnail_px, config.thumbnail_px))
    return crop, None


def _crop_filename(identity_id: str, sample_id: str) -> str:
    digest = hashlib.sha256(f"{identity_id}\0{sample_id}".encode()).hexdigest()[:20]
    return f"{CROPS_DIRNAME}/{digest}.jpg"


def select_gallery(
    path: Path | ObjectPath, config: ReportConfig, n_identities: int
) -> tuple[list[str], set[str]]:
    """Identity ids for the gallery: the least pure first, then a seeded random sample of the rest; and the
    shown ids that crossed a QA flag threshold (red in the gallery, the same flags as the table)."""
    summary = stats.least_pure_identities(path, n=None, config=config)
    ranked = summary["identity_id"].to_list()
    n_first = min(config.least_pure_first, n_identities, len(ranked))
    first = ranked[:n_first]
    rest = ranked[n_first:]
    rng = np.random.default_rng(config.seed)
    n_random = min(n_identities - n_first, len(rest))
    sampled = (
        [rest[i] for i in sorted(rng.choice(len(rest), size=n_random, replace=False))] if n_random else []
    )
    shown = first + sampled
    flagged = set(summary.filter(pl.col("flag").is_not_null())["identity_id"].to_list()) & set(shown)
    return shown, flagged


def write_crops(
    path: Path | ObjectPath, identity_ids: list[str], out_dir: Path, config: ReportConfig
) -> tuple[dict[str, list[Crop]], Counter[str]]:
    """Thumbnails of each identity's lowest-similarity faces (where mislabels show), written under crops/.

    The first scan picks the rows and notes their shard without reading image bytes; then the image bytes are
    read one shard at a time, and only from shards holding a picked row, so memory stays within one shard."""
    problems: Counter[str] = Counter()
    crops: dict[str, list[Crop]] = {i: [] for i in identity_ids}
    if not identity_ids:
        return crops, problems
    shards = {str(p): p for p in stats.shard_paths(stats.dataset_dir(path) / "images", DATASET_IMAGES)}
    if not shards:
        return crops, problems
    picked = (
        stats.scan_shard_files(list(shards.values()), include_file_paths="_shard")
        .select("sample_id", "identity_id", "similarity", "_shard")
        .filter(pl.col("identity_id").is_in(identity_ids))
        .sort(["identity_id", "similarity", "sample_id"])
        .group_by("identity_id", maintain_order=True)
        .head(config.crops_per_identity)
        .collect()
    )
    (out_dir / CROPS_DIRNAME).mkdir(parents=True, exist_ok=True)
    made: list[Crop] = []
    for (shard,), keys in picked.group_by("_shard", maintain_order=True):
        rows = (
            stats.scan_shard_files([shards[shard]])
            .select("sample_id", "identity_id", "similarity", "caption", "url", "image", "bbox")
            .join(keys.select("sample_id", "identity_id").lazy(), on=["sample_id", "identity_id"], how="semi")
            .collect()
        )
        for row in rows.iter_rows(named=True):
            made.append(_write_crop(row, out_dir, config))
            if made[-1].problem:
                problems[made[-1].problem] += 1
    for crop in sorted(made, key=lambda c: (c.similarity, c.sample_id)):
        crops[crop.identity_id].append(crop)
    return crops, problems


def _write_crop(row: dict[str, Any], out_dir: Path, config: ReportConfig) -> Crop:
    thumb, problem = crop_face(row["image"], row["bbox"], config)
    file = None
    if thumb is not None:
        file = _crop_filename(row["identity_id"], row["sample_id"])
        thumb.save(out_dir / file, format="JPEG", quality=config.jpeg_quality)
    return Crop(
        row["identity_id"],
        row["sample_id"],
        float(row["similarity"]),
        row["caption"] or "",
        row["url"] or "",
        file,
        problem,
    )


# ---------------------------------------------------------------------------------------------- plots


def _save(fig: Any, out_dir: Path, name: str) -> str:
    rel = f"{PLOTS_DIRNAME}/{name}"
    fig.tight_layout()
    fig.savefig(out_dir / rel, dpi=100)
    return rel


def write_plots(path: Path | ObjectPath, out_dir: Path) -> dict[str, str]:
    """The report's PNG plots; returns {plot key: path relative to the report folder}."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    (out_dir / PLOTS_DIRNAME).mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    try:
        funnel = stats.funnel(path).filter(pl.col("status") == "complete")
        if funnel.height:
            fig, ax = plt.subplots(figsize=(8, 0.45 * funnel.height + 1.2))
            labels = funnel["stage"].to_list()[::-1]
            ax.barh(labels, funnel["rows_in"].to_list()[::-1], color="#cfd8e3", label="rows in")
            ax.barh(labels, funnel["rows"].to_list()[::-1], color="#3b6ea5", height=0.5, label="rows out")
            ax.set_xscale("symlog")
            ax.set_xlabel("rows (each stage counts its own unit)")
            ax.legend(loc="lower right")
            plots["funnel"] = _save(fig, out_dir, "funnel.png")
            plt.close(fig)

        hist = stats.images_per_identity(path)
        fig, ax = plt.subplots(figsize=(8, 3.2))
        ax.bar(hist["n_images"].to_list(), hist["n_identities"].to_list(), color="#3b6ea5")
        ax.set_xlabel("images per identity")
        ax.set_ylabel("identities")
        plots["images_per_identity"] = _save(fig, out_dir, "images_per_identity.png")
        plt.close(fig)

        sims = stats.similarity_histogram(path, n_bins=40, lo=None, hi=None)  # the data's own range
        fig, ax = plt.subplots(figsize=(8, 3.2))
        ax.bar(
            sims["bin_start"].to_list(),
            sims["count"].to_list(),
            width=(sims["bin_end"] - sims["bin_start"]).to_list(),
            align="edge",
            color="#5a9e6f",
        )
        ax.set_xlabel("face-to-centroid cosine similarity (kept faces)")
        ax.set_ylabel("faces")
        plots["similarity"] = _save(fig, out_dir, "similarity.png")
        plt.close(fig)

        languages = stats.language_mix(path).head(15)
        fig, ax = plt.subplots(figsize=(8, 0.35 * languages.height + 1.2))
        ax.barh(languages["language"].to_list()[::-1], languages["n_images"].to_list()[::-1], color="#a5673b")
        ax.set_xlabel("images")
        plots["languages"] = _save(fig, out_dir, "languages.png")
        plt.close(fig)
    finally:
        plt.close("all")
    return plots


# ---------------------------------------------------------------------------------------------- html


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return _e(", ".join(str(v) for v in value))
    return _e(value)


def html_table(frame: pl.DataFrame, max_rows: int = 50) -> str:
    """An escaped HTML table of a (small) Polars frame."""
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in frame.head(max_rows).iter_rows()
    )
    more = (
        f"<p class='note'>{frame.height - max_rows:,} more rows not shown</p>"
        if frame.height > max_rows
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _img(rel: str | None, alt: str) -> str:
    return f"<img src='{_e(rel)}' alt='{_e(alt)}'>" if rel else f"<p class='note'>no {_e(alt)} plot</p>"


def _gallery(
    identity_ids: list[str], flagged: set[str], crops: dict[str, list[Crop]], summary: pl.DataFrame
) -> str:
    info = {row["identity_id"]: row for row in summary.iter_rows(named=True)}
    parts = []
    for iid in identity_ids:
        row = info.get(iid, {})
        badge = f"<span class='flag'>flagged: {_e(row.get('flag') or '')}</span>" if iid in flagged else ""
        figures = []
        for crop in crops.get(iid, []):
            title = _e(f"{crop.caption}\n{crop.url}")
            if crop.file:
                media = f"<img src='{_e(crop.file)}' alt='{_e(crop.sample_id)}' title='{title}'>"
            else:
                media = f"<div class='missing' title='{title}'>{_e(crop.problem)}</div>"
            figures.append(f"<figure>{media}<figcaption>{crop.similarity:.3f}</figcaption></figure>")
        meta = (
            f"{_cell(row.get('n_images'))} images · mean sim {_cell(row.get('mean_similarity'))} · "
            f"min sim {_cell(row.get('min_similarity'))} · runner-up share {_cell(row.get('runner_up_share'))}"
        )
        parts.append(
            f"<section class='identity{' flagged' if iid in flagged else ''}'>"
            f"<h3>{_e(row.get('name') or iid)} <code>{_e(iid)}</code> {badge}</h3>"
            f"<p class='meta'>{meta}</p><div class='crops'>{''.join(figures)}</div></section>"
        )
    return "".join(parts) or "<p class='note'>no identities</p>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{margin-bottom:0} .sub{color:#666;margin-top:4px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6} .note{color:#777;font-size:13px}
section.identity{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:10px 0}
section.flagged{border-color:#d9534f;background:#fff6f5}
.flag{background:#d9534f;color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}
.meta{color:#555;font-size:13px;margin:2px 0 6px}
.crops{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;text-align:center;font-size:12px}
figure img,.missing{width:112px;height:112px;object-fit:contain;background:#f3f3f3;border:1px solid #ddd}
.missing{display:flex;align-items:center;justify-content:center;color:#a33;font-size:11px}
"""


def render_html(
    path: Path | ObjectPath,
    plots: dict[str, str],
    gallery_html: str,
    crop_problems: Counter[str],
    config: ReportConfig | None = None,
) -> str:
    run_dir, _ = stats.resolve_dirs(path)
    meta = stats.dataset_manifest(path)
    encoder = meta.get("text_encoder") or meta.get("text_encoder_source") or "–"
    if isinstance(encoder, dict):
        encoder = encoder.get("source") or ", ".join(f"{k}={v}" for k, v in encoder.items())
    problems = (
        "<p class='note'>crops not rendered: "
        + _e(", ".join(f"{k}={v}" for k, v in sorted(crop_problems.items())))
        + "</p>"
        if crop_problems
        else ""
    )
    config = config or ReportConfig()
    least_pure = stats.least_pure_identities(path, n=25, config=config).select(
        "identity_id", "name", "n_images", "mean_similarity", "min_similarity", "runner_up_share", "flag"
    )
    sections = [
        f"<h1>LaionCele dataset QA report</h1><p class='sub'>run <code>{_e(run_dir.name)}</code> · "
        f"generated {_e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))} · text encoder {_e(encoder)}</p>",
        "<h2>Overview</h2>" + html_table(stats.overview(path)),
        "<h2>Consistency checks</h2><p class='note'>every count should be 0</p>"
        + html_table(stats.consistency_checks(path)),
        "<h2>Funnel</h2>" + html_table(stats.funnel(path, top_drops=4)) + _img(plots.get("funnel"), "funnel"),
        "<h2>Drop reasons</h2>" + html_table(stats.drop_reasons(path), max_rows=200),
        "<h2>Images per identity</h2>" + _img(plots.get("images_per_identity"), "images per identity"),
        "<h2>Similarity to the identity centroid</h2>"
        + html_table(stats.similarity_summary(path))
        + _img(plots.get("similarity"), "similarity"),
        "<h2>Caption languages</h2>"
        + html_table(stats.language_mix(path))
        + _img(plots.get("languages"), "languages"),
        "<h2>Least pure identities</h2><p class='note'>ranked by their worst signal; <code>flag</code> names "
        "the absolute thresholds crossed (report.flag_similarity, report.flag_max_runner_up_share; "
        f"docs/qa_report.md): {_e(_flagged_count(least_pure))}</p>" + html_table(least_pure),
        "<h2>Face crops</h2><p class='note'>the least pure identities first, then a random sample; flagged "
        "ones in red; each "
        "identity's lowest-similarity faces first; hover a crop for its caption</p>"
        + problems
        + gallery_html,
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>LaionCele QA: {_e(run_dir.name)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def _flagged_count(least_pure: pl.DataFrame) -> str:
    flagged = least_pure.filter(pl.col("flag").is_not_null()).height
    return f"{flagged} of the {least_pure.height} shown flagged" if flagged else "none flagged"


def _clear(folder: Path | ObjectPath, pattern: str) -> None:
    """Remove files this report wrote last time, so stale crops never linger beside the new ones."""
    if folder.is_dir():
        for file in folder.glob(pattern):
            file.unlink()


def write_report(
    run_dir: str | Path | ObjectPath,
    out_dir: str | Path | ObjectPath | None = None,
    n_identities: int | None = None,
    config: ReportConfig | None = None,
) -> Path | ObjectPath:
    """Write the QA report of the dataset under ``run_dir`` (a run or its dataset dir) and return index.html.

    ``out_dir`` defaults to ``<run>/report``; ``n_identities`` (default: ``config.n_identities``, 24) is the
    size of the crop gallery. On an object store (``s3://``) the report is rendered into a local temporary
    folder and uploaded file by file (each all-or-nothing), ``index.html`` last."""
    config = config or ReportConfig()
    run_dir = as_path(run_dir)
    run, _ = stats.resolve_dirs(run_dir)
    stats.dataset_dir(run_dir)  # fail early, with a clear message, when no dataset was built
    target = as_path(out_dir) if out_dir is not None else run / REPORT_DIRNAME
    n = config.n_identities if n_identities is None else n_identities
    if isinstance(target, Path):
        return _write_report_files(run_dir, target, n, config)
    with tempfile.TemporaryDirectory(prefix="laioncele-report-") as local:
        index = _write_report_files(run_dir, Path(local), n, config)
        _clear(target / CROPS_DIRNAME, "*.jpg")
        _clear(target / PLOTS_DIRNAME, "*.png")
        for file in sorted(p for p in Path(local).rglob("*") if p.is_file() and p != index):
            copy_file(file, target / file.relative_to(local).as_posix())
        copy_file(index, target / index.name)
    return target / index.name


def _write_report_files(run_dir: Path | ObjectPath, out_dir: Path, n: int, config: ReportConfig) -> Path:
    """The report's files in the local folder ``out_dir``; index.html written last, all-or-nothing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir / CROPS_DIRNAME, "*.jpg")
    _clear(out_dir / PLOTS_DIRNAME, "*.png")
    plots = write_plots(run_dir, out_dir)
    identity_ids, flagged = select_gallery(run_dir, config, n)
    crops, problems = write_crops(run_dir, identity_ids, out_dir, config)
    summary = stats.least_pure_identities(run_dir, n=None, config=config)
    page = render_html(run_dir, plots, _gallery(identity_ids, flagged, crops, summary), problems, config)
    index = out_dir / "index.html"
    atomic_write_bytes(index, page.encode("utf-8"))
    return index
