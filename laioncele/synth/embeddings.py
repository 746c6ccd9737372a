"""Synthetic face-embedding corpus with known truth, for testing and benchmarking identity cleaning.

Each person is a centre on the unit sphere; a face of that person is ``sqrt(q) * centre + sqrt(1 - q) * noise``
with a per-face quality ``q``, so two faces of one person have cosine ~q (0.55-0.85 by default, like ArcFace's
same-person ~0.6-0.8) and all centres share a common direction so different people sit at ~0.1 rather than 0
(ArcFace embeddings are not centred either). The web's caption noise is modelled explicitly: mislabels (no
face, a stranger, or the name's co-star alone), multi-face photos (co-stars, strangers, sometimes naming the
co-star too), namesakes (one name, two people), aliases (one person, two names), copies of one photo (same
bytes, or re-encoded: near-identical embedding), and case/spacing variants of names. Generation is vectorised,
so a 1M-face corpus takes seconds plus the memory of its embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from laioncele.identity.inputs import name_key

_CHUNK = 100_000


@dataclass
class SyntheticSpec:
    n_names: int = 200
    dim: int = 512
    mean_images: float = 15.0  # images per name: lognormal with this mean ...
    sigma_images: float = 0.8  # ... and this log-spread (a heavy tail of famous names)
    max_images: int = 2000
    mislabel_rate: float = 0.3  # images whose caption names someone not in the photo
    no_face_rate: float = 0.25  # of mislabelled images: no face detected at all (absent from the table)
    costar_alone_rate: float = 0.15  # of mislabelled images: the name's co-star alone in the photo
    multi_face_rate: float = 0.25  # photos with 1-3 extra faces (co-star or strangers)
    costar_named_rate: float = 0.3  # of photos showing the co-star next to the person: caption names both
    namesake_rate: float = 0.05  # names shared by two different people
    alias_rate: float = 0.05  # people who also appear under a second name
    duplicate_rate: float = 0.05  # photos that appear twice (half same bytes, half re-encoded)
    same_person_cos: tuple[float, float] = (0.55, 0.85)  # range of the per-face quality q
    inter_person_cos: float = 0.1
    case_variant_rate: float = 0.1  # captions spelling the name in lower case or with odd spacing
    seed: int = 0


@dataclass
class SyntheticCorpus:
    faces: pa.Table  # sample_id, names, face_index, embedding, image_sha256
    truth_faces: pa.Table  # sample_id, face_index, person_id (strangers have unique ids too)
    truth_candidates: pa.Table  # sample_id, name_key, named_person (-1: absent), canonical_sample_id
    name_persons: dict[str, tuple[int, ...]]  # name key -> the people it names (two for a namesake)
    namesake_keys: set[str] = field(default_factory=set)
    alias_keys: list[tuple[str, str]] = field(default_factory=list)  # (primary, alias) key pairs
    spec: SyntheticSpec = field(default_factory=SyntheticSpec)


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _centres(rng: np.random.Generator, n: int, common: np.ndarray, b: float) -> np.ndarray:
    x = np.sqrt(b) * common[None, :] + np.sqrt(1 - b) * _unit(rng, n, len(common))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def face_embeddings(
    rng: np.random.Generator, centres: np.ndarray, same_person_cos: tuple[float, float]
) -> np.ndarray:
    """One face per row of ``centres``: ``sqrt(q) * centre + sqrt(1 - q) * noise`` with ``q`` uniform in
    ``same_person_cos``, unit rows (the generator's face model, shared with ``faces_truth``)."""
    q = rng.uniform(*same_person_cos, len(centres)).astype(np.float32)[:, None]
    x = np.sqrt(q) * centres + np.sqrt(1 - q) * _unit(rng, len(centres), centres.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def person_centres(
    rng: np.random.Generator, n: int, common: np.ndarray, inter_person_cos: float
) -> np.ndarray:
    """``n`` people's centres, sharing ``common`` so that different people sit at ~``inter_person_cos``."""
    return _centres(rng, n, common, inter_person_cos)


def common_direction(rng: np.random.Generator, dim: int) -> np.ndarray:
    """The direction every centre shares (face embeddings are not centred)."""
    return _unit(rng, 1, dim)[0]


def _variant(name: str, rng: np.random.Generator, rate: float) -> str:
    if rng.random() >= rate:
        return name
    return name.lower() if rng.random() < 0.5 else "  " + name.replace(" ", "   ") + " "


def generate(spec: SyntheticSpec | None = None) -> SyntheticCorpus:
    """A corpus following ``spec``; the same spec (seed included) always gives the same corpus."""
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    n = spec.n_names

    # People and names: person i is named "Given<i> Family<i>"; namesakes add a second person to a name,
    # aliases add a second name to a person.
    namesake_names = np.flatnonzero(rng.random(n) < spec.namesake_rate)
    alias_people = np.setdiff1d(np.flatnonzero(rng.random(n) < spec.alias_rate), namesake_names)
    n_known = n + len(namesake_names)
    display = [f"Given{i} Family{i}" for i in range(n)] + [f"Alias{p} Family{p}" for p in alias_people]
    name_people: list[tuple[int, ...]] = [(i,) for i in range(n)] + [(int(p),) for p in alias_people]
    for extra, name in enumerate(namesake_names):
        name_people[name] = (int(name), n + extra)
    costar = (np.arange(n_known) + rng.integers(1, n, n_known)) % n  # another main person
    n_entries = len(display)

    mu = np.log(spec.mean_images) - spec.sigma_images**2 / 2
    per_name = np.clip(np.round(rng.lognormal(mu, spec.sigma_images, n_entries)), 1, spec.max_images)
    img_name = np.repeat(np.arange(n_entries), per_name.astype(np.int64))
    n_img = len(img_name)
    first_person = np.array([p[0] for p in name_people])
    second_person = np.array([p[-1] for p in name_people])
    second_share = np.where(first_person != second_person, rng.uniform(0.35, 0.65, n_entries), 0.0)
    img_person = np.where(
        rng.random(n_img) < second_share[img_name], second_person[img_name], first_person[img_name]
    )
    mislabel = rng.random(n_img) < spec.mislabel_rate
    u = rng.random(n_img)
    no_face = mislabel & (u < spec.no_face_rate)
    costar_alone = mislabel & ~no_face & (u < spec.no_face_rate + spec.costar_alone_rate)
    strangers_only = mislabel & ~no_face & ~costar_alone

    # Faces: (image, person) rows; strangers get fresh ids from n_known upwards.
    n_strange = np.where(strangers_only, rng.integers(1, 3, n_img), 0)
    multi = ~no_face & (rng.random(n_img) < spec.multi_face_rate)
    extra_img = np.repeat(np.arange(n_img), np.where(multi, rng.integers(1, 4, n_img), 0))
    # A co-star appears once per photo: only the first extra face of a photo without them may be the co-star.
    extra_is_costar = (rng.random(len(extra_img)) < 0.5) & ~costar_alone[extra_img]
    extra_is_costar &= np.r_[True, extra_img[1:] != extra_img[:-1]]
    costar_extra = extra_img[extra_is_costar]
    stranger_imgs = np.r_[np.repeat(np.arange(n_img), n_strange), extra_img[~extra_is_costar]]
    face_img = np.concatenate(
        [np.flatnonzero(~mislabel), np.flatnonzero(costar_alone), costar_extra, stranger_imgs]
    )
    face_person = np.concatenate(
        [
            img_person[~mislabel],
            costar[img_person[costar_alone]],
            costar[img_person[costar_extra]],
            n_known + np.arange(len(stranger_imgs)),
        ]
    )

    # The caption sometimes also names the co-star shown next to the named person.
    costar_shown = np.zeros(n_img, bool)
    costar_shown[costar_extra] = True
    names_costar = costar_shown & ~mislabel & (rng.random(n_img) < spec.costar_named_rate)

    # Copies of photos that have faces: a new sample with the same faces (exact or re-encoded).
    has_face = np.bincount(face_img, minlength=n_img) > 0
    dup_src = np.flatnonzero(has_face & (rng.random(n_img) < spec.duplicate_rate))
    dup_exact = rng.random(len(dup_src)) < 0.5
    n_samples = n_img + len(dup_src)
    sample_src = np.r_[np.arange(n_img), dup_src]  # sample -> original image
    order = np.argsort(face_img, kind="stable")
    face_img, face_person = face_img[order], face_person[order]
    f_starts = np.searchsorted(face_img, np.arange(n_img))
    f_counts = np.bincount(face_img, minlength=n_img)
    copy_faces = np.concatenate([np.arange(f_starts[s], f_starts[s] + f_counts[s]) for s in dup_src] or [[]])
    copy_faces = copy_faces.astype(np.int64)
    copy_sample = np.repeat(n_img + np.arange(len(dup_src)), f_counts[dup_src])
    copy_exact = np.repeat(dup_exact, f_counts[dup_src])
    all_sample = np.r_[face_img, copy_sample]
    all_person = np.r_[face_person, face_person[copy_faces]]
    # Face order inside a photo is arbitrary (detector order), and kept by copies.
    shuffle = rng.random(len(face_img))
    within = np.lexsort((shuffle, face_img))
    face_index = np.empty(len(face_img), np.int32)
    face_index[within] = np.arange(len(face_img)) - f_starts[face_img[within]]
    all_index = np.r_[face_index, face_index[copy_faces]]

    # Embeddings, in chunks: known people's centres are stored, strangers' drawn on the fly.
    common = _unit(rng, 1, spec.dim)[0]
    centres = _centres(rng, n_known, common, spec.inter_person_cos)
    lo_q, hi_q = spec.same_person_cos
    n_orig = len(face_img)
    emb = np.empty((n_orig + len(copy_faces), spec.dim), np.float32)
    for lo in range(0, n_orig, _CHUNK):
        person = face_person[lo : lo + _CHUNK]
        c = np.empty((len(person), spec.dim), np.float32)
        known = person < n_known
        c[known] = centres[person[known]]
        c[~known] = _centres(rng, int((~known).sum()), common, spec.inter_person_cos)
        emb[lo : lo + len(person)] = face_embeddings(rng, c, (lo_q, hi_q))
    for lo in range(0, len(copy_faces), _CHUNK):
        src = emb[copy_faces[lo : lo + _CHUNK]]
        noisy = src + 0.1 * _unit(rng, len(src), spec.dim) * (~copy_exact[lo : lo + _CHUNK, None])
        emb[n_orig + lo : n_orig + lo + len(src)] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)

    # Captions and ids.
    sample_ids = np.array([f"s{i:09d}" for i in range(n_samples)], dtype=object)
    caption_names: list[list[str]] = []
    for img in range(n_img):
        names = [_variant(display[img_name[img]], rng, spec.case_variant_rate)]
        if names_costar[img]:
            names.append(display[int(costar[img_person[img]])])
        caption_names.append(names)
    caption_names += [caption_names[s] for s in dup_src]
    sha = np.array([f"h{s:09d}" for s in range(n_samples)], dtype=object)
    sha[n_img:] = np.where(dup_exact, sha[dup_src], sha[n_img:])

    faces = pa.table(
        {
            "sample_id": pa.array(sample_ids[all_sample], pa.string()),
            "names": pa.array([caption_names[s] for s in all_sample.tolist()], pa.list_(pa.string())),
            "face_index": pa.array(all_index, pa.int32()),
            "embedding": pa.ListArray.from_arrays(
                pa.array(np.arange(0, emb.size + 1, spec.dim, dtype=np.int32)), pa.array(emb.ravel())
            ),
            "image_sha256": pa.array(sha[all_sample], pa.string()),
        }
    )
    truth_faces = pa.table(
        {
            "sample_id": faces.column("sample_id"),
            "face_index": faces.column("face_index"),
            "person_id": pa.array(all_person, pa.int64()),
        }
    )
    # Candidates: (sample, named key) with the named person if present in the photo.
    present = {(int(s), int(p)) for s, p in zip(all_sample.tolist(), all_person.tolist(), strict=True)}
    rows_sample, rows_key, rows_person = [], [], []
    for s in range(n_samples):
        img = int(sample_src[s])
        named = [(name_key(display[img_name[img]]), int(img_person[img]))]
        if names_costar[img]:
            co = int(costar[img_person[img]])
            named.append((name_key(display[co]), co))
        for key, person in named:
            rows_sample.append(s)
            rows_key.append(key)
            rows_person.append(person if (s, person) in present else -1)
    truth_candidates = pa.table(
        {
            "sample_id": pa.array(sample_ids[rows_sample], pa.string()),
            "name_key": pa.array(rows_key, pa.string()),
            "named_person": pa.array(rows_person, pa.int64()),
            "canonical_sample_id": pa.array(sample_ids[sample_src[rows_sample]], pa.string()),
        }
    )
    return SyntheticCorpus(
        faces=faces,
        truth_faces=truth_faces,
        truth_candidates=truth_candidates,
        name_persons={name_key(d): p for d, p in zip(display, name_people, strict=True)},
        namesake_keys={name_key(display[i]) for i in namesake_names},
        alias_keys=[(name_key(display[p]), name_key(display[n + k])) for k, p in enumerate(alias_people)],
        spec=spec,
    )


def evaluate(result, corpus: SyntheticCorpus, min_images: int = 5) -> dict[str, float | int]:
    """Image-level precision and recall of a cleaning result against the corpus truth.

    An identity *is* the person most of its kept faces belong to, provided one of its names names that
    person (a cluster of the co-star under the star's name is wrong even if pure). Precision: kept rows whose
    face is that person. Recall: over photos (copies counted once) that show a person named in the caption
    under a non-namesake name with at least ``min_images`` such photos, the share kept under the right identity.
    """
    images = result.images.select(["sample_id", "face_index", "identity_id"])
    truth = corpus.truth_faces
    joined = images.join(truth, ["sample_id", "face_index"], join_type="left outer")
    ident = joined.column("identity_id").to_pylist()
    person = joined.column("person_id").to_pylist()
    samples = joined.column("sample_id").to_pylist()
    alias_keys = dict(
        zip(
            result.identities.column("identity_id").to_pylist(),
            result.identities.column("alias_keys").to_pylist(),
            strict=True,
        )
    )
    counts: dict[str, dict[int, int]] = {}
    for i, p in zip(ident, person, strict=True):
        counts.setdefault(i, {}).setdefault(p, 0)
        counts[i][p] += 1
    identity_person = {}
    for i, c in counts.items():
        majority = max(c, key=c.get)
        allowed = {q for k in alias_keys[i] for q in corpus.name_persons.get(k, ())}
        identity_person[i] = majority if majority in allowed else None
    correct = [
        identity_person[i] is not None and p == identity_person[i] for i, p in zip(ident, person, strict=True)
    ]
    purity = sum(max(c.values()) for c in counts.values()) / max(len(ident), 1)

    cand = corpus.truth_candidates
    canon = dict(
        zip(cand.column("sample_id").to_pylist(), cand.column("canonical_sample_id").to_pylist(), strict=True)
    )
    mask = pc.and_(
        pc.greater_equal(cand.column("named_person"), 0),
        pc.invert(pc.is_in(cand.column("name_key"), pa.array(sorted(corpus.namesake_keys), pa.string()))),
    )
    present = cand.filter(mask)
    per_key: dict[str, set] = {}
    for key, c, p in zip(
        present.column("name_key").to_pylist(),
        present.column("canonical_sample_id").to_pylist(),
        present.column("named_person").to_pylist(),
        strict=True,
    ):
        per_key.setdefault(key, set()).add((c, p))
    eligible = set().union(*(v for v in per_key.values() if len(v) >= min_images))
    found = {(canon[s], p) for s, p, ok in zip(samples, person, correct, strict=True) if ok}
    return {
        "kept": len(ident),
        "precision": sum(correct) / max(len(ident), 1),
        "purity": purity,
        "eligible": len(eligible),
        "recall": len(found & eligible) / max(len(eligible), 1),
        "identities": result.identities.num_rows,
        "wrong_person_identities": sum(v is None for v in identity_person.values()),
    }
