"""Scroll with `order_by`, differentially against qdrant-client's local mode (the oracle): the same
points in the same order, ascending and descending, from `start_from`, under a filter, a point
with several values once per value; refused without a range index."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.local.qdrant_local import QdrantLocal

from tessera_helpers import expect_status, keyword

TRANSPORTS = ("rest", "grpc")


def fill(c: QdrantClient, name: str) -> None:
    c.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    c.upsert(name, points=[
        models.PointStruct(id=i, vector=[1.0, float(i)], payload={
            "rank": (i * 7) % 31, "score": round(((i * 13) % 29) / 3.0, 3),
            "pair": [100 + i, 200 + i], "team": "a" if i % 2 else "b"})
        for i in range(1, 21)], wait=True)
    if not isinstance(c._client, QdrantLocal):  # the oracle has no indexes (and warns)
        for field, schema in (("rank", "integer"), ("score", "float"), ("pair", "integer"), ("team", "keyword")):
            c.create_payload_index(name, field, field_schema=schema, wait=True)


@pytest.fixture
def both(client, collection_name):
    oracle = QdrantClient(":memory:")
    for c in (client, oracle):
        fill(c, collection_name)
    yield client, oracle
    oracle.close()


ORDERS = [
    "rank",
    models.OrderBy(key="rank", direction=models.Direction.DESC),
    models.OrderBy(key="score", start_from=4.0),
    models.OrderBy(key="score", direction=models.Direction.DESC, start_from=5),
    models.OrderBy(key="pair"),
]


@pytest.mark.parametrize("order", ORDERS, ids=range(len(ORDERS)))
def test_ordered_scrolls_match_the_oracle(both, collection_name, order):
    client, oracle = both
    for flt, limit in ((None, 7), (models.Filter(must=[keyword("team", "a")]), 30)):
        got, want = (c.scroll(collection_name, order_by=order, scroll_filter=flt, limit=limit, with_payload=True)
                     for c in (client, oracle))
        assert [(p.id, p.payload) for p in got[0]] == [(p.id, p.payload) for p in want[0]]
        assert [p.order_value for p in got[0]] == [p.order_value for p in want[0]]
        assert got[1] is None


def test_order_by_needs_a_range_index_and_no_offset(both, collection_name):
    client, _ = both
    refused = expect_status(400, client.scroll, collection_name, order_by="team")
    assert b"range index" in refused.content
    refused = expect_status(400, client.scroll, collection_name, order_by="rank", offset=3)
    assert b"offset" in refused.content
