"""The cross-stage joins (``laioncele.io.joins`` and its users) on small tables with hand-computed answers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from laioncele.dataset_rows import dataset_identities, dataset_images
from laioncele.faces.sample_names import display_names, with_sample_names
from laioncele.io import schema
from laioncele.io.joins import aligned_columns, lookup, map_list_values, matched
from laioncele.names.index import select_kept, with_kept_ids

STR_LIST = pa.list_(pa.string())


def test_lookup_gives_the_right_row_of_each_left_row_in_left_order() -> None:
    left = pa.table({"k": ["b", "z", "a", None, "b"], "i": [1, 1, 2, 3, 1]})
    right = pa.table({"k": ["a", "b", "b"], "i": [2, 1, 2]})
    assert lookup(left, right, ["k", "i"]).to_pylist() == [1, None, 0, None, 1]
    renamed = right.rename_columns(["key", "n"])
    assert lookup(left, renamed, ["k", "i"], ["key", "n"]).to_pylist() == [1, None, 0, None, 1]
    assert matched(lookup(left, right, ["k", "i"])).to_pylist() == [0, 2, 4]
    assert lookup(left.slice(0, 0), right, ["k"]).to_pylist() == []
    assert lookup(left, right.slice(0, 0), ["k"]).to_pylist() == [None] * 5


def test_lookup_refuses_a_repeated_right_key_and_names_it() -> None:
    left = pa.table({"k": ["a"]})
    with pytest.raises(ValueError, match=r"1 key\(s\) \['k'\] occur more than once .*'k': 'b'"):
        lookup(left, pa.table({"k": ["a", "b", "b"]}), ["k"])
    with pytest.raises(ValueError, match=r"right table lacks key column\(s\) \['k'\]"):
        lookup(left, pa.table({"x": ["a"]}), ["k"])


def test_map_list_values_keeps_lists_nulls_and_unknown_values() -> None:
    lists = pa.array([["x", "k1"], None, [], ["k2", "k1"], ["k9"]], STR_LIST).slice(1)  # a non-zero offset
    out = map_list_values(lists, pa.array(["k1", "k2"]), pa.array(["One", "Two"]))
    assert out.to_pylist() == [None, [], ["Two", "One"], ["k9"]]


def test_faces_carry_their_samples_display_names_and_image_hash() -> None:
    names_table = pa.table({"name_key": ["tom hanks", "meg ryan"], "display_name": ["Tom Hanks", "Meg Ryan"]})
    assert display_names(pa.array([["meg ryan", "x y"]], STR_LIST), names_table).to_pylist() == [
        ["Meg Ryan", "x y"]
    ]
    download = pa.table(
        {
            "sample_id": ["s1", "s2", "s3"],
            "names": pa.array([["tom hanks", "meg ryan"], None, ["meg ryan"]], STR_LIST),
            "sha256": ["h1", "h2", "h3"],
        }
    )
    faces = schema.FACES.empty_table().to_pylist()
    template = {f.name: None for f in schema.FACES} | {
        "status": "ok", "n_faces_detected": 1, "n_faces_kept": 1, "image_width": 9, "image_height": 9,
        "backend": "b", "backend_version": "1",
    }  # fmt: skip
    faces = [
        template | {"sample_id": s, "face_index": i} for s, i in (("s3", 0), ("s1", 0), ("s1", 1), ("s9", 0))
    ]
    out = with_sample_names(pa.Table.from_pylist(faces, schema.FACES), download, names_table)
    assert out.schema.equals(schema.FACES, check_metadata=True)
    assert out.column("sample_id").to_pylist() == ["s3", "s1", "s1", "s9"]
    assert out.column("names").to_pylist() == [
        ["Meg Ryan"],
        ["Tom Hanks", "Meg Ryan"],
        ["Tom Hanks", "Meg Ryan"],
        [],
    ]
    assert out.column("image_sha256").to_pylist() == ["h3", "h1", "h1", None]
    with pytest.raises(ValueError, match=r"download rows lack column\(s\) \['sha256'\]"):
        with_sample_names(out, download.drop_columns(["sha256"]), names_table)


def _download(ids: list[str]) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "sample_id": ids,
            "url": [f"http://x/{s}" for s in ids],
            "caption": ["c"] * (n - 1) + [None],
            "image": [s.encode() for s in ids],
            "width": pa.array([100] * n, pa.int32()),
            "height": pa.array([80] * n, pa.int32()),
            "language": ["en"] * n,
        }
    )


def test_dataset_images_keep_the_download_order_and_join_the_kept_face() -> None:
    download = _download(["a", "b", "c", "d"])
    kept = pa.table(
        {
            "sample_id": ["d", "a", "zz"],  # zz: an image of another download shard
            "face_index": pa.array([1, 0, 0], pa.int32()),
            "identity_id": ["p2", "p1", "p1"],
            "similarity": pa.array([0.9, 0.8, 0.7], pa.float32()),
        }
    )
    box = [[float(i)] * 4 for i in range(4)]
    faces = pa.table(
        {
            "sample_id": ["d", "a", "d", "b"],
            "face_index": pa.array([0, 0, 1, 0], pa.int32()),
            "bbox": pa.array(box, pa.list_(pa.float32(), 4)),
            "landmarks": pa.array([[0.0] * 10] * 4, pa.list_(pa.float32(), 10)),
            "embedding": pa.array([[1.0, float(i)] for i in range(4)], pa.list_(pa.float32())),
        }
    )
    out = dataset_images(download, kept, faces)
    assert out.schema.equals(schema.DATASET_IMAGES, check_metadata=True)
    rows = out.to_pylist()
    assert [(r["sample_id"], r["identity_id"]) for r in rows] == [("a", "p1"), ("d", "p2")]
    assert [r["bbox"] for r in rows] == [box[1], box[2]]  # d's kept face is face 1, the third faces row
    assert [r["face_embedding"] for r in rows] == [[1.0, 1.0], [1.0, 2.0]]
    assert [r["image"] for r in rows] == [b"a", b"d"]
    assert [r["caption"] for r in rows] == ["c", ""]  # a null caption becomes ""
    assert [r["similarity"] for r in rows] == pytest.approx([0.8, 0.9])
    assert [(r["language"], r["license"]) for r in rows] == [("en", None), ("en", None)]
    with pytest.raises(ValueError, match=r"1 image\(s\) kept .* sample 'd' face 1"):
        dataset_images(download, kept, faces.slice(0, 2))


def test_dataset_identities_join_targets_and_leave_out_the_unencoded() -> None:
    identities = pa.table(
        {
            "identity_id": ["tom hanks", "meg ryan", "nobody"],
            "name": ["Tom Hanks", "Meg Ryan", "Nobody"],
            "aliases": pa.array([["Tom Hanks"], ["Meg Ryan"], []], STR_LIST),
            "n_images": pa.array([3, 2, 1], pa.int32()),
            "centroid": pa.array([[1.0], [0.0], [0.5]], pa.list_(pa.float32())),
            "mean_similarity": pa.array([0.9, 0.8, 0.7], pa.float32()),
            "min_similarity": pa.array([0.8, 0.7, 0.6], pa.float32()),
            "runner_up_share": pa.array([0.1, None, 0.0], pa.float32()),
            "backend": ["offline"] * 3,
        }
    )
    targets = pa.table(
        {
            "name_key": ["meg ryan", "tom hanks"],
            "num_tokens": pa.array([8, 8], pa.int32()),
            "embedding_dim": pa.array([1, 1], pa.int32()),
            "name_embedding": pa.array([[2.0], [1.0]], pa.list_(pa.float16())),
            "pooled_embedding": pa.array([[2.5], [1.5]], pa.list_(pa.float16())),
        }
    )
    out = dataset_identities(identities, targets)
    assert out.schema.equals(schema.DATASET_IDENTITIES, check_metadata=True)
    assert out.column("identity_id").to_pylist() == ["tom hanks", "meg ryan"]
    assert out.column("name_embedding").to_pylist() == [[1.0], [2.0]]
    assert out.column("pooled_embedding").to_pylist() == [[1.5], [2.5]]
    assert out.column("face_backend").to_pylist() == ["offline", "offline"]
    assert out.column("runner_up_share").to_pylist()[1] is None


def test_aligned_columns_gather_the_right_rows_onto_the_left_rows() -> None:
    rows = pa.table({"sample_id": ["s1", "s2", "s3"]})
    ner = pa.table({"sample_id": ["s3", "s1"], "names": pa.array([["c"], ["a", "b"]], STR_LIST)})
    out = aligned_columns(rows, ner, ["sample_id"], ["names"])
    assert out["names"].to_pylist() == [["a", "b"], None, ["c"]]


def test_kept_ids_per_name_in_their_pair_order() -> None:
    names = pa.table({"name_key": ["ann lee", "bo li", "cy d"]})
    kept = pa.table({"name_key": ["bo li", "ann lee", "bo li"], "sample_id": ["s2", "s1", "s0"]})
    out = with_kept_ids(names, kept)
    assert out.column("kept_ids").to_pylist() == [["s1"], ["s2", "s0"], []]


def test_select_kept_joins_samples_with_kept_pairs_once_per_key() -> None:
    samples = pa.table(
        {
            "sample_id": ["s1", "s2", "s1", "s3"],
            "names": pa.array([["ann lee", "bo li", "ann lee"], ["bo li"], ["ann lee"], ["cy d"]], STR_LIST),
            "n_names": pa.array([3, 1, 1, 1], pa.int32()),
        }
    )
    kept = pa.table({"name_key": ["ann lee", "bo li", "cy d"], "sample_id": ["s1", "s1", "s3"]})
    out, drops = select_kept(samples, kept, opt_out=frozenset({"cy d"}))
    # s1 twice (a repeated URL) keeps both rows; its repeated "ann lee" counts once; s2's "bo li" is not kept;
    # s3's only name opted out
    assert out.column("sample_id").to_pylist() == ["s1", "s1"]
    assert out.column("names").to_pylist() == [["ann lee", "bo li"], ["ann lee"]]
    assert out.column("n_names").to_pylist() == [2, 1]
    assert drops == {"opted_out_name": 1, "no_kept_name": 2}
    none, drops = select_kept(samples.slice(0, 0), kept)
    assert none.num_rows == 0 and drops == {}
