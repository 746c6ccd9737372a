"""The identity-level scorer on a tiny corpus whose figures are worked out by hand."""

from __future__ import annotations

from laioncele.synth.identity_truth import score_identities


def _person(name: str, listed: bool, rows: list[int], forms: list[str], middle: str = "K") -> dict:
    first, last = name.split()
    key = name.lower()
    return {"name": name, "key": key, "first": first, "last": last, "middle_initial": middle,
            "given_name_listed": listed, "rows": rows, "forms": forms}  # fmt: skip


TRUTH = {
    "identities": [
        # 10 mentions: 6 title, 2 initialled, 1 catalogue order, 1 with the middle initial
        _person(
            "Anna Muller",
            True,
            list(range(10)),
            ["title"] * 6 + ["initial"] * 2 + ["inverted", "middle_initial"],
        ),
        _person("Temi Balogun", False, list(range(10, 30)), ["title"] * 15 + ["inverted"] * 5),
        _person("Kofi Mensah", False, list(range(30, 35)), ["title"] * 5),
        _person("Lars Berg", True, [35, 36], ["title", "lower"]),  # under 5 mentions: in no band
    ],
    "photographers": [_person("Jon Smith", True, list(range(40, 50)), ["credit"] * 10)],
    "distractors": [{"text": "Rose 'Lily Grace'", "kind": "cultivar", "rows": list(range(50, 60))}],
    "background_name_keys": ["matt damon"],
}
CANDIDATES = {
    "anna muller": range(6),
    "anna k muller": [9, 0, 1, 2, 3],  # an alias: merged with "anna muller" -> 7 rows
    "a muller": [6, 7, 0, 1, 2],  # her initialled mentions as a false name
    "temi balogun": range(10, 25),
    "balogun temi": range(25, 30),  # his catalogue-order mentions as a false name
    "kofi mensah": range(30, 34),  # 4 samples: no candidate
    "jon smith": range(40, 50),  # credited, not depicted
    "lily grace": range(50, 60),  # a plant cultivar
    "matt damon": range(60, 65),  # a real name of the background: out of purity
    "tote bag": range(65, 70),  # no key of the background, but found only in background rows: out of purity
    "grace rose": [50, 51, 52, 53, 70],  # other words, but mostly the cultivar's rows
    "lily muller": [0, 1, 50, 51, 30],  # invented rows, no one's majority: unexplained
}


def test_score_identities_hand_computed() -> None:
    s = score_identities(CANDIDATES, TRUTH, min_samples=5)
    # bands: 5-19 = Anna (found, 7 merged samples) and Kofi (4 samples: not found); 20+ = Temi (found)
    assert (s["identity_recall_5_19"], s["identities_5_19"]) == (0.5, 2)
    assert (s["identity_recall_20_plus"], s["identities_20_plus"]) == (1.0, 1)
    assert s["mention_recall"] == round((7 + 15 + 0) / 35, 4)
    # 11 candidates with >= 5 samples: 3 true, 6 false, 2 background
    counts = (s["candidates"], s["true_candidates"], s["false_candidates"], s["background_candidates"])
    assert counts == (11, 3, 6, 2)
    assert s["purity"] == round(3 / 9, 4)
    listed, unlisted = s["listed"], s["unlisted"]
    assert listed["identity_recall_5_19"] == 1.0 and listed["identity_recall_20_plus"] is None
    assert listed["mention_recall"] == 0.7
    # listed: the two true names of Anna; a muller, jon smith, lily grace, grace rose, lily muller
    assert (listed["true_candidates"], listed["false_candidates"], listed["purity"]) == (
        2,
        5,
        round(2 / 7, 4),
    )
    assert unlisted["identity_recall_5_19"] == 0.0 and unlisted["identity_recall_20_plus"] == 1.0
    assert unlisted["mention_recall"] == 0.6 and unlisted["purity"] == 0.5  # temi balogun / balogun temi
    assert s["false_causes"] == {
        "photographer_credit": 1, "distractor_cultivar": 2, "initialled_form": 1, "inverted_form": 1,
        "unexplained": 1,
    }  # fmt: skip
    assert [(f["name"], f["n_samples"], f["cause"]) for f in s["top_false_candidates"]] == [
        ("jon smith", 10, "photographer_credit"),
        ("lily grace", 10, "distractor_cultivar"),
        ("a muller", 5, "initialled_form"),
        ("balogun temi", 5, "inverted_form"),
        ("grace rose", 5, "distractor_cultivar"),
        ("lily muller", 5, "unexplained"),
    ]
    assert s["top_background_candidates"] == [
        {"name": "matt damon", "n_samples": 5},
        {"name": "tote bag", "n_samples": 5},
    ]
    assert s["form_split"] == {
        "initial": {"mentions": 2, "assigned_to_person": 0, "into_false_names": 2, "false_names_made": 1},
        "inverted": {"mentions": 6, "assigned_to_person": 0, "into_false_names": 5, "false_names_made": 1},
    }


def test_min_samples_decides_what_is_a_candidate() -> None:
    s = score_identities(CANDIDATES, TRUTH, min_samples=4)
    assert s["identity_recall_5_19"] == 1.0  # Kofi's 4 samples now count
    assert s["unlisted"]["mention_recall"] == round((15 + 4) / 25, 4)
