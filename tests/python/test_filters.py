"""Filters in Qdrant's JSON through the official client: match (value, any, except), range, is_empty,
is_null, has_id, values_count, dotted keys into nested payload, must / should / must_not / min_should
and nested clauses. Every filter is checked against a Python predicate that follows Qdrant's rules,
through count, scroll (paged), exact query and HNSW query, with and without payload indexes.

The node runs with a small indexing threshold so most points sit in HNSW-indexed segments."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from qdrant_client import models

from tessera_helpers import (
    assert_neighbours,
    cosine_scores,
    count,
    make_client,
    point_uuid,
    random_vectors,
    scroll_all,
    top_k,
    wait_indexed,
)

# Each test runs over REST and over gRPC (prefer_grpc=True): the same flow through both front doors.
TRANSPORTS = ("rest", "grpc")
DIM = 8
N = 240
INDEXING_THRESHOLD = 64
CITIES = ["Berlin", "London", "Moscow", "Paris"]
MISSING = object()


@pytest.fixture(scope="module")
def tessera_args():
    return ("--indexing-threshold", str(INDEXING_THRESHOLD))


def pid_of(i: int):
    return [i, point_uuid(f"f{i}"), f"p{i}"][i % 3]


def payload_of(i: int) -> dict:
    p: dict = {
        "count": i % 17,
        "price": (i % 40) * 0.25,
        "ok": i % 3 == 0,
        "nums": [(i + j) % 7 for j in range(i % 5)],
        "kind": i % 4,
    }
    if i % 10 == 8:
        p["city"] = None
    elif i % 10 != 9:
        p["city"] = CITIES[i % 4]
    if i % 11:
        p["tags"] = [f"t{j}" for j in range(i % 4)]
    if i % 6 != 5:
        p["meta"] = {"lang": ["en", "de", "fr"][i % 3], "level": i % 5, "inner": {"deep": i % 2 == 0}}
    if i % 5 == 0:
        p["note"] = None
    elif i % 5 != 1:
        p["note"] = f"n{i}"
    return p


# ---------- Qdrant's condition semantics, in Python ----------


def get(p: dict, key: str):
    cur = p
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def values(p: dict, key: str) -> list:
    v = get(p, key)
    if v is MISSING:
        return []
    return v if isinstance(v, list) else [v]


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def same(x, v) -> bool:
    if isinstance(v, bool):
        return isinstance(x, bool) and x == v
    if is_int(v):
        return is_int(x) and x == v
    return isinstance(x, str) and x == v


def m_value(key, v):
    return lambda i, p: any(same(x, v) for x in values(p, key))


def m_any(key, lst):
    return lambda i, p: any(same(x, v) for x in values(p, key) for v in lst)


def m_except(key, lst):
    def ok(x):
        if x is None:
            return False
        if isinstance(x, str) and isinstance(lst[0], str):
            return x not in lst
        if is_int(x) and is_int(lst[0]):
            return x not in lst
        return True

    return lambda i, p: any(ok(x) for x in values(p, key))


def rng_(key, gt=None, gte=None, lt=None, lte=None):
    def ok(x):
        if not (is_int(x) or isinstance(x, float)):
            return False
        return ((gt is None or x > gt) and (gte is None or x >= gte)
                and (lt is None or x < lt) and (lte is None or x <= lte))

    return lambda i, p: any(ok(x) for x in values(p, key))


def is_empty(key):
    return lambda i, p: get(p, key) in (MISSING, None) or get(p, key) == []


def is_null(key):
    return lambda i, p: get(p, key) is None


def n_values(p, key) -> int:
    v = get(p, key)
    if v is MISSING or v is None:
        return 0
    return len(v) if isinstance(v, list) else 1


def v_count(key, gt=None, gte=None, lt=None, lte=None):
    def f(i, p):
        n = n_values(p, key)
        return ((gt is None or n > gt) and (gte is None or n >= gte)
                and (lt is None or n < lt) and (lte is None or n <= lte))

    return f


def all_of(*fs):
    return lambda i, p: all(f(i, p) for f in fs)


def any_of(*fs):
    return lambda i, p: any(f(i, p) for f in fs)


def none_of(*fs):
    return lambda i, p: not any(f(i, p) for f in fs)


# ---------- the conditions, as client models ----------


def fc_value(key, v):
    return models.FieldCondition(key=key, match=models.MatchValue(value=v))


def fc_any(key, lst):
    return models.FieldCondition(key=key, match=models.MatchAny(any=lst))


def fc_except(key, lst):
    return models.FieldCondition(key=key, match=models.MatchExcept(**{"except": lst}))


def fc_range(key, **kw):
    return models.FieldCondition(key=key, range=models.Range(**kw))


def fc_count(key, **kw):
    return models.FieldCondition(key=key, values_count=models.ValuesCount(**kw))


HAS_IDS = [pid_of(i) for i in (0, 1, 2, 5, 77, 150, 239)] + [123456789, point_uuid("absent")]

CASES = {
    "match-keyword": (models.Filter(must=[fc_value("city", "London")]), m_value("city", "London")),
    "match-int": (models.Filter(must=[fc_value("count", 3)]), m_value("count", 3)),
    "match-bool-true": (models.Filter(must=[fc_value("ok", True)]), m_value("ok", True)),
    "match-bool-false": (models.Filter(must=[fc_value("ok", False)]), m_value("ok", False)),
    "match-array-element": (models.Filter(must=[fc_value("tags", "t2")]), m_value("tags", "t2")),
    "match-missing-field": (models.Filter(must=[fc_value("no_such_field", "x")]), lambda i, p: False),
    "any-keyword": (models.Filter(must=[fc_any("city", ["Berlin", "Paris"])]), m_any("city", ["Berlin", "Paris"])),
    "any-int": (models.Filter(must=[fc_any("kind", [1, 3])]), m_any("kind", [1, 3])),
    "any-array": (models.Filter(must=[fc_any("tags", ["t0", "t3"])]), m_any("tags", ["t0", "t3"])),
    "except-keyword": (models.Filter(must=[fc_except("city", ["Berlin", "London"])]), m_except("city", ["Berlin", "London"])),
    "except-int": (models.Filter(must=[fc_except("count", list(range(11)))]), m_except("count", list(range(11)))),
    "except-array": (models.Filter(must=[fc_except("tags", ["t0"])]), m_except("tags", ["t0"])),
    "range-int": (models.Filter(must=[fc_range("count", gte=5, lt=9)]), rng_("count", gte=5, lt=9)),
    "range-float": (models.Filter(must=[fc_range("price", gt=2.5, lte=5.0)]), rng_("price", gt=2.5, lte=5.0)),
    "range-float-open": (models.Filter(must=[fc_range("price", lt=1)]), rng_("price", lt=1)),
    "range-array": (models.Filter(must=[fc_range("nums", gte=6)]), rng_("nums", gte=6)),
    "nested-key-match": (models.Filter(must=[fc_value("meta.lang", "de")]), m_value("meta.lang", "de")),
    "nested-key-deep": (models.Filter(must=[fc_value("meta.inner.deep", True)]), m_value("meta.inner.deep", True)),
    "nested-key-range": (models.Filter(must=[fc_range("meta.level", gte=3)]), rng_("meta.level", gte=3)),
    "is-empty-array": (models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="tags"))]), is_empty("tags")),
    "is-empty-null": (models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="note"))]), is_empty("note")),
    "is-empty-nested": (models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="meta.lang"))]), is_empty("meta.lang")),
    "is-null": (models.Filter(must=[models.IsNullCondition(is_null=models.PayloadField(key="note"))]), is_null("note")),
    "is-null-city": (models.Filter(must=[models.IsNullCondition(is_null=models.PayloadField(key="city"))]), is_null("city")),
    "has-id": (models.Filter(must=[models.HasIdCondition(has_id=HAS_IDS)]), lambda i, p: pid_of(i) in HAS_IDS),
    "values-count-gte": (models.Filter(must=[fc_count("tags", gte=2)]), v_count("tags", gte=2)),
    "values-count-lt": (models.Filter(must=[fc_count("nums", lt=2)]), v_count("nums", lt=2)),
    "must-not": (models.Filter(must_not=[fc_value("city", "London")]), none_of(m_value("city", "London"))),
    "must-not-empty": (
        models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key="tags"))]),
        none_of(is_empty("tags")),
    ),
    "should": (models.Filter(should=[fc_value("city", "Berlin"), fc_value("ok", True)]), any_of(m_value("city", "Berlin"), m_value("ok", True))),
    "must-should-must-not": (
        models.Filter(
            must=[fc_range("count", gte=2)],
            should=[fc_value("meta.lang", "en"), fc_any("tags", ["t2"])],
            must_not=[fc_value("kind", 0)],
        ),
        all_of(rng_("count", gte=2), any_of(m_value("meta.lang", "en"), m_any("tags", ["t2"])), none_of(m_value("kind", 0))),
    ),
    "min-should": (
        models.Filter(
            min_should=models.MinShould(
                conditions=[fc_value("city", "Berlin"), fc_value("ok", True), fc_range("count", gte=10)],
                min_count=2,
            )
        ),
        lambda i, p: sum(f(i, p) for f in (m_value("city", "Berlin"), m_value("ok", True), rng_("count", gte=10))) >= 2,
    ),
    "nested-clauses": (
        models.Filter(
            must=[models.Filter(should=[fc_value("city", "Moscow"), fc_range("price", gte=8)])],
            must_not=[models.Filter(must=[fc_value("ok", True), fc_value("meta.inner.deep", True)])],
        ),
        all_of(
            any_of(m_value("city", "Moscow"), rng_("price", gte=8)),
            none_of(all_of(m_value("ok", True), m_value("meta.inner.deep", True))),
        ),
    ),
    "match-type-mismatch": (models.Filter(must=[fc_value("count", "3")]), lambda i, p: False),
}


@pytest.fixture(scope="module")
def dataset(base_url, grpc_port):
    """Two collections with the same points under shard key "t" (and a decoy copy under "other"):
    one without payload indexes, one with indexes on the filtered fields."""
    client = make_client(base_url, grpc_port)
    rng = np.random.default_rng(123)
    vectors = random_vectors(rng, N, DIM)
    ids = [pid_of(i) for i in range(N)]
    payloads = [payload_of(i) for i in range(N)]
    names = {"plain": "filters_plain", "indexed": "filters_indexed"}
    for kind, name in names.items():
        client.create_collection(
            name,
            vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
            sharding_method=models.ShardingMethod.CUSTOM,
        )
        for key in ("t", "other"):
            client.create_shard_key(name, key)
        if kind == "indexed":
            for field, schema in [("city", "keyword"), ("count", "integer"), ("price", "float"), ("ok", "bool"),
                                  ("meta.lang", "keyword"), ("tags", "keyword"), ("kind", "integer")]:
                client.create_payload_index(name, field_name=field, field_schema=schema)
        for key in ("t", "other"):
            vecs = vectors if key == "t" else -vectors
            pts = [models.PointStruct(id=pid, vector=v.tolist(), payload=pl) for pid, v, pl in zip(ids, vecs, payloads)]
            for s in range(0, N, 60):
                client.upsert(name, points=pts[s:s + 60], shard_key_selector=key)
        wait_indexed(client, name, 2 * N, 2 * (N // INDEXING_THRESHOLD) * INDEXING_THRESHOLD)
    try:
        yield client, names, ids, vectors, payloads
    finally:
        for name in names.values():
            client.delete_collection(name)
        client.close()


@pytest.mark.parametrize("kind", ["plain", "indexed"])
@pytest.mark.parametrize("case", list(CASES))
def test_filter(dataset, case, kind):
    client, names, ids, vectors, payloads = dataset
    name = names[kind]
    flt, pred = CASES[case]
    match = [i for i in range(N) if pred(i, payloads[i])]
    expected_ids = {ids[i] for i in match}

    assert count(client, name, count_filter=flt, shard_key_selector="t") == len(match)
    recs = scroll_all(client, name, page=25, scroll_filter=flt, shard_key_selector="t", with_payload=True)
    got = {r.id for r in recs}
    assert got == expected_ids, f"scroll: extra {sorted(map(str, got - expected_ids))[:10]}, missing {sorted(map(str, expected_ids - got))[:10]}"
    for r in recs:
        assert r.payload == payloads[ids.index(r.id)]

    q = np.random.default_rng(len(case)).standard_normal(DIM).tolist()
    expected = top_k([ids[i] for i in match], cosine_scores(q, vectors[match]), 10) if match else []
    res = client.query_points(name, query=q, query_filter=flt, shard_key_selector="t", limit=10,
                              search_params=models.SearchParams(exact=True))
    assert_neighbours(res.points, expected)
    res = client.query_points(name, query=q, query_filter=flt, shard_key_selector="t", limit=10)
    assert {p.id for p in res.points} <= expected_ids, "HNSW query returned points the filter excludes"
    assert_neighbours(res.points, expected, min_recall=0.8)


def test_filter_without_shard_key_covers_all_keys(dataset):
    client, names, ids, vectors, payloads = dataset
    flt, pred = CASES["range-int"]
    n = sum(pred(i, payloads[i]) for i in range(N))
    assert count(client, names["plain"], count_filter=flt) == 2 * n
    for page in (50, 7):  # an odd page size splits the two copies of an id across pages
        recs = scroll_all(client, names["plain"], scroll_filter=flt, page=page)
        assert len(recs) == 2 * n
        assert sorted(r.shard_key for r in recs) == ["other"] * n + ["t"] * n


def test_raw_json_filters(dataset, base_url):
    """The same filters in raw Qdrant JSON, including shapes the client would not produce."""
    _, names, ids, _, payloads = dataset
    url = f"{base_url}/collections/{names['plain']}/points/count"
    cases = [
        ({"must": {"key": "city", "match": {"value": "London"}}}, m_value("city", "London")),  # a single condition, not a list
        ({"must": [{"key": "city", "match": {"any": ["Berlin"]}}, {"key": "count", "range": {"lt": 4}}]},
         all_of(m_any("city", ["Berlin"]), rng_("count", lt=4))),
        ({"should": [{"has_id": [ids[3], ids[4]]}, {"is_null": {"key": "city"}}]},
         any_of(lambda i, p: i in (3, 4), is_null("city"))),
        ({"must_not": [{"is_empty": {"key": "meta"}}], "must": [{"key": "meta.level", "match": {"value": 0}}]},
         all_of(none_of(is_empty("meta")), m_value("meta.level", 0))),
        ({"must": [{"key": "ok", "match": {"value": False}}, {"key": "nums", "values_count": {"gt": 3}}]},
         all_of(m_value("ok", False), v_count("nums", gt=3))),
        ({"min_should": {"conditions": [{"key": "kind", "match": {"value": 1}}, {"key": "ok", "match": {"value": True}}], "min_count": 1}},
         any_of(m_value("kind", 1), m_value("ok", True))),
    ]
    for flt, pred in cases:
        r = requests.post(url, json={"filter": flt, "shard_key": "t", "exact": True}, timeout=10)
        assert r.status_code == 200, f"{flt}: {r.status_code} {r.text[:300]}"
        assert r.json()["result"]["count"] == sum(pred(i, payloads[i]) for i in range(N)), flt


def test_bad_filters_are_400(dataset, base_url):
    _, names, _, _, _ = dataset
    url = f"{base_url}/collections/{names['plain']}/points/count"
    for flt in [5, "x", {"must": 5}, {"must": [{"key": "city"}]}, {"must": [{"key": "city", "match": {}}]},
                {"must": [{"key": "count", "range": {"gt": "a"}}]}, {"must": [{"nonsense": 1}]}]:
        r = requests.post(url, json={"filter": flt, "shard_key": "t"}, timeout=10)
        assert r.status_code == 400, f"{flt}: {r.status_code} {r.text[:300]}"
        body = r.json()
        assert isinstance(body["status"]["error"], str), body


@pytest.mark.parametrize("selectivity", [0.01, 0.05, 0.3])
def test_selective_filters_do_not_starve(client, collection_name, selectivity, tessera_args):
    """When enough points match, a filtered HNSW query returns `limit` of them with high recall."""
    name = collection_name
    n, dim = 1500, 16
    client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
    rng = np.random.default_rng(7)
    vecs = random_vectors(rng, n, dim)
    every = int(round(1 / selectivity))
    pts = [models.PointStruct(id=i, vector=v.tolist(), payload={"g": "in" if i % every == 0 else "out"}) for i, v in enumerate(vecs)]
    for s in range(0, n, 500):
        client.upsert(name, points=pts[s:s + 500])
    wait_indexed(client, name, n, n // INDEXING_THRESHOLD * INDEXING_THRESHOLD // 2)
    match = [i for i in range(n) if i % every == 0]
    flt = models.Filter(must=[fc_value("g", "in")])
    recalls = []
    for _ in range(10):
        q = rng.standard_normal(dim).tolist()
        expected = top_k(match, cosine_scores(q, vecs[match]), 10)
        res = client.query_points(name, query=q, query_filter=flt, limit=10, with_payload=False)
        assert len(res.points) == 10, f"filtered query starved: {len(res.points)} of 10 with {len(match)} matching"
        assert {p.id for p in res.points} <= set(match)
        recalls.append(len({p.id for p in res.points} & {e[0] for e in expected}) / 10)
    assert np.mean(recalls) >= 0.9, f"mean recall@10 {np.mean(recalls):.2f} with selectivity {selectivity}"
