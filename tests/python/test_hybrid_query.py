"""The Query API's tree, differentially against qdrant-client's own local mode (the oracle): the
same calls on the same data (small enough that every search is exact) give the same ids in the
same order, scores within 1e-4, over REST and gRPC.

- `prefetch` (one, several, nested), merged by `fusion: rrf` and `dbsf`, by `rrf` with `k` and
  `weights`, or rescored by another query vector (a vector, a point id, a recommendation);
- the root's filter reaching every prefetch, `offset` and `score_threshold` at the root,
  `score_threshold` in a prefetch, `query_batch_points` of such queries;
- `order_by` and `sample: random` as queries, with and without prefetches;
- what makes no sense is refused: fusion without prefetches, prefetches without a query, more
  prefetches than allowed, weights that do not match, prefetches in a groups query.
"""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.local.qdrant_local import QdrantLocal

import tessera_helpers as helpers
from tessera_helpers import expect_status, keyword

TRANSPORTS = ("rest", "grpc")
DIM = 6
N = 90


def vec(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=DIM).tolist()


def fill(c: QdrantClient, name: str, distance=models.Distance.COSINE) -> None:
    c.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=distance))
    rng = np.random.default_rng(11)
    c.upsert(name, points=[
        models.PointStruct(id=i, vector=rng.normal(size=DIM).tolist(),
                           payload={"page": i % 4, "n": (i * 37) % 101, "team": "a" if i % 3 else "b"})
        for i in range(1, N + 1)], wait=True)
    if not isinstance(c._client, QdrantLocal):  # the oracle has no indexes (and warns)
        c.create_payload_index(name, "n", field_schema="integer", wait=True)


@pytest.fixture
def both(client, collection_name):
    oracle = QdrantClient(":memory:")
    for c in (client, oracle):
        fill(c, collection_name)
    yield client, oracle
    oracle.close()


def same_hits(got, want) -> None:
    helpers.same_hits(got, want, payload=True)


PAGE1 = models.Filter(must=[keyword("page", 1)])
TEAM_A = models.Filter(must=[keyword("team", "a")])

CASES = {
    "rrf": dict(prefetch=[models.Prefetch(query=vec(1), limit=20),
                          models.Prefetch(query=vec(2), limit=15, filter=TEAM_A)],
                query=models.FusionQuery(fusion=models.Fusion.RRF), limit=12),
    "dbsf": dict(prefetch=[models.Prefetch(query=vec(3), limit=25),
                           models.Prefetch(query=vec(4), limit=25)],
                 query=models.FusionQuery(fusion=models.Fusion.DBSF), limit=10),
    "rrf_k_weights": dict(prefetch=[models.Prefetch(query=vec(5), limit=20),
                                    models.Prefetch(query=vec(6), limit=20)],
                          query=models.RrfQuery(rrf=models.Rrf(k=60, weights=[1.0, 3.0])), limit=10),
    "rescore_vector": dict(prefetch=models.Prefetch(query=vec(7), limit=30),
                           query=vec(8), limit=7),
    "rescore_point": dict(prefetch=models.Prefetch(query=vec(9), limit=30),
                          query=models.NearestQuery(nearest=12), limit=7),
    "rescore_recommend": dict(prefetch=[models.Prefetch(query=vec(10), limit=20),
                                        models.Prefetch(query=vec(11), limit=20)],
                              query=models.RecommendQuery(recommend=models.RecommendInput(positive=[4], negative=[vec(12)])),
                              limit=8),
    "nested": dict(prefetch=[models.Prefetch(prefetch=[models.Prefetch(query=vec(13), limit=25),
                                                       models.Prefetch(query=vec(14), limit=25, filter=TEAM_A)],
                                             query=models.FusionQuery(fusion=models.Fusion.RRF), limit=15),
                             models.Prefetch(query=vec(15), limit=10)],
                   query=vec(16), limit=6),
    "root_filter_reaches_prefetches": dict(prefetch=[models.Prefetch(query=vec(17), limit=8),
                                                     models.Prefetch(query=vec(18), limit=8)],
                                           query=models.FusionQuery(fusion=models.Fusion.RRF),
                                           query_filter=PAGE1, limit=10),
    "offset_and_threshold": dict(prefetch=[models.Prefetch(query=vec(19), limit=30),
                                           models.Prefetch(query=vec(20), limit=30)],
                                 query=models.FusionQuery(fusion=models.Fusion.RRF),
                                 offset=3, limit=10, score_threshold=0.2),
    "prefetch_threshold": dict(prefetch=models.Prefetch(query=vec(21), limit=40, score_threshold=0.3),
                               query=vec(22), limit=50),
    "recommend_prefetch": dict(prefetch=[models.Prefetch(query=models.RecommendQuery(
                                   recommend=models.RecommendInput(positive=[1, 2])), limit=20),
                                   models.Prefetch(query=vec(23), limit=20)],
                               query=models.FusionQuery(fusion=models.Fusion.DBSF), limit=10),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_prefetch_queries_match_the_oracle(both, collection_name, case):
    client, oracle = both
    got, want = (c.query_points(collection_name, with_payload=True, **CASES[case]).points
                 for c in (client, oracle))
    assert want, "the case finds something"
    same_hits(got, want)


def test_vectors_come_back_only_when_asked(both, collection_name):
    client, oracle = both
    body = CASES["rescore_vector"]
    plain = client.query_points(collection_name, **body).points
    assert all(p.vector is None for p in plain)
    got, want = (c.query_points(collection_name, with_vectors=True, **body).points for c in (client, oracle))
    assert [p.id for p in got] == [p.id for p in want]
    for g, w in zip(got, want):
        assert np.allclose(g.vector, w.vector, atol=1e-5)


def test_batches_of_prefetch_queries_match_the_oracle(both, collection_name):
    client, oracle = both
    reqs = [models.QueryRequest(with_payload=True, **{("filter" if k == "query_filter" else k): v
                                                       for k, v in CASES[case].items()})
            for case in ("rrf", "nested", "root_filter_reaches_prefetches")]
    got, want = (c.query_batch_points(collection_name, requests=reqs) for c in (client, oracle))
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        same_hits(g.points, w.points)


ORDERS = [
    dict(query=models.OrderByQuery(order_by="n"), limit=9),
    dict(query=models.OrderByQuery(order_by=models.OrderBy(key="n", direction=models.Direction.DESC)),
         query_filter=TEAM_A, limit=5),
    dict(prefetch=models.Prefetch(query=vec(24), limit=20),
         query=models.OrderByQuery(order_by=models.OrderBy(key="n", direction=models.Direction.DESC)), limit=6),
]


@pytest.mark.parametrize("case", range(len(ORDERS)))
def test_order_by_queries_match_the_oracle(both, collection_name, case):
    client, oracle = both
    got, want = (c.query_points(collection_name, with_payload=True, **ORDERS[case]).points
                 for c in (client, oracle))
    assert [(p.id, p.order_value, p.payload) for p in got] == [(p.id, p.order_value, p.payload) for p in want]
    assert all(p.score == 1.0 for p in got)


def test_a_threshold_holds_for_ordered_and_sampled_points_too(both, collection_name):
    client, _ = both
    for query in (models.OrderByQuery(order_by="n"), models.SampleQuery(sample=models.Sample.RANDOM)):
        for prefetch in (None, models.Prefetch(query=vec(26), limit=20)):
            kept = client.query_points(collection_name, query=query, prefetch=prefetch, limit=5, score_threshold=1.0).points
            assert len(kept) == 5 and all(p.score == 1.0 for p in kept)
            assert client.query_points(collection_name, query=query, prefetch=prefetch, limit=5,
                                       score_threshold=1.5).points == []


def test_sample_random_draws_distinct_matching_points(both, collection_name):
    client, _ = both
    draws = []
    for _ in range(5):
        pts = client.query_points(collection_name, query=models.SampleQuery(sample=models.Sample.RANDOM),
                                  query_filter=PAGE1, limit=10, with_payload=True).points
        assert len(pts) == 10 and len({p.id for p in pts}) == 10
        assert all(p.payload["page"] == 1 for p in pts)
        draws.append([p.id for p in pts])
    assert len({tuple(d) for d in draws}) > 1, "five draws of 10 from 22 points all equal"
    everything = client.query_points(collection_name, query=models.SampleQuery(sample=models.Sample.RANDOM),
                                     query_filter=PAGE1, limit=100).points
    assert sorted(p.id for p in everything) == [i for i in range(1, N + 1) if i % 4 == 1]
    # over a prefetch: a random order of its candidates
    prefetched = client.query_points(collection_name, prefetch=models.Prefetch(query=vec(25), limit=7),
                                     query=models.SampleQuery(sample=models.Sample.RANDOM), limit=20).points
    want = client.query_points(collection_name, query=vec(25), limit=7).points
    assert sorted(p.id for p in prefetched) == sorted(p.id for p in want)


@pytest.mark.parametrize("kwargs,word", [
    (dict(query=models.FusionQuery(fusion=models.Fusion.RRF)), b"prefetch"),
    (dict(prefetch=models.Prefetch(query=[1.0] * DIM)), b"query is required"),
    (dict(prefetch=[models.Prefetch(query=[1.0] * DIM)] * 65, query=models.FusionQuery(fusion=models.Fusion.RRF)),
     b"at most 64"),
    (dict(prefetch=[models.Prefetch(query=[1.0] * DIM)] * 2, query=models.RrfQuery(rrf=models.Rrf(weights=[1.0]))),
     b"weights"),
    (dict(prefetch=models.Prefetch(query=[1.0] * DIM),
          query=models.FormulaQuery(formula=models.SumExpression(sum=["$score", 1.0]))), b"formula"),
    (dict(prefetch=models.Prefetch(query=[1.0] * 3), query=[1.0] * DIM), b"dim"),
    # a fusion level runs no search, but its params are checked (and hold for the prefetches)
    (dict(prefetch=[models.Prefetch(query=[1.0] * DIM)] * 2, query=models.FusionQuery(fusion=models.Fusion.RRF),
          search_params=models.SearchParams(indexed_only=True)), b"indexed_only"),
    (dict(query=models.SampleQuery(sample=models.Sample.RANDOM), search_params=models.SearchParams(indexed_only=True)),
     b"indexed_only"),
])
def test_what_makes_no_sense_is_refused(both, collection_name, kwargs, word):
    client, _ = both
    refused = expect_status(400, client.query_points, collection_name, **kwargs)
    assert word in refused.content.lower(), refused.content


def test_groups_refuse_prefetch_by_name(both, collection_name):
    client, _ = both
    refused = expect_status(400, client.query_points_groups, collection_name, group_by="team",
                            prefetch=models.Prefetch(query=vec(1), limit=10), query=vec(2))
    assert b"prefetch" in refused.content


def test_euclid_rescoring_keeps_the_nearest_first(client, collection_name):
    oracle = QdrantClient(":memory:")
    try:
        for c in (client, oracle):
            fill(c, collection_name, distance=models.Distance.EUCLID)
        body = dict(prefetch=[models.Prefetch(query=vec(30), limit=20), models.Prefetch(query=vec(31), limit=20)],
                    query=vec(32), limit=8, score_threshold=2.5)
        got, want = (c.query_points(collection_name, **body).points for c in (client, oracle))
        assert want
        assert [p.id for p in got] == [p.id for p in want]
    finally:
        oracle.close()
