"""Purity after faces on a tiny hand-built names corpus: the real identity cleaning removes the names whose
images share no face (a distractor, a photographer) and folds an initialled form into its person."""

from __future__ import annotations

from laioncele.config import IdentityConfig
from laioncele.synth.faces_truth import FaceModel, purity_after_faces, synthesise_faces


def _person(name: str, rows: list[int], forms: list[str]) -> dict:
    first, last = name.split()
    return {"name": name, "key": name.lower(), "first": first, "last": last, "middle_initial": "K",
            "given_name_listed": True, "rows": rows, "forms": forms}  # fmt: skip


TRUTH = {
    "identities": [
        _person("Anna Muller", list(range(15)), ["title"] * 9 + ["initial"] * 6),
        _person("Temi Balogun", list(range(15, 35)), ["title"] * 20),
        _person("Kofi Mensah", list(range(35, 45)), ["title"] * 10),
    ],
    # credited on real captions, never pictured
    "photographers": [_person("Jon Smith", list(range(45, 55)), ["credit"] * 10)],
    "distractors": [{"text": "Rose 'Lily Grace'", "kind": "cultivar", "rows": list(range(60, 80))}],
    "background_name_keys": [],
}
CANDIDATES = {
    "anna muller": range(9),
    "a muller": range(9, 15),  # her initialled mentions as a false name of their own
    "temi balogun": range(15, 35),
    "kofi mensah": range(35, 45),
    "jon smith": range(45, 55),
    "lily grace": range(60, 80),
}
# Every photo of a person shows that person alone; every other row shows 1-3 strangers (no row lacks a face).
CLEAN = FaceModel(mislabel_rate=0.0, multi_face_rate=0.0, nobody_no_face_rate=0.0)


def test_faces_follow_the_truth() -> None:
    faces, person = synthesise_faces(CANDIDATES, TRUTH, CLEAN)
    rows = [int(s[1:]) for s in faces.column("sample_id").to_pylist()]
    # one face per person row, of that person; 1-3 strangers on each of the 30 other rows
    assert [p for r, p in zip(rows, person.tolist(), strict=True) if r < 45] == [0] * 15 + [1] * 20 + [2] * 10
    others = [r for r in rows if r >= 45]
    assert set(others) == set(range(45, 55)) | set(range(60, 80))
    assert 30 <= len(others) <= 90 and (person[len(rows) - len(others) :] == -1).all()


def test_identity_stage_removes_the_distractor_and_the_photographer() -> None:
    s = purity_after_faces(CANDIDATES, TRUTH, IdentityConfig(), CLEAN)
    # before faces: 3 true of 6 candidates (false: "a muller" initialled, "jon smith" credit, "lily grace")
    assert s["purity_before_faces"] == 0.5
    # after: the three people are kept, each with all its photos; "a muller" shows Anna, so it joins her as an
    # alias; the photographer's and the cultivar's photos show only strangers: no dominant identity
    assert (s["kept_identities"], s["true_identities"], s["false_identities"]) == (3, 3, 0)
    assert s["purity"] == 1.0
    assert s["identity_recall_5_19"] == 1.0 and s["identity_recall_20_plus"] == 1.0
    assert s["false_candidates_after_faces"] == {"alias_of": 1, "name_no_dominant_identity": 2}
    assert [(f["name"], f["after_faces"]) for f in s["false_as_alias"]] == [
        ("a muller", "alias_of:anna muller")
    ]
    assert s["false_survivors"] == []
    assert s["true_identity_image_precision"] == 1.0


def test_a_distractor_with_one_recurring_face_survives() -> None:
    """The estimate rests on the faces: a cultivar whose every photo shows one face is kept as an identity."""
    model = FaceModel(
        mislabel_rate=0.0, multi_face_rate=0.0, nobody_no_face_rate=0.0, recurring_face_share=1.0
    )
    s = purity_after_faces(CANDIDATES, TRUTH, IdentityConfig(), model)
    assert (s["true_identities"], s["false_identities"]) == (3, 1)
    assert s["purity"] == 0.75
    assert [(f["name"], f["cause"]) for f in s["false_survivors"]] == [("lily grace", "distractor_cultivar")]
