"""Parameters are honoured or refused, never accepted and dropped.

- `update_filter` on upsert is honoured exactly as qdrant-client's own local mode (the oracle)
  does it: an existing point is overwritten only if it matches, a new point is inserted anyway.
- What tessera does not do (a named vector in `using` or `lookup_from`, unknown fields, search
  params that would change results) is a 400 naming it, and nothing is written.
"""

from __future__ import annotations

import pytest
import requests
from qdrant_client import QdrantClient, models

from tessera_helpers import expect_status, keyword

DIM = 2


def fill(c: QdrantClient, name: str) -> None:
    c.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
    c.upsert(name, points=[
        models.PointStruct(id=1, vector=[1.0, 0.0], payload={"v": 1, "team": "a"}),
        models.PointStruct(id=2, vector=[0.0, 1.0], payload={"v": 2, "team": "b"}),
    ], wait=True)


def state(c: QdrantClient, name: str) -> list:
    points, _ = c.scroll(name, limit=100, with_vectors=True)
    return sorted((p.id, p.payload, [round(x, 5) for x in p.vector]) for p in points)


@pytest.mark.parametrize("batch", [False, True])
def test_update_filter_on_upsert_matches_the_oracle(client, collection_name, batch):
    oracle = QdrantClient(":memory:")
    for c in (client, oracle):
        fill(c, collection_name)
        ids, vecs, payloads = [1, 2, 3], [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], [{"v": 10}, {"v": 20}, {"v": 30}]
        points = (models.Batch(ids=ids, vectors=vecs, payloads=payloads) if batch else
                  [models.PointStruct(id=i, vector=v, payload=p) for i, v, p in zip(ids, vecs, payloads)])
        c.upsert(collection_name, points=points, wait=True,
                 update_filter=models.Filter(must=[keyword("team", "a")]))
    assert state(client, collection_name) == state(oracle, collection_name)
    # point 2 (team b) kept its payload and vector; 1 was overwritten; 3 is new
    assert [p[1] for p in state(client, collection_name)] == [{"v": 10}, {"v": 2, "team": "b"}, {"v": 30}]


def test_lookup_from_and_named_vectors_are_refused(client, collection_name):
    fill(client, collection_name)
    refused = expect_status(400, client.query_points, collection_name, query=[1.0, 0.0],
                            lookup_from=models.LookupLocation(collection="other", vector="dense"))
    assert b"dense" in refused.content
    refused = expect_status(400, client.query_points, collection_name, query=[1.0, 0.0], using="dense")
    assert b"dense" in refused.content
    refused = expect_status(400, client.query_points, collection_name, query=[1.0, 0.0],
                            search_params=models.SearchParams(indexed_only=True))
    assert b"indexed_only" in refused.content
    # what changes nothing passes: no quantized vectors, so quantization options are moot
    res = client.query_points(collection_name, query=[1.0, 0.0], limit=1,
                              search_params=models.SearchParams(
                                  quantization=models.QuantizationSearchParams(rescore=True)))
    assert [p.id for p in res.points] == [1]


@pytest.mark.parametrize("path,method,body,word", [
    ("points?wait=true", "PUT", {"points": [{"id": 9, "vector": [1, 0]}], "bogus": 1}, "bogus"),
    ("points?wait=true", "PUT", {"points": [{"id": 9, "vector": [1, 0], "colour": 1}]}, "colour"),
    ("points/query", "POST", {"query": [1, 0], "bogus": 1}, "bogus"),
    ("points/search", "POST", {"vector": [1, 0], "limit": 1, "bogus": 1}, "bogus"),
    ("points/scroll", "POST", {"limit": 1, "bogus": 1}, "bogus"),
    ("points/count", "POST", {"bogus": 1}, "bogus"),
    ("points", "POST", {"ids": [1], "bogus": 1}, "bogus"),
    ("points/delete?wait=true", "POST", {"points": [9], "bogus": 1}, "bogus"),
    ("points/payload?wait=true", "POST", {"points": [1], "payload": {"x": 1}, "bogus": 1}, "bogus"),
    ("points/payload?wait=true", "PUT", {"points": [1], "payload": {"x": 1}, "key": "a"}, "key"),
])
def test_unknown_fields_are_refused_and_nothing_is_written(base_url, client, collection_name, path, method, body, word):
    fill(client, collection_name)
    before = state(client, collection_name)
    r = requests.request(method, f"{base_url}/collections/{collection_name}/{path}", json=body, timeout=10)
    assert r.status_code == 400, r.content
    assert word.encode() in r.content, r.content
    assert state(client, collection_name) == before
