"""The multitenancy guide's flow with credentials on: the official qdrant-client, given a
PyJWT-minted token as `api_key`, sees only its tenant even when it names no shard key and no filter.

The node runs with an api key and `--jwt-rbac`; tokens are HS256-signed with the api key (Qdrant's
scheme), carrying the guide's tenant claims: `tenant_id`, or Qdrant's `access[].payload` binding.
"""

from __future__ import annotations

import threading
import time
import warnings

import jwt
import numpy as np
import grpc
import pytest
import requests
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from tessera_helpers import CLIENT_TIMEOUT_S, Refusal, cosine_scores, random_vectors, top_k

TRANSPORTS = ("rest", "grpc")
ADMIN_KEY = "guide-admin-key-0123456789abcdef"
DIM = 8
TENANTS = ("tenant_1", "tenant_2")
INSECURE = "Api key is used with an insecure connection"


@pytest.fixture(scope="module")
def tessera_args():
    return ("--api-key", ADMIN_KEY, "--jwt-rbac")


def token(**claims) -> str:
    claims.setdefault("exp", int(time.time()) + 3600)
    return jwt.encode(claims, ADMIN_KEY, algorithm="HS256")


def client_with(url: str, grpc_port: int | None, api_key: str | None) -> QdrantClient:
    """A client (REST, or gRPC on `grpc_port`) with `api_key`; the only warning allowed is the one about plain http."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = set(threading.enumerate())
        if grpc_port is None:
            client = QdrantClient(url=url, api_key=api_key, prefer_grpc=False, timeout=CLIENT_TIMEOUT_S)
        else:
            client = QdrantClient(url=url, api_key=api_key, grpc_port=grpc_port, prefer_grpc=True, timeout=CLIENT_TIMEOUT_S)
        for t in set(threading.enumerate()) - before:
            t.join(timeout=CLIENT_TIMEOUT_S + 5)
    others = [w for w in caught if INSECURE not in str(w.message)]
    if others:
        client.close()
        pytest.fail("qdrant-client warned on connect: " + "; ".join(str(w.message) for w in others))
    return client


# a refusal over either front door
REFUSED = (UnexpectedResponse, grpc.RpcError)


def status_of(exc: Exception) -> int:
    return Refusal(exc).status_code


@pytest.fixture(scope="module")
def guide(base_url, grpc_port):
    """Admin sets up the guide's two layouts: shard key per tenant, and a tenant payload field."""
    admin = client_with(base_url, grpc_port, ADMIN_KEY)
    admin.create_collection(
        "guide",
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        sharding_method=models.ShardingMethod.CUSTOM,
    )
    for t in TENANTS:
        admin.create_shard_key("guide", t)
    admin.create_collection(
        "guide_payload",
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
    )
    admin.create_payload_index(
        "guide_payload",
        field_name="group_id",
        field_schema=models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
        wait=True,
    )
    rng = np.random.default_rng(7)
    data = {t: random_vectors(rng, 30, DIM) for t in TENANTS}
    yield admin, data
    # the next transport's run sets the guide up again on the same node
    for name in ("guide", "guide_payload"):
        admin.delete_collection(name)
    admin.close()


def tenant_points(tenant: str, vectors) -> list[models.PointStruct]:
    base = 1000 if tenant == "tenant_1" else 2000
    return [
        models.PointStruct(id=base + i, vector=v.tolist(), payload={"i": i, "who": tenant})
        for i, v in enumerate(vectors)
    ]


def test_tenant_bound_token_sees_only_its_tenant_without_naming_it(base_url, grpc_port, guide):
    admin, data = guide
    clients = {t: client_with(base_url, grpc_port, token(tenant_id=t, sub=f"user-of-{t}")) for t in TENANTS}
    try:
        for t, c in clients.items():
            # no shard_key_selector: the server pins the request to the token's tenant
            c.upsert("guide", points=tenant_points(t, data[t]), wait=True)
        for t in TENANTS:
            n = admin.count("guide", shard_key_selector=t, exact=True).count
            assert n == 30, f"{t}'s points landed in its own shard key ({n})"

        c1 = clients["tenant_1"]
        q = data["tenant_1"][3].tolist()
        hits = c1.query_points("guide", query=q, limit=50, with_payload=True).points
        assert {h.payload["who"] for h in hits} == {"tenant_1"}
        expected = top_k([1000 + i for i in range(30)], cosine_scores(q, data["tenant_1"]), 10)
        got = c1.query_points("guide", query=q, limit=10, search_params=models.SearchParams(exact=True)).points
        assert [p.id for p in got] == [e[0] for e in expected]
        assert c1.count("guide", exact=True).count == 30
        records, _ = c1.scroll("guide", limit=100, with_payload=True)
        assert {r.payload["who"] for r in records} == {"tenant_1"} and len(records) == 30
        assert c1.retrieve("guide", ids=[2000, 2001, 1000]) and [
            r.id for r in c1.retrieve("guide", ids=[2000, 2001, 1000])
        ] == [1000]
        # a filter trying to widen the scope cannot get out
        wide = models.Filter(should=[models.FieldCondition(key="who", match=models.MatchValue(value="tenant_2"))])
        records, _ = c1.scroll("guide", scroll_filter=wide, limit=100, with_payload=True)
        assert records == []

        # naming the other tenant's shard key: 404, as for a key that does not exist
        with pytest.raises(REFUSED) as e:
            c1.query_points("guide", query=q, shard_key_selector="tenant_2")
        assert status_of(e.value) == 404
        with pytest.raises(REFUSED) as e:
            c1.delete("guide", points_selector=models.PointIdsList(points=[2000]), shard_key_selector="tenant_2")
        assert status_of(e.value) == 404
        c1.delete("guide", points_selector=models.PointIdsList(points=[2000, 2001]), wait=True)
        assert admin.count("guide", shard_key_selector="tenant_2", exact=True).count == 30

        # lists show only what the tenant may see; managing is refused
        keys = requests.get(
            f"{base_url}/collections/guide/shards", headers={"api-key": token(tenant_id="tenant_1")}, timeout=10
        ).json()["result"]["shard_keys"]
        assert keys == [{"key": "tenant_1"}]
        with pytest.raises(REFUSED) as e:
            c1.delete_collection("guide")
        assert status_of(e.value) == 403
        assert admin.collection_exists("guide")
    finally:
        for c in clients.values():
            c.close()


def test_payload_binding_token_is_confined_to_its_group(base_url, grpc_port, guide):
    admin, data = guide
    bound = {
        t: client_with(
            base_url,
            grpc_port,
            token(access=[{"collection": "guide_payload", "access": "rw", "payload": {"group_id": t}}]),
        )
        for t in TENANTS
    }
    try:
        for t, c in bound.items():
            # the guide's clients would set group_id themselves; the server stamps it either way
            c.upsert("guide_payload", points=tenant_points(t, data[t]), wait=True)
        stored, _ = admin.scroll("guide_payload", limit=100, with_payload=True)
        assert len(stored) == 60
        assert all(r.payload["group_id"] == r.payload["who"] for r in stored)

        c2 = bound["tenant_2"]
        q = data["tenant_1"][0].tolist()
        hits = c2.query_points("guide_payload", query=q, limit=100, with_payload=True).points
        assert len(hits) == 30 and {h.payload["group_id"] for h in hits} == {"tenant_2"}
        assert c2.count("guide_payload", exact=True).count == 30
        assert c2.retrieve("guide_payload", ids=[1000, 1001]) == []
        # each tenant's ids are its own: tenant_2's point 1000 is another point than tenant_1's,
        # and neither learns that the other exists
        c2.upsert(
            "guide_payload",
            points=[models.PointStruct(id=1000, vector=[1.0] * DIM, payload={"who": "tenant_2"})],
            wait=True,
        )
        (mine,) = c2.retrieve("guide_payload", ids=[1000], with_payload=True)
        assert mine.id == 1000 and mine.payload["who"] == "tenant_2"
        (theirs,) = bound["tenant_1"].retrieve("guide_payload", ids=[1000], with_payload=True)
        assert theirs.id == 1000 and theirs.payload["who"] == "tenant_1"
        # an unbound admin names tenants' points by their stored ids
        stored_id = 'tenant:"tenant_1"/n:00000000000000001000'
        (p,) = admin.retrieve("guide_payload", ids=[stored_id], with_payload=True)
        assert p.id == stored_id and p.payload["who"] == "tenant_1"
        # other collections are not there for this token
        names = [c.name for c in c2.get_collections().collections]
        assert names == ["guide_payload"]
        with pytest.raises(REFUSED) as e:
            c2.count("guide")
        assert status_of(e.value) == 404
    finally:
        for c in bound.values():
            c.close()


def test_missing_and_forged_credentials_are_401(base_url, grpc_port, guide):
    for key in (None, "wrong-key", jwt.encode({"tenant_id": "tenant_1"}, "not-the-key-but-as-long-as-the-real-one", algorithm="HS256")):
        c = client_with(base_url, grpc_port, key)
        try:
            with pytest.raises(REFUSED) as e:
                c.count("guide")
            assert status_of(e.value) == 401
        finally:
            c.close()
    forged = jwt.encode({"tenant_id": "tenant_1"}, None, algorithm="none")
    r = requests.post(f"{base_url}/collections/guide/points/count", json={}, headers={"api-key": forged}, timeout=10)
    assert r.status_code == 401 and "error" in r.json()["status"]


def test_qdrant_style_read_token_reads_everything_and_writes_nothing(base_url, grpc_port, guide):
    reader = client_with(base_url, grpc_port, token(access="r"))
    try:
        assert reader.count("guide", exact=True).count >= 58
        with pytest.raises(REFUSED) as e:
            reader.upsert(
                "guide",
                points=[models.PointStruct(id=1, vector=[1.0] * DIM)],
                shard_key_selector="tenant_1",
            )
        assert status_of(e.value) == 403
    finally:
        reader.close()


def test_aliases_keep_the_tenant_and_collection_bounds(base_url, grpc_port, guide):
    admin, data = guide
    admin.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name="guide", alias_name="guide_live"))])
    tenant = client_with(base_url, grpc_port, token(tenant_id="tenant_1"))
    only_payload = client_with(base_url, grpc_port, token(access=[{"collection": "guide_payload", "access": "r"}]))
    try:
        # through the alias a tenant writes and sees only its own tenant
        tenant.upsert("guide_live", points=tenant_points("tenant_1", data["tenant_1"]), wait=True)
        q = data["tenant_1"][0].tolist()
        hits = tenant.query_points("guide_live", query=q, limit=50, with_payload=True).points
        assert hits and {h.payload["who"] for h in hits} == {"tenant_1"}
        with pytest.raises(REFUSED) as e:
            tenant.query_points("guide_live", query=q, shard_key_selector="tenant_2")
        assert status_of(e.value) == 404
        # managing aliases needs manage rights
        with pytest.raises(REFUSED) as e:
            tenant.update_collection_aliases(change_aliases_operations=[models.DeleteAliasOperation(
                delete_alias=models.DeleteAlias(alias_name="guide_live"))])
        assert status_of(e.value) == 403
        # a token for another collection neither lists the alias nor reaches it: 404 byte for
        # byte as a collection that does not exist
        assert "guide_live" not in [a.alias_name for a in only_payload.get_aliases().aliases]
        hidden = requests.post(f"{base_url}/collections/guide_live/points/count", json={},
                               headers={"api-key": token(access=[{"collection": "guide_payload", "access": "r"}])}, timeout=10)
        missing = requests.post(f"{base_url}/collections/no_such_alias/points/count", json={},
                                headers={"api-key": token(access=[{"collection": "guide_payload", "access": "r"}])}, timeout=10)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["status"]["error"].replace("guide_live", "X") == missing.json()["status"]["error"].replace("no_such_alias", "X"), (hidden.text, missing.text)
        with pytest.raises(REFUSED) as e:
            only_payload.get_collection_aliases("guide")
        assert status_of(e.value) == 404
    finally:
        tenant.close()
        only_payload.close()
        admin.update_collection_aliases(change_aliases_operations=[models.DeleteAliasOperation(
            delete_alias=models.DeleteAlias(alias_name="guide_live"))])
