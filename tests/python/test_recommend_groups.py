"""Recommendations, grouped searches and search batches, differentially against qdrant-client's
own local mode (`QdrantClient(":memory:")`, the oracle): the same calls on the same data (small
enough that search is exact) give the same ids in the same order, scores within 1e-4.

- `query_points` with a recommend query (`average_vector`: point ids and vectors as examples,
  positive and negative, with a filter), and the legacy `/points/recommend` and its batch.
- `query_points_groups` (`group_by` a keyword, an integer or an array field, `group_size`,
  `limit`, `with_lookup`), and the legacy `/points/search/groups` and `/points/recommend/groups`.
- the legacy `/points/search/batch`.
- what is not done is refused naming it (a named vector in `lookup_from`, `offset` in groups).
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
from qdrant_client import QdrantClient, models

from tessera_helpers import expect_status, keyword, same_hits

TRANSPORTS = ("rest", "grpc")
DIM = 6
N = 80


def points() -> list[models.PointStruct]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(1, N + 1):
        payload = {"doc": f"d{i % 9}", "page": i % 4, "tags": [f"t{i % 3}"], "n": i}
        if i % 11 == 0:
            payload.pop("doc")  # in no `doc` group
        out.append(models.PointStruct(id=i, vector=rng.normal(size=DIM).tolist(), payload=payload))
    return out


def fill(c: QdrantClient, name: str, distance=models.Distance.COSINE) -> None:
    c.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=distance))
    c.upsert(name, points=points(), wait=True)


@pytest.fixture
def both(client, collection_name):
    oracle = QdrantClient(":memory:")
    for c in (client, oracle):
        fill(c, collection_name)
    yield client, oracle
    oracle.close()


def query_vector(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=DIM).tolist()


RECOMMENDS = [
    models.RecommendInput(positive=[3]),
    models.RecommendInput(positive=[3, 17, 40]),
    models.RecommendInput(positive=[5], negative=[9, 12]),
    models.RecommendInput(positive=[query_vector(1), 8], negative=[query_vector(2)]),
    models.RecommendInput(positive=[query_vector(3)], strategy=models.RecommendStrategy.AVERAGE_VECTOR),
]


@pytest.mark.parametrize("reco", RECOMMENDS, ids=range(len(RECOMMENDS)))
def test_recommend_queries_match_the_oracle(both, collection_name, reco):
    client, oracle = both
    for flt in (None, models.Filter(must=[keyword("page", 1)])):
        got, want = (c.query_points(collection_name, query=models.RecommendQuery(recommend=reco),
                                    query_filter=flt, limit=12, with_payload=True).points
                     for c in (client, oracle))
        same_hits(got, want)
        mentioned = {e for e in (reco.positive or []) + (reco.negative or []) if isinstance(e, int)}
        assert not mentioned & {p.id for p in got}, "examples given by id are left out"


def test_legacy_recommend_endpoints_match_the_oracle(both, base_url, collection_name):
    client, oracle = both
    body = {"positive": [3, 17], "negative": [9], "limit": 7, "with_payload": True,
            "filter": {"must_not": [{"key": "page", "match": {"value": 0}}]}}
    want = oracle.query_points(collection_name, limit=7, query_filter=models.Filter(
        must_not=[keyword("page", 0)]), query=models.RecommendQuery(
        recommend=models.RecommendInput(positive=[3, 17], negative=[9]))).points
    r = requests.post(f"{base_url}/collections/{collection_name}/points/recommend", json=body, timeout=10)
    assert r.status_code == 200, r.text
    got = [models.ScoredPoint(**p) for p in r.json()["result"]]
    same_hits(got, want)
    r = requests.post(f"{base_url}/collections/{collection_name}/points/recommend/batch",
                      json={"searches": [body, {**body, "offset": 2, "limit": 5}]}, timeout=10)
    assert r.status_code == 200, r.text
    first, second = ([models.ScoredPoint(**p) for p in hits] for hits in r.json()["result"])
    same_hits(first, want)
    same_hits(second, want[2:7])


def test_search_batch_matches_the_oracle(both, base_url, collection_name):
    client, oracle = both
    searches = [{"vector": query_vector(s), "limit": 5 + s, "with_payload": True} for s in range(3)]
    searches[1]["filter"] = {"must": [{"key": "tags", "match": {"value": "t2"}}]}
    r = requests.post(f"{base_url}/collections/{collection_name}/points/search/batch",
                      json={"searches": searches}, timeout=10)
    assert r.status_code == 200, r.text
    want = oracle.query_batch_points(collection_name, requests=[
        models.QueryRequest(query=s["vector"], limit=s["limit"], with_payload=True,
                            filter=models.Filter(must=[keyword("tags", "t2")]) if "filter" in s else None)
        for s in searches])
    for hits, w in zip(r.json()["result"], want):
        same_hits([models.ScoredPoint(**p) for p in hits], w.points)


def same_groups(got, want) -> None:
    assert [g.id for g in got.groups] == [g.id for g in want.groups]
    for g, w in zip(got.groups, want.groups):
        same_hits(g.hits, w.hits)


@pytest.mark.parametrize("group_by,group_size,limit", [
    ("doc", 3, 4), ("doc", 1, 9), ("page", 5, 10), ("tags", 2, 3), ("doc", 10, 2),
])
def test_query_groups_match_the_oracle(both, collection_name, group_by, group_size, limit):
    client, oracle = both
    for query in (query_vector(11), 4, models.RecommendQuery(recommend=models.RecommendInput(positive=[6, 7]))):
        got, want = (c.query_points_groups(collection_name, group_by=group_by, query=query,
                                           group_size=group_size, limit=limit, with_payload=True)
                     for c in (client, oracle))
        same_groups(got, want)
        for g in got.groups:
            assert len(g.hits) <= group_size
            assert all(p.payload is not None for p in g.hits)


def test_groups_payload_filter_and_lookup(both, collection_name):
    client, oracle = both
    docs = collection_name + "_docs"
    for c in (client, oracle):
        c.create_collection(docs, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        # the lookup points are named by the group's id: integers 0..3 for `page`
        c.upsert(docs, points=[models.PointStruct(id=p, vector=[1.0] * DIM, payload={"title": f"page {p}"})
                               for p in range(3)], wait=True)
    try:
        flt = models.Filter(must_not=[keyword("page", 2)])
        got, want = (c.query_points_groups(collection_name, group_by="page", query=query_vector(5),
                                           query_filter=flt, group_size=2, limit=4, with_payload=["n"],
                                           with_lookup=models.WithLookup(collection=docs, with_payload=True,
                                                                         with_vectors=False))
                     for c in (client, oracle))
        same_groups(got, want)
        assert {g.id for g in got.groups} == {0, 1, 3}
        for g, w in zip(got.groups, want.groups):
            assert [p.payload for p in g.hits] == [p.payload for p in w.hits]
            assert all(set(p.payload) == {"n"} for p in g.hits)
            assert (g.lookup and g.lookup.payload) == (w.lookup and w.lookup.payload)
        assert next(g for g in got.groups if g.id == 1).lookup.payload == {"title": "page 1"}
        assert next(g for g in got.groups if g.id == 3).lookup is None
        # Qdrant's defaults for the looked-up point: its payload and its vectors
        got = client.query_points_groups(collection_name, group_by="page", query=query_vector(5),
                                         group_size=1, limit=4, with_lookup=docs)
        lookup = next(g for g in got.groups if g.id == 2).lookup
        assert lookup.payload == {"title": "page 2"} and lookup.vector == [1.0] * DIM
    finally:
        client.delete_collection(docs)


def test_legacy_groups_endpoints(both, base_url, collection_name):
    client, oracle = both
    want = oracle.query_points_groups(collection_name, group_by="doc", query=query_vector(9),
                                      group_size=1, limit=5)
    r = requests.post(f"{base_url}/collections/{collection_name}/points/search/groups",
                      json={"vector": query_vector(9), "group_by": "doc", "limit": 5}, timeout=10)
    assert r.status_code == 200, r.text
    same_groups(models.GroupsResult(**r.json()["result"]), want)
    want = oracle.query_points_groups(collection_name, group_by="doc", group_size=2, limit=3,
                                      query=models.RecommendQuery(recommend=models.RecommendInput(
                                          positive=[2], negative=[30])))
    r = requests.post(f"{base_url}/collections/{collection_name}/points/recommend/groups",
                      json={"positive": [2], "negative": [30], "group_by": "doc", "group_size": 2,
                            "limit": 3}, timeout=10)
    assert r.status_code == 200, r.text
    same_groups(models.GroupsResult(**r.json()["result"]), want)


@pytest.mark.parametrize("path,body,word", [
    ("points/recommend", {"positive": [1], "strategy": "worst_score"}, "strategy"),
    ("points/recommend", {"positive": [1], "lookup_from": {"collection": "x", "vector": "named"}}, "named"),
    ("points/recommend", {"negative": [1]}, "positive"),
    ("points/query/groups", {"query": [0.0] * DIM}, "group_by"),
    ("points/query/groups", {"query": [0.0] * DIM, "group_by": "doc", "offset": 3}, "offset"),
    ("points/query/groups", {"query": [0.0] * DIM, "group_by": "doc", "group_size": 0}, "group_size"),
    ("points/query/groups", {"group_by": "doc"}, "query"),
    ("points/search/groups", {"vector": [0.0] * DIM, "group_by": "doc", "with_lookup": {"collection": "x", "bogus": 1}}, "bogus"),
])
def test_what_is_not_done_is_refused_naming_it(both, base_url, collection_name, path, body, word):
    r = requests.post(f"{base_url}/collections/{collection_name}/{path}", json=body, timeout=10)
    assert r.status_code == 400, r.text
    assert word in r.json()["status"]["error"]


def test_a_missing_example_or_lookup_collection_is_404(both, base_url, collection_name):
    client, _ = both
    expect_status(404, client.query_points, collection_name,
                  query=models.RecommendQuery(recommend=models.RecommendInput(positive=[999])))
    expect_status(404, client.query_points_groups, collection_name, group_by="doc", query=query_vector(1),
                  with_lookup=models.WithLookup(collection="no_such_collection"))
