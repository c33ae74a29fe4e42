"""The seed guide's first recipe, unchanged: one shared collection with `hnsw_config: {m: 0,
payload_m: 16}` (no graph over the whole collection, one per tenant) and a keyword index on the
tenant field with `is_tenant: true`; every query carries its tenant's filter.

The node runs with a low indexing threshold so that sealed segments get their per-tenant graphs
(groups of at least 1000 points get a graph, smaller ones are scanned): tenant-filtered queries
must reach recall@10 >= 0.95 against the exact top 10 within the tenant, for a large tenant (graph
walk) and a small one (scan), and never return another tenant's point.
"""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import models

from tessera_helpers import cosine_scores, keyword, top_k, wait_indexed

DIM = 32
# (tenant, points): two large tenants whose groups get graphs, one small one that is scanned
TENANTS = [("big_a", 4000), ("big_b", 3000), ("small", 60)]
QUERIES = 25


# Each test runs over REST and over gRPC (prefer_grpc=True): the same flow through both front doors.
TRANSPORTS = ("rest", "grpc")

@pytest.fixture(scope="module")
def tessera_args():
    return ("--indexing-threshold", "2000")


@pytest.fixture(scope="module")
def shared(base_url, grpc_port):
    from tessera_helpers import make_client

    client = make_client(base_url, grpc_port)
    name = "guide_m0"
    # the guide, as written
    client.create_collection(
        collection_name=name,
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        hnsw_config=models.HnswConfigDiff(payload_m=16, m=0),
    )
    client.create_payload_index(
        collection_name=name,
        field_name="group_id",
        field_schema=models.KeywordIndexParams(type="keyword", is_tenant=True),
    )
    rng = np.random.default_rng(7)
    data = {}
    next_id = 0
    # tenants interleaved, as a shared collection receives them
    batches = []
    for tenant, n in TENANTS:
        vecs = rng.standard_normal((n, DIM)).astype(np.float32)
        ids = list(range(next_id, next_id + n))
        next_id += n
        data[tenant] = (ids, vecs)
        for start in range(0, n, 500):
            batches.append((tenant, ids[start : start + 500], vecs[start : start + 500]))
    rng.shuffle(batches)
    for tenant, ids, vecs in batches:
        client.upsert(
            collection_name=name,
            points=[
                models.PointStruct(id=i, vector=v.tolist(), payload={"group_id": tenant})
                for i, v in zip(ids, vecs)
            ],
            wait=True,
        )
    total = sum(n for _, n in TENANTS)
    wait_indexed(client, name, total, total - 2000, timeout=120)
    try:
        yield client, name, data
    finally:
        client.delete_collection(name)
        client.close()


def test_the_guide_settings_are_reported_back(shared):
    client, name, _ = shared
    info = client.get_collection(name)
    assert info.config.hnsw_config.m == 0
    assert info.config.hnsw_config.payload_m == 16
    assert info.payload_schema["group_id"].params.is_tenant is True


@pytest.mark.parametrize("tenant", [t for t, _ in TENANTS])
def test_tenant_filtered_queries_reach_the_recall_and_stay_in_the_tenant(shared, tenant):
    client, name, data = shared
    ids, vecs = data[tenant]
    rng = np.random.default_rng(11)
    found = expected_total = 0
    for _ in range(QUERIES):
        q = rng.standard_normal(DIM).tolist()
        res = client.query_points(
            collection_name=name,
            query=q,
            query_filter=models.Filter(must=[keyword("group_id", tenant)]),
            limit=10,
            with_payload=True,
        )
        assert all(p.payload["group_id"] == tenant for p in res.points)
        expected = {i for i, _ in top_k(ids, cosine_scores(q, vecs), 10)}
        found += len({p.id for p in res.points} & expected)
        expected_total += len(expected)
    recall = found / expected_total
    assert recall >= 0.95, f"{tenant}: recall@10 {recall:.3f}"


def test_unfiltered_queries_scan_every_tenant_exactly(shared):
    # m: 0 means no graph over the whole collection: a query without a tenant is exact
    client, name, data = shared
    all_ids = [i for ids, _ in data.values() for i in ids]
    all_vecs = np.concatenate([v for _, v in data.values()])
    q = np.random.default_rng(3).standard_normal(DIM).tolist()
    res = client.query_points(collection_name=name, query=q, limit=10)
    assert [p.id for p in res.points] == [i for i, _ in top_k(all_ids, cosine_scores(q, all_vecs), 10)]


def test_m_one_and_a_payload_m_out_of_range_are_refused(client, collection_name):
    for hnsw in ({"m": 1}, {"m": 0, "payload_m": 1}, {"m": 0, "payload_m": 500}):
        with pytest.raises(Exception) as e:
            client.create_collection(
                collection_name=collection_name,
                vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE),
                hnsw_config=models.HnswConfigDiff(**hnsw),
            )
        assert "400" in str(e.value) or "hnsw_config" in str(e.value), hnsw
        assert client.collection_exists(collection_name) is False


def test_payload_m_with_a_global_graph_and_a_plain_keyword_index(client, collection_name):
    # m > 0 and payload_m with a keyword index that is not is_tenant: a graph over each segment
    # for unfiltered queries and one per value for filtered ones; both find their neighbours
    client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        hnsw_config=models.HnswConfigDiff(m=16, payload_m=16),
    )
    client.create_payload_index(collection_name, field_name="colour", field_schema="keyword")
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((3000, DIM)).astype(np.float32)
    colour = ["red" if i % 2 else "blue" for i in range(3000)]
    for s in range(0, 3000, 500):
        client.upsert(collection_name, wait=True, points=[
            models.PointStruct(id=i, vector=vecs[i].tolist(), payload={"colour": colour[i]})
            for i in range(s, s + 500)])
    wait_indexed(client, collection_name, 3000, 2000, timeout=120)
    ids = list(range(3000))
    reds = [i for i in ids if colour[i] == "red"]
    found = {"red": 0, "all": 0}
    for _ in range(QUERIES):
        q = rng.standard_normal(DIM).tolist()
        res = client.query_points(collection_name, query=q, limit=10,
                                  query_filter=models.Filter(must=[keyword("colour", "red")]))
        assert all(colour[p.id] == "red" for p in res.points)
        want = {i for i, _ in top_k(reds, cosine_scores(q, vecs[reds]), 10)}
        found["red"] += len({p.id for p in res.points} & want)
        res = client.query_points(collection_name, query=q, limit=10)
        want = {i for i, _ in top_k(ids, cosine_scores(q, vecs), 10)}
        found["all"] += len({p.id for p in res.points} & want)
    for what, n in found.items():
        assert n / (10 * QUERIES) >= 0.9, f"{what}: recall {n / (10 * QUERIES):.3f}"
