"""Queries scored from examples, differentially against qdrant-client's local mode (the oracle):
recommend's `best_score` and `sum_scores` strategies, discovery (`discover`: a target and context
pairs) and context search (`context`), in the query API (also as the rescoring of a prefetch) and
the legacy `/points/recommend`, `/points/discover` and `/points/discover/batch`, over REST and gRPC.

Examples given by id are left out of the results. Context search scores every point on the right
side of every pair 0, so there ties are compared as sets of ids per score.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
from qdrant_client import QdrantClient, models

from tessera_helpers import expect_status, keyword

TRANSPORTS = ("rest", "grpc")
DIM = 5
N = 70


def vec(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=DIM).tolist()


def fill(c: QdrantClient, name: str, distance) -> None:
    c.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=distance))
    rng = np.random.default_rng(5)
    c.upsert(name, points=[
        models.PointStruct(id=i, vector=rng.normal(size=DIM).tolist(), payload={"page": i % 3})
        for i in range(1, N + 1)], wait=True)


@pytest.fixture(params=[models.Distance.COSINE, models.Distance.DOT, models.Distance.EUCLID])
def both(request, client, collection_name):
    oracle = QdrantClient(":memory:")
    for c in (client, oracle):
        fill(c, collection_name, request.param)
    yield client, oracle
    oracle.close()


def same_ranking(got, want) -> None:
    """The same scores in the same order; ids equal, as sets among equal scores."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert abs(g.score - w.score) < 1e-4, (g, w)
    def groups(pts):
        out = []  # (first score, ids) per run of scores within 1e-5 of the run's first
        for p in pts:
            if out and abs(p.score - out[-1][0]) < 1e-5:
                out[-1][1].add(p.id)
            else:
                out.append((p.score, {p.id}))
        return [ids for _, ids in out]
    g, w = groups(got), groups(want)
    # a tie cut by the limit may keep different members of the last group
    assert g[:-1] == w[:-1]
    assert len(g) == len(w)


PAGE = models.Filter(must_not=[keyword("page", 0)])
PAIRS = [models.ContextPair(positive=3, negative=vec(40)), models.ContextPair(positive=vec(41), negative=8)]

QUERIES = {
    "best_score": models.RecommendQuery(recommend=models.RecommendInput(
        positive=[1, vec(1)], negative=[2], strategy=models.RecommendStrategy.BEST_SCORE)),
    "best_score_negatives_only": models.RecommendQuery(recommend=models.RecommendInput(
        negative=[5, vec(2)], strategy=models.RecommendStrategy.BEST_SCORE)),
    "sum_scores": models.RecommendQuery(recommend=models.RecommendInput(
        positive=[4, 6], negative=[vec(3)], strategy=models.RecommendStrategy.SUM_SCORES)),
    "discover": models.DiscoverQuery(discover=models.DiscoverInput(target=vec(4), context=PAIRS)),
    "discover_by_id": models.DiscoverQuery(discover=models.DiscoverInput(target=10, context=PAIRS[:1])),
    "context": models.ContextQuery(context=PAIRS),
}


@pytest.mark.parametrize("case", sorted(QUERIES))
def test_example_queries_match_the_oracle(both, collection_name, case):
    client, oracle = both
    for flt, limit in ((None, 10), (PAGE, 60)):
        got, want = (c.query_points(collection_name, query=QUERIES[case], query_filter=flt, limit=limit,
                                    with_payload=True).points for c in (client, oracle))
        assert want
        same_ranking(got, want)
        assert not {p.id for p in got} & mentioned(QUERIES[case]), "examples given by id are left out"


def mentioned(q) -> set:
    if isinstance(q, models.RecommendQuery):
        return {e for e in (q.recommend.positive or []) + (q.recommend.negative or []) if isinstance(e, int)}
    pairs = q.discover.context if isinstance(q, models.DiscoverQuery) else q.context
    ids = {e for p in pairs for e in (p.positive, p.negative) if isinstance(e, int)}
    if isinstance(q, models.DiscoverQuery) and isinstance(q.discover.target, int):
        ids.add(q.discover.target)
    return ids


LOOKUPS = {
    "nearest_by_id": dict(query=models.NearestQuery(nearest=3)),
    "recommend": dict(query=models.RecommendQuery(recommend=models.RecommendInput(positive=[1, 2], negative=[3]))),
    "best_score": dict(query=QUERIES["best_score"]),
    "discover": dict(query=QUERIES["discover_by_id"]),
    "prefetch": dict(prefetch=models.Prefetch(query=models.NearestQuery(nearest=4), limit=20),
                     query=models.ContextQuery(context=PAIRS)),
}


@pytest.mark.parametrize("case", sorted(LOOKUPS))
def test_lookup_from_reads_examples_from_another_collection(both, collection_name, case):
    client, oracle = both
    other = collection_name + "_lookup"
    rng = np.random.default_rng(21)
    elsewhere = [models.PointStruct(id=i, vector=rng.normal(size=DIM).tolist()) for i in range(1, 11)]
    for c in (client, oracle):
        c.create_collection(other, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        c.upsert(other, points=elsewhere, wait=True)
    kwargs = dict(LOOKUPS[case])
    if "prefetch" in kwargs:
        kwargs["prefetch"] = kwargs["prefetch"].model_copy(update={"lookup_from": models.LookupLocation(collection=other)})
        lookup = {}
    else:
        lookup = {"lookup_from": models.LookupLocation(collection=other)}
    try:
        got, want = (c.query_points(collection_name, limit=60, **kwargs, **lookup).points for c in (client, oracle))
        same_ranking(got, want)
        if not isinstance(kwargs["query"], models.ContextQuery):
            # the ids name points of the other collection: this one's are not left out
            assert {1, 2, 3, 4} & {p.id for p in got}
    finally:
        client.delete_collection(other)


def test_offset_and_rescoring_a_prefetch(both, collection_name):
    client, oracle = both
    got, want = (c.query_points(collection_name, query=QUERIES["discover"], offset=4, limit=6).points
                 for c in (client, oracle))
    same_ranking(got, want)
    got = client.query_points(collection_name, prefetch=models.Prefetch(query=vec(9), limit=30),
                              query=QUERIES["sum_scores"], limit=8).points
    # the local mode's own prefetch + example query scores points outside the prefetch (a bug
    # of the oracle: the server rescoring only the candidates); the same query over exactly the
    # candidates is the oracle here
    candidates = [p.id for p in oracle.query_points(collection_name, query=vec(9), limit=30).points]
    want = oracle.query_points(collection_name, query=QUERIES["sum_scores"], limit=8, query_filter=models.Filter(
        must=[models.HasIdCondition(has_id=candidates)])).points
    same_ranking(got, want)
    assert set(p.id for p in got) <= set(candidates)


def test_legacy_discover_endpoints_match_the_oracle(both, base_url, collection_name):
    _, oracle = both
    body = {"target": vec(4), "context": [{"positive": 3, "negative": vec(40)}, {"positive": vec(41), "negative": 8}],
            "limit": 7, "with_payload": True}
    want = oracle.query_points(collection_name, query=QUERIES["discover"], limit=7).points
    r = requests.post(f"{base_url}/collections/{collection_name}/points/discover", json=body, timeout=10)
    assert r.status_code == 200, r.text
    same_ranking([models.ScoredPoint(**p) for p in r.json()["result"]], want)
    ctx = {"context": body["context"], "limit": 70}
    want_ctx = oracle.query_points(collection_name, query=QUERIES["context"], limit=70).points
    r = requests.post(f"{base_url}/collections/{collection_name}/points/discover/batch",
                      json={"searches": [body, ctx]}, timeout=10)
    assert r.status_code == 200, r.text
    first, second = ([models.ScoredPoint(**p) for p in hits] for hits in r.json()["result"])
    same_ranking(first, want)
    same_ranking(second, want_ctx)
    # recommend's strategies on the legacy endpoint
    want = oracle.query_points(collection_name, query=QUERIES["sum_scores"], limit=5).points
    r = requests.post(f"{base_url}/collections/{collection_name}/points/recommend",
                      json={"positive": [4, 6], "negative": [vec(3)], "strategy": "sum_scores", "limit": 5}, timeout=10)
    assert r.status_code == 200, r.text
    same_ranking([models.ScoredPoint(**p) for p in r.json()["result"]], want)


@pytest.mark.parametrize("query,word", [
    ({"context": []}, b"context pairs"),
    ({"discover": {"context": []}}, b"target"),
    ({"discover": {"target": [1.0] * DIM, "context": [{"positive": 1}]}}, b"negative"),
    ({"recommend": {"strategy": "best_score"}}, b"examples"),
    ({"discover": {"target": [1.0] * 3, "context": []}}, b"dim"),
])
def test_bad_example_queries_are_refused(client, base_url, collection_name, query, word):
    fill(client, collection_name, models.Distance.COSINE)
    r = requests.post(f"{base_url}/collections/{collection_name}/points/query", json={"query": query}, timeout=10)
    assert r.status_code == 400, r.text
    assert word in r.content.lower(), r.text


def test_an_example_outside_the_collection_is_not_found(client, collection_name):
    fill(client, collection_name, models.Distance.COSINE)
    refused = expect_status(404, client.query_points, collection_name,
                            query=models.ContextQuery(context=[models.ContextPair(positive=1, negative=999)]))
    assert b"999" in refused.content
