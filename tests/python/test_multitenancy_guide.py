"""Qdrant's multitenancy guide (user-defined sharding, one shard key per tenant) with the official
qdrant-client against a real tessera process; every answer is checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from qdrant_client import models


from tessera_helpers import (
    make_client,
    assert_neighbours,
    cosine_scores,
    count,
    expect_status,
    keyword,
    normalize,
    point_uuid,
    random_vectors,
    scroll_all,
    top_k,
)

# Each test runs over REST and over gRPC (prefer_grpc=True): the same flow through both front doors.
TRANSPORTS = ("rest", "grpc")
DIM = 8
TENANTS = ("tenant_1", "tenant_2")


class TenantData:
    """What one tenant's shard key holds: ids (strings like the guide's, ints and UUIDs), vectors, payloads."""

    def __init__(self, tenant: str, tenant_no: int, rng: np.random.Generator):
        self.tenant = tenant
        self.ids: list = (
            [f"{tenant}_{i}" for i in range(20)]  # the guide's own id scheme
            + [tenant_no * 100 + i for i in range(15)]  # unsigned integers
            + [point_uuid(f"{tenant}-{i}") for i in range(15)]  # UUIDs
        )
        self.vectors = random_vectors(rng, len(self.ids), DIM)
        self.payloads = [
            {
                "group_id": tenant,
                "i": i,
                "name": f"document {i} of {tenant}",
                "tags": ["even" if i % 2 == 0 else "odd", f"mod3_{i % 3}"],
                "meta": {"lang": "en" if i % 3 else "de", "n": i, "ratio": i / 4},
                "flag": i % 2 == 0,
                "nothing": None,
            }
            for i in range(len(self.ids))
        ]

    def index(self, pid) -> int:
        return self.ids.index(pid)

    def points(self) -> list[models.PointStruct]:
        return [
            models.PointStruct(id=pid, vector=v.tolist(), payload=p)
            for pid, v, p in zip(self.ids, self.vectors, self.payloads)
        ]

    def expected(self, query, k: int, exclude=None) -> list[tuple]:
        return top_k(self.ids, cosine_scores(query, self.vectors), k, exclude=exclude)


def create_tenant_collection(client, name: str, tenants=TENANTS) -> None:
    assert client.create_collection(
        collection_name=name,
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        shard_number=1,
        sharding_method=models.ShardingMethod.CUSTOM,
    ) is True
    for t in tenants:
        assert client.create_shard_key(name, t) is True


def load(client, name: str, seed: int = 7) -> dict[str, TenantData]:
    rng = np.random.default_rng(seed)
    data = {}
    for no, t in enumerate(TENANTS, start=1):
        d = TenantData(t, no, rng)
        res = client.upsert(collection_name=name, points=d.points(), shard_key_selector=t, wait=True)
        assert res.status == models.UpdateStatus.COMPLETED
        data[t] = d
    return data


@pytest.fixture(scope="module")
def populated(base_url, grpc_port):
    """A read-only custom-sharded collection with two tenants and a tenant index on group_id."""
    client = make_client(base_url, grpc_port)
    name = "guide_shared"
    create_tenant_collection(client, name)
    data = load(client, name)
    client.create_payload_index(
        collection_name=name,
        field_name="group_id",
        field_schema=models.KeywordIndexParams(type="keyword", is_tenant=True),
        wait=True,
    )
    try:
        yield client, name, data
    finally:
        client.delete_collection(name)
        client.close()


# ---------- the guide, start to end ----------


def test_guide_flow_end_to_end(client, collection_name):
    name = collection_name
    rng = np.random.default_rng(1)
    assert client.collection_exists(name) is False

    # 1. a collection sharded by user-defined keys, one shard key per tenant
    create_tenant_collection(client, name)

    # 2. each tenant's points go to its own shard key (ids as in the guide, plus ints and UUIDs)
    data = {}
    for no, t in enumerate(TENANTS, start=1):
        data[t] = TenantData(t, no, rng)
        client.upsert(collection_name=name, points=data[t].points(), shard_key_selector=t)

    # 3. the tenant field gets a keyword index marked is_tenant
    client.create_payload_index(
        collection_name=name,
        field_name="group_id",
        field_schema=models.KeywordIndexParams(type="keyword", is_tenant=True),
    )
    info = client.get_collection(name)
    assert info.points_count == sum(len(d.ids) for d in data.values())
    assert info.payload_schema["group_id"].data_type == models.PayloadSchemaType.KEYWORD
    assert info.payload_schema["group_id"].params.is_tenant is True

    # 4. each tenant searches its own shard key, filtered by its tenant id
    for t, d in data.items():
        q = rng.standard_normal(DIM).tolist()
        res = client.query_points(
            collection_name=name,
            query=q,
            query_filter=models.Filter(must=[keyword("group_id", t)]),
            shard_key_selector=t,
            limit=10,
            with_payload=True,
        )
        assert_neighbours(res.points, d.expected(q, 10))
        assert all(p.payload["group_id"] == t and p.shard_key == t for p in res.points)

    # 5. retrieve, scroll, count
    d1 = data["tenant_1"]
    recs = client.retrieve(name, ids=d1.ids[:3], shard_key_selector="tenant_1")
    assert {r.id for r in recs} == set(d1.ids[:3])
    assert {r.id for r in scroll_all(client, name, shard_key_selector="tenant_1")} == set(d1.ids)
    assert count(client, name, shard_key_selector="tenant_1") == len(d1.ids)

    # 6. delete a point, then the tenant, then the collection
    client.delete(name, points_selector=models.PointIdsList(points=[d1.ids[0]]), shard_key_selector="tenant_1")
    assert count(client, name, shard_key_selector="tenant_1") == len(d1.ids) - 1
    assert client.delete_shard_key(name, "tenant_2") is True
    assert count(client, name) == len(d1.ids) - 1
    assert client.delete_collection(name) is True
    assert client.collection_exists(name) is False


# ---------- one API at a time, on the shared collection ----------


def test_get_collection_parses(populated):
    client, name, data = populated
    info = client.get_collection(name)  # pydantic CollectionInfo parse
    assert info.status == models.CollectionStatus.GREEN
    assert info.points_count == sum(len(d.ids) for d in data.values())
    params = info.config.params
    assert params.sharding_method == models.ShardingMethod.CUSTOM
    assert isinstance(params.vectors, models.VectorParams)
    assert params.vectors.size == DIM
    assert params.vectors.distance == models.Distance.COSINE
    schema = info.payload_schema["group_id"]
    assert schema.data_type == models.PayloadSchemaType.KEYWORD
    assert isinstance(schema.params, models.KeywordIndexParams)
    assert schema.params.is_tenant is True


def test_get_collections_exists_and_shard_keys(populated):
    client, name, _ = populated
    names = [c.name for c in client.get_collections().collections]
    assert name in names
    assert client.collection_exists(name) is True
    assert client.collection_exists(name + "_missing") is False
    keys = sorted(k.key for k in client.list_shard_keys(name).shard_keys)
    assert keys == sorted(TENANTS)


def test_retrieve_round_trips_ids_vectors_payloads(populated):
    client, name, data = populated
    for t, d in data.items():
        recs = client.retrieve(name, ids=d.ids, shard_key_selector=t, with_payload=True, with_vectors=True)
        assert len(recs) == len(d.ids)
        by_id = {r.id: r for r in recs}
        assert set(by_id) == set(d.ids)
        for pid in d.ids:
            r = by_id[pid]
            assert type(r.id) is type(pid), f"id {pid!r} came back as {r.id!r}"
            assert r.shard_key == t
            assert r.payload == d.payloads[d.index(pid)]
            # Cosine collections store normalized vectors, as Qdrant does
            np.testing.assert_allclose(r.vector, normalize(d.vectors[d.index(pid)]), atol=1e-5)


def test_retrieve_missing_ids_and_payload_selectors(populated):
    client, name, data = populated
    d = data["tenant_1"]
    recs = client.retrieve(name, ids=[d.ids[0], "tenant_1_999", 99_999, point_uuid("nope")], shard_key_selector="tenant_1")
    assert [r.id for r in recs] == [d.ids[0]]
    assert recs[0].vector is None
    rec = client.retrieve(name, ids=[d.ids[5]], shard_key_selector="tenant_1", with_payload=["i", "meta"])[0]
    assert rec.payload == {"i": 5, "meta": d.payloads[5]["meta"]}
    rec = client.retrieve(
        name, ids=[d.ids[5]], shard_key_selector="tenant_1",
        with_payload=models.PayloadSelectorExclude(exclude=["name", "tags"]),
    )[0]
    assert rec.payload == {k: v for k, v in d.payloads[5].items() if k not in ("name", "tags")}
    rec = client.retrieve(name, ids=[d.ids[5]], shard_key_selector="tenant_1", with_payload=False)[0]
    assert not rec.payload


def test_get_point_by_id(populated, base_url):
    _, name, data = populated
    d = data["tenant_2"]
    for pid in (d.ids[0], d.ids[25], d.ids[40]):
        r = requests.get(f"{base_url}/collections/{name}/points/{pid}", timeout=10)
        assert r.status_code == 200, r.text
        rec = r.json()["result"]
        assert rec["id"] == pid
        assert rec["payload"] == d.payloads[d.index(pid)]
    r = requests.get(f"{base_url}/collections/{name}/points/424242", timeout=10)
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("exact", [True, False])
def test_query_nearest_neighbours(populated, exact):
    client, name, data = populated
    rng = np.random.default_rng(11)
    for t, d in data.items():
        for _ in range(5):
            q = rng.standard_normal(DIM).tolist()
            res = client.query_points(
                name, query=q, shard_key_selector=t, limit=5,
                search_params=models.SearchParams(exact=exact),
            )
            assert_neighbours(res.points, d.expected(q, 5))
            assert all(p.shard_key == t for p in res.points)
            # qdrant-client asks for payloads by default (with_payload=True), not for vectors
            assert all(p.payload == d.payloads[d.index(p.id)] and p.vector is None for p in res.points)


def test_query_across_all_tenant_keys(populated):
    client, name, data = populated
    q = np.random.default_rng(3).standard_normal(DIM).tolist()
    all_ids = [pid for d in data.values() for pid in d.ids]
    all_vecs = np.concatenate([d.vectors for d in data.values()])
    expected = top_k(all_ids, cosine_scores(q, all_vecs), 10)
    # no shard key: a read covers every shard key of the collection
    assert_neighbours(client.query_points(name, query=q, limit=10).points, expected)
    # a list of keys
    assert_neighbours(client.query_points(name, query=q, limit=10, shard_key_selector=list(TENANTS)).points, expected)


def test_query_by_point_id(populated):
    client, name, data = populated
    for t, d in data.items():
        for pid in (d.ids[3], d.ids[22], d.ids[44]):  # a string id, an int id, a UUID
            res = client.query_points(name, query=pid, shard_key_selector=t, limit=6)
            # the point itself is not among its neighbours (as in Qdrant)
            assert_neighbours(res.points, d.expected(d.vectors[d.index(pid)], 6, exclude=pid))


def test_query_offset_threshold_payload_and_vectors(populated):
    client, name, data = populated
    d = data["tenant_1"]
    q = np.random.default_rng(5).standard_normal(DIM).tolist()
    full = d.expected(q, 12)
    res = client.query_points(name, query=q, shard_key_selector="tenant_1", limit=4, offset=3)
    assert_neighbours(res.points, full[3:7])
    threshold = full[5][1] - 1e-4
    res = client.query_points(name, query=q, shard_key_selector="tenant_1", limit=12, score_threshold=threshold)
    assert_neighbours(res.points, full[:6])
    res = client.query_points(
        name, query=q, shard_key_selector="tenant_1", limit=3, with_payload=True, with_vectors=True,
        search_params=models.SearchParams(hnsw_ef=128),
    )
    for p in res.points:
        assert p.payload == d.payloads[d.index(p.id)]
        np.testing.assert_allclose(p.vector, normalize(d.vectors[d.index(p.id)]), atol=1e-5)


def test_scroll_pages_through_everything(populated):
    client, name, data = populated
    for t, d in data.items():
        recs = scroll_all(client, name, page=7, shard_key_selector=t, with_payload=True, with_vectors=True)
        assert {r.id for r in recs} == set(d.ids)
        for r in recs:
            assert r.shard_key == t
            assert r.payload == d.payloads[d.index(r.id)]
            np.testing.assert_allclose(r.vector, normalize(d.vectors[d.index(r.id)]), atol=1e-5)
    # without a shard key the scroll covers both tenants
    recs = scroll_all(client, name, page=9, with_payload=False)
    assert sorted(map(str, (r.id for r in recs))) == sorted(map(str, (pid for d in data.values() for pid in d.ids)))
    # one page the size of the tenant: no next page
    d = data["tenant_2"]
    page, nxt = client.scroll(name, limit=len(d.ids), shard_key_selector="tenant_2")
    assert len(page) == len(d.ids) and nxt is None


def test_count_exact(populated):
    client, name, data = populated
    for t, d in data.items():
        assert count(client, name, shard_key_selector=t) == len(d.ids)
    assert count(client, name) == sum(len(d.ids) for d in data.values())
    assert count(client, name, shard_key_selector=list(TENANTS)) == sum(len(d.ids) for d in data.values())


def test_tenant_filter_query_scroll_count(populated):
    client, name, data = populated
    q = np.random.default_rng(9).standard_normal(DIM).tolist()
    for t, d in data.items():
        mine = models.Filter(must=[keyword("group_id", t)])
        res = client.query_points(name, query=q, query_filter=mine, shard_key_selector=t, limit=10)
        assert_neighbours(res.points, d.expected(q, 10))
        assert count(client, name, count_filter=mine, shard_key_selector=t) == len(d.ids)
        assert {r.id for r in scroll_all(client, name, scroll_filter=mine, shard_key_selector=t)} == set(d.ids)
        # filtering by the other tenant's id under this tenant's shard key finds nothing
        other = next(o for o in TENANTS if o != t)
        theirs = models.Filter(must=[keyword("group_id", other)])
        assert client.query_points(name, query=q, query_filter=theirs, shard_key_selector=t, limit=10).points == []
        assert count(client, name, count_filter=theirs, shard_key_selector=t) == 0
    # without a shard key, the tenant filter alone selects the tenant
    d = data["tenant_2"]
    res = client.query_points(name, query=q, query_filter=models.Filter(must=[keyword("group_id", "tenant_2")]), limit=10)
    assert_neighbours(res.points, d.expected(q, 10))


# ---------- writes, each on its own collection ----------


def test_batch_upsert_and_overwrite(client, collection_name):
    name = collection_name
    create_tenant_collection(client, name, tenants=("tenant_1",))
    rng = np.random.default_rng(21)
    ids = ["tenant_1_0", 7, point_uuid("b")]
    vecs = random_vectors(rng, 3, DIM)
    client.upsert(
        name,
        points=models.Batch(ids=ids, vectors=vecs.tolist(), payloads=[{"k": i} for i in range(3)]),
        shard_key_selector="tenant_1",
    )
    assert count(client, name) == 3
    recs = {r.id: r for r in client.retrieve(name, ids=ids, with_vectors=True)}
    assert {i: recs[i].payload for i in ids} == {ids[0]: {"k": 0}, 7: {"k": 1}, ids[2]: {"k": 2}}
    # overwrite: a new vector and payload for an existing id replaces the old ones
    newv = random_vectors(rng, 1, DIM)[0]
    client.upsert(name, points=[models.PointStruct(id=7, vector=newv.tolist(), payload={"v": 2})], shard_key_selector="tenant_1")
    assert count(client, name) == 3
    rec = client.retrieve(name, ids=[7], with_vectors=True, shard_key_selector="tenant_1")[0]
    assert rec.payload == {"v": 2}
    np.testing.assert_allclose(rec.vector, normalize(newv), atol=1e-5)
    top = client.query_points(name, query=newv.tolist(), limit=1, shard_key_selector="tenant_1").points
    assert top[0].id == 7 and top[0].score == pytest.approx(1.0, abs=1e-4)


def test_uuid_ids_are_normalized(client, collection_name):
    name = collection_name
    create_tenant_collection(client, name, tenants=("tenant_1",))
    u = point_uuid("normalize-me")
    client.upsert(name, points=[models.PointStruct(id=u.upper(), vector=[1.0] * DIM)], shard_key_selector="tenant_1")
    # the same UUID in another spelling is the same point, and it comes back in canonical form
    for spelling in (u, u.upper(), u.replace("-", "")):
        recs = client.retrieve(name, ids=[spelling], shard_key_selector="tenant_1")
        assert [r.id for r in recs] == [u], spelling
    assert count(client, name) == 1


def test_delete_by_ids(client, collection_name):
    name = collection_name
    create_tenant_collection(client, name)
    data = load(client, name, seed=31)
    d = data["tenant_1"]
    gone = [d.ids[0], d.ids[1], d.ids[20], d.ids[21], d.ids[40]]  # strings, ints, a UUID
    res = client.delete(name, points_selector=models.PointIdsList(points=gone), shard_key_selector="tenant_1")
    assert res.status == models.UpdateStatus.COMPLETED
    assert count(client, name, shard_key_selector="tenant_1") == len(d.ids) - len(gone)
    assert count(client, name, shard_key_selector="tenant_2") == len(data["tenant_2"].ids)
    assert client.retrieve(name, ids=gone, shard_key_selector="tenant_1") == []
    left = [pid for pid in d.ids if pid not in gone]
    assert {r.id for r in scroll_all(client, name, shard_key_selector="tenant_1")} == set(left)
    # a deleted point is no neighbour any more, even for its own vector
    for pid in gone:
        q = d.vectors[d.index(pid)].tolist()
        res = client.query_points(name, query=q, shard_key_selector="tenant_1", limit=5)
        assert pid not in [p.id for p in res.points]
        keep = [i for i, x in enumerate(d.ids) if x not in gone]
        expected = top_k([d.ids[i] for i in keep], cosine_scores(q, d.vectors[keep]), 5)
        assert_neighbours(res.points, expected)
    # deleting again (and deleting unknown ids) is fine and changes nothing
    client.delete(name, points_selector=models.PointIdsList(points=gone + [123456]), shard_key_selector="tenant_1")
    assert count(client, name, shard_key_selector="tenant_1") == len(left)
    # re-inserting a deleted id brings it back
    client.upsert(name, points=[models.PointStruct(id=gone[0], vector=d.vectors[0].tolist(), payload={"back": True})], shard_key_selector="tenant_1")
    assert client.retrieve(name, ids=[gone[0]], shard_key_selector="tenant_1")[0].payload == {"back": True}


def test_delete_by_filter(client, collection_name):
    name = collection_name
    create_tenant_collection(client, name)
    data = load(client, name, seed=41)
    d = data["tenant_1"]
    res = client.delete(
        name,
        points_selector=models.FilterSelector(filter=models.Filter(must=[models.FieldCondition(key="i", range=models.Range(lt=10))])),
        shard_key_selector="tenant_1",
    )
    assert res.status == models.UpdateStatus.COMPLETED
    left = {pid for pid, p in zip(d.ids, d.payloads) if p["i"] >= 10}
    assert {r.id for r in scroll_all(client, name, shard_key_selector="tenant_1")} == left
    assert count(client, name, shard_key_selector="tenant_2") == len(data["tenant_2"].ids)


def test_delete_shard_key_then_collection(client, collection_name):
    name = collection_name
    create_tenant_collection(client, name)
    data = load(client, name, seed=51)
    assert client.delete_shard_key(name, "tenant_2") is True
    assert [k.key for k in client.list_shard_keys(name).shard_keys] == ["tenant_1"]
    # the deleted key is unknown now: naming it is a 404
    expect_status(404, client.count, name, shard_key_selector="tenant_2")
    expect_status(404, client.query_points, name, query=[1.0] * DIM, shard_key_selector="tenant_2")
    expect_status(404, client.upsert, name, points=[models.PointStruct(id=1, vector=[1.0] * DIM)], shard_key_selector="tenant_2")
    # and the other tenant is whole
    d = data["tenant_1"]
    assert count(client, name) == len(d.ids)
    assert {r.id for r in scroll_all(client, name)} == set(d.ids)
    # the key can be created again, empty
    assert client.create_shard_key(name, "tenant_2") is True
    assert count(client, name, shard_key_selector="tenant_2") == 0
    assert client.retrieve(name, ids=data["tenant_2"].ids[:3], shard_key_selector="tenant_2") == []

    assert client.delete_collection(name) is True
    assert client.collection_exists(name) is False
    assert name not in [c.name for c in client.get_collections().collections]
    expect_status(404, client.get_collection, name)
    # deleting it again answers false, as Qdrant does
    assert client.delete_collection(name) is False
