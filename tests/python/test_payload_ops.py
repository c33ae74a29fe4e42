"""Payload updates with the official client: set_payload (merge, and into a nested key),
overwrite_payload, delete_payload (top-level and nested keys), clear_payload; by ids and by filter;
in custom-sharded and auto-sharded collections. Vectors never change, and neither do other points."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from qdrant_client import models

from tessera_helpers import count, normalize, point_uuid, random_vectors, scroll_all

# Each test runs over REST and over gRPC (prefer_grpc=True): the same flow through both front doors.
TRANSPORTS = ("rest", "grpc")
DIM = 4
IDS = [1, 2, 3, "doc_a", "doc_b", point_uuid("p1"), point_uuid("p2"), 4, 5, 6]


def base_payload(i: int) -> dict:
    return {
        "name": f"item {i}",
        "n": i,
        "tags": ["a", "b"] if i % 2 else [],
        "meta": {"lang": "en", "level": i % 3, "inner": {"x": i}},
        "group": "even" if i % 2 == 0 else "odd",
    }


@pytest.fixture(params=["custom", "auto"])
def coll(request, client, collection_name):
    """A collection holding IDS with base payloads; returns (client, name, selector kwargs, vectors)."""
    custom = request.param == "custom"
    client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        sharding_method=models.ShardingMethod.CUSTOM if custom else None,
    )
    sel = {}
    if custom:
        client.create_shard_key(collection_name, "k")
        sel = {"shard_key_selector": "k"}
    vecs = random_vectors(np.random.default_rng(3), len(IDS), DIM)
    client.upsert(
        collection_name,
        points=[models.PointStruct(id=pid, vector=v.tolist(), payload=base_payload(i)) for i, (pid, v) in enumerate(zip(IDS, vecs))],
        **sel,
    )
    return client, collection_name, sel, vecs


def payloads(client, name, sel) -> dict:
    recs = client.retrieve(name, ids=IDS, with_payload=True, with_vectors=False, **sel)
    return {r.id: r.payload for r in recs}


def check_vectors(client, name, sel, vecs) -> None:
    recs = {r.id: r for r in client.retrieve(name, ids=IDS, with_vectors=True, with_payload=False, **sel)}
    for pid, v in zip(IDS, vecs):
        np.testing.assert_allclose(recs[pid].vector, normalize(v), atol=1e-5)


def expected_after(targets, change) -> dict:
    out = {}
    for i, pid in enumerate(IDS):
        p = base_payload(i)
        out[pid] = change(copy.deepcopy(p)) if pid in targets else p
    return out


def test_set_payload_merges(coll):
    client, name, sel, vecs = coll
    targets = [1, "doc_a", IDS[5]]
    res = client.set_payload(name, payload={"n": -1, "new": {"deep": [1, 2]}, "flag": True}, points=targets, **sel)
    assert res.status == models.UpdateStatus.COMPLETED
    assert payloads(client, name, sel) == expected_after(targets, lambda p: {**p, "n": -1, "new": {"deep": [1, 2]}, "flag": True})
    check_vectors(client, name, sel, vecs)
    assert count(client, name, **sel) == len(IDS)


def test_set_payload_into_nested_key(coll):
    client, name, sel, _ = coll
    targets = [2, "doc_b"]
    client.set_payload(name, payload={"lang": "de", "added": 1}, key="meta", points=targets, **sel)

    def change(p):
        p["meta"].update({"lang": "de", "added": 1})
        return p

    assert payloads(client, name, sel) == expected_after(targets, change)
    # a key that does not exist yet is created as an object
    client.set_payload(name, payload={"z": 1}, key="fresh", points=[3], **sel)
    assert payloads(client, name, sel)[3]["fresh"] == {"z": 1}


def test_set_payload_by_filter(coll):
    client, name, sel, _ = coll
    client.set_payload(
        name, payload={"marked": True},
        points=models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value="odd"))]),
        **sel,
    )
    targets = [pid for i, pid in enumerate(IDS) if i % 2]
    assert payloads(client, name, sel) == expected_after(targets, lambda p: {**p, "marked": True})


def test_overwrite_payload(coll):
    client, name, sel, vecs = coll
    targets = [IDS[6], 4]
    client.overwrite_payload(name, payload={"only": ["this"]}, points=targets, **sel)
    assert payloads(client, name, sel) == expected_after(targets, lambda p: {"only": ["this"]})
    check_vectors(client, name, sel, vecs)


def test_overwrite_payload_by_filter(coll):
    client, name, sel, _ = coll
    client.overwrite_payload(
        name, payload={"o": 1},
        points=models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gte=7))]),
        **sel,
    )
    assert payloads(client, name, sel) == expected_after(IDS[7:], lambda p: {"o": 1})


def test_delete_payload_keys(coll):
    client, name, sel, vecs = coll
    targets = [1, 2, "doc_a"]
    client.delete_payload(name, keys=["tags", "name", "not_there"], points=targets, **sel)

    def change(p):
        del p["tags"], p["name"]
        return p

    assert payloads(client, name, sel) == expected_after(targets, change)
    check_vectors(client, name, sel, vecs)


def test_delete_payload_nested_key(coll):
    client, name, sel, _ = coll
    targets = [5, 6]
    client.delete_payload(name, keys=["meta.inner.x", "meta.lang"], points=targets, **sel)

    def change(p):
        del p["meta"]["inner"]["x"], p["meta"]["lang"]
        return p

    assert payloads(client, name, sel) == expected_after(targets, change)


def test_delete_payload_by_filter(coll):
    client, name, sel, _ = coll
    client.delete_payload(
        name, keys=["meta"],
        points=models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value="even"))]),
        **sel,
    )
    targets = [pid for i, pid in enumerate(IDS) if i % 2 == 0]
    assert payloads(client, name, sel) == expected_after(targets, lambda p: {k: v for k, v in p.items() if k != "meta"})


def test_clear_payload(coll):
    client, name, sel, vecs = coll
    targets = [3, "doc_b", IDS[5]]
    client.clear_payload(name, points_selector=targets, **sel)
    assert payloads(client, name, sel) == expected_after(targets, lambda p: {})
    check_vectors(client, name, sel, vecs)
    assert count(client, name, **sel) == len(IDS)
    # cleared points still answer searches
    res = client.query_points(name, query=vecs[4].tolist(), limit=1, **sel)
    assert res.points[0].id == "doc_b" and not res.points[0].payload


def test_clear_payload_by_filter(coll):
    client, name, sel, _ = coll
    client.clear_payload(
        name,
        points_selector=models.FilterSelector(filter=models.Filter(must=[models.FieldCondition(key="n", range=models.Range(lt=2))])),
        **sel,
    )
    assert payloads(client, name, sel) == expected_after(IDS[:2], lambda p: {})


def test_payload_values_round_trip(coll):
    client, name, sel, _ = coll
    odd = {
        "unicode": "Grüße, 東京, emoji 🚀, quote \" backslash \\",
        "big_int": 2**62 + 1,
        "neg": -17,
        "float": 0.1,
        "tiny": 1e-300,
        "null": None,
        "empty_obj": {},
        "empty_list": [],
        "mixed": [1, "two", 3.5, None, {"k": [True, False]}],
        "deep": {"a": {"b": {"c": {"d": {"e": "f"}}}}},
        "key with spaces": 1,
    }
    client.overwrite_payload(name, payload=odd, points=[1], **sel)
    assert payloads(client, name, sel)[1] == odd
    client.upsert(name, points=[models.PointStruct(id="rt", vector=[1.0, 0, 0, 0], payload=odd)], **sel)
    assert client.retrieve(name, ids=["rt"], **sel)[0].payload == odd
    recs = {r.id: r.payload for r in scroll_all(client, name, **sel)}
    assert recs["rt"] == odd


def test_payload_update_is_visible_to_queries(coll):
    client, name, sel, vecs = coll
    client.set_payload(name, payload={"v": 2}, points=["doc_a"], **sel)
    res = client.query_points(name, query=vecs[3].tolist(), limit=1, with_payload=True, **sel)
    assert res.points[0].id == "doc_a"
    assert res.points[0].payload == {**base_payload(3), "v": 2}
