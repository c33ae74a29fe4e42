"""The gRPC front door against the REST one on the same node: every operation answers the same
(results and error messages), credentials, tenants, quotas and the audit log work as on REST, and
what tessera does not serve is UNIMPLEMENTED, never a silent success.

Raw gRPC stubs (qdrant_client.grpc) and raw HTTP (requests) are used, so neither client library
smooths over a difference.
"""

from __future__ import annotations

import json
import time

import grpc
import jwt
import pytest
import requests
from qdrant_client import grpc as g

from tessera_helpers import GRPC_STATUS

ADMIN_KEY = "grpc-parity-admin-key-0123456789"
DIM = 4


@pytest.fixture(scope="module")
def audit_path(tmp_path_factory):
    return tmp_path_factory.mktemp("audit") / "audit.jsonl"


@pytest.fixture(scope="module")
def tessera_args(audit_path):
    return ("--api-key", ADMIN_KEY, "--jwt-rbac", "--audit-log", str(audit_path))


def token(**claims) -> str:
    claims.setdefault("exp", int(time.time()) + 3600)
    return jwt.encode(claims, ADMIN_KEY, algorithm="HS256")


class Doors:
    """The node's two front doors with one credential."""

    def __init__(self, server, key: str | None):
        self.url = server.url
        self.headers = {"api-key": key} if key else {}
        self.metadata = (("api-key", key),) if key else ()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        self.channel = channel
        self.points = g.PointsStub(channel)
        self.collections = g.CollectionsStub(channel)
        self.qdrant = g.QdrantStub(channel)

    def rest(self, method: str, path: str, body=None) -> tuple[int, dict]:
        r = requests.request(method, self.url + path, json=body, headers=self.headers, timeout=10)
        return r.status_code, r.json()

    def call(self, stub_method, request):
        return stub_method(request, metadata=self.metadata, timeout=10)

    def refusal(self, stub_method, request) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as e:
            self.call(stub_method, request)
        return e.value


HTTP_OF = GRPC_STATUS


def same_refusal(doors: Doors, method: str, path: str, body, stub_method, request) -> str:
    """REST and gRPC refuse the same request with the same status and the same message."""
    status, answer = doors.rest(method, path, body)
    err = doors.refusal(stub_method, request)
    assert HTTP_OF.get(err.code()) == status, (status, answer, err.code(), err.details())
    assert err.details() == answer["status"]["error"], (err.details(), answer)
    return err.details()


def pid(n: int) -> g.PointId:
    return g.PointId(num=n)


def key(k: str) -> g.ShardKeySelector:
    return g.ShardKeySelector(shard_keys=[g.ShardKey(keyword=k)])


def vec(i: int) -> list[float]:
    return [1.0, float(i), float(i % 3), 0.5]


def struct(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, bool):
            out[k] = g.Value(bool_value=v)
        elif isinstance(v, int):
            out[k] = g.Value(integer_value=v)
        elif isinstance(v, float):
            out[k] = g.Value(double_value=v)
        else:
            out[k] = g.Value(string_value=str(v))
    return out


def as_json(v: g.Value):
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return {k: as_json(x) for k, x in v.struct_value.fields.items()}
    if kind == "list_value":
        return [as_json(x) for x in v.list_value.values]
    if kind == "null_value":
        return None
    return getattr(v, kind)


def grpc_id(p) -> int | str:
    return p.num if p.WhichOneof("point_id_options") == "num" else p.uuid


@pytest.fixture(scope="module")
def loaded(tessera_server):
    admin = Doors(tessera_server, ADMIN_KEY)
    status, _ = admin.rest("PUT", "/collections/par", {
        "vectors": {"size": DIM, "distance": "Cosine"}, "sharding_method": "custom"})
    assert status == 200
    for t in ("t1", "t2"):
        assert admin.rest("PUT", "/collections/par/shards", {"shard_key": t})[0] == 200
    assert admin.rest("PUT", "/collections/par/index?wait=true", {
        "field_name": "group_id", "field_schema": {"type": "keyword", "is_tenant": True}})[0] == 200
    for t, base in (("t1", 0), ("t2", 100)):
        points = [g.PointStruct(id=pid(base + i), vectors=g.Vectors(vector=g.Vector(dense=g.DenseVector(data=vec(i)))),
                                payload=struct({"group_id": t, "n": i, "f": i / 2, "odd": i % 2 == 1}))
                  for i in range(1, 21)]
        answer = admin.call(admin.points.Upsert, g.UpsertPoints(
            collection_name="par", wait=True, points=points, shard_key_selector=key(t)))
        assert answer.result.status == g.UpdateStatus.Completed
    return admin


def test_reads_answer_the_same_over_both_doors(loaded):
    admin = loaded
    # query: ids, scores, payloads and shard keys
    q = [0.9, 3.0, 1.0, 0.5]
    _, rest = admin.rest("POST", "/collections/par/points/query", {
        "query": q, "limit": 7, "with_payload": True, "shard_key": "t1",
        "filter": {"must": [{"key": "n", "range": {"gte": 3}}]}})
    got = admin.call(admin.points.Query, g.QueryPoints(
        collection_name="par", query=g.Query(nearest=g.VectorInput(dense=g.DenseVector(data=q))), limit=7,
        with_payload=g.WithPayloadSelector(enable=True), shard_key_selector=key("t1"),
        filter=g.Filter(must=[g.Condition(field=g.FieldCondition(key="n", range=g.Range(gte=3)))])))
    assert [grpc_id(p.id) for p in got.result] == [p["id"] for p in rest["result"]["points"]]
    for a, b in zip(got.result, rest["result"]["points"]):
        assert a.score == pytest.approx(b["score"], abs=1e-6)
        assert {k: as_json(v) for k, v in a.payload.items()} == b["payload"]
        assert a.shard_key.keyword == b["shard_key"]
    # classic search, with an offset
    _, rest = admin.rest("POST", "/collections/par/points/search", {
        "vector": q, "limit": 4, "offset": 2, "shard_key": ["t1", "t2"]})
    got = admin.call(admin.points.Search, g.SearchPoints(
        collection_name="par", vector=q, limit=4, offset=2, shard_key_selector=g.ShardKeySelector(
            shard_keys=[g.ShardKey(keyword="t1"), g.ShardKey(keyword="t2")])))
    assert [grpc_id(p.id) for p in got.result] == [p["id"] for p in rest["result"]]
    # retrieve with vectors
    _, rest = admin.rest("POST", "/collections/par/points", {"ids": [101, 3, 999], "with_vector": True, "shard_key": ["t1", "t2"]})
    got = admin.call(admin.points.Get, g.GetPoints(
        collection_name="par", ids=[pid(101), pid(3), pid(999)], with_vectors=g.WithVectorsSelector(enable=True),
        with_payload=g.WithPayloadSelector(enable=False),
        shard_key_selector=g.ShardKeySelector(shard_keys=[g.ShardKey(keyword="t1"), g.ShardKey(keyword="t2")])))
    assert sorted(grpc_id(p.id) for p in got.result) == sorted(p["id"] for p in rest["result"])
    by_id = {p["id"]: p["vector"] for p in rest["result"]}
    for p in got.result:
        assert list(p.vectors.vector.dense.data) == pytest.approx(by_id[grpc_id(p.id)], abs=1e-6)
    # scroll pages and count with a filter
    _, rest = admin.rest("POST", "/collections/par/points/scroll", {"limit": 6, "offset": 4, "shard_key": "t1"})
    got = admin.call(admin.points.Scroll, g.ScrollPoints(collection_name="par", limit=6, offset=pid(4), shard_key_selector=key("t1")))
    assert [grpc_id(p.id) for p in got.result] == [p["id"] for p in rest["result"]["points"]]
    assert grpc_id(got.next_page_offset) == rest["result"]["next_page_offset"]
    flt = {"must": [{"key": "odd", "match": {"value": True}}], "must_not": [{"has_id": [1, 3]}]}
    _, rest = admin.rest("POST", "/collections/par/points/count", {"filter": flt, "exact": True})
    got = admin.call(admin.points.Count, g.CountPoints(collection_name="par", exact=True, filter=g.Filter(
        must=[g.Condition(field=g.FieldCondition(key="odd", match=g.Match(boolean=True)))],
        must_not=[g.Condition(has_id=g.HasIdCondition(has_id=[pid(1), pid(3)]))])))
    assert got.result.count == rest["result"]["count"] == 18
    # a query batch
    _, rest = admin.rest("POST", "/collections/par/points/query/batch", {"searches": [
        {"query": q, "limit": 2, "shard_key": "t2"}, {"query": 105, "limit": 3, "shard_key": "t2"}]})
    got = admin.call(admin.points.QueryBatch, g.QueryBatchPoints(collection_name="par", query_points=[
        g.QueryPoints(collection_name="par", query=g.Query(nearest=g.VectorInput(dense=g.DenseVector(data=q))), limit=2, shard_key_selector=key("t2")),
        g.QueryPoints(collection_name="par", query=g.Query(nearest=g.VectorInput(id=pid(105))), limit=3, shard_key_selector=key("t2"))]))
    assert [[grpc_id(p.id) for p in r.result] for r in got.result] == [[p["id"] for p in r["points"]] for r in rest["result"]]
    # collection info, list, exists, shard keys, cluster view
    _, rest = admin.rest("GET", "/collections/par")
    info = admin.call(admin.collections.Get, g.GetCollectionInfoRequest(collection_name="par")).result
    assert info.points_count == rest["result"]["points_count"] == 40
    assert info.config.params.vectors_config.params.size == DIM
    assert info.config.params.sharding_method == g.ShardingMethod.Custom
    assert info.payload_schema["group_id"].params.keyword_index_params.is_tenant is True
    assert info.config.hnsw_config.m == rest["result"]["config"]["hnsw_config"]["m"]
    names = [c.name for c in admin.call(admin.collections.List, g.ListCollectionsRequest()).collections]
    assert "par" in names
    assert admin.call(admin.collections.CollectionExists, g.CollectionExistsRequest(collection_name="par")).result.exists
    assert not admin.call(admin.collections.CollectionExists, g.CollectionExistsRequest(collection_name="nope")).result.exists
    keys = admin.call(admin.collections.ListShardKeys, g.ListShardKeysRequest(collection_name="par"))
    assert sorted(k.key.keyword for k in keys.shard_keys) == ["t1", "t2"]
    cluster = admin.call(admin.collections.CollectionClusterInfo, g.CollectionClusterInfoRequest(collection_name="par"))
    _, rest = admin.rest("GET", "/collections/par/cluster")
    assert cluster.shard_count == rest["result"]["shard_count"] == 2
    assert sorted(s.points_count for s in cluster.local_shards) == [20, 20]
    health = admin.call(admin.qdrant.HealthCheck, g.HealthCheckRequest())
    assert health.version == requests.get(admin.url + "/", timeout=5).json()["version"]


def test_writes_do_the_same_over_both_doors(loaded):
    admin = loaded
    sel = g.PointsSelector(points=g.PointsIdsList(ids=[pid(5), pid(6)]))
    admin.call(admin.points.SetPayload, g.SetPayloadPoints(
        collection_name="par", wait=True, payload=struct({"tag": "x"}), points_selector=sel, shard_key_selector=key("t1")))
    admin.call(admin.points.DeletePayload, g.DeletePayloadPoints(
        collection_name="par", wait=True, keys=["f"], points_selector=sel, shard_key_selector=key("t1")))
    _, rest = admin.rest("POST", "/collections/par/points", {"ids": [5, 6], "shard_key": "t1"})
    for p in rest["result"]:
        assert p["payload"]["tag"] == "x" and "f" not in p["payload"], p
    admin.call(admin.points.OverwritePayload, g.SetPayloadPoints(
        collection_name="par", wait=True, payload=struct({"only": 1}), points_selector=sel, shard_key_selector=key("t1")))
    _, rest = admin.rest("POST", "/collections/par/points", {"ids": [5], "shard_key": "t1"})
    assert rest["result"][0]["payload"] == {"only": 1}
    admin.call(admin.points.ClearPayload, g.ClearPayloadPoints(
        collection_name="par", wait=True, points=sel, shard_key_selector=key("t1")))
    _, rest = admin.rest("POST", "/collections/par/points", {"ids": [5, 6], "shard_key": "t1"})
    assert [p["payload"] for p in rest["result"]] == [{}, {}]
    admin.call(admin.points.Delete, g.DeletePoints(collection_name="par", wait=True, shard_key_selector=key("t1"),
        points=g.PointsSelector(filter=g.Filter(must=[g.Condition(has_id=g.HasIdCondition(has_id=[pid(6)]))]))))
    _, rest = admin.rest("POST", "/collections/par/points/count", {"shard_key": "t1", "exact": True})
    assert rest["result"]["count"] == 19
    # index create and delete, shard key create and delete, collection create and delete
    admin.call(admin.points.CreateFieldIndex, g.CreateFieldIndexCollection(
        collection_name="par", field_name="n", field_type=g.FieldType.FieldTypeInteger, wait=True))
    assert "n" in admin.rest("GET", "/collections/par")[1]["result"]["payload_schema"]
    admin.call(admin.points.DeleteFieldIndex, g.DeleteFieldIndexCollection(collection_name="par", field_name="n", wait=True))
    assert "n" not in admin.rest("GET", "/collections/par")[1]["result"]["payload_schema"]
    admin.call(admin.collections.CreateShardKey, g.CreateShardKeyRequest(
        collection_name="par", request=g.CreateShardKey(shard_key=g.ShardKey(keyword="t3"))))
    assert {"key": "t3"} in admin.rest("GET", "/collections/par/shards")[1]["result"]["shard_keys"]
    admin.call(admin.collections.DeleteShardKey, g.DeleteShardKeyRequest(
        collection_name="par", request=g.DeleteShardKey(shard_key=g.ShardKey(keyword="t3"))))
    assert {"key": "t3"} not in admin.rest("GET", "/collections/par/shards")[1]["result"]["shard_keys"]
    admin.call(admin.collections.Create, g.CreateCollection(collection_name="tmp_grpc", vectors_config=g.VectorsConfig(
        params=g.VectorParams(size=3, distance=g.Distance.Euclid)), hnsw_config=g.HnswConfigDiff(m=0, payload_m=16)))
    conf = admin.rest("GET", "/collections/tmp_grpc")[1]["result"]["config"]
    assert conf["params"]["vectors"] == {"distance": "Euclid", "on_disk": False, "size": 3}
    assert conf["hnsw_config"]["m"] == 0 and conf["hnsw_config"]["payload_m"] == 16
    assert admin.call(admin.collections.Delete, g.DeleteCollection(collection_name="tmp_grpc")).result is True
    assert admin.call(admin.collections.Delete, g.DeleteCollection(collection_name="tmp_grpc")).result is False


def test_bad_input_is_refused_the_same_over_both_doors_and_changes_nothing(loaded):
    admin = loaded
    dense = lambda v: g.Vectors(vector=g.Vector(dense=g.DenseVector(data=v)))  # noqa: E731
    # a wrong dimension in a batch: nothing of the batch is written
    same_refusal(admin, "PUT", "/collections/par/points?wait=true", {"shard_key": "t1", "points": [
        {"id": 500, "vector": vec(1)}, {"id": 501, "vector": [1.0, 2.0]}]},
        admin.points.Upsert, g.UpsertPoints(collection_name="par", wait=True, shard_key_selector=key("t1"), points=[
            g.PointStruct(id=pid(500), vectors=dense(vec(1))), g.PointStruct(id=pid(501), vectors=dense([1.0, 2.0]))]))
    assert admin.rest("POST", "/collections/par/points", {"ids": [500], "shard_key": "t1"})[1]["result"] == []
    # a missing shard key on a custom-sharded write, an unknown shard key, a missing collection
    same_refusal(admin, "PUT", "/collections/par/points", {"points": [{"id": 1, "vector": vec(1)}]},
                 admin.points.Upsert, g.UpsertPoints(collection_name="par", points=[g.PointStruct(id=pid(1), vectors=dense(vec(1)))]))
    same_refusal(admin, "POST", "/collections/par/points/count", {"shard_key": "nope"},
                 admin.points.Count, g.CountPoints(collection_name="par", shard_key_selector=key("nope")))
    same_refusal(admin, "POST", "/collections/absent/points/scroll", {},
                 admin.points.Scroll, g.ScrollPoints(collection_name="absent"))
    # settings tessera does not honour are refused naming them, never dropped
    msg = same_refusal(admin, "POST", "/collections/par/points/query", {"query": vec(1), "using": "dense", "shard_key": "t1"},
                       admin.points.Query, g.QueryPoints(collection_name="par", using="dense", shard_key_selector=key("t1"),
                                                         query=g.Query(nearest=g.VectorInput(dense=g.DenseVector(data=vec(1))))))
    assert "dense" in msg
    err = admin.refusal(admin.collections.Create, g.CreateCollection(
        collection_name="q", vectors_config=g.VectorsConfig(params=g.VectorParams(size=3, distance=g.Distance.Dot)),
        quantization_config=g.QuantizationConfig(scalar=g.ScalarQuantization(type=g.QuantizationType.Int8))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "quantization_config" in err.details()
    assert admin.rest("GET", "/collections/q")[0] == 404
    err = admin.refusal(admin.points.Query, g.QueryPoints(collection_name="par", shard_key_selector=key("t1"),
                                                         prefetch=[g.PrefetchQuery(limit=3, lookup_from=g.LookupLocation(collection_name="q", vector_name="dense"))],
                                                         query=g.Query(fusion=g.Fusion.RRF)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "dense" in err.details()
    # a setting of an existing collection that cannot change: refused naming it, on both doors
    same_refusal(admin, "PATCH", "/collections/par", {"hnsw_config": {"m": 8}},
                 admin.collections.Update, g.UpdateCollection(collection_name="par", hnsw_config=g.HnswConfigDiff(m=8)))
    # a request's own timeout is checked the same (and honoured: see the edge of each door)
    same_refusal(admin, "POST", "/collections/par/points/count?timeout=0", {"shard_key": "t1"},
                 admin.points.Count, g.CountPoints(collection_name="par", timeout=0, shard_key_selector=key("t1")))
    assert admin.call(admin.points.Count, g.CountPoints(collection_name="par", timeout=5, exact=True)).result.count > 0
    assert admin.rest("POST", "/collections/par/points/count?timeout=5", {"exact": True})[0] == 200
    # what REST does not serve either is UNIMPLEMENTED, naming the method
    err = admin.refusal(admin.points.UpdateVectors, g.UpdatePointVectors(collection_name="par"))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED and "UpdateVectors" in err.details()
    # recommendations and groups are served, with REST's answers
    grpc_hits = admin.call(admin.points.Recommend, g.RecommendPoints(
        collection_name="par", positive=[pid(1)], limit=3, shard_key_selector=key("t1"))).result
    _, rest = admin.rest("POST", "/collections/par/points/recommend",
                         {"positive": [1], "limit": 3, "shard_key": "t1"})
    assert [p.id.num for p in grpc_hits] == [p["id"] for p in rest["result"]]
    grpc_hits = admin.call(admin.points.Recommend, g.RecommendPoints(
        collection_name="par", positive=[pid(1)], negative=[pid(2)], limit=3, shard_key_selector=key("t1"),
        strategy=g.RecommendStrategy.BestScore)).result
    _, rest = admin.rest("POST", "/collections/par/points/recommend",
                         {"positive": [1], "negative": [2], "strategy": "best_score", "limit": 3, "shard_key": "t1"})
    assert [p.id.num for p in grpc_hits] == [p["id"] for p in rest["result"]]
    # discovery, too
    example = g.VectorExample(id=pid(1))
    grpc_hits = admin.call(admin.points.Discover, g.DiscoverPoints(
        collection_name="par", limit=3, shard_key_selector=key("t1"), target=g.TargetVector(single=example),
        context=[g.ContextExamplePair(positive=g.VectorExample(id=pid(2)), negative=g.VectorExample(id=pid(3)))])).result
    _, rest = admin.rest("POST", "/collections/par/points/discover",
                         {"target": 1, "context": [{"positive": 2, "negative": 3}], "limit": 3, "shard_key": "t1"})
    assert [p.id.num for p in grpc_hits] == [p["id"] for p in rest["result"]]


def test_a_tenant_token_over_grpc_sees_its_tenant_only_and_everything_else_is_not_found(loaded, tessera_server):
    t1 = Doors(tessera_server, token(tenant_id="t1"))
    got = t1.call(t1.points.Count, g.CountPoints(collection_name="par", exact=True))
    assert got.result.count == t1.rest("POST", "/collections/par/points/count", {"exact": True})[1]["result"]["count"]
    hits = t1.call(t1.points.Query, g.QueryPoints(collection_name="par", limit=100,
                                                query=g.Query(nearest=g.VectorInput(dense=g.DenseVector(data=vec(2))))))
    assert hits.result and all(grpc_id(p.id) < 100 for p in hits.result)
    # the token as `authorization: Bearer`, as REST takes it too
    bearer = Doors(tessera_server, None)
    bearer.headers = {"authorization": "Bearer " + token(tenant_id="t1")}
    bearer.metadata = tuple(bearer.headers.items())
    got = bearer.call(bearer.points.Count, g.CountPoints(collection_name="par", exact=True))
    assert got.result.count == bearer.rest("POST", "/collections/par/points/count", {"exact": True})[1]["result"]["count"]
    same_refusal(bearer, "POST", "/collections/par/points/count", {"shard_key": "t2"},
                 bearer.points.Count, g.CountPoints(collection_name="par", shard_key_selector=key("t2")))
    # the other tenant's key, its points, the collection listing: 404 with REST's message
    same_refusal(t1, "POST", "/collections/par/points/count", {"shard_key": "t2"},
                 t1.points.Count, g.CountPoints(collection_name="par", shard_key_selector=key("t2")))
    same_refusal(t1, "POST", "/collections/par/points", {"ids": [101], "shard_key": "t2"},
                 t1.points.Get, g.GetPoints(collection_name="par", ids=[pid(101)], shard_key_selector=key("t2")))
    same_refusal(t1, "POST", "/collections/par/points/payload", {"payload": {"x": 1}, "points": [101], "shard_key": "t2"},
                 t1.points.SetPayload, g.SetPayloadPoints(collection_name="par", payload=struct({"x": 1}), shard_key_selector=key("t2"),
                                                          points_selector=g.PointsSelector(points=g.PointsIdsList(ids=[pid(101)]))))
    assert "x" not in loaded.rest("POST", "/collections/par/points", {"ids": [101], "shard_key": "t2"})[1]["result"][0]["payload"]
    # a token for a tenant outside the credential's (X-Tenant-Id) is 404 too, as on REST
    multi = token(tenant_id=["t1"])
    outsider = Doors(tessera_server, multi)
    outsider.headers["x-tenant-id"] = "t2"
    outsider.metadata = (("api-key", multi), ("x-tenant-id", "t2"))
    same_refusal(outsider, "POST", "/collections/par/points/count", {},
                 outsider.points.Count, g.CountPoints(collection_name="par"))
    # no credential, a forged one: 401 / UNAUTHENTICATED with the same message
    anon = Doors(tessera_server, None)
    same_refusal(anon, "POST", "/collections/par/points/count", {}, anon.points.Count, g.CountPoints(collection_name="par"))
    forged = Doors(tessera_server, jwt.encode({"tenant_id": "t1", "exp": int(time.time()) + 60}, "a-wrong-key-of-thirty-two-bytes!!", algorithm="HS256"))
    same_refusal(forged, "POST", "/collections/par/points/count", {}, forged.points.Count, g.CountPoints(collection_name="par"))
    # a read-only token writes nothing: 403 / PERMISSION_DENIED
    reader = Doors(tessera_server, token(access="r"))
    same_refusal(reader, "PUT", "/collections/par/shards", {"shard_key": "t9"},
                 reader.collections.CreateShardKey, g.CreateShardKeyRequest(
                     collection_name="par", request=g.CreateShardKey(shard_key=g.ShardKey(keyword="t9"))))


def test_quota_refusals_are_resource_exhausted_with_retry_after_and_calls_are_audited(loaded, tessera_server, audit_path):
    admin = loaded
    assert admin.rest("PUT", "/admin/tenants/t2/quota", {"read_rps": 1, "read_burst": 1})[0] == 200
    t2 = Doors(tessera_server, token(tenant_id="t2", sub="grpc-user"))
    codes = []
    for _ in range(4):
        try:
            t2.call(t2.points.Count, g.CountPoints(collection_name="par"))
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                md = dict(e.trailing_metadata())
                assert int(md["retry-after"]) >= 1 and int(md["retry-after-ms"]) >= 1, md
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
    assert admin.rest("PUT", "/admin/tenants/t2/quota", {"read_rps": None, "read_burst": None})[0] == 200
    # every call above has its audit line, with the tenant and subject of its token
    deadline = time.monotonic() + 5
    lines = []
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in audit_path.read_text().splitlines() if line.strip()]
        mine = [e for e in lines if e.get("subject") == "grpc-user"]
        if len(mine) >= 4:
            break
        time.sleep(0.05)
    mine = [e for e in lines if e.get("subject") == "grpc-user"]
    assert len(mine) >= 4, lines[-5:]
    assert all(e["operation"] == "points.count" and e["tenant"] == "t2" and e["collection"] == "par" for e in mine), mine
    assert {e["status"] for e in mine} >= {200, 429}, mine


def test_a_message_over_the_body_limit_is_refused_and_writes_nothing(small_body_server):
    doors = Doors(small_body_server, None)
    assert doors.rest("PUT", "/collections/big", {"vectors": {"size": 64, "distance": "Dot"}})[0] == 200
    points = [g.PointStruct(id=pid(i), vectors=g.Vectors(vector=g.Vector(dense=g.DenseVector(data=[0.5] * 64))))
              for i in range(400)]  # ~110 KB, over the 64 KiB limit
    err = doors.refusal(doors.points.Upsert, g.UpsertPoints(collection_name="big", wait=True, points=points))
    # tonic's code for a message over the limit (gRPC's C core says RESOURCE_EXHAUSTED)
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE, (err.code(), err.details())
    assert "65536" in err.details()
    assert doors.rest("POST", "/collections/big/points/count", {})[1]["result"]["count"] == 0
