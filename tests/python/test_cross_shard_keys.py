"""Shard-key isolation with the official client: the same point ids live under tenant A and tenant B
with different vectors and payloads; every read naming B sees only B, and every write naming B
leaves A exactly as it was.

The module runs twice: against a node whose shards keep everything in the unindexed tail (exact
scans), and against one with a tiny indexing threshold so each tenant's points sit in HNSW-indexed
segments (deletes and overwrites then become tombstones in a graph)."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import models

from tessera_helpers import (
    assert_neighbours,
    cosine_scores,
    count,
    expect_status,
    keyword,
    make_client,
    normalize,
    point_uuid,
    random_vectors,
    scroll_all,
    top_k,
    wait_indexed,
)

# Each test runs over REST and over gRPC (prefer_grpc=True): the same flow through both front doors.
TRANSPORTS = ("rest", "grpc")
DIM = 6
INDEXING_THRESHOLD = 16
SHARED_IDS: list = (
    [f"doc_{i}" for i in range(12)] + list(range(12)) + [point_uuid(f"shared-{i}") for i in range(12)]
)


@pytest.fixture(scope="module", params=["tail", "hnsw"])
def tessera_args(request):
    if request.param == "hnsw":
        return ("--indexing-threshold", str(INDEXING_THRESHOLD))
    return ()


class Tenant:
    def __init__(self, key: str, rng: np.random.Generator):
        self.key = key
        own = [f"only_{key}_{i}" for i in range(5)] + [1000 + i + (100 if key == "B" else 0) for i in range(5)]
        self.ids = SHARED_IDS + own
        self.own = own
        self.vectors = random_vectors(rng, len(self.ids), DIM)
        self.payloads = [{"owner": key, "i": i, "tag": f"{key}-{i}", "nested": {"owner": key}} for i in range(len(self.ids))]

    def at(self, pid) -> int:
        return self.ids.index(pid)

    def expected(self, query, k: int, exclude=None):
        return top_k(self.ids, cosine_scores(query, self.vectors), k, exclude=exclude)


def build(client, name: str, seed: int = 5) -> dict[str, Tenant]:
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        sharding_method=models.ShardingMethod.CUSTOM,
    )
    rng = np.random.default_rng(seed)
    tenants = {}
    for key in ("A", "B"):
        client.create_shard_key(name, key)
        t = Tenant(key, rng)
        # several batches, so that with a small indexing threshold segments get sealed and indexed
        pts = [models.PointStruct(id=p, vector=v.tolist(), payload=pl) for p, v, pl in zip(t.ids, t.vectors, t.payloads)]
        for i in range(0, len(pts), 10):
            client.upsert(name, points=pts[i:i + 10], shard_key_selector=key)
        tenants[key] = t
    return tenants


def settle(client, name: str, tessera_args, tenants) -> None:
    if tessera_args:
        sealed = sum(len(t.ids) // INDEXING_THRESHOLD * INDEXING_THRESHOLD for t in tenants.values())
        wait_indexed(client, name, sum(len(t.ids) for t in tenants.values()), sealed)


def state(client, name: str, key: str) -> dict:
    """Everything a shard key holds: id -> (payload, vector)."""
    recs = scroll_all(client, name, page=16, shard_key_selector=key, with_payload=True, with_vectors=True)
    assert all(r.shard_key == key for r in recs)
    return {r.id: (r.payload, np.asarray(r.vector, dtype=np.float64)) for r in recs}


def expected_state(t: Tenant) -> dict:
    return {pid: (pl, normalize(v)) for pid, v, pl in zip(t.ids, t.vectors, t.payloads)}


def assert_same_state(got: dict, want: dict) -> None:
    assert sorted(map(str, got)) == sorted(map(str, want)), "different ids"
    for pid, (payload, vector) in want.items():
        assert got[pid][0] == payload, f"payload of {pid!r}: {got[pid][0]} != {payload}"
        np.testing.assert_allclose(got[pid][1], vector, atol=1e-5, err_msg=f"vector of {pid!r}")


@pytest.fixture(scope="module")
def shared(base_url, grpc_port, tessera_args):
    client = make_client(base_url, grpc_port)
    name = "cross_keys_shared"
    tenants = build(client, name)
    settle(client, name, tessera_args, tenants)
    try:
        yield client, name, tenants
    finally:
        client.delete_collection(name)
        client.close()


@pytest.fixture
def fresh(client, collection_name, tessera_args):
    tenants = build(client, collection_name, seed=17)
    settle(client, collection_name, tessera_args, tenants)
    a_before = state(client, collection_name, "A")
    assert_same_state(a_before, expected_state(tenants["A"]))
    return client, collection_name, tenants, a_before


# ---------- reads ----------


def test_the_setup_holds_both_tenants(shared):
    client, name, tenants = shared
    for key, t in tenants.items():
        assert_same_state(state(client, name, key), expected_state(t))
    assert count(client, name) == sum(len(t.ids) for t in tenants.values())


def test_retrieve_names_b_sees_only_b(shared):
    client, name, tenants = shared
    a, b = tenants["A"], tenants["B"]
    recs = client.retrieve(name, ids=SHARED_IDS, shard_key_selector="B", with_payload=True, with_vectors=True)
    assert sorted(map(str, (r.id for r in recs))) == sorted(map(str, SHARED_IDS))
    for r in recs:
        assert r.shard_key == "B"
        assert r.payload == b.payloads[b.at(r.id)]
        np.testing.assert_allclose(r.vector, normalize(b.vectors[b.at(r.id)]), atol=1e-5)
    # ids that exist only under A are not found under B
    assert client.retrieve(name, ids=a.own, shard_key_selector="B") == []
    assert client.retrieve(name, ids=a.own, shard_key_selector=["B"]) == []


def test_scroll_and_count_name_b_see_only_b(shared):
    client, name, tenants = shared
    b = tenants["B"]
    recs = scroll_all(client, name, page=5, shard_key_selector="B")
    assert sorted(map(str, (r.id for r in recs))) == sorted(map(str, b.ids))
    assert all(r.payload["owner"] == "B" and r.shard_key == "B" for r in recs)
    assert count(client, name, shard_key_selector="B") == len(b.ids)
    assert client.count(name, shard_key_selector="B", exact=False).count == len(b.ids)


@pytest.mark.parametrize("page", [1, 2, 5, 16])
def test_scroll_over_both_keys_pages_through_colliding_ids(shared, page):
    """Without a shard key (or with both), a scroll returns every (shard key, id) exactly once, even
    when a page boundary falls between the two copies of an id."""
    client, name, tenants = shared
    want = sorted((t.key, str(pid)) for t in tenants.values() for pid in t.ids)
    for sel in (None, ["A", "B"]):
        recs = scroll_all(client, name, page=page, shard_key_selector=sel, with_payload=True)
        assert sorted((r.shard_key, str(r.id)) for r in recs) == want
        assert all(r.payload["owner"] == r.shard_key for r in recs)


def test_query_names_b_never_returns_a(shared):
    client, name, tenants = shared
    a, b = tenants["A"], tenants["B"]
    # A's own vectors, asked of B: B's nearest points, never A's (whose score would be 1.0)
    for pid in (SHARED_IDS[0], SHARED_IDS[13], SHARED_IDS[30], a.own[0], a.own[7]):
        q = a.vectors[a.at(pid)].tolist()
        for exact in (True, False):
            res = client.query_points(
                name, query=q, shard_key_selector="B", limit=8, with_payload=True,
                search_params=models.SearchParams(exact=exact),
            )
            assert all(p.payload["owner"] == "B" and p.shard_key == "B" for p in res.points)
            assert_neighbours(res.points, b.expected(q, 8))
    # a query without a query vector (Qdrant lists points) stays inside B as well
    res = client.query_points(name, shard_key_selector="B", limit=100, with_payload=True)
    assert sorted(map(str, (p.id for p in res.points))) == sorted(map(str, b.ids))
    assert all(p.payload["owner"] == "B" for p in res.points)


def test_query_by_point_id_uses_the_named_keys_vector(shared):
    client, name, tenants = shared
    a, b = tenants["A"], tenants["B"]
    for pid in (SHARED_IDS[1], SHARED_IDS[14], SHARED_IDS[27], 0):
        res = client.query_points(name, query=pid, shard_key_selector="B", limit=6, with_payload=True)
        assert all(p.payload["owner"] == "B" for p in res.points)
        assert_neighbours(res.points, b.expected(b.vectors[b.at(pid)], 6, exclude=pid))
    # an id that exists only under A is unknown under B
    expect_status(404, client.query_points, name, query=a.own[0], shard_key_selector="B")
    expect_status(404, client.query_points, name, query=a.own[6], shard_key_selector="B")


def test_query_over_both_keys_keeps_them_apart(shared):
    client, name, tenants = shared
    q = np.random.default_rng(2).standard_normal(DIM).tolist()
    pairs = [(t.key, pid) for t in tenants.values() for pid in t.ids]
    vecs = np.concatenate([t.vectors for t in tenants.values()])
    expected = top_k(pairs, cosine_scores(q, vecs), 12)
    for sel in (["A", "B"], None):
        res = client.query_points(name, query=q, shard_key_selector=sel, limit=12, with_payload=True)
        got = [(p.shard_key, p.id) for p in res.points]
        assert got == [e[0] for e in expected]
        assert [p.score for p in res.points] == pytest.approx([e[1] for e in expected], abs=1e-4)
        assert all(p.payload["owner"] == p.shard_key for p in res.points)


def test_filtered_reads_name_b_see_only_b(shared):
    client, name, tenants = shared
    b = tenants["B"]
    q = np.random.default_rng(4).standard_normal(DIM).tolist()
    a_filter = models.Filter(must=[keyword("owner", "A")])
    assert count(client, name, shard_key_selector="B", count_filter=a_filter) == 0
    assert client.query_points(name, query=q, shard_key_selector="B", query_filter=a_filter).points == []
    assert client.scroll(name, shard_key_selector="B", scroll_filter=a_filter)[0] == []
    has_shared = models.Filter(must=[models.HasIdCondition(has_id=SHARED_IDS[:5])])
    assert count(client, name, shard_key_selector="B", count_filter=has_shared) == 5
    res = client.query_points(name, query=q, shard_key_selector="B", query_filter=has_shared, limit=10, with_payload=True)
    assert {p.payload["owner"] for p in res.points} == {"B"}
    ids5 = SHARED_IDS[:5]
    idx = [b.at(p) for p in ids5]
    assert_neighbours(res.points, top_k(ids5, cosine_scores(q, b.vectors[idx]), 5))


# ---------- writes ----------


def test_upsert_under_b_leaves_a(fresh):
    client, name, tenants, a_before = fresh
    rng = np.random.default_rng(99)
    newv = random_vectors(rng, len(SHARED_IDS), DIM)
    client.upsert(
        name,
        points=[models.PointStruct(id=p, vector=v.tolist(), payload={"owner": "B2"}) for p, v in zip(SHARED_IDS, newv)],
        shard_key_selector="B",
    )
    assert_same_state(state(client, name, "A"), a_before)
    b_now = state(client, name, "B")
    for p, v in zip(SHARED_IDS, newv):
        assert b_now[p][0] == {"owner": "B2"}
        np.testing.assert_allclose(b_now[p][1], normalize(v), atol=1e-5)
    assert count(client, name, shard_key_selector="B") == len(tenants["B"].ids)
    # A's search results are A's old vectors, not B's new ones
    res = client.query_points(name, query=newv[0].tolist(), shard_key_selector="A", limit=5)
    assert_neighbours(res.points, tenants["A"].expected(newv[0], 5))


def test_delete_ids_under_b_leaves_a(fresh):
    client, name, tenants, a_before = fresh
    gone = SHARED_IDS[::3]
    client.delete(name, points_selector=models.PointIdsList(points=gone), shard_key_selector="B")
    assert_same_state(state(client, name, "A"), a_before)
    b = tenants["B"]
    assert set(state(client, name, "B")) == set(b.ids) - set(gone)
    assert count(client, name, shard_key_selector="A") == len(tenants["A"].ids)
    # A's copies of the deleted ids still answer searches
    a = tenants["A"]
    for pid in gone[:4]:
        res = client.query_points(name, query=a.vectors[a.at(pid)].tolist(), shard_key_selector="A", limit=1)
        assert res.points[0].id == pid and res.points[0].score == pytest.approx(1.0, abs=1e-4)


def test_delete_filter_under_b_leaves_a(fresh):
    client, name, tenants, a_before = fresh
    client.delete(
        name,
        points_selector=models.FilterSelector(filter=models.Filter(must=[models.FieldCondition(key="i", range=models.Range(lt=20))])),
        shard_key_selector="B",
    )
    assert_same_state(state(client, name, "A"), a_before)
    b = tenants["B"]
    assert set(state(client, name, "B")) == {p for p, pl in zip(b.ids, b.payloads) if pl["i"] >= 20}


def test_delete_everything_under_b_by_filter_leaves_a(fresh):
    client, name, tenants, a_before = fresh
    client.delete(name, points_selector=models.FilterSelector(filter=models.Filter(must=[keyword("owner", "B")])), shard_key_selector="B")
    assert_same_state(state(client, name, "A"), a_before)
    assert count(client, name, shard_key_selector="B") == 0


def test_set_payload_under_b_leaves_a(fresh):
    client, name, tenants, a_before = fresh
    ids = SHARED_IDS[:8]
    client.set_payload(name, payload={"touched": True, "owner": "B!"}, points=ids, shard_key_selector="B")
    assert_same_state(state(client, name, "A"), a_before)
    b = tenants["B"]
    for r in client.retrieve(name, ids=ids, shard_key_selector="B"):
        assert r.payload == {**b.payloads[b.at(r.id)], "touched": True, "owner": "B!"}


def test_set_payload_by_filter_under_b_leaves_a(fresh):
    client, name, tenants, a_before = fresh
    client.set_payload(
        name, payload={"touched": 1},
        points=models.Filter(must=[models.FieldCondition(key="i", range=models.Range(gte=30))]),
        shard_key_selector="B",
    )
    assert_same_state(state(client, name, "A"), a_before)
    b = tenants["B"]
    for r in scroll_all(client, name, shard_key_selector="B"):
        assert ("touched" in r.payload) == (b.payloads[b.at(r.id)]["i"] >= 30)


def test_overwrite_payload_under_b_leaves_a(fresh):
    client, name, _, a_before = fresh
    ids = SHARED_IDS[10:20]
    client.overwrite_payload(name, payload={"only": "this"}, points=ids, shard_key_selector="B")
    assert_same_state(state(client, name, "A"), a_before)
    assert all(r.payload == {"only": "this"} for r in client.retrieve(name, ids=ids, shard_key_selector="B"))


def test_delete_payload_under_b_leaves_a(fresh):
    client, name, tenants, a_before = fresh
    ids = SHARED_IDS[20:30]
    client.delete_payload(name, keys=["tag", "owner"], points=ids, shard_key_selector="B")
    assert_same_state(state(client, name, "A"), a_before)
    b = tenants["B"]
    for r in client.retrieve(name, ids=ids, shard_key_selector="B"):
        pl = b.payloads[b.at(r.id)]
        assert r.payload == {"i": pl["i"], "nested": pl["nested"]}


def test_clear_payload_under_b_leaves_a(fresh):
    client, name, _, a_before = fresh
    client.clear_payload(name, points_selector=SHARED_IDS, shard_key_selector="B")
    assert_same_state(state(client, name, "A"), a_before)
    assert all(not r.payload for r in client.retrieve(name, ids=SHARED_IDS, shard_key_selector="B"))


def test_delete_shard_key_b_leaves_a(fresh):
    client, name, _, a_before = fresh
    client.delete_shard_key(name, "B")
    assert_same_state(state(client, name, "A"), a_before)
    expect_status(404, client.retrieve, name, ids=SHARED_IDS, shard_key_selector="B")


def test_write_naming_both_keys_reaches_both(fresh):
    client, name, tenants, _ = fresh
    client.upsert(name, points=[models.PointStruct(id="both", vector=[1.0] * DIM, payload={"k": 1})], shard_key_selector=["A", "B"])
    recs = client.retrieve(name, ids=["both"], shard_key_selector=["A", "B"])
    assert sorted(r.shard_key for r in recs) == ["A", "B"]
    client.delete(name, points_selector=models.PointIdsList(points=["both"]), shard_key_selector=["B"])
    assert [r.shard_key for r in client.retrieve(name, ids=["both"])] == ["A"]
    assert count(client, name, shard_key_selector="A") == len(tenants["A"].ids) + 1
    assert count(client, name, shard_key_selector="B") == len(tenants["B"].ids)


def test_fallback_selector_writes_to_the_fallback_only(fresh):
    client, name, tenants, a_before = fresh
    sel = models.ShardKeyWithFallback(target="C", fallback="B")  # C does not exist
    client.upsert(name, points=[models.PointStruct(id=SHARED_IDS[0], vector=[1.0] * DIM, payload={"via": "fallback"})], shard_key_selector=sel)
    assert_same_state(state(client, name, "A"), a_before)
    assert client.retrieve(name, ids=[SHARED_IDS[0]], shard_key_selector="B")[0].payload == {"via": "fallback"}
    assert client.retrieve(name, ids=[SHARED_IDS[0]], shard_key_selector=sel)[0].payload == {"via": "fallback"}
    assert count(client, name, shard_key_selector=sel) == len(tenants["B"].ids)
