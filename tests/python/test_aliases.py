"""Collection aliases, differentially against qdrant-client's local mode (the oracle): the same
alias changes give the same alias lists, and every data and info call through an alias answers
as through its collection. The reindex switch (delete and create in one request) is atomic."""

from __future__ import annotations

import pytest
import requests
from qdrant_client import QdrantClient, models

from tessera_helpers import expect_status

TRANSPORTS = ("rest", "grpc")
DIM = 3


def make(c: QdrantClient, name: str, offset: int) -> None:
    c.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
    c.upsert(name, points=[models.PointStruct(id=i, vector=[1.0, float(i), float(offset)], payload={"v": offset})
                           for i in range(1, 6)], wait=True)


@pytest.fixture
def both(client, collection_name):
    oracle = QdrantClient(":memory:")
    names = (collection_name + "_v1", collection_name + "_v2")
    for c in (client, oracle):
        make(c, names[0], 1)
        make(c, names[1], 2)
    yield client, oracle, names
    for n in names:
        client.delete_collection(n)
    oracle.close()


def listed(c: QdrantClient, collection: str | None = None) -> list[tuple[str, str]]:
    r = c.get_collection_aliases(collection) if collection else c.get_aliases()
    return sorted((a.alias_name, a.collection_name) for a in r.aliases)


def create(alias: str, collection: str) -> models.CreateAliasOperation:
    return models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))


def delete(alias: str) -> models.DeleteAliasOperation:
    return models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))


def test_aliases_match_the_oracle_and_serve_their_collection(both, collection_name):
    client, oracle, (v1, v2) = both
    live, old = collection_name + "_live", collection_name + "_old"
    steps = [
        [create(live, v1)],
        [create(old, v1)],
        # the reindex switch
        [delete(live), create(live, v2)],
        [models.RenameAliasOperation(rename_alias=models.RenameAlias(old_alias_name=old, new_alias_name=old + "x"))],
        [delete("never_was")],
    ]
    for actions in steps:
        for c in (client, oracle):
            assert c.update_collection_aliases(change_aliases_operations=actions)
        mine = [a for a in listed(client) if a[1] in (v1, v2)]
        assert mine == [a for a in listed(oracle) if a[1] in (v1, v2)]
        for coll in (v1, v2):
            assert listed(client, coll) == listed(oracle, coll)
        # everything through the alias is its collection's
        target = dict(listed(client))[live]
        for c in (client, oracle):
            hits = c.query_points(live, query=[0.0, 1.0, 0.0], limit=3, with_payload=True).points
            assert [(h.id, h.payload) for h in hits] == [(5, {"v": 1 if target == v1 else 2}), (4, {"v": 1 if target == v1 else 2}), (3, {"v": 1 if target == v1 else 2})]
        assert client.count(live, exact=True).count == 5
        assert client.get_collection(live).points_count == 5
    # a write through the alias lands in the collection it names
    client.upsert(live, points=[models.PointStruct(id=9, vector=[1.0, 0.0, 0.0], payload={"via": "alias"})], wait=True)
    assert [r.payload for r in client.retrieve(v2, ids=[9], with_payload=True)] == [{"via": "alias"}]
    assert client.retrieve(v1, ids=[9]) == []
    # deleting the collection deletes its aliases
    client.delete_collection(v2)
    assert live not in dict(listed(client))
    expect_status(404, client.count, live)


def test_alias_refusals_change_nothing(both, base_url, collection_name):
    client, _, (v1, v2) = both
    live = collection_name + "_a"
    client.update_collection_aliases(change_aliases_operations=[create(live, v1)])
    before = listed(client)
    # a missing collection, a collection's name, a rename of nothing: refused, and the whole
    # request changes nothing (its first action included)
    for actions, status in (
        ([create(live + "2", v2), create("x_" + live, "no_such_collection")], 404),
        ([create(live + "2", v2), create(v1, v2)], 409),
        ([create(live + "2", v2), models.RenameAliasOperation(
            rename_alias=models.RenameAlias(old_alias_name="nope", new_alias_name="y"))], 404),
    ):
        expect_status(status, client.update_collection_aliases, change_aliases_operations=actions)
        assert listed(client) == before
    # a collection may not take an alias's name
    r = requests.put(f"{base_url}/collections/{live}", json={"vectors": {"size": DIM, "distance": "Dot"}}, timeout=10)
    assert r.status_code == 409 and live in r.json()["status"]["error"]
    r = requests.post(f"{base_url}/collections/aliases", json={"actions": [{"bogus_alias": {}}]}, timeout=10)
    assert r.status_code == 400
    assert listed(client) == before
    # an alias is not a collection: deleting it by the collection call deletes nothing
    assert client.delete_collection(live) is False
    assert listed(client) == before and client.collection_exists(v1)
