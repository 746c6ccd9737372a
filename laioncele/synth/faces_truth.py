"""Purity after faces: the known-truth names corpus's candidates through the real identity cleaning.

The names stages keep a name with >= 5 samples; the identity stage then keeps it only when its images share one
dominant face. ``laioncele.synth.identity_truth`` scores the candidate list before faces; this module estimates what
is left after them. Each candidate sample (a corpus row) gets synthetic face embeddings drawn with the identity
generator's face model (``laioncele.synth.embeddings``: per-person centres, per-face quality, 512-d, the insightface
thresholds) from what the row truly shows:

- a row that mentions identities shows them (both for "A and B"), with the identity generator's caption noise:
  ``mislabel_rate`` of such rows show none of them (no face, the person's co-star alone, or 1-2 strangers) and
  ``multi_face_rate`` add 1-3 other faces (half the time the co-star first);
- any other row (a distractor's, a photographer's credit on a real caption, a real background caption) shows no
  one the corpus knows: no face (``nobody_no_face_rate``) or 1-3 strangers; optionally ``recurring_face_share``
  of a distractor's rows show one recurring face (a brand's model), the sensitivity case.

The faces table (one row per face, the row's candidate names) goes through ``clean_identities`` with the given
``IdentityConfig`` (production: the defaults). A kept identity is **true** when its name is one of a true
candidate's keys (``score_identities``' rule) and most of its kept faces are that person, **false** otherwise,
**background** when its name is a background candidate (kept out of purity, as before faces).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from laioncele.config import IdentityConfig
from laioncele.identity.clean import clean_identities
from laioncele.synth.embeddings import (
    SyntheticSpec,
    common_direction,
    face_embeddings,
    person_centres,
)
from laioncele.synth.identity_truth import score_identities

_SPEC = SyntheticSpec()
STRANGER = -1  # person id of a face the corpus does not know (each stranger is a different person)


@dataclass
class FaceModel:
    """What the images of a names-corpus row show; the rates default to the identity generator's."""

    mislabel_rate: float = _SPEC.mislabel_rate
    no_face_rate: float = _SPEC.no_face_rate
    costar_alone_rate: float = _SPEC.costar_alone_rate
    multi_face_rate: float = _SPEC.multi_face_rate
    nobody_no_face_rate: float = 0.5  # a row showing no known person: no face at all, else 1-3 strangers
    recurring_face_share: float = 0.0  # of a distractor's rows: its one recurring face (a brand's model)
    dim: int = _SPEC.dim
    same_person_cos: tuple[float, float] = _SPEC.same_person_cos
    inter_person_cos: float = _SPEC.inter_person_cos
    seed: int = 0


def true_keys(truth: Mapping[str, Any]) -> dict[str, int]:
    """Name key -> identity index, for the keys ``score_identities`` counts as true (key, key with the middle
    initial)."""
    out = {}
    for k, p in enumerate(truth["identities"]):
        first, *_, last = p["key"].split()
        out[p["key"]] = k
        out[f"{first} {p['middle_initial'].lower()} {last}"] = k
    return out


def synthesise_faces(
    candidates: Mapping[str, Iterable[int]], truth: Mapping[str, Any], model: FaceModel | None = None
) -> tuple[pa.Table, np.ndarray]:
    """Faces of every candidate sample: (table with sample_id, names, face_index, embedding; the person of each
    face: an identity index, ``n_identities + d`` for distractor ``d``'s recurring face, or ``STRANGER``)."""
    model = model or FaceModel()
    rng = np.random.default_rng(model.seed)
    people = truth["identities"]
    n_people, n_distractors = len(people), len(truth.get("distractors", []))
    names_of: dict[int, list[str]] = defaultdict(list)
    for key, rows in candidates.items():
        for r in set(rows):
            names_of[r].append(key)
    shown: dict[int, list[int]] = defaultdict(list)  # row -> identities it truly mentions
    for k, p in enumerate(people):
        for r in p["rows"]:
            shown[r].append(k)
    distractor_of = {r: d for d, dd in enumerate(truth.get("distractors", [])) for r in dd["rows"]}
    costar = (np.arange(n_people) + rng.integers(1, max(n_people, 2), n_people)) % max(n_people, 1)

    rows = sorted(names_of)
    face_row: list[int] = []
    face_person: list[int] = []
    for r in rows:
        u = rng.random(4)
        who = shown.get(r, [])
        if who and u[0] >= model.mislabel_rate:  # the named people are in the photo
            faces = list(who)
            if u[1] < model.multi_face_rate:
                extra = int(rng.integers(1, 4))
                first_costar = u[2] < 0.5 and int(costar[who[0]]) not in faces
                faces += [int(costar[who[0]])] if first_costar else []
                faces += [STRANGER] * (extra - first_costar)
        elif who:  # mislabelled: nobody named is in it
            if u[1] < model.no_face_rate:
                faces = []
            elif u[1] < model.no_face_rate + model.costar_alone_rate:
                faces = [int(costar[who[0]])]
            else:
                faces = [STRANGER] * int(rng.integers(1, 3))
        elif r in distractor_of and u[1] < model.recurring_face_share:
            faces = [n_people + distractor_of[r]]
        elif u[2] < model.nobody_no_face_rate:
            faces = []
        else:
            faces = [STRANGER] * int(rng.integers(1, 4))
        face_row += [r] * len(faces)
        face_person += faces
    person = np.array(face_person, np.int64)
    common = common_direction(rng, model.dim)
    centres = person_centres(rng, n_people + n_distractors, common, model.inter_person_cos)
    strangers = person == STRANGER
    centre_of_face = np.empty((len(person), model.dim), np.float32)
    centre_of_face[~strangers] = centres[person[~strangers]]
    centre_of_face[strangers] = person_centres(rng, int(strangers.sum()), common, model.inter_person_cos)
    emb = face_embeddings(rng, centre_of_face, model.same_person_cos)
    face_index = np.zeros(len(face_row), np.int32)
    for i in range(1, len(face_row)):
        face_index[i] = face_index[i - 1] + 1 if face_row[i] == face_row[i - 1] else 0
    table = pa.table(
        {
            "sample_id": pa.array([f"r{r:09d}" for r in face_row], pa.string()),
            "names": pa.array([sorted(names_of[r]) for r in face_row], pa.list_(pa.string())),
            "face_index": pa.array(face_index, pa.int32()),
            "embedding": pa.ListArray.from_arrays(
                pa.array(np.arange(0, emb.size + 1, model.dim, dtype=np.int32)), pa.array(emb.ravel())
            ),
        }
    )
    return table, person


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def purity_after_faces(
    candidates: Mapping[str, Iterable[int]],
    truth: Mapping[str, Any],
    config: IdentityConfig | None = None,
    model: FaceModel | None = None,
    min_samples: int = 5,
) -> dict[str, Any]:
    """Purity of the identities ``clean_identities`` keeps from ``candidates`` (name key -> corpus rows) with
    synthetic faces, identity recall after faces, and what became of every false candidate."""
    config = config or IdentityConfig()
    candidates = {k: sorted(set(v)) for k, v in candidates.items()}
    before = score_identities(candidates, truth, min_samples, top=len(candidates) + 1)
    false_cause = {c["name"]: c["cause"] for c in before["top_false_candidates"]}
    true_of = true_keys(truth)
    counted = {k for k, v in candidates.items() if len(v) >= min_samples}
    verdict = {
        k: "true" if k in true_of else "false" if k in false_cause else "background" for k in sorted(counted)
    }
    faces, person = synthesise_faces({k: candidates[k] for k in counted}, truth, model)
    result = clean_identities(faces, config)

    person_of = dict(
        zip(
            zip(faces.column("sample_id").to_pylist(), faces.column("face_index").to_pylist(), strict=True),
            person.tolist(),
            strict=True,
        )
    )
    images = result.images
    faces_of: dict[str, Counter] = defaultdict(Counter)
    for ident, sid, fi in zip(
        images.column("identity_id").to_pylist(),
        images.column("sample_id").to_pylist(),
        images.column("face_index").to_pylist(),
        strict=True,
    ):
        faces_of[ident][person_of[(sid, fi)]] += 1
    people = truth["identities"]
    kept, right_images = [], 0  # right_images: kept images of true-named identities that show that person
    for row in result.identities.select(["identity_id", "name_key", "alias_keys", "n_images"]).to_pylist():
        face, n_face = faces_of[row["identity_id"]].most_common(1)[0]
        key = row["name_key"]
        entry = {
            "name": key,
            "n_images": row["n_images"],
            "verdict": verdict.get(key, "background"),
            "aliases": [a for a in row["alias_keys"] if a != key],
            "face": people[face]["key"]
            if 0 <= face < len(people)
            else "distractor"
            if face >= 0
            else "strangers",
            "face_share": round(n_face / row["n_images"], 3),
        }
        if entry["verdict"] == "true":
            right_images += faces_of[row["identity_id"]][true_of[key]]
            if face != true_of[key]:
                entry.update(verdict="false", cause="wrong_face")
        elif entry["verdict"] == "false":
            entry["cause"] = false_cause[key]
        kept.append(entry)
    n_true = sum(e["verdict"] == "true" for e in kept)
    n_false = sum(e["verdict"] == "false" for e in kept)

    outcome = dict(
        zip(
            result.names.column("name_key").to_pylist(),
            result.names.column("outcome").to_pylist(),
            strict=True,
        )
    )
    ident_of = dict(
        zip(
            result.names.column("name_key").to_pylist(),
            result.names.column("identity_id").to_pylist(),
            strict=True,
        )
    )
    primary = {e["name"] for e in kept}
    false_fate = []
    for key in sorted(k for k, v in verdict.items() if v == "false"):
        fate = outcome.get(key, "name_too_few_images")  # no faced image at all: the stage never sees the name
        if fate in ("kept", "split"):
            fate = "own_identity" if key in primary else f"alias_of:{ident_of[key]}"
        false_fate.append(
            {"name": key, "n_samples": len(candidates[key]), "cause": false_cause[key], "after_faces": fate}
        )
    found = {true_of[e["name"]] for e in kept if e["verdict"] == "true"}
    found |= {true_of[a] for e in kept if e["verdict"] == "true" for a in e["aliases"] if a in true_of}
    # Why true names went: the outcome of each true candidate, and the share of people kept by how many
    # samples their candidates hold (the stage needs >= min_images images that show the person).
    true_fate = Counter(
        "kept" if outcome.get(k) in ("kept", "split") else outcome.get(k, "name_too_few_images")
        for k, v in verdict.items()
        if v == "true"
    )
    samples_of: dict[int, set[int]] = defaultdict(set)
    for k, v in verdict.items():
        if v == "true":
            samples_of[true_of[k]] |= set(candidates[k])
    by_samples = {}
    for label, lo, hi in (("5_9", 5, 9), ("10_19", 10, 19), ("20_plus", 20, None)):
        band = [k for k, rows in samples_of.items() if len(rows) >= lo and (hi is None or len(rows) <= hi)]
        by_samples[label] = {
            "people": len(band),
            "kept_share": _share(sum(k in found for k in band), len(band)),
        }
    recall: dict[str, Any] = {}
    for label, lo, hi in (("5_19", 5, 19), ("20_plus", 20, None)):
        band = [
            k for k, p in enumerate(people) if len(p["rows"]) >= lo and (hi is None or len(p["rows"]) <= hi)
        ]
        recall[f"identity_recall_{label}"] = _share(sum(k in found for k in band), len(band))
        recall[f"identity_recall_{label}_before_faces"] = before[f"identity_recall_{label}"]
        recall[f"identities_{label}"] = len(band)
    named_true_images = sum(
        e["n_images"] for e in kept if e["verdict"] == "true" or e.get("cause") == "wrong_face"
    )
    survivors = [f for f in false_fate if f["after_faces"] == "own_identity"]
    return {
        "purity": _share(n_true, n_true + n_false),
        "purity_before_faces": before["purity"],
        "kept_identities": len(kept),
        "true_identities": n_true,
        "false_identities": n_false,
        "background_identities": sum(e["verdict"] == "background" for e in kept),
        "background_candidates": sum(v == "background" for v in verdict.values()),
        **recall,
        "true_identity_image_precision": _share(right_images, named_true_images),
        "true_candidates_after_faces": dict(true_fate.most_common()),
        "people_kept_by_candidate_samples": by_samples,
        "false_candidates": len(false_fate),
        "false_candidates_after_faces": dict(Counter(f["after_faces"].split(":")[0] for f in false_fate)),
        "false_survivors": survivors,
        "false_as_alias": [f for f in false_fate if f["after_faces"].startswith("alias_of:")],
        "false_kept_identities": [e for e in kept if e["verdict"] == "false"],
        "faces": faces.num_rows,
        "face_samples": len(set(faces.column("sample_id").to_pylist())),
        "identity_stats": {k: v for k, v in result.stats.items() if k != "faiss_gpu"},
        "name_drops": result.name_drops,
    }
