"""Bad input over raw HTTP: the status code, Qdrant's error envelope {"status": {"error": ...}, "time": ...},
and no change to the stored data afterwards."""

from __future__ import annotations

import json

import pytest
import requests

from tessera_helpers import assert_error_body

DIM = 7
KEYS = ("A", "B")
TIMEOUT = 10
HEADERS = {"content-type": "application/json"}


class Api:
    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body=None, raw: bytes | str | None = None) -> requests.Response:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return requests.request(method, self.url + path, data=data, headers=HEADERS, timeout=TIMEOUT)

    def ok(self, method: str, path: str, body=None):
        r = self.call(method, path, body)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text[:300]}"
        body = r.json()
        assert body["status"] == "ok" and "time" in body, body
        return body["result"]

    def count(self, coll: str, key=None) -> int:
        body = {"exact": True}
        if key is not None:
            body["shard_key"] = key
        return self.ok("POST", f"/collections/{coll}/points/count", body)["count"]


def vec(seed: int, dim: int = DIM) -> list[float]:
    return [((seed * 31 + j * 7) % 11) / 10.0 - 0.5 for j in range(dim)]


def make_collection(api: Api, name: str, custom: bool = True, points: int = 10) -> None:
    body = {"vectors": {"size": DIM, "distance": "Cosine"}}
    if custom:
        body["sharding_method"] = "custom"
    assert api.ok("PUT", f"/collections/{name}", body) is True
    if custom:
        for k in KEYS:
            assert api.ok("PUT", f"/collections/{name}/shards", {"shard_key": k}) is True
    pts = [{"id": i, "vector": vec(i), "payload": {"n": i}} for i in range(points)]
    body = {"points": pts}
    if custom:
        body["shard_key"] = "A"
    api.ok("PUT", f"/collections/{name}/points?wait=true", body)


@pytest.fixture(scope="module")
def api(base_url):
    a = Api(base_url)
    make_collection(a, "errs")
    make_collection(a, "errs_auto", custom=False)
    return a


@pytest.fixture
def unchanged(api):
    """Asserts after the test that no stored data changed."""
    before = (api.count("errs", "A"), api.count("errs", "B"), api.count("errs_auto"))
    assert before == (10, 0, 10)
    yield
    after = (api.count("errs", "A"), api.count("errs", "B"), api.count("errs_auto"))
    assert after == before, f"data changed: counts {before} -> {after}"
    recs = api.ok("POST", "/collections/errs/points", {"ids": list(range(10)), "shard_key": "A", "with_vector": True})
    assert sorted(r["id"] for r in recs) == list(range(10))
    assert all(r["payload"] == {"n": r["id"]} for r in recs)


# ---------- wrong vector length ----------


@pytest.mark.parametrize("form", ["points", "batch"])
@pytest.mark.parametrize("coll", ["errs", "errs_auto"])
def test_upsert_wrong_vector_length(api, unchanged, form, coll):
    bad = vec(99, DIM - 2)
    if form == "points":
        body = {"points": [{"id": 1, "vector": vec(1)}, {"id": 500, "vector": bad}]}
    else:
        body = {"batch": {"ids": [1, 500], "vectors": [vec(1), bad]}}
    if coll == "errs":
        body["shard_key"] = "A"
    msg = assert_error_body(api.call("PUT", f"/collections/{coll}/points?wait=true", body), 400)
    assert str(DIM) in msg, f"error does not name the expected size {DIM}: {msg!r}"


def test_wrong_vector_length_in_a_big_batch_writes_nothing(api, unchanged):
    pts = [{"id": 1000 + i, "vector": vec(i)} for i in range(200)]
    pts[150]["vector"] = vec(150, DIM + 1)
    msg = assert_error_body(api.call("PUT", "/collections/errs/points?wait=true", {"points": pts, "shard_key": "B"}), 400)
    assert str(DIM) in msg
    assert api.ok("POST", "/collections/errs/points", {"ids": [1000, 1001, 1149], "shard_key": "B"}) == []


@pytest.mark.parametrize("path", ["query", "search"])
def test_query_wrong_vector_length(api, unchanged, path):
    body = {"query": vec(1, DIM + 3)} if path == "query" else {"vector": vec(1, DIM + 3)}
    msg = assert_error_body(api.call("POST", f"/collections/errs/points/{path}", body), 400)
    assert str(DIM) in msg


@pytest.mark.parametrize(
    "raw",
    [
        '{"points": [{"id": 1, "vector": [NaN, 0, 0, 0, 0, 0, 0]}], "shard_key": "A"}',
        '{"points": [{"id": 1, "vector": [Infinity, 0, 0, 0, 0, 0, 0]}], "shard_key": "A"}',
        '{"points": [{"id": 1, "vector": [1e39, 0, 0, 0, 0, 0, 0]}], "shard_key": "A"}',  # overflows f32
        '{"points": [{"id": 1, "vector": [1e400, 0, 0, 0, 0, 0, 0]}], "shard_key": "A"}',
    ],
    ids=["nan", "infinity", "f32-overflow", "f64-overflow"],
)
def test_non_finite_vectors(api, unchanged, raw):
    assert_error_body(api.call("PUT", "/collections/errs/points?wait=true", raw=raw), 400)


# ---------- malformed JSON ----------


@pytest.mark.parametrize(
    "method,path,raw",
    [
        ("PUT", "/collections/errs/points?wait=true", '{"points": [{"id": 1, "vector": [1,2'),
        ("PUT", "/collections/errs/points?wait=true", '{"points": [], "shard_key": "A"} trailing'),
        ("PUT", "/collections/errs/points?wait=true", "not json at all"),
        ("PUT", "/collections/errs/points?wait=true", '{"points": [{"id": 1, "vector": "abc"}], "shard_key": "A"}'),
        ("PUT", "/collections/errs/points?wait=true", '{"points": [{"id": -5, "vector": [0,0,0,0,0,0,1]}], "shard_key": "A"}'),
        ("PUT", "/collections/errs/points?wait=true", '{"points": [{"id": 1.5, "vector": [0,0,0,0,0,0,1]}], "shard_key": "A"}'),
        ("PUT", "/collections/errs/points?wait=true", '{"points": [{"id": 1, "vector": [0,0,0,0,0,0,1], "payload": [1]}], "shard_key": "A"}'),
        ("PUT", "/collections/errs/points?wait=true", '[]'),
        ("POST", "/collections/errs/points/query", '{"query": [1,2,3'),
        ("POST", "/collections/errs/points/scroll", '{"limit": "ten"}'),
        ("POST", "/collections/errs/points/count", "{,}"),
        ("POST", "/collections/errs/points/delete", '{"points": [1, 2'),
        ("POST", "/collections/errs/points/payload", '{"payload": 5, "points": [1], "shard_key": "A"}'),
        ("PUT", "/collections/errs_new", '{"vectors": {"size": 4, "distance": "Cosine"'),
        ("PUT", "/collections/errs_new", '{"vectors": {"size": -4, "distance": "Cosine"}}'),
        ("PUT", "/collections/errs_new", '{"vectors": {"size": 4, "distance": "Manhattan2"}}'),
        ("PUT", "/collections/errs/shards", '{"shard_key": '),
        ("PUT", "/collections/errs/index", '{"field_name": 5}'),
    ],
)
def test_malformed_json(api, unchanged, method, path, raw):
    assert_error_body(api.call(method, path, raw=raw), 400)
    r = api.call("GET", "/collections/errs_new/exists")
    assert r.json()["result"]["exists"] is False


# ---------- unknown collection / shard key ----------


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/collections/nope", None),
        ("PUT", "/collections/nope/points?wait=true", {"points": [{"id": 1, "vector": vec(1)}]}),
        ("POST", "/collections/nope/points", {"ids": [1]}),
        ("GET", "/collections/nope/points/1", None),
        ("POST", "/collections/nope/points/query", {"query": vec(1)}),
        ("POST", "/collections/nope/points/search", {"vector": vec(1)}),
        ("POST", "/collections/nope/points/scroll", {}),
        ("POST", "/collections/nope/points/count", {}),
        ("POST", "/collections/nope/points/delete", {"points": [1]}),
        ("POST", "/collections/nope/points/payload", {"payload": {"a": 1}, "points": [1]}),
        ("PUT", "/collections/nope/points/payload", {"payload": {"a": 1}, "points": [1]}),
        ("POST", "/collections/nope/points/payload/delete", {"keys": ["a"], "points": [1]}),
        ("POST", "/collections/nope/points/payload/clear", {"points": [1]}),
        ("PUT", "/collections/nope/index", {"field_name": "x", "field_schema": "keyword"}),
        ("PUT", "/collections/nope/shards", {"shard_key": "A"}),
        ("POST", "/collections/nope/shards/delete", {"shard_key": "A"}),
        ("GET", "/collections/nope/shards", None),
        ("GET", "/collections/nope/cluster", None),
    ],
)
def test_unknown_collection_is_404(api, unchanged, method, path, body):
    assert_error_body(api.call(method, path, body), 404)


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("PUT", "/collections/errs/points?wait=true", {"points": [{"id": 77, "vector": vec(1)}]}),
        ("PUT", "/collections/errs/points?wait=true", {"batch": {"ids": [77], "vectors": [vec(1)]}}),
        ("POST", "/collections/errs/points", {"ids": [1]}),
        ("POST", "/collections/errs/points/query", {"query": vec(1)}),
        ("POST", "/collections/errs/points/query", {"query": 1}),
        ("POST", "/collections/errs/points/search", {"vector": vec(1)}),
        ("POST", "/collections/errs/points/scroll", {}),
        ("POST", "/collections/errs/points/count", {}),
        ("POST", "/collections/errs/points/delete", {"points": [1]}),
        ("POST", "/collections/errs/points/payload", {"payload": {"a": 1}, "points": [1]}),
        ("PUT", "/collections/errs/points/payload", {"payload": {"a": 1}, "points": [1]}),
        ("POST", "/collections/errs/points/payload/delete", {"keys": ["n"], "points": [1]}),
        ("POST", "/collections/errs/points/payload/clear", {"points": [1]}),
    ],
)
@pytest.mark.parametrize("key", ["nope", ["A", "nope"], 12345])
def test_unknown_shard_key_is_404(api, unchanged, method, path, body, key):
    assert_error_body(api.call(method, path, {**body, "shard_key": key}), 404)


@pytest.mark.parametrize("key", ["nope", 12345])
def test_deleting_an_unknown_shard_key_is_404(api, unchanged, key):
    assert_error_body(api.call("POST", "/collections/errs/shards/delete", {"shard_key": key}), 404)


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("PUT", "/collections/errs/points?wait=true", {"points": [{"id": 77, "vector": vec(1)}]}),
        ("PUT", "/collections/errs/points?wait=true", {"batch": {"ids": [77], "vectors": [vec(1)]}}),
        ("POST", "/collections/errs/points/delete", {"points": [1, 2]}),
        ("POST", "/collections/errs/points/payload", {"payload": {"a": 1}, "points": [1]}),
        ("PUT", "/collections/errs/points/payload", {"payload": {"a": 1}, "points": [1]}),
        ("POST", "/collections/errs/points/payload/delete", {"keys": ["n"], "points": [1]}),
        ("POST", "/collections/errs/points/payload/clear", {"points": [1]}),
    ],
)
def test_write_without_shard_key_in_custom_collection_is_400(api, unchanged, method, path, body):
    assert_error_body(api.call(method, path, body), 400)


def test_reads_without_shard_key_cover_all_keys(api, unchanged):
    assert api.count("errs") == 10
    assert len(api.ok("POST", "/collections/errs/points", {"ids": [1, 2]})) == 2
    assert len(api.ok("POST", "/collections/errs/points/query", {"query": vec(3), "limit": 3})["points"]) == 3


# ---------- limits ----------


@pytest.mark.parametrize(
    "path,body",
    [
        ("query", {"query": vec(1), "limit": 10001}),
        ("query", {"query": vec(1), "limit": 10**12}),
        ("query", {"limit": 10001}),
        ("search", {"vector": vec(1), "limit": 10001}),
        ("scroll", {"limit": 10001}),
        ("query", {"query": vec(1), "limit": 10, "offset": 10**9}),
    ],
)
def test_limit_over_maximum_is_400(api, unchanged, path, body):
    msg = assert_error_body(api.call("POST", f"/collections/errs/points/{path}", {**body, "shard_key": "A"}), 400)
    assert "10000" in msg, msg


def test_limit_at_maximum_is_fine(api, unchanged):
    assert len(api.ok("POST", "/collections/errs/points/query", {"query": vec(1), "limit": 10000, "shard_key": "A"})["points"]) == 10
    assert len(api.ok("POST", "/collections/errs/points/scroll", {"limit": 10000, "shard_key": "A"})["points"]) == 10


def test_negative_limit_is_400(api, unchanged):
    assert_error_body(api.call("POST", "/collections/errs/points/query", {"query": vec(1), "limit": -1}), 400)


# ---------- body size ----------


def test_body_over_the_limit_is_413(small_body_server):
    small = Api(small_body_server.url)
    make_collection(small, "big", points=3)
    filler = "x" * 1000
    pts = [{"id": 100 + i, "vector": vec(i), "payload": {"blob": filler}} for i in range(100)]  # ~110 KB
    body = json.dumps({"points": pts, "shard_key": "A"})
    assert len(body) > 65536
    assert_error_body(small.call("PUT", "/collections/big/points?wait=true", raw=body), 413)
    assert small.count("big", "A") == 3
    assert small.ok("POST", "/collections/big/points", {"ids": [100, 199], "shard_key": "A"}) == []
    # the same kind of request under the limit goes through
    body = json.dumps({"points": pts[:40], "shard_key": "A"})
    assert len(body) < 65536
    small.ok("PUT", "/collections/big/points?wait=true", json.loads(body))
    assert small.count("big", "A") == 43
    # other endpoints share the limit
    ids = list(range(20000))
    assert_error_body(small.call("POST", "/collections/big/points", {"ids": ids, "shard_key": "A"}), 413)
    assert small.count("big", "A") == 43


# ---------- nothing makes the server fall over ----------

JUNK = ["null", "1", '"x"', "[]", "{}", '{"points": 5}', '{"points": [null]}', '{"ids": [-1]}',
        '{"limit": -1}', '{"query": {"nearest": "x"}}', '{"query": {"recommend": {}}}', '{"filter": 5}',
        '{"filter": {"must": 5}}', '{"shard_key": {}}', '{"shard_key": [[]]}', '{"shard_key": -1}',
        '{"offset": {"a": 1}}', '{"with_payload": 5}', '{"params": {"hnsw_ef": -3}}', '{"query": []}',
        '{"points": [{"id": "", "vector": []}], "shard_key": "A"}', '{"batch": {"ids": [1], "vectors": []}, "shard_key": "A"}',
        '{"keys": [1], "points": [123456], "shard_key": "A"}', '{"payload": {}, "points": [], "shard_key": "A"}']


@pytest.mark.parametrize(
    "method,path",
    [
        ("PUT", "/collections/errs/points?wait=true"),
        ("POST", "/collections/errs/points"),
        ("POST", "/collections/errs/points/query"),
        ("POST", "/collections/errs/points/search"),
        ("POST", "/collections/errs/points/scroll"),
        ("POST", "/collections/errs/points/count"),
        ("POST", "/collections/errs/points/delete"),
        ("POST", "/collections/errs/points/payload"),
        ("POST", "/collections/errs/points/payload/delete"),
        ("PUT", "/collections/errs/index"),
        ("PUT", "/collections/errs/shards"),
    ],
)
def test_junk_bodies_get_a_4xx_or_200_never_a_5xx(api, unchanged, method, path):
    for raw in JUNK:
        r = api.call(method, path, raw=raw)
        assert r.status_code < 500, f"{method} {path} {raw}: {r.status_code} {r.text[:300]}"
        if r.status_code >= 400:
            assert_error_body(r, r.status_code)
    assert requests.get(api.url + "/readyz", timeout=TIMEOUT).status_code == 200
