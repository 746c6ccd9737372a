"""Name mining judged at identity level against a known-truth corpus (``laioncele.synth.corpus``).

LaionCele keeps a name when it has enough clean images, so what counts is which people come out as candidate
names and how clean the candidate list is, not per-caption scores. Rules, in the order a candidate is judged:

- **true**: its key is an identity's key or that key with the identity's middle initial ("anna k muller");
  an identity's true candidates are merged (their samples united) before it is counted as found.
- **false**, with a cause: a photographer's name (credited, not depicted), a distractor's words (brand,
  product, place, cultivar) or a name made mostly of either's rows, or a variant of one identity (most of its samples are that identity's true rows:
  initialled form "a muller", catalogue order "muller anna", or another variant, named by the mention form
  most of those rows take); anything else is "unexplained".
- **background**: any other name found mostly in real background captions (every row whose text is not
  invented: credit rows count, as their caption is real), or whose key is a 2-3 word sequence of the real
  source captions (the truth's ``background_name_keys``): a real name or a phrase of real LAION, whose truth
  is unknown without labels ("Gladstone, Bernard", "J.J. Johnson", "Peter and Paul Fortress"). Left out of purity's
  denominator and counted on its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from laioncele.names.lexicon import fold_text, given_names

GROUPS = ("listed", "unlisted")  # whether a list knows the person's given name


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _words(text: str) -> str:
    return " ".join(fold_text(text).replace("'", " ").replace(".", " ").split())


def _listed(key: str) -> bool:
    return bool(key) and key.split()[0] in given_names()


def score_identities(
    candidates: Mapping[str, Iterable[int]], truth: Mapping[str, Any], min_samples: int = 5, top: int = 20
) -> dict[str, Any]:
    """Identity recall, mention recall and purity of ``candidates`` (name key -> the corpus rows assigned to it)
    against ``truth`` (as ``laion_synth_corpus.write_corpus`` writes it); each split by whether the
    person's given name is listed. Only candidates with at least ``min_samples`` rows count."""
    people = truth["identities"]
    true_rows = [set(p["rows"]) for p in people]
    form_of = [dict(zip(p["rows"], p["forms"], strict=True)) for p in people]
    alias = {}
    for k, p in enumerate(people):
        alias[p["key"]] = k
        first, *_, last = p["key"].split()
        alias[f"{first} {p['middle_initial'].lower()} {last}"] = k
    owner: dict[int, list[int]] = defaultdict(list)  # row -> identities truly mentioned there
    for k, rows in enumerate(true_rows):
        for r in rows:
            owner[r].append(k)
    photographers = {p["key"]: p for p in truth.get("photographers", [])}
    distractors = [(_words(d["text"]), d["kind"]) for d in truth.get("distractors", [])]
    # rows that show a distractor: a candidate made mostly of them is the distractor's
    not_people: dict[int, str] = {}
    for d in truth.get("distractors", []):
        not_people.update(dict.fromkeys(d["rows"], f"distractor_{d['kind']}"))
    # rows whose text is invented; the others are real background captions (credit rows too: a real caption
    # plus "photo by X")
    invented = set(owner) | set(not_people)
    credited: dict[int, str] = {}  # row -> photographer key
    for p in truth.get("photographers", []):
        credited.update(dict.fromkeys(p["rows"], p["key"]))
    background = frozenset(truth.get("background_name_keys", []))

    found_rows: dict[int, set[int]] = defaultdict(set)
    judged: list[dict[str, Any]] = []
    for key, rows_in in candidates.items():
        rows = set(rows_in)
        if len(rows) < min_samples:
            continue
        entry: dict[str, Any] = {"name": key, "n_samples": len(rows)}
        if key in alias:
            k = alias[key]
            found_rows[k] |= rows
            entry.update(verdict="true", listed=people[k]["given_name_listed"], identity=people[k]["key"])
        else:
            entry.update(
                verdict="false",
                **_false_cause(key, rows, people, owner, form_of, photographers, distractors, not_people),
            )
            if entry["cause"] == "unexplained":
                photographer = Counter(credited[r] for r in rows if r in credited).most_common(1)
                if (
                    photographer
                    and photographer[0][1] * 2 >= len(rows)
                    and set(key.split()) & set(photographer[0][0].split())
                ):
                    entry.update(cause="photographer_credit")  # a part of the credited name ("jon smith jr")
                elif key in background or len(rows - invented) * 2 >= len(rows):
                    entry.update(verdict="background", cause="background")
        judged.append(entry)

    result: dict[str, Any] = {"min_samples": min_samples, "identities": len(people)}
    for group in (None, *GROUPS):
        members = [
            k for k, p in enumerate(people) if group is None or p["given_name_listed"] == (group == "listed")
        ]
        figures = _identity_figures(members, true_rows, found_rows, min_samples)
        cands = [j for j in judged if group is None or j["listed"] == (group == "listed")]
        n_true = sum(j["verdict"] == "true" for j in cands)
        n_false = sum(j["verdict"] == "false" for j in cands)
        figures.update(
            purity=_share(n_true, n_true + n_false),
            candidates=len(cands),
            true_candidates=n_true,
            false_candidates=n_false,
            background_candidates=sum(j["verdict"] == "background" for j in cands),
        )
        if group is None:
            result.update(figures)
        else:
            result[group] = figures
    false = sorted((j for j in judged if j["verdict"] == "false"), key=lambda j: (-j["n_samples"], j["name"]))
    result["false_causes"] = dict(Counter(j["cause"] for j in false).most_common())
    result["top_false_candidates"] = [
        {k: j[k] for k in ("name", "n_samples", "cause", "listed")} for j in false[:top]
    ]
    result["top_background_candidates"] = [
        {"name": j["name"], "n_samples": j["n_samples"]}
        for j in sorted((j for j in judged if j["verdict"] == "background"), key=lambda j: -j["n_samples"])[
            :10
        ]
    ]
    result["form_split"] = _form_split(people, judged, candidates, found_rows)
    return result


def _identity_figures(
    members: list[int], true_rows: list[set[int]], found_rows: Mapping[int, set[int]], min_samples: int
) -> dict[str, Any]:
    """Identity recall per mention band and mention recall over people with >= ``min_samples`` mentions."""
    out: dict[str, Any] = {}
    for label, lo, hi in (("5_19", 5, 19), ("20_plus", 20, None)):
        band = [k for k in members if len(true_rows[k]) >= lo and (hi is None or len(true_rows[k]) <= hi)]
        hit = sum(len(found_rows.get(k, ())) >= min_samples for k in band)
        out[f"identity_recall_{label}"] = _share(hit, len(band))
        out[f"identities_{label}"] = len(band)
    frequent = [k for k in members if len(true_rows[k]) >= min_samples]
    total = sum(len(true_rows[k]) for k in frequent)
    assigned = sum(len(true_rows[k] & found_rows.get(k, set())) for k in frequent)
    out["mention_recall"] = _share(assigned, total)
    out["mentions"] = total
    return out


def _false_cause(
    key: str,
    rows: set[int],
    people: list[dict[str, Any]],
    owner: Mapping[int, list[int]],
    form_of: list[dict[int, str]],
    photographers: Mapping[str, dict[str, Any]],
    distractors: list[tuple[str, str]],
    not_people: Mapping[int, str],
) -> dict[str, Any]:
    """Why a candidate that is no identity came out (see the module docstring), and its given-name group."""
    if key in photographers:
        return {"cause": "photographer_credit", "listed": photographers[key]["given_name_listed"]}
    padded = f" {key} "
    for text, kind in distractors:
        if padded in f" {text} " or f" {text} " in padded:
            return {"cause": f"distractor_{kind}", "listed": _listed(key)}
    theirs = Counter(not_people[r] for r in rows if r in not_people)
    if theirs and theirs.most_common(1)[0][1] * 2 >= len(rows):  # "lake charles beach" -> "charles beach"
        return {"cause": theirs.most_common(1)[0][0], "listed": _listed(key)}
    votes = Counter(k for r in rows for k in owner.get(r, ()))
    if votes:
        k, n = votes.most_common(1)[0]
        if n * 2 >= len(rows):
            p = people[k]
            first, *_, last = p["key"].split()
            if key == f"{first[0]} {last}":
                cause = "initialled_form"
            elif key == f"{last} {first}":
                cause = "inverted_form"
            else:
                form = Counter(form_of[k][r] for r in rows if r in form_of[k]).most_common(1)[0][0]
                cause = f"variant_{form}"
            return {"cause": cause, "listed": p["given_name_listed"], "identity": p["key"]}
    return {"cause": "unexplained", "listed": _listed(key)}


def _form_split(
    people: list[dict[str, Any]],
    judged: list[dict[str, Any]],
    candidates: Mapping[str, Iterable[int]],
    found_rows: Mapping[int, set[int]],
) -> dict[str, Any]:
    """Where initialled ("A. Muller") and catalogue-order ("Muller, Anna") mentions went: assigned to their
    person, into a false name, or nowhere; and how many false names they made."""
    index = {p["key"]: k for k, p in enumerate(people)}
    false_rows: dict[int, set[int]] = defaultdict(set)
    false_names: dict[str, set[str]] = defaultdict(set)
    for j in judged:
        if j["verdict"] == "false" and "identity" in j:
            false_rows[index[j["identity"]]] |= set(candidates[j["name"]])
            false_names[j["identity"]].add(j["name"])
    out = {}
    for form in ("initial", "inverted"):
        total = assigned = into_false = 0
        made: set[str] = set()
        for k, p in enumerate(people):
            rows = [r for r, f in zip(p["rows"], p["forms"], strict=True) if f == form]
            total += len(rows)
            assigned += sum(r in found_rows.get(k, ()) for r in rows)
            hit = [r for r in rows if r in false_rows.get(k, ())]
            into_false += len(hit)
            if hit:
                made |= {n for n in false_names[p["key"]] if set(candidates[n]) & set(hit)}
        out[form] = {
            "mentions": total,
            "assigned_to_person": assigned,
            "into_false_names": into_false,
            "false_names_made": len(made),
        }
    return out
