"""Shared helpers for the Python suite: deterministic data, exact nearest neighbours, HTTP checks."""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from typing import Any, Callable, Iterable

import grpc
import numpy as np
import pytest
import requests
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

CLIENT_TIMEOUT_S = 10
NS = uuid.UUID("6f1c2a52-6a8e-4b8a-9f3e-0d6c5a1e7b11")


def point_uuid(label: str) -> str:
    """A deterministic UUID (canonical lowercase hyphenated form, as the server returns it)."""
    return str(uuid.uuid5(NS, label))


def random_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    return rng.standard_normal((n, dim)).astype(np.float32)


def normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / norms


def cosine_scores(query: Iterable[float], vectors: np.ndarray) -> np.ndarray:
    q = normalize(np.asarray(query, dtype=np.float64)[None, :])[0]
    return normalize(vectors) @ q


def top_k(ids: list, scores: np.ndarray, k: int, exclude: Any = None) -> list[tuple[Any, float]]:
    """Ids and scores of the k highest scores (descending); `exclude` drops one id."""
    order = np.argsort(-scores, kind="stable")
    out = []
    for i in order:
        if exclude is not None and ids[i] == exclude:
            continue
        out.append((ids[i], float(scores[i])))
        if len(out) == k:
            break
    return out


def assert_neighbours(points: list, expected: list[tuple[Any, float]], *, min_recall: float = 1.0) -> None:
    """The scored points are the expected nearest neighbours (ids in order if recall must be 1)."""
    got_ids = [p.id for p in points]
    exp_ids = [e[0] for e in expected]
    assert len(got_ids) == len(exp_ids), f"got {len(got_ids)} points, expected {len(exp_ids)}: {got_ids} vs {exp_ids}"
    if min_recall >= 1.0:
        assert got_ids == exp_ids, f"neighbours differ:\n got      {got_ids}\n expected {exp_ids}"
        for p, (_, s) in zip(points, expected):
            assert p.score == pytest.approx(s, abs=1e-4), f"score of {p.id}: {p.score} vs {s}"
    else:
        recall = len(set(got_ids) & set(exp_ids)) / len(exp_ids) if exp_ids else 1.0
        assert recall >= min_recall, f"recall {recall:.2f} < {min_recall}: got {got_ids}, expected {exp_ids}"
    scores = [p.score for p in points]
    assert scores == sorted(scores, reverse=True), f"scores not descending: {scores}"


def scroll_all(client: QdrantClient, collection: str, *, page: int = 7, **kwargs) -> list:
    """Every record a scroll returns, following next_page_offset; checks the paging contract."""
    records: list = []
    offset = None
    for _ in range(2_000):
        batch, next_offset = client.scroll(collection, limit=page, offset=offset, **kwargs)
        # the copies of one id under several shard keys are never split across pages (the next page
        # starts at an id): a page may end early to keep a group whole, and exceeds `page` only
        # when it is one id's group
        assert len(batch) <= page or len({str(r.id) for r in batch}) == 1, [r.id for r in batch]
        if offset is not None and batch:
            assert batch[0].id == offset, f"page starts at {batch[0].id}, not at next_page_offset {offset}"
        records.extend(batch)
        if next_offset is None:
            break
        assert next_offset != offset, f"scroll does not advance: offset {offset!r} answers next_page_offset {next_offset!r}"
        assert batch, f"empty page but next_page_offset={next_offset}"
        offset = next_offset
    # the same id may live under two shard keys: a record is (shard key, id)
    keys = [(r.shard_key, r.id) for r in records]
    dups = sorted({str(k) for k in keys if keys.count(k) > 1})
    assert not dups, f"scroll returned duplicates: {dups}"
    return records


def count(client: QdrantClient, collection: str, **kwargs) -> int:
    return client.count(collection, exact=True, **kwargs).count


# The HTTP status each gRPC code stands for (as tessera maps its errors to both).
GRPC_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class Refusal:
    """A refused client call, over REST or gRPC: its HTTP status (the status a gRPC code stands
    for) and its error message."""

    def __init__(self, exc: Exception):
        self.exc = exc
        if isinstance(exc, UnexpectedResponse):
            self.status_code = exc.status_code
            self.message = exc.content.decode(errors="replace") if exc.content else ""
        else:
            self.status_code = GRPC_STATUS.get(exc.code(), -1)
            self.message = exc.details() or ""
        self.content = self.message.encode()


def refusal_of(fn: Callable, *args, **kwargs) -> Refusal:
    """Calls a client method that must be refused; the refusal."""
    with pytest.raises((UnexpectedResponse, grpc.RpcError)) as info:
        fn(*args, **kwargs)
    return Refusal(info.value)


def expect_status(status: int, fn: Callable, *args, **kwargs) -> Refusal:
    """Calls a client method that must fail with the given HTTP status (over gRPC: the code that
    stands for it)."""
    r = refusal_of(fn, *args, **kwargs)
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.message!r}"
    return r


def assert_error_body(resp: requests.Response, status: int, *needles: str) -> str:
    """Qdrant's error envelope: {"status": {"error": "..."}, "time": <number>}; returns the message."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    try:
        body = resp.json()
    except ValueError:
        pytest.fail(f"error body is not JSON ({resp.status_code}): {resp.text[:500]!r}")
    assert isinstance(body, dict), body
    assert isinstance(body.get("status"), dict) and isinstance(body["status"].get("error"), str), body
    assert isinstance(body.get("time"), (int, float)), body
    assert "result" not in body or body["result"] is None, body
    msg = body["status"]["error"]
    assert msg.strip(), body
    for n in needles:
        assert n.lower() in msg.lower(), f"error message {msg!r} does not mention {n!r}"
    return msg


def wait_indexed(client: QdrantClient, collection: str, points: int, indexed: int, timeout: float = 20.0) -> None:
    """Waits until get_collection reports `points` points of which at least `indexed` sit in HNSW graphs,
    and status green (no index build or merge due)."""
    deadline = time.monotonic() + timeout
    info = client.get_collection(collection)
    while time.monotonic() < deadline:
        info = client.get_collection(collection)
        if (
            info.points_count == points
            and (info.indexed_vectors_count or 0) >= indexed
            and info.status == models.CollectionStatus.GREEN
        ):
            return
        time.sleep(0.05)
    pytest.fail(
        f"collection {collection} not indexed after {timeout}s: points_count={info.points_count} "
        f"(expected {points}), indexed_vectors_count={info.indexed_vectors_count} (expected >= {indexed}), "
        f"status={info.status}"
    )


def keyword(key: str, value: Any) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def make_client(url: str, grpc_port: int | None = None, **kwargs) -> QdrantClient:
    """A QdrantClient (REST, or gRPC on `grpc_port`) whose background server-version check has
    finished without a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = set(threading.enumerate())
        if grpc_port is None:
            client = QdrantClient(url=url, prefer_grpc=False, timeout=CLIENT_TIMEOUT_S, **kwargs)
        else:
            client = QdrantClient(url=url, grpc_port=grpc_port, prefer_grpc=True, timeout=CLIENT_TIMEOUT_S, **kwargs)
        # The version check runs in a daemon thread; wait for it so its warning (if any) lands here.
        for t in set(threading.enumerate()) - before:
            t.join(timeout=CLIENT_TIMEOUT_S + 5)
    if caught:
        client.close()
        pytest.fail("qdrant-client warned on connect: " + "; ".join(str(w.message) for w in caught))
    return client


def same_hits(got, want, *, payload: bool = False) -> None:
    """The same ids in the same order, scores within 1e-4 (and the same payloads if asked): the
    differential tests' comparison with the local-mode oracle."""
    assert [p.id for p in got] == [p.id for p in want]
    for g, w in zip(got, want):
        assert abs(g.score - w.score) < 1e-4, (g, w)
        if payload:
            assert g.payload == w.payload, (g, w)
