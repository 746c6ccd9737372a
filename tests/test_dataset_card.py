"""The dataset card written at build time (dataset stage's top-manifest step) on the synthetic run: parsed with
huggingface_hub's own card loader, its figures checked against the fixture's ground truth."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from dataset_fixture import HOSTILE_CAPTION, HOSTILE_NAME, FakeDataset, build_fake_dataset

from laioncele.config import Config, load_config
from laioncele.report.dataset_card import CARD_NAME, IMAGE_BINS, build_config_hash, opt_out_fingerprint
from pipelines.stages.dataset import write_top_manifest

REPO = Path(__file__).resolve().parents[1]
OPT_OUT = ["Jane Doe", "John  Roe"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeDataset, Config, str]:
    truth = build_fake_dataset(tmp_path_factory.mktemp("card"), n_identities=6, seed=5)
    config = load_config(
        None,
        [f"run.output_root={truth.run_dir}", "run.name=fake", f"names.opt_out_names=[{', '.join(OPT_OUT)}]"],
    )
    write_top_manifest(config)
    return truth, config, (truth.run_dir / "dataset" / CARD_NAME).read_text()


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_card_is_a_hugging_face_card_with_the_build_counts(built: tuple[FakeDataset, Config, str]) -> None:
    from huggingface_hub import DatasetCard

    truth, config, text = built
    card = DatasetCard.load(truth.run_dir / "dataset" / CARD_NAME)
    assert card.data.license == "other" and card.data.pretty_name == "LaionCele (fake)"
    assert card.data.size_categories == ["n<1K"]
    assert "text-to-image" in card.data.task_categories

    n_images = sum(truth.images_per_identity.values())
    assert f"**{len(truth.images_per_identity)}** identities, **{n_images}** images" in text
    funnel = section(text, "Funnel")
    for stage, stage_truth in truth.stages.items():
        assert f"| {stage} | {stage_truth.rows_in} | {stage_truth.rows} |" in funnel, stage
        for reason, count in stage_truth.drops.items():
            assert f"{reason} {count}" in funnel


def test_card_gives_the_per_identity_distribution(built: tuple[FakeDataset, Config, str]) -> None:
    truth, _, text = built
    table = dict(re.findall(r"^\| ([0-9+-]+) \| (\d+) \|$", section(text, "Images per identity"), re.M))
    counts = list(truth.images_per_identity.values())
    assert sum(int(v) for v in table.values()) == len(counts)
    assert int(table["5-9"]) == sum(5 <= c < 10 for c in counts)
    assert int(table["10-19"]) == sum(10 <= c < 20 for c in counts)
    assert len(table) == len(IMAGE_BINS)
    assert f"min {min(counts)}," in text and f"max {max(counts)}." in text


def test_card_states_opt_out_licence_removal_and_provenance(built: tuple[FakeDataset, Config, str]) -> None:
    truth, config, text = built
    opt_out = section(text, "Opt-out list used")
    assert f"**{len(OPT_OUT)}** names" in opt_out
    # The fingerprint identifies the list, not its spelling or order; names are not published.
    assert opt_out_fingerprint(["john roe", "JANE DOE"]) in opt_out
    assert opt_out_fingerprint(["Jane Doe"]) not in opt_out
    assert "Jane Doe" not in text and "No removal has been applied" in opt_out
    licence = section(text, "Licence and consent").replace("\n", " ")
    assert "grants no rights to the images" in licence and "did not consent" in licence
    removal = section(text, "Removal requests")
    assert config.export.removal_contact in removal.replace("\n", " ")
    assert "python -m pipelines remove --names FILE" in removal

    provenance = section(text, "Provenance")
    assert build_config_hash(config) in provenance
    # Same content settings, other run name and resources: same hash; another identity threshold: not.
    same = config.model_copy(deep=True)
    same.run.name, same.ray.num_cpus = "other", 1
    changed = config.model_copy(deep=True)
    changed.identity.min_images = 9
    assert build_config_hash(same) == build_config_hash(config) != build_config_hash(changed)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:
        assert commit.stdout.strip() in provenance


def test_card_never_carries_a_name_or_caption(built: tuple[FakeDataset, Config, str]) -> None:
    _, _, text = built
    assert HOSTILE_NAME not in text and "Person 0" not in text and HOSTILE_CAPTION not in text
