"""Name mining, three stages:

- ``ner``:        spaCy NER + filters per caption (``laioncele.names.NameExtractor`` in each actor).
- ``names``:      the corpus-wide second pass: every caption matched against the names NER found often enough,
                  and the gated names NER tagged often enough (``KnownNameMatcher``), so lower-case mentions
                  count too; NER and matcher names merged.
- ``candidates``: per name across the corpus: distinct samples, surface forms; rare names dropped before any
                  download, each name capped at its best rows, opted-out people removed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from laioncele.config import Config
from laioncele.io import schema
from laioncele.io.joins import aligned_columns
from laioncele.io.shards import (
    UnitRecord,
    atomic_write_bytes,
    atomic_write_json,
    iter_shards,
    load_manifest,
    read_shard,
    read_shards,
    write_shards,
)
from laioncele.io.storage import open_input
from laioncele.names import index as name_index
from laioncele.names.evidence import (
    NER_EXAMPLE_POOL,
    ambiguous_initialled,
    evidence_settings,
    initialled_aliases,
    middle_initial_aliases,
    names_by_evidence,
    nominated,
    not_people,
    pair_occurrences,
    pair_stats,
)
from laioncele.names.extract import KnownNameMatcher, NameExtractor, name_key, ner_confirmed, within
from pipelines.aggregate import group_apply, reduce_name_tallies
from pipelines.runner import UnitTask, stage_dir
from pipelines.stage import Resources, SideOutput, Stage, Unit, units_per_shard

KNOWN_NAMES_FILE = "known_names.json"
NOT_PEOPLE_FILE = (
    "not_people.json"  # pair key -> why the corpus shows it as no person (names_evidence.not_people)
)
EVIDENCE_FILE = "corpus_evidence.json"  # counts: pairs admitted by context, asked NER about, admitted by NER
KEPT_PAIRS_FILE = "kept_pairs.ipc"  # not *.arrow: finalize_stage owns those


# ---------------------------------------------------------------------------------------------- ner


class NerTask(UnitTask):
    """spaCy NER over one ingest shard; keeps the rows that name someone."""

    def __init__(self, config: dict[str, Any], out_dir: str, config_hash: str) -> None:
        super().__init__(config, out_dir, config_hash)
        self.extractor = NameExtractor(self.config.names)
        self.extractor.warm_up()
        self.ingest_dir = stage_dir(self.config, "ingest")

    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        rows = read_shard(self.ingest_dir, payload["shard"]).select(["sample_id", "caption"])
        self.extractor.drops.clear()
        self.extractor.added.clear()
        found, gated = self.extractor.extract(rows.column("caption").to_pylist())
        keep, columns = [], {c: [] for c in ("names", "surface_forms", "gated_names", "gated_forms")}
        for i, (displays, held) in enumerate(zip(found, gated, strict=True)):
            pairs = {k: d for d in displays if (k := self.extractor.key(d))}
            held_pairs = {k: d for d in held if (k := self.extractor.key(d))}
            if pairs or held_pairs:
                keep.append(i)
                columns["names"].append(list(pairs))
                columns["surface_forms"].append(list(pairs.values()))
                columns["gated_names"].append(list(held_pairs))
                columns["gated_forms"].append(list(held_pairs.values()))
        drops = Counter({"no_name": rows.num_rows - len(keep)})
        table = pa.table(
            {
                "sample_id": rows.column("sample_id").take(pa.array(keep, pa.int64())),
                **{name: pa.array(values, pa.list_(pa.string())) for name, values in columns.items()},
            },
            schema=schema.NAMES_NER,
        )
        # Candidate spans rejected (and captions skipped by the pre-filter), by reason: not row drops; and the
        # names the famous-names list added.
        stats = {"span_rejections": dict(self.extractor.drops), "names_added": dict(self.extractor.added)}
        return self.write(
            unit_id, table, schema.NAMES_NER, rows.num_rows, drops, [payload["shard"]["name"]], stats
        )


NER_STAGE = Stage(
    name="ner",
    schema=schema.NAMES_NER,
    config_sections=("names",),
    upstream="ingest",
    plan=lambda config, upstream: units_per_shard(upstream),
    task=NerTask,
    resources=lambda config: Resources(concurrency=config.names.concurrency, num_cpus=1),
    description="spaCy NER + filters: who each caption names",
)


# ---------------------------------------------------------------------------------------------- names


def _count_per_name(mentions: pa.Table, min_count: int = 1) -> pa.Table:
    """Names mentioned in at least ``min_count`` samples, with their most frequent surface form. Filtered inside
    each group's task, so the driver gathers the frequent names only, not the corpus's whole name vocabulary."""
    counts = name_index.count_names(mentions, min_count)
    forms = Counter(
        zip(mentions.column("name_key").to_pylist(), mentions.column("surface_form").to_pylist(), strict=True)
    )
    display = {}
    for (key, form), _count in sorted(forms.items(), key=lambda kv: (-kv[1], kv[0])):
        display.setdefault(key, form)
    keys = sorted(counts)
    return pa.table(
        {"name_key": keys, "n_samples": [counts[k] for k in keys], "display": [display[k] for k in keys]}
    )


def _gated_mentions(ner_rows: pa.Table) -> pa.Table:
    """The gated names of NER rows as mentions (``explode_mentions`` reads names/surface_forms)."""
    return name_index.explode_mentions(
        ner_rows.select(["sample_id", "gated_names", "gated_forms"]).rename_columns(
            ["sample_id", "names", "surface_forms"]
        )
    )


def _corpus_pairs(
    config: Config, found: Iterable[str] = ()
) -> tuple[list[tuple[str, str, int, str]], dict[str, str], int]:
    """What the ingest captions show of every name-shaped pair (``names_evidence``): (key, display, samples)
    and how ("context": the count test; "ner": NER confirmed it) of the pairs they show as names (none when
    ``names.corpus_pair_min_samples`` is 0), the pairs they
    show often and never as a person, with why (none when ``names.not_person_min_samples`` is 0); ``found``:
    the two-word keys NER found, judged as pairs too; and how many pairs NER was asked about."""
    names = config.names
    known = frozenset(found)
    floors = [n for n in (names.corpus_pair_min_samples, names.not_person_min_samples) if n]
    if not floors:
        return [], {}, 0
    occurrences = partial(
        pair_occurrences,
        forms=tuple(names.corpus_pair_forms),
        upper_neutral=names.corpus_pair_upper_neutral,
        names=tuple(sorted(k for k in known if k.count(" ") == 1)) if names.not_person_min_samples else (),
    )
    stats = group_apply(
        config,
        stage_dir(config, "ingest"),
        ["sample_id", "caption"],
        occurrences,
        "name_key",
        partial(
            pair_stats, min_samples=min(floors), examples=NER_EXAMPLE_POOL * names.corpus_pair_ner_examples
        ),
    )
    if not stats.num_rows:
        return [], {}, 0
    admit, reject = evidence_settings(names)
    rejected = (
        not_people(
            stats,
            names.not_person_min_samples,
            names.not_person_max_person_share,
            names.not_person_min_quoted_share,
            **reject,
        )
        if names.not_person_min_samples
        else {}
    )
    found: list[tuple[str, str, int, str]] = []
    asked = 0
    if names.corpus_pair_min_samples:
        table = names_by_evidence(
            stats,
            names.corpus_pair_min_samples,
            names.corpus_pair_min_person_share,
            names.corpus_pair_min_capitalised_share,
            **admit,
            rejected=rejected,
        )
        columns = (table.column(c).to_pylist() for c in ("name_key", "display", "n_samples"))
        found = [(*row, "context") for row in zip(*columns, strict=True)]
        if names.corpus_pair_ner_examples:
            confirmed, asked = _ner_confirmed_pairs(
                config, stats, {k for k, *_ in found} | known | set(rejected)
            )
            found += confirmed
    return found, rejected, asked


def _ner_confirmed_pairs(
    config: Config, stats: pa.Table, skip: set[str]
) -> tuple[list[tuple[str, str, int, str]], int]:
    """The nominated pairs (``names_evidence.nominated``) NER confirms as people (``names.ner_confirmed``),
    reading their example captions from the ingest stage: (key, display, samples, "ner"); and how many were
    nominated. The captions are read in the driver: fine for the benchmarks' millions of rows; at LAION scale
    this lookup belongs in the group tasks (each group holds its pairs' sample ids)."""
    names = config.names
    asked = nominated(stats, names.corpus_pair_min_samples, names.corpus_pair_min_capitalised_share, skip)
    if not asked:
        return [], 0
    wanted = pa.array(sorted({sid for _, ids in asked.values() for sid in ids}), pa.string())
    caption_of: dict[str, str] = {}
    for _, table in iter_shards(stage_dir(config, "ingest"), ["sample_id", "caption"]):
        hit = table.filter(pc.is_in(table.column("sample_id"), value_set=wanted))
        caption_of.update(zip(*(hit.column(c).to_pylist() for c in ("sample_id", "caption")), strict=True))
    pairs = {k: (d, [caption_of[i] for i in ids if i in caption_of]) for k, (d, ids) in asked.items()}
    samples = dict(zip(*(stats.column(c).to_pylist() for c in ("name_key", "n_samples")), strict=True))
    confirmed = ner_confirmed(pairs, names, names.corpus_pair_ner_min_share)
    return [(k, pairs[k][0], samples[k], "ner") for k in confirmed], len(asked)


def _holds(key: str, pairs: dict[str, str]) -> bool:
    """Whether a name key is one of ``pairs`` or holds one as two of its words ("ian morris eau")."""
    words = key.split(" ")
    return key in pairs or any(" ".join(words[i : i + 2]) in pairs for i in range(len(words) - 1))


def prepare_known_names(config: Config, out_dir: Path) -> dict[str, Any]:
    """The names stage's prepare step: the corpus-wide list of names NER found often enough, and of gated names
    (see ``NameExtractor.extract``) NER tagged in at least ``names.gated_min_count`` samples, less the pairs the
    corpus shows as no person (``KNOWN_NAMES_FILE``, ``NOT_PEOPLE_FILE``)."""
    ner_dir = stage_dir(config, "ner")
    known: dict[str, dict[str, Any]] = {}
    for columns, explode, min_count, gated in (
        (
            ["sample_id", "names", "surface_forms"],
            name_index.explode_mentions,
            config.names.second_pass_min_count,
            False,
        ),
        (["sample_id", "gated_names", "gated_forms"], _gated_mentions, config.names.gated_min_count, True),
    ):
        if min_count == 0:
            continue
        counts = group_apply(
            config, ner_dir, columns, explode, "name_key", partial(_count_per_name, min_count=min_count)
        )
        if not counts.num_rows:
            continue
        for key, n, display in zip(
            counts.column("name_key").to_pylist(),
            counts.column("n_samples").to_pylist(),
            counts.column("display").to_pylist(),
            strict=True,
        ):
            if n >= min_count and key not in known:
                known[key] = {"name_key": key, "display": display, "n_samples": n, "gated": gated}
    evidence, rejected, asked = _corpus_pairs(config, known)
    for key, display, n, how in evidence:
        known.setdefault(
            key,
            {
                "name_key": key,
                "display": display,
                "n_samples": n,
                "gated": True,
                "corpus": True,
                "evidence": how,
            },
        )
    # a name the corpus shows as no person is no known name, whoever found it
    kept = [k for n, k in known.items() if not _holds(n, rejected)]
    atomic_write_json(out_dir / KNOWN_NAMES_FILE, kept)
    atomic_write_json(out_dir / NOT_PEOPLE_FILE, rejected)
    hows = Counter(how for *_, how in evidence)
    summary = {
        "admitted_by_context": hows["context"],
        "asked_ner": asked,
        "admitted_by_ner": hows["ner"],
        "not_people": dict(Counter(rejected.values())),
        "known_dropped_as_not_people": sum(_holds(n, rejected) for n in known),
    }
    atomic_write_json(out_dir / EVIDENCE_FILE, summary)
    return {"known_names": len(kept), "not_people": len(rejected), "corpus_evidence": summary}


def plan_second_pass(config: Config, upstream_dir: Path | None) -> list[Unit]:
    """Units are the ingest shards again (the known names come from ``prepare_known_names``)."""
    return units_per_shard(upstream_dir)


class SecondPassTask(UnitTask):
    """Matches every caption of one ingest shard against the known names and merges in the NER names."""

    def __init__(self, config: dict[str, Any], out_dir: str, config_hash: str) -> None:
        super().__init__(config, out_dir, config_hash)
        known = json.loads((self.out_dir / KNOWN_NAMES_FILE).read_text())
        keys = [k["name_key"] for k in known]
        # another known key's variant -> that key: "a muller" (merge_initialled) and "anna k muller"
        # (merge_middle_initial) -> "anna muller"
        self.aliases = {
            **(initialled_aliases(keys) if self.config.names.merge_initialled else {}),
            **(middle_initial_aliases(keys) if self.config.names.merge_middle_initial else {}),
        }
        self.ambiguous = (
            ambiguous_initialled(keys) if self.config.names.drop_ambiguous_initialled else frozenset()
        )
        self.matcher = KnownNameMatcher(
            [k["display"] for k in known if k["name_key"] not in self.aliases.keys() | self.ambiguous],
            forms=self.config.names.second_pass_forms,
        )
        # names the corpus evidence made known: NER never reads their captions, so their matches count as NER's
        self.corpus_names = frozenset(k["name_key"] for k in known if k.get("corpus"))
        not_people_file = self.out_dir / NOT_PEOPLE_FILE
        self.not_people = json.loads(not_people_file.read_text()) if not_people_file.is_file() else {}
        self.ingest_dir = stage_dir(self.config, "ingest")
        self.ner_dir = stage_dir(self.config, "ner")
        self.ner_manifest = load_manifest(self.ner_dir)

    def _ner_names(self, unit_id: str, rows: pa.Table) -> dict[str, list[Any]]:
        """Per row of this unit's ingest shard: NER's name keys, their display forms, and its gated name keys
        (null where NER kept no name), joined by sample id."""
        parts = [read_shard(self.ner_dir, r) for r in self.ner_manifest["shards"] if r["unit"] == unit_id]
        ner = pa.concat_tables(parts) if parts else schema.NAMES_NER.empty_table()
        columns = ("names", "surface_forms", "gated_names")
        return {c: a.to_pylist() for c, a in aligned_columns(rows, ner, ["sample_id"], columns).items()}

    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        rows = read_shard(self.ingest_dir, payload["shard"])
        ner = self._ner_names(unit_id, rows)
        drops: Counter[str] = Counter()
        self.matcher.credited = self.matcher.trademarked = 0
        keep, keys_out, forms_out, added_out = [], [], [], []
        for i, (caption, ner_keys, ner_forms, ner_gated) in enumerate(
            zip(rows.column("caption").to_pylist(), *ner.values(), strict=True)
        ):
            keys, forms, gated = (list(x or []) for x in (ner_keys, ner_forms, ner_gated))
            if self.not_people and any(_holds(k, self.not_people) for k in keys):
                drops["not_a_person"] += sum(_holds(k, self.not_people) for k in keys)
                held = [(k, f) for k, f in zip(keys, forms, strict=True) if not _holds(k, self.not_people)]
                keys, forms = [k for k, _ in held], [f for _, f in held]
            if self.ambiguous and any(k in self.ambiguous for k in keys):  # "j wright": John or Jane?
                drops["initialled_ambiguous"] += sum(k in self.ambiguous for k in keys)
                held = [(k, f) for k, f in zip(keys, forms, strict=True) if k not in self.ambiguous]
                keys, forms = [k for k, _ in held], [f for _, f in held]
            if self.aliases and any(k in self.aliases for k in keys):  # "a muller" -> "anna muller"
                drops["alias_merged"] += sum(k in self.aliases for k in keys)
                merged = dict(zip((self.aliases.get(k, k) for k in keys), forms, strict=True))
                keys, forms = list(merged), list(merged.values())
            added = []
            for display in self.matcher(caption):
                key = name_key(display, self.config.names)
                if key and not within(key, keys):  # nor part of a longer name the first pass found
                    keys.append(key)
                    forms.append(display)
                    drops["second_pass_added"] += 1
                    if key in gated:  # a known gated name NER tagged here counts as NER's
                        drops["second_pass_gated"] += 1
                    elif key in self.corpus_names:
                        drops["second_pass_corpus"] += 1
                    else:
                        added.append(key)
            if keys:
                keep.append(i)
                keys_out.append(keys)
                forms_out.append(forms)
                added_out.append(added)
        drops["no_name"] += rows.num_rows - len(keep)
        taken = rows.take(pa.array(keep, pa.int64()))
        table = pa.table(
            {
                "sample_id": taken.column("sample_id"),
                "url": taken.column("url"),
                "caption": taken.column("caption"),
                "similarity": taken.column("similarity"),
                "names": pa.array(keys_out, pa.list_(pa.string())),
                "surface_forms": pa.array(forms_out, pa.list_(pa.string())),
                "n_names": pa.array([len(k) for k in keys_out], pa.int32()),
                "language": taken.column("language"),
                "license": taken.column("license"),
                "second_pass_names": pa.array(added_out, pa.list_(pa.string())),
            },
            schema=schema.NAMES_FOUND,
        )
        stats = {
            key: drops.pop(key, 0)
            for key in (
                "second_pass_added",
                "second_pass_gated",
                "second_pass_corpus",
                "alias_merged",
                "not_a_person",
                "initialled_ambiguous",
            )
        }
        # Known names the matcher passed over (inside photo credits, marked as trademarks): names, not rows.
        stats["second_pass_credit"] = self.matcher.credited
        stats["second_pass_trademark"] = self.matcher.trademarked
        return self.write(
            unit_id, table, schema.NAMES_FOUND, rows.num_rows, drops, [payload["shard"]["name"]], stats
        )


NAMES_STAGE = Stage(
    name="names",
    schema=schema.NAMES_FOUND,
    config_sections=("names",),
    upstream="ingest",
    inputs=("ner",),  # the first pass's names, merged per sample and counted corpus-wide
    prepare=prepare_known_names,
    plan=plan_second_pass,
    task=SecondPassTask,
    resources=lambda config: Resources(concurrency=config.names.concurrency, num_cpus=1),
    description="corpus-wide second pass: known names in any case",
    side_outputs=(
        SideOutput(KNOWN_NAMES_FILE, "prepare", "the names every caption is matched against"),
        SideOutput(NOT_PEOPLE_FILE, "prepare", "name-shaped pairs the corpus shows as no person, with why"),
        SideOutput(
            EVIDENCE_FILE, "prepare", "counts of the corpus evidence: pairs admitted by context or by NER"
        ),
    ),
)


# ---------------------------------------------------------------------------------------------- candidates


def _kept_names(
    tallies: pa.Table, min_candidates: int, max_rows: int, min_ner_share: float, exact_up_to: int
) -> pa.Table:
    """The names table rows of the names that stay, each with its kept sample ids (``kept_ids``)."""
    names, kept = name_index.names_from_tallies(tallies, min_candidates, max_rows, min_ner_share, exact_up_to)
    if names.num_rows == 0:
        return pa.table({})
    return name_index.with_kept_ids(names, kept)


def prepare_names_table(config: Config, out_dir: Path) -> dict[str, Any]:
    """The candidates stage's prepare step: aggregate names across the corpus (Ray Data groupby) into the names
    table (``names_table/``) and the (name, sample) pairs kept (``KEPT_PAIRS_FILE``) its units filter by."""
    kept_names = partial(
        _kept_names,
        min_candidates=config.names.min_candidates,
        max_rows=config.names.max_rows_per_name,
        min_ner_share=config.names.second_pass_min_ner_share,
        exact_up_to=config.names.exact_counts_up_to,
    )
    result = reduce_name_tallies(
        config,
        stage_dir(config, "names"),
        ["sample_id", "similarity", "names", "surface_forms", "second_pass_names"],
        name_index.explode_mentions,
        kept_names,
    )
    names_table = result.select([f.name for f in schema.NAMES_TABLE]) if result.num_rows else None
    write_shards(
        names_table if names_table is not None else schema.NAMES_TABLE.empty_table(),
        out_dir / "names_table",
        schema=schema.NAMES_TABLE,
        stage="names_table",
        config_hash=config.section_hash("names"),
    )
    keys = result.column("name_key").to_pylist() if result.num_rows else []
    ids = result.column("kept_ids").to_pylist() if result.num_rows else []
    pairs = name_index.pairs_table(
        [k for k, group in zip(keys, ids, strict=True) for _ in group],
        [sid for group in ids for sid in group],
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, pairs.schema) as writer:
        writer.write_table(pairs)
    atomic_write_bytes(out_dir / KEPT_PAIRS_FILE, sink.getvalue().to_pybytes())
    return {}


def plan_candidates(config: Config, upstream_dir: Path | None) -> list[Unit]:
    """One unit per shard of ``names`` (the names kept come from ``prepare_names_table``)."""
    assert upstream_dir is not None
    return units_per_shard(upstream_dir)


class CandidatesTask(UnitTask):
    """Keeps, in one shard of ``names``, the (sample, name) pairs the corpus-wide aggregation kept."""

    def __init__(self, config: dict[str, Any], out_dir: str, config_hash: str) -> None:
        super().__init__(config, out_dir, config_hash)
        with open_input(self.out_dir / KEPT_PAIRS_FILE) as source:
            self.kept = pa.ipc.open_file(source).read_all()
        self.opt_out = frozenset(
            k for n in self.config.names.opt_out_names if (k := name_key(n, self.config.names))
        )
        self.names_dir = stage_dir(self.config, "names")

    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        rows = read_shard(self.names_dir, payload["shard"])
        kept, drops = name_index.select_kept(rows, self.kept, self.opt_out)
        # Opted-out names removed from the rows: names, not rows (a row left without a name is no_kept_name).
        stats = {"opted_out_name": drops.pop("opted_out_name", 0)}
        table = schema.conform(kept, schema.NAMES_SAMPLES)
        return self.write(
            unit_id, table, schema.NAMES_SAMPLES, rows.num_rows, drops, [payload["shard"]["name"]], stats
        )


def candidates_summary(config: Config, out_dir: Path) -> dict[str, Any]:
    manifest = load_manifest(out_dir / "names_table")
    shares = read_shards(out_dir / "names_table", columns=["ner_share"]).column("ner_share").to_numpy()
    return {
        "names_kept": manifest["rows"],
        # kept on NER's samples alone: NER named them in under names.second_pass_min_ner_share of their mentions
        "names_second_pass_unconfirmed": int((shares < config.names.second_pass_min_ner_share).sum()),
        "names_table": "names_table/manifest.json",
    }


CANDIDATES_STAGE = Stage(
    name="candidates",
    schema=schema.NAMES_SAMPLES,
    config_sections=("names",),
    upstream="names",
    prepare=prepare_names_table,
    plan=plan_candidates,
    task=CandidatesTask,
    resources=lambda config: Resources(concurrency=config.names.concurrency, num_cpus=1),
    finish=candidates_summary,
    description="per-name aggregation: rare names dropped, best rows per name kept",
    side_outputs=(
        SideOutput("names_table", "prepare", "one row per kept name (names_table schema)"),
        SideOutput(KEPT_PAIRS_FILE, "prepare", "the (name, sample) pairs kept, which the units filter by"),
    ),
)
