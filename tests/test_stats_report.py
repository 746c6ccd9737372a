"""laioncele.report.stats numbers against a synthetic run's known truth; the HTML report rendered in headless
Chromium; the stats notebook executed top to bottom."""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dataset_fixture import HOSTILE_CAPTION, HOSTILE_NAME, FakeDataset, build_fake_dataset
from PIL import Image

from laioncele.config import ReportConfig
from laioncele.io.shards import ShardError
from laioncele.report import stats
from laioncele.report.html import crop_face, write_report

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "dataset_stats.ipynb"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeDataset:
    return build_fake_dataset(tmp_path_factory.mktemp("stats"), n_identities=7, seed=3)


@pytest.fixture(scope="module")
def report(fake: FakeDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(fake.run_dir, tmp_path_factory.mktemp("report") / "report", n_identities=5)


# ---------------------------------------------------------------------------------------------- stats


def test_scan_reads_zstd_shards_with_list_and_binary_columns(fake: FakeDataset) -> None:
    images = stats.scan_images(fake.run_dir)
    frame = images.select("sample_id", "bbox", "face_embedding", "image").collect()
    assert frame.height == sum(fake.images_per_identity.values())
    assert frame["bbox"].dtype == pl.Array(pl.Float32, 4)
    assert frame["face_embedding"].list.len().unique().to_list() == [16]
    assert frame["image"].dtype == pl.Binary and frame["image"].bin.size().min() > 0
    # The same frame through the dataset dir, and the identities table.
    assert stats.scan_images(fake.run_dir / "dataset").select(pl.len()).collect().item() == frame.height
    assert stats.scan_identities(fake.run_dir).select(pl.len()).collect().item() == len(
        fake.images_per_identity
    )


def test_identities_by_image_count_matches_truth(fake: FakeDataset) -> None:
    table = stats.identities_by_image_count(fake.run_dir)
    assert dict(zip(table["identity_id"], table["n_images"], strict=True)) == fake.images_per_identity
    assert table["n_images"].to_list() == sorted(fake.images_per_identity.values(), reverse=True)
    assert (table["declared_n_images"] == table["n_images"]).all()
    sims = fake.similarities
    for row in table.iter_rows(named=True):
        assert row["mean_similarity"] == pytest.approx(statistics.fmean(sims[row["identity_id"]]), abs=1e-5)
        assert row["min_similarity"] == pytest.approx(min(sims[row["identity_id"]]), abs=1e-6)


def test_images_per_identity_histogram(fake: FakeDataset) -> None:
    hist = stats.images_per_identity(fake.run_dir)
    expected: dict[int, int] = {}
    for count in fake.images_per_identity.values():
        expected[count] = expected.get(count, 0) + 1
    assert dict(zip(hist["n_images"], hist["n_identities"], strict=True)) == expected
    binned = stats.images_per_identity(fake.run_dir, bins=[1, 8])
    below = sum(1 for c in fake.images_per_identity.values() if c < 8)
    assert dict(zip(binned["n_images"], binned["n_identities"], strict=True)) == {
        1: below,
        8: len(fake.images_per_identity) - below,
    }


def test_funnel_from_manifests(fake: FakeDataset) -> None:
    funnel = stats.funnel(fake.run_dir)
    assert funnel["stage"].to_list() == list(fake.stages)
    for row in funnel.iter_rows(named=True):
        truth = fake.stages[row["stage"]]
        assert (row["status"], row["rows_in"], row["rows"]) == ("complete", truth.rows_in, truth.rows)
        assert row["dropped"] == sum(truth.drops.values())
    reasons = stats.drop_reasons(fake.run_dir)
    got = {(r["stage"], r["reason"]): r["count"] for r in reasons.iter_rows(named=True)}
    assert got == {(s, k): v for s, t in fake.stages.items() for k, v in t.drops.items()}
    download = funnel.filter(pl.col("stage") == "download").row(0, named=True)
    assert download["top_drops"].startswith("http_404=30")


def test_funnel_shows_only_what_exists(fake: FakeDataset, tmp_path: Path) -> None:
    run = tmp_path / "partial"
    shutil.copytree(fake.run_dir, run)
    shutil.rmtree(run / "ner")
    (run / "faces" / "manifest.json").unlink()  # a stage that crashed before finalising
    funnel = stats.funnel(run)
    assert "ner" not in funnel["stage"].to_list()
    assert funnel["stage"].to_list()[:4] == ["ingest", "names", "candidates", "download"]
    assert funnel.filter(pl.col("stage") == "faces")["status"].item() == "incomplete"
    # A run without a dataset still has a funnel; dataset questions fail with a clear message.
    shutil.rmtree(run / "dataset")
    assert stats.funnel(run)["stage"].to_list() == [s for s in stats.STAGES if s != "ner"]
    with pytest.raises(ShardError, match="no built dataset"):
        stats.scan_images(run)


def test_scan_refuses_truncated_shard(fake: FakeDataset, tmp_path: Path) -> None:
    run = tmp_path / "broken"
    shutil.copytree(fake.run_dir, run)
    shard = sorted((run / "dataset" / "images").glob("part-*.arrow"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ShardError, match="missing or not"):
        stats.scan_images(run)


def test_similarity_and_language(fake: FakeDataset) -> None:
    all_sims = [s for sims in fake.similarities.values() for s in sims]
    summary = stats.similarity_summary(fake.run_dir)
    face = summary.filter(pl.col("level") == "face").row(0, named=True)
    assert face["count"] == len(all_sims)
    assert face["mean"] == pytest.approx(np.mean(all_sims), abs=1e-5)
    assert face["p50"] == pytest.approx(np.quantile(all_sims, 0.5), abs=1e-5)
    assert face["min"] <= face["p05"] <= face["p50"] <= face["p95"] <= face["max"]
    ident = summary.filter(pl.col("level") == "identity_mean").row(0, named=True)
    assert ident["count"] == len(fake.images_per_identity)

    hist = stats.similarity_histogram(fake.run_dir, n_bins=10)
    assert hist["count"].sum() == len(all_sims)
    assert (
        hist["count"].to_list()
        == np.histogram(np.clip(all_sims, 0, 0.999999), bins=10, range=(0, 1))[0].tolist()
    )

    mix = stats.language_mix(fake.run_dir)
    truth = {("unknown" if k is None else k): v for k, v in fake.languages.items()}
    assert dict(zip(mix["language"], mix["n_images"], strict=True)) == truth
    assert mix["share"].sum() == pytest.approx(1.0)


def test_least_pure_identity_comes_first(fake: FakeDataset) -> None:
    ranked = stats.least_pure_identities(fake.run_dir, n=3)
    assert ranked.height == 3
    assert ranked["identity_id"][0] == fake.impure_identity
    assert ranked["impurity_rank"].to_list() == sorted(ranked["impurity_rank"].to_list())
    assert stats.consistency_checks(fake.run_dir)["n_bad"].sum() == 0


# ---------------------------------------------------------------------------------------------- report


def test_crop_face_handles_bad_input() -> None:
    config = ReportConfig(thumbnail_px=32)
    image = Image.new("RGB", (100, 80), (200, 10, 10))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    thumb, problem = crop_face(buffer.getvalue(), [10.0, 10.0, 50.0, 60.0], config)
    assert problem is None and thumb is not None and max(thumb.size) == 32
    assert crop_face(b"junk", [1.0, 1.0, 5.0, 5.0], config) == (None, "undecodable_image")
    assert crop_face(buffer.getvalue(), [float("nan"), 0.0, 5.0, 5.0], config) == (None, "invalid_bbox")
    assert crop_face(buffer.getvalue(), [500.0, 500.0, 600.0, 600.0], config) == (None, "bbox_outside_image")


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.srcs.append(dict(attrs)["src"] or "")
        if tag == "script":
            self.scripts += 1


def test_report_files_links_and_escaping(fake: FakeDataset, report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(page)
    assert parser.scripts == 0, "hostile caption text was not escaped"
    assert HOSTILE_NAME not in page and "&lt;b&gt;Eve&lt;/b&gt;" in page
    assert HOSTILE_CAPTION not in page
    crops = [s for s in parser.srcs if s.startswith("crops/")]
    plots = [s for s in parser.srcs if s.startswith("plots/")]
    assert len(plots) == 4
    for src in parser.srcs:
        assert not src.startswith(("/", "http:", "https:", "file:")), src
        file = report.parent / src
        assert file.is_file(), src
        with Image.open(file) as image:
            assert min(image.size) > 0
    # 5 identities in the gallery, up to 8 crops each; the corrupt image shows a reason, not a broken <img>.
    shown = {i for i in fake.images_per_identity if f"<code>{i}</code>" in page}
    assert len(shown) == 5 and fake.impure_identity in shown
    assert page.index(f"<code>{fake.impure_identity}</code>") < min(
        page.index(f"<code>{i}</code>") for i in shown - {fake.impure_identity}
    )
    expected_crops = sum(min(8, fake.images_per_identity[i]) for i in shown)
    corrupt_shown = 0
    for identity_id, index in fake.corrupt_images:  # shown when among its identity's 8 lowest similarities
        sims = fake.similarities[identity_id]
        corrupt_shown += identity_id in shown and sorted(sims).index(sims[index]) < 8
    assert page.count("class='missing'") == corrupt_shown
    assert len(crops) == expected_crops - corrupt_shown
    assert len(list((report.parent / "crops").glob("*.jpg"))) == len(crops)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    shot = tmp_path / "report.png"
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        report.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), f"no screenshot (rc={result.returncode}): {result.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > 10, "the screenshot is blank"
    # Something other than text on white was drawn: the plots' coloured bars.
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    saturated = (rgb.max(axis=2) - rgb.min(axis=2)) > 60
    assert saturated.mean() > 0.01


def test_report_rerun_replaces_stale_files(fake: FakeDataset, tmp_path: Path) -> None:
    out = tmp_path / "r"
    write_report(fake.run_dir, out, n_identities=7)
    many = len(list((out / "crops").glob("*.jpg")))
    write_report(fake.run_dir, out, n_identities=1)
    few = len(list((out / "crops").glob("*.jpg")))
    assert 0 < few <= 8 < many


# ---------------------------------------------------------------------------------------------- notebook


def test_notebook_runs_top_to_bottom(fake: FakeDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("LAIONCELE_RUN_DIR", str(fake.run_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert f"run: {fake.run_dir}" in text
    assert fake.impure_identity in text
    assert os.environ["LAIONCELE_RUN_DIR"] == str(fake.run_dir)


def test_report_of_an_empty_dataset(tmp_path: Path) -> None:
    from laioncele.io import schema
    from laioncele.io.shards import write_shards

    dataset = tmp_path / "run" / "dataset"
    write_shards(
        schema.DATASET_IDENTITIES.empty_table(), dataset / "identities", schema=schema.DATASET_IDENTITIES
    )
    write_shards(schema.DATASET_IMAGES.empty_table(), dataset / "images", schema=schema.DATASET_IMAGES)
    assert stats.identities_by_image_count(dataset).height == 0
    assert stats.funnel(dataset)["stage"].to_list() == ["dataset/identities", "dataset/images"]
    index = write_report(dataset)
    assert index == tmp_path / "run" / "report" / "index.html"
    assert "no identities" in index.read_text(encoding="utf-8")
