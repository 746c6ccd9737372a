"""The embedded sample: LAION-shaped metadata over real face photos, with the noise real data has.

``python -m laioncele.synth.sample`` regenerates ``sample/metadata.parquet`` and ``sample/truth.json`` from
``sample/images/labels.csv`` (deterministic). Images are served by a local HTTP server that ``make
build-dataset`` starts itself (``pipelines.sample_server``), so the download stage runs for real.

What the rows contain:
- every labelled photo captioned with its person's name, in LAION's styles: title case, lower case, all caps,
  agency credits ("Getty Images"), product-like tails;
- the couple and the group selfie captioned with all named people (multi-face images);
- mislabelled rows: a photo of one person captioned with another person's name (the identity stage must drop them);
- rows naming people whose image has no face, is corrupt, is an HTML error page, or is gone (404);
- 9,600 real LAION captions (img2dataset's public test files) whose URLs point at the local server's missing
  paths: their names, if any, meet link rot.

``truth.json`` maps each URL to the people whose faces it really shows, so a built dataset's image-level
precision and recall can be checked (``truth_check``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample"
DEFAULT_PORT = 8765

_TEMPLATES = [
    "{name} attends the premiere in Los Angeles",
    "{lower} at the oscars",
    "{name} Photo - Getty Images",
    "{upper} SIGNED PHOTO",
    "{name} on the red carpet at the Venice Film Festival",
    "Actress {name} poses for photographers",
    "{name} Stock Photo",
    "{lower} new haircut 2019",
    "{name} smiles during an interview",
]
# (photo, name it is wrongly captioned with): faces of one person under another person's name.
_MISLABELLED = [
    ("img26.jpg", "Angelina Jolie"),
    ("img47.jpg", "Angelina Jolie"),
    ("img29.jpg", "Katy Perry"),
    ("img3.jpg", "Scarlett Johansson"),
    ("img16.jpg", "Matt Damon"),
    ("img38.jpg", "Jennifer Aniston"),
    ("img13.jpg", "Jack Dorsey"),
    ("img57.jpg", "Katy Perry"),
]
_BROKEN = [
    ("noface_coffee.jpg", "Katy Perry", "coffee, no face"),
    ("noface_rocket.jpg", "Matt Damon", "rocket launch, no face"),
    ("noface_chelsea.jpg", "Scarlett Johansson", "a cat, no face"),
    ("corrupt_truncated.jpg", "Angelina Jolie", "truncated JPEG"),
    ("error_page.jpg", "Jennifer Aniston", "HTML error page served as an image"),
    ("gone_404.jpg", "Mark Zuckerberg", "link rot: 404"),
    ("gone_404_b.jpg", "George Clooney", "link rot: 404"),
]


def _caption(name: str, i: int) -> str:
    template = _TEMPLATES[i % len(_TEMPLATES)]
    return template.format(name=name, lower=name.lower(), upper=name.upper())


def build_sample(sample_dir: Path = SAMPLE_DIR, port: int = DEFAULT_PORT) -> tuple[Path, Path]:
    """Write ``metadata.parquet`` (LAION columns) and ``truth.json`` for the photos in ``sample_dir/images``."""
    base = f"http://127.0.0.1:{port}"
    rows: list[dict] = []
    truth: dict[str, list[str]] = {}

    def add(path: str, caption: str, shows: list[str], width: int = 800, height: int = 800) -> None:
        url = f"{base}/{path}"
        rows.append(
            {
                "URL": url,
                "TEXT": caption,
                "WIDTH": float(width),
                "HEIGHT": float(height),
                "similarity": 0.33,
                "LANGUAGE": "en",
            }
        )
        truth[url] = shows

    with open(sample_dir / "images" / "labels.csv", newline="") as handle:
        labelled = list(csv.DictReader(handle))
    for i, row in enumerate(labelled):
        names = row["names"].split(";")
        if len(names) == 1:
            add(f"images/{row['file']}", _caption(names[0], i), names)
        else:
            add(f"images/{row['file']}", " and ".join(names) + " at a party", names)
    shows = {row["file"]: row["names"].split(";") for row in labelled}
    for i, (file, wrong_name) in enumerate(_MISLABELLED):
        add(f"images/{file}?mislabelled={i}", _caption(wrong_name, i + 3), shows[file])
    for file, name, _ in _BROKEN:
        add(f"images/{file}", _caption(name, 1), [])
    add("images/group_t1.jpg", "Team photo of six colleagues, Getty Images", [])

    laion = pq.read_table(sample_dir / "laion_captions_9600.parquet")
    for i, text in enumerate(laion.column("TEXT").to_pylist()):
        rows.append(
            {
                "URL": f"{base}/laion/{i:05d}.jpg",
                "TEXT": text,
                "WIDTH": 640.0,
                "HEIGHT": 480.0,
                "similarity": 0.3,
                "LANGUAGE": "en",
            }
        )
    table = pa.Table.from_pylist(rows)
    metadata = sample_dir / "metadata.parquet"
    pq.write_table(table, metadata, row_group_size=2500)
    truth_path = sample_dir / "truth.json"
    truth_path.write_text(json.dumps({"port": port, "shows": truth}, indent=1, sort_keys=True) + "\n")
    return metadata, truth_path


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(
        prog="python -m laioncele.synth.sample",
        description=f"Rebuild the embedded sample's metadata and truth under {SAMPLE_DIR} (deterministic).",
    ).parse_args()
    paths = build_sample()
    print("wrote", *paths)
