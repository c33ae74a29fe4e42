"""`batch_update_points`, differentially against qdrant-client's local mode (the oracle): the same
operations in the same order leave the same points. Every operation is parsed before the first
is applied: a malformed or unsupported one changes nothing."""

from __future__ import annotations

from qdrant_client import QdrantClient, models

from tessera_helpers import expect_status

TRANSPORTS = ("rest", "grpc")
DIM = 2


def fill(c: QdrantClient, name: str) -> None:
    c.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
    c.upsert(name, points=[models.PointStruct(id=i, vector=[1.0, float(i)], payload={"n": i, "tag": "a" if i % 2 else "b"})
                           for i in range(1, 9)], wait=True)


def state(c: QdrantClient, name: str) -> list:
    points, _ = c.scroll(name, limit=100, with_vectors=True, with_payload=True)
    return sorted((p.id, p.payload, [round(x, 5) for x in p.vector]) for p in points)


OPERATIONS = [
    models.UpsertOperation(upsert=models.PointsList(points=[
        models.PointStruct(id=20, vector=[0.5, 0.5], payload={"n": 20}),
        models.PointStruct(id=2, vector=[2.0, 2.0], payload={"n": 200})])),
    models.SetPayloadOperation(set_payload=models.SetPayload(payload={"x": 1}, points=[1, 3, 20])),
    models.SetPayloadOperation(set_payload=models.SetPayload(
        payload={"y": True}, filter=models.Filter(must=[models.FieldCondition(key="tag", match=models.MatchValue(value="b"))]))),
    models.OverwritePayloadOperation(overwrite_payload=models.SetPayload(payload={"only": "this"}, points=[5])),
    models.DeletePayloadOperation(delete_payload=models.DeletePayload(keys=["n"], points=[1, 2])),
    models.ClearPayloadOperation(clear_payload=models.PointIdsList(points=[7])),
    models.DeleteOperation(delete=models.PointIdsList(points=[3, 4])),
    models.DeleteOperation(delete=models.FilterSelector(filter=models.Filter(
        must=[models.FieldCondition(key="n", range=models.Range(gte=8))]))),
]


def test_a_batch_leaves_what_the_oracle_leaves(client, collection_name):
    oracle = QdrantClient(":memory:")
    for c in (client, oracle):
        fill(c, collection_name)
        results = c.batch_update_points(collection_name, update_operations=OPERATIONS, wait=True)
        assert len(results) == len(OPERATIONS)
        assert all(r.status == models.UpdateStatus.COMPLETED for r in results)
    assert state(client, collection_name) == state(oracle, collection_name)
    oracle.close()


def test_an_unsupported_or_malformed_operation_applies_nothing(client, collection_name):
    fill(client, collection_name)
    before = state(client, collection_name)
    ops = [OPERATIONS[0], OPERATIONS[1],
           models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(
               points=[models.PointVectors(id=1, vector=[9.0, 9.0])]))]
    refused = expect_status(400, client.batch_update_points, collection_name, update_operations=ops, wait=True)
    assert b"update_vectors" in refused.content
    # a wrong dimension in the last upsert: nothing of the batch is applied
    ops = [OPERATIONS[6], models.UpsertOperation(upsert=models.PointsList(points=[
        models.PointStruct(id=30, vector=[1.0, 2.0, 3.0])]))]
    expect_status(400, client.batch_update_points, collection_name, update_operations=ops, wait=True)
    assert state(client, collection_name) == before
