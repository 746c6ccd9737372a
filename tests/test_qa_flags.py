"""QA flags are absolute thresholds from config, not ranks: a clean dataset shows none, a flag never
contradicts its own number, and the gallery marks exactly the identities the table flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dataset_fixture import FakeDataset, build_fake_dataset

from laioncele.config import ReportConfig, SimilarityFlags
from laioncele.report import stats
from laioncele.report.html import write_report


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeDataset:
    return build_fake_dataset(tmp_path_factory.mktemp("flags"), n_identities=7, seed=3)


def _config(mean: float, minimum: float, runner_up: float) -> ReportConfig:
    return ReportConfig(
        flag_similarity={"offline": SimilarityFlags(min_mean_similarity=mean, min_similarity=minimum)},
        flag_max_runner_up_share=runner_up,
    )


def test_flags_name_exactly_the_thresholds_crossed(fake: FakeDataset) -> None:
    summary = stats.identity_summary(fake.run_dir)
    means = sorted(summary["mean_similarity"].to_list())
    # Thresholds between the data's values, so some identities cross each one and some do not.
    config = _config(
        mean=float(np.mean(means[2:4])), minimum=float(np.median(summary["min_similarity"])), runner_up=0.3
    )
    table = stats.least_pure_identities(fake.run_dir, n=None, config=config)
    assert table.height == len(fake.images_per_identity)
    for row in table.iter_rows(named=True):
        expected = []
        if row["mean_similarity"] < config.flag_similarity["offline"].min_mean_similarity:
            expected.append("low_mean_similarity")
        if row["min_similarity"] < config.flag_similarity["offline"].min_similarity:
            expected.append("low_min_similarity")
        if row["runner_up_share"] > 0.3:
            expected.append("high_runner_up_share")
        assert (row["flag"] or "") == ", ".join(expected), row
    flags = table["flag"].to_list()
    assert any(f is None for f in flags) and any(f is not None for f in flags)
    impure = table.filter(table["identity_id"] == fake.impure_identity).row(0, named=True)
    assert "high_runner_up_share" in impure["flag"]  # 0.45 > 0.3
    # The old rank-based flags called a zero share "high": a share under the threshold never is.
    low_share = table.filter(table["runner_up_share"] <= 0.3)
    assert not any("high_runner_up_share" in (f or "") for f in low_share["flag"].to_list())


def test_a_clean_dataset_shows_no_flag(fake: FakeDataset, tmp_path: Path) -> None:
    clean = _config(mean=-1.0, minimum=-1.0, runner_up=1.0)
    table = stats.least_pure_identities(fake.run_dir, n=None, config=clean)
    assert table["flag"].null_count() == table.height
    page = write_report(fake.run_dir, tmp_path / "clean", n_identities=7, config=clean).read_text()
    assert "class='identity flagged'" not in page and "class='flag'" not in page
    assert "none flagged" in page
    # An unknown backend gets no similarity thresholds, so no similarity flag either.
    other = ReportConfig(flag_similarity={}, flag_max_runner_up_share=1.0)
    assert (
        stats.least_pure_identities(fake.run_dir, n=None, config=other)["flag"].null_count() == table.height
    )


def test_gallery_marks_the_identities_the_table_flags(fake: FakeDataset, tmp_path: Path) -> None:
    config = _config(mean=0.0, minimum=0.0, runner_up=0.3)  # only the runner-up threshold can fire here
    table = stats.least_pure_identities(fake.run_dir, n=None, config=config)
    flagged = set(table.filter(table["flag"].is_not_null())["identity_id"].to_list())
    assert flagged == {fake.impure_identity}
    page = write_report(fake.run_dir, tmp_path / "r", n_identities=7, config=config).read_text()
    assert page.count("class='identity flagged'") == len(flagged) == 1
    assert "1 of the 7 shown flagged" in page


def test_similarity_histogram_spans_the_data(fake: FakeDataset) -> None:
    sims = [s for values in fake.similarities.values() for s in values]
    hist = stats.similarity_histogram(fake.run_dir, n_bins=10, lo=None, hi=None)
    assert hist["bin_start"][0] == pytest.approx(min(sims), abs=1e-6)
    assert hist["bin_end"][-1] == pytest.approx(max(sims), abs=1e-6)
    assert hist["count"].sum() == len(sims)
    expected = np.histogram(sims, bins=10, range=(min(sims), max(sims)))[0]
    assert abs(hist["count"].to_numpy() - expected).sum() <= 2  # float32 values on bin edges may move one
    assert (hist["count"] > 0).sum() >= 3
