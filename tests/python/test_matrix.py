"""Distance matrices (`search_matrix_pairs`, `search_matrix_offsets`), differentially against
qdrant-client's local mode (the oracle) where the sample is every matching point (so the random
draw cannot differ): the same ids, pairs and scores; a smaller sample is drawn from the matching
points only."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from tessera_helpers import keyword

TRANSPORTS = ("rest", "grpc")
DIM = 4


def fill(c: QdrantClient, name: str) -> None:
    rng = np.random.default_rng(3)
    c.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    c.upsert(name, points=[models.PointStruct(id=i, vector=rng.normal(size=DIM).tolist(),
                                              payload={"half": "a" if i <= 12 else "b"})
                           for i in range(1, 25)], wait=True)


@pytest.fixture
def both(client, collection_name):
    oracle = QdrantClient(":memory:")
    for c in (client, oracle):
        fill(c, collection_name)
    yield client, oracle
    oracle.close()


@pytest.mark.parametrize("limit", [1, 3])
def test_matrix_of_every_point_matches_the_oracle(both, collection_name, limit):
    client, oracle = both
    flt = models.Filter(must=[keyword("half", "a")])
    got, want = (c.search_matrix_pairs(collection_name, query_filter=flt, sample=12, limit=limit) for c in (client, oracle))
    assert [(p.a, p.b) for p in got.pairs] == [(p.a, p.b) for p in want.pairs]
    assert all(abs(g.score - w.score) < 1e-4 for g, w in zip(got.pairs, want.pairs))
    got, want = (c.search_matrix_offsets(collection_name, query_filter=flt, sample=12, limit=limit) for c in (client, oracle))
    assert got.ids == want.ids and got.offsets_row == want.offsets_row and got.offsets_col == want.offsets_col
    assert all(abs(g - w) < 1e-4 for g, w in zip(got.scores, want.scores))


def test_a_smaller_sample_is_drawn_from_the_matching_points(both, collection_name):
    client, _ = both
    flt = models.Filter(must=[keyword("half", "b")])
    m = client.search_matrix_offsets(collection_name, query_filter=flt, sample=5, limit=2)
    assert len(m.ids) == 5 and all(13 <= i <= 24 for i in m.ids) and m.ids == sorted(m.ids)
    assert len(m.scores) == 10 and all(r != c for r, c in zip(m.offsets_row, m.offsets_col))
