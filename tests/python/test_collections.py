"""Collection-level API with the official client: service and cluster info shapes, Qdrant options that
are accepted and ignored, the three distances, asynchronous writes, payload index lifecycle."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from qdrant_client import models

from tessera_helpers import count, expect_status, normalize, random_vectors

DIM = 5


def test_root_health_and_version(client, base_url):
    info = client.info()  # GET /, parsed as VersionInfo
    assert info.version == "1.19.0"
    assert info.title
    body = requests.get(base_url + "/", timeout=10).json()
    assert "result" not in body, "GET / is a bare object in Qdrant, not an envelope"
    for path in ("/healthz", "/livez", "/readyz"):
        assert requests.get(base_url + path, timeout=10).status_code == 200


def test_cluster_info_shapes(client, collection_name):
    status = client.cluster_status()  # GET /cluster
    assert status is not None
    client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        sharding_method=models.ShardingMethod.CUSTOM,
    )
    client.create_shard_key(collection_name, "k1")
    client.create_shard_key(collection_name, 7)  # integer shard keys exist in Qdrant too
    client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1.0] * DIM)], shard_key_selector="k1")
    info = client.collection_cluster_info(collection_name)  # GET /collections/{c}/cluster
    assert info.shard_count == 2
    keys = sorted(str(s.shard_key) for s in info.local_shards + info.remote_shards)
    assert keys == ["7", "k1"]
    local = {str(s.shard_key): s for s in info.local_shards}
    assert local["k1"].points_count == 1
    shard_keys = sorted(str(k.key) for k in client.list_shard_keys(collection_name).shard_keys)
    assert shard_keys == ["7", "k1"]
    client.upsert(collection_name, points=[models.PointStruct(id=2, vector=[1.0] * DIM)], shard_key_selector=7)
    assert [r.shard_key for r in client.retrieve(collection_name, ids=[2])] == [7]


def test_create_collection_accepts_qdrant_options(client, collection_name):
    assert client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE, on_disk=False),
        shard_number=2,
        replication_factor=1,
        write_consistency_factor=1,
        on_disk_payload=False,
        hnsw_config=models.HnswConfigDiff(m=8, ef_construct=64, payload_m=12, full_scan_threshold=500, on_disk=False),
        timeout=10,
    ) is True
    info = client.get_collection(collection_name)
    assert info.config.params.shard_number == 2
    assert info.config.params.on_disk_payload is False
    assert info.config.hnsw_config.full_scan_threshold == 500
    assert info.config.hnsw_config.m == 8
    assert info.config.hnsw_config.ef_construct == 64
    assert info.config.hnsw_config.payload_m == 12
    # an auto-sharded collection spreads ids over its shards and still answers every read
    vecs = random_vectors(np.random.default_rng(0), 40, DIM)
    client.upsert(collection_name, points=[models.PointStruct(id=i, vector=v.tolist()) for i, v in enumerate(vecs)])
    assert count(client, collection_name) == 40
    assert len(client.retrieve(collection_name, ids=list(range(40)))) == 40
    res = client.query_points(collection_name, query=vecs[11].tolist(), limit=1)
    assert res.points[0].id == 11
    # PATCH /collections/{c}: a setting tessera cannot change is refused, never accepted and dropped
    refused = expect_status(400, client.update_collection, collection_name,
                            optimizers_config=models.OptimizersConfigDiff(indexing_threshold=10000))
    assert b"optimizers_config" in refused.content
    # creating it again is a conflict, as in Qdrant
    expect_status(409, client.create_collection, collection_name,
                  vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))


@pytest.mark.parametrize("distance", [models.Distance.DOT, models.Distance.EUCLID, models.Distance.COSINE])
def test_distances(client, collection_name, distance):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=DIM, distance=distance))
    rng = np.random.default_rng(42)
    vecs = random_vectors(rng, 60, DIM)
    client.upsert(collection_name, points=[models.PointStruct(id=i, vector=v.tolist()) for i, v in enumerate(vecs)])
    for _ in range(5):
        q = rng.standard_normal(DIM)
        if distance == models.Distance.DOT:
            scores = vecs.astype(np.float64) @ q
            order = np.argsort(-scores)
        elif distance == models.Distance.EUCLID:
            scores = np.linalg.norm(vecs.astype(np.float64) - q, axis=1)
            order = np.argsort(scores)  # Qdrant reports the distance; smaller is nearer
        else:
            scores = normalize(vecs) @ normalize(q)
            order = np.argsort(-scores)
        for exact in (True, False):
            res = client.query_points(collection_name, query=q.tolist(), limit=5, search_params=models.SearchParams(exact=exact))
            assert [p.id for p in res.points] == [int(i) for i in order[:5]]
            assert [p.score for p in res.points] == pytest.approx([float(scores[i]) for i in order[:5]], abs=1e-3)
    # Dot and Euclid keep vectors as given; Cosine normalizes them
    rec = client.retrieve(collection_name, ids=[0], with_vectors=True)[0]
    want = normalize(vecs[0]) if distance == models.Distance.COSINE else vecs[0]
    np.testing.assert_allclose(rec.vector, want, atol=1e-5)


def test_nearest_query_object_and_unsupported_queries(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    vecs = random_vectors(np.random.default_rng(1), 10, DIM)
    client.upsert(collection_name, points=[models.PointStruct(id=i, vector=v.tolist()) for i, v in enumerate(vecs)])
    res = client.query_points(collection_name, query=models.NearestQuery(nearest=vecs[4].tolist()), limit=1)
    assert res.points[0].id == 4
    res = client.query_points(collection_name, query=models.NearestQuery(nearest=4), limit=1)
    assert res.points[0].id != 4 and len(res.points) == 1


def test_async_write_becomes_visible(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    res = client.upsert(collection_name, points=[models.PointStruct(id=i, vector=[1.0 + i] + [0.0] * (DIM - 1)) for i in range(5)], wait=False)
    assert res.status in (models.UpdateStatus.ACKNOWLEDGED, models.UpdateStatus.COMPLETED)
    deadline = time.monotonic() + 5
    while count(client, collection_name) != 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert count(client, collection_name) == 5


def test_payload_index_lifecycle(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    for field, schema in [
        ("kw", models.PayloadSchemaType.KEYWORD),
        ("i", models.PayloadSchemaType.INTEGER),
        ("f", models.PayloadSchemaType.FLOAT),
        ("b", models.PayloadSchemaType.BOOL),
        ("u", models.PayloadSchemaType.UUID),
        ("d", models.PayloadSchemaType.DATETIME),
        ("ip", models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=True, range=True)),
    ]:
        res = client.create_payload_index(collection_name, field_name=field, field_schema=schema)
        assert res.status == models.UpdateStatus.COMPLETED
    schema = client.get_collection(collection_name).payload_schema
    assert {k: v.data_type for k, v in schema.items()} == {
        "kw": models.PayloadSchemaType.KEYWORD,
        "i": models.PayloadSchemaType.INTEGER,
        "f": models.PayloadSchemaType.FLOAT,
        "b": models.PayloadSchemaType.BOOL,
        "u": models.PayloadSchemaType.UUID,
        "d": models.PayloadSchemaType.DATETIME,
        "ip": models.PayloadSchemaType.INTEGER,
    }
    client.delete_payload_index(collection_name, field_name="kw")
    assert "kw" not in client.get_collection(collection_name).payload_schema


def test_query_batch_points(client, collection_name):
    """query_batch_points answers each query as query_points would, within its shard key."""
    client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=8, distance=models.Distance.EUCLID),
        sharding_method=models.ShardingMethod.CUSTOM,
    )
    vecs = random_vectors(np.random.default_rng(11), 40, 8)
    for key in ("A", "B"):
        client.create_shard_key(collection_name, key)
        client.upsert(
            collection_name,
            points=[models.PointStruct(id=i, vector=v.tolist(), payload={"k": key}) for i, v in enumerate(vecs)],
            shard_key_selector=key,
            wait=True,
        )
    reqs = [
        models.QueryRequest(query=vecs[i].tolist(), limit=3, with_payload=True, shard_key=key)
        for i, key in ((0, "A"), (5, "B"), (9, "A"))
    ]
    res = client.query_batch_points(collection_name, requests=reqs)
    assert len(res) == 3
    for r, (i, key) in zip(res, ((0, "A"), (5, "B"), (9, "A"))):
        assert r.points[0].id == i and r.points[0].score == pytest.approx(0.0, abs=1e-5)
        assert all(p.payload["k"] == key for p in r.points)


# Every setting tessera would not honour is refused with 400 naming it, and nothing is created:
# accepting a setting and dropping it is worse than refusing it.
UNHONOURED = [
    ("quantization_config", dict(quantization_config=models.ScalarQuantization(
        scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8)))),
    ("optimizers_config", dict(optimizers_config=models.OptimizersConfigDiff(indexing_threshold=20000))),
    ("wal_config", dict(wal_config=models.WalConfigDiff(wal_capacity_mb=16))),
    ("on_disk_payload", dict(on_disk_payload=True)),
    ("sparse_vectors", dict(sparse_vectors_config={"text": models.SparseVectorParams()})),
    ("strict_mode_config", dict(strict_mode_config=models.StrictModeConfig(enabled=True))),
    ("hnsw_config.on_disk", dict(hnsw_config=models.HnswConfigDiff(on_disk=True))),
    ("hnsw_config.max_indexing_threads", dict(hnsw_config=models.HnswConfigDiff(max_indexing_threads=4))),
    ("vectors.on_disk", dict(vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT, on_disk=True))),
    ("vectors.quantization_config", dict(vectors_config=models.VectorParams(
        size=DIM, distance=models.Distance.DOT,
        quantization_config=models.BinaryQuantization(binary=models.BinaryQuantizationConfig())))),
    ("vectors.multivector_config", dict(vectors_config=models.VectorParams(
        size=DIM, distance=models.Distance.DOT,
        multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)))),
    ("vectors.hnsw_config", dict(vectors_config=models.VectorParams(
        size=DIM, distance=models.Distance.DOT, hnsw_config=models.HnswConfigDiff(m=4)))),
    ("vectors.datatype", dict(vectors_config=models.VectorParams(
        size=DIM, distance=models.Distance.DOT, datatype=models.Datatype.FLOAT16))),
]


@pytest.mark.parametrize("name,kwargs", UNHONOURED, ids=[n for n, _ in UNHONOURED])
def test_a_setting_tessera_would_drop_is_refused_naming_it(client, collection_name, name, kwargs):
    args = dict(vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
    args.update(kwargs)
    refused = expect_status(400, client.create_collection, collection_name, **args)
    assert name.split(".")[-1].encode() in refused.content, refused.content
    assert client.collection_exists(collection_name) is False


def test_unknown_fields_are_refused(base_url, collection_name):
    r = requests.put(f"{base_url}/collections/{collection_name}",
                     json={"vectors": {"size": DIM, "distance": "Dot"}, "bogus": 1}, timeout=10)
    assert r.status_code == 400 and b"bogus" in r.content, r.content
    r = requests.put(f"{base_url}/collections/{collection_name}",
                     json={"vectors": {"size": DIM, "distance": "Dot", "colour": "red"}}, timeout=10)
    assert r.status_code == 400 and b"colour" in r.content, r.content
