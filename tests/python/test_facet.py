"""`facet`, differentially against qdrant-client's local mode (the oracle): the same counts, most
common first, ties by value; with a filter, a limit, array values counted once per point, and
only the caller's own points under a tenant-bound scope (shard keys)."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.local.qdrant_local import QdrantLocal

from tessera_helpers import expect_status, keyword

TRANSPORTS = ("rest", "grpc")


def fill(c: QdrantClient, name: str) -> None:
    c.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    colours = ["red", "green", "blue", "red", "red", "green", "teal", "blue", "red", "green"]
    c.upsert(name, points=[
        models.PointStruct(id=i, vector=[1.0, float(i)], payload={
            "colour": colours[i % len(colours)], "size": i % 4, "tags": ["a", "b"] if i % 3 else ["a", "a"],
            "flag": i % 2 == 0})
        for i in range(1, 41)], wait=True)
    if not isinstance(c._client, QdrantLocal):  # the oracle has no indexes (and warns)
        for field, schema in (("colour", "keyword"), ("size", "integer"), ("tags", "keyword"), ("flag", "bool")):
            c.create_payload_index(name, field, field_schema=schema, wait=True)


@pytest.fixture
def both(client, collection_name):
    oracle = QdrantClient(":memory:")
    for c in (client, oracle):
        fill(c, collection_name)
    yield client, oracle
    oracle.close()


@pytest.mark.parametrize("key", ["colour", "size", "tags", "flag"])
def test_facet_counts_match_the_oracle(both, collection_name, key):
    client, oracle = both
    for flt, limit in ((None, 10), (models.Filter(must=[keyword("colour", "red")]), 10), (None, 2)):
        got, want = (c.facet(collection_name, key, facet_filter=flt, limit=limit, exact=True).hits
                     for c in (client, oracle))
        assert [(h.value, h.count) for h in got] == [(h.value, h.count) for h in want]


def test_facet_without_an_index_is_refused_naming_the_key(both, collection_name):
    client, _ = both
    refused = expect_status(400, client.facet, collection_name, "n")
    assert b"Index required" in refused.content and b"n" in refused.content


def test_facet_counts_only_the_named_tenant(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT),
                             sharding_method=models.ShardingMethod.CUSTOM)
    for t in ("acme", "globex"):
        client.create_shard_key(collection_name, t)
    client.create_payload_index(collection_name, "colour", field_schema="keyword", wait=True)
    client.upsert(collection_name, shard_key_selector="acme", wait=True, points=[
        models.PointStruct(id=i, vector=[1.0, 0.0], payload={"colour": "red"}) for i in range(5)])
    client.upsert(collection_name, shard_key_selector="globex", wait=True, points=[
        models.PointStruct(id=100 + i, vector=[1.0, 0.0], payload={"colour": "red" if i < 2 else "gold"}) for i in range(3)])
    hits = client.facet(collection_name, "colour", shard_key_selector="globex").hits
    assert [(h.value, h.count) for h in hits] == [("red", 2), ("gold", 1)]
    hits = client.facet(collection_name, "colour").hits
    assert [(h.value, h.count) for h in hits] == [("red", 7), ("gold", 1)]
    expect_status(404, client.facet, collection_name, "colour", shard_key_selector="nope")
