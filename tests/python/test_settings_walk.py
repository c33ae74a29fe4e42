"""Every setting of `create_collection` and `update_collection` is either applied and reported
back by `get_collection` exactly as given, or refused with 400 naming it (and then nothing is
created or changed). Never accepted and dropped.

The walk is over qdrant-client's own request models: a field the client has and this table does
not fails the test, so a new client version cannot add a setting that slips through unchecked.
Each entry is a field's path in the request, a value that is not the default, and where
`get_collection`'s `config` reports it.
"""

from __future__ import annotations

import typing

import pytest
import requests
from qdrant_client import models

BASE = {"vectors": {"size": 4, "distance": "Cosine"}}

# settings both requests take, reported at the same place
HNSW = {
    "hnsw_config.m": (8, "hnsw_config.m"),
    "hnsw_config.ef_construct": (64, "hnsw_config.ef_construct"),
    "hnsw_config.full_scan_threshold": (5000, "hnsw_config.full_scan_threshold"),
    "hnsw_config.max_indexing_threads": (1, "hnsw_config.max_indexing_threads"),
    "hnsw_config.on_disk": (True, "hnsw_config.on_disk"),
    "hnsw_config.memory": ("cold", "hnsw_config.memory"),
    "hnsw_config.payload_m": (8, "hnsw_config.payload_m"),
    "hnsw_config.inline_storage": (True, "hnsw_config.inline_storage"),
}
OPTIMIZERS = {
    "optimizers_config.deleted_threshold": (0.5, "optimizer_config.deleted_threshold"),
    "optimizers_config.vacuum_min_vector_number": (500, "optimizer_config.vacuum_min_vector_number"),
    "optimizers_config.default_segment_number": (3, "optimizer_config.default_segment_number"),
    "optimizers_config.max_segment_size": (50000, "optimizer_config.max_segment_size"),
    "optimizers_config.memmap_threshold": (50000, "optimizer_config.memmap_threshold"),
    "optimizers_config.indexing_threshold": (7000, "optimizer_config.indexing_threshold"),
    "optimizers_config.flush_interval_sec": (9, "optimizer_config.flush_interval_sec"),
    "optimizers_config.max_optimization_threads": (1, "optimizer_config.max_optimization_threads"),
    "optimizers_config.prevent_unoptimized": (True, "optimizer_config.prevent_unoptimized"),
}

# request path -> (value, report path in `config`)
CREATE = {
    **HNSW,
    **OPTIMIZERS,
    "vectors.size": (7, "params.vectors.size"),
    "vectors.distance": ("Dot", "params.vectors.distance"),
    "vectors.hnsw_config": ({"m": 8}, "params.vectors.hnsw_config.m"),
    "vectors.quantization_config": ({"scalar": {"type": "int8"}}, "params.vectors.quantization_config"),
    "vectors.on_disk": (True, "params.vectors.on_disk"),
    "vectors.memory": ("cold", "params.vectors.memory"),
    "vectors.datatype": ("float16", "params.vectors.datatype"),
    "vectors.multivector_config": ({"comparator": "max_sim"}, "params.vectors.multivector_config"),
    "shard_number": (3, "params.shard_number"),
    "sharding_method": ("custom", "params.sharding_method"),
    "replication_factor": (2, "params.replication_factor"),
    "write_consistency_factor": (2, "params.write_consistency_factor"),
    "on_disk_payload": (True, "params.on_disk_payload"),
    "payload.memory": ("cold", "params.payload.memory"),
    "wal_config.wal_capacity_mb": (16, "wal_config.wal_capacity_mb"),
    "wal_config.wal_segments_ahead": (2, "wal_config.wal_segments_ahead"),
    "wal_config.wal_retain_closed": (3, "wal_config.wal_retain_closed"),
    "quantization_config": ({"scalar": {"type": "int8"}}, "quantization_config"),
    "sparse_vectors": ({"text": {}}, "params.sparse_vectors"),
    "strict_mode_config": ({"enabled": True, "max_query_limit": 5}, "strict_mode_config"),
    "metadata": ({"owner": "search-team"}, "metadata"),
}

UPDATE = {
    **HNSW,
    **OPTIMIZERS,
    "vectors": ({"": {"on_disk": True}}, "params.vectors.on_disk"),
    "params.replication_factor": (2, "params.replication_factor"),
    "params.write_consistency_factor": (2, "params.write_consistency_factor"),
    "params.read_fan_out_factor": (2, "params.read_fan_out_factor"),
    "params.read_fan_out_delay_ms": (20, "params.read_fan_out_delay_ms"),
    "params.on_disk_payload": (True, "params.on_disk_payload"),
    "params.payload.memory": ("cold", "params.payload.memory"),
    "quantization_config": ({"scalar": {"type": "int8"}}, "quantization_config"),
    "sparse_vectors": ({"text": {}}, "params.sparse_vectors"),
    "strict_mode_config": ({"enabled": True, "max_query_limit": 5}, "strict_mode_config"),
    "metadata": ({"owner": "search-team"}, "metadata"),
}

# settings objects the walk sets whole (one entry), and those it opens field by field
WHOLE = {"quantization_config", "sparse_vectors", "strict_mode_config", "metadata", "multivector_config",
         "vectors.hnsw_config"}
OPENED = {models.HnswConfigDiff, models.WalConfigDiff, models.OptimizersConfigDiff, models.CollectionParamsDiff,
          models.PayloadStorageParams, models.VectorParams}


def leaves(model, prefix="") -> set[str]:
    out = set()
    for name, f in model.model_fields.items():
        path = prefix + name
        inner = [a for a in typing.get_args(f.annotation) if a in OPENED] or (
            [f.annotation] if f.annotation in OPENED else [])
        if path in WHOLE or name in WHOLE or not inner:
            out.add(path)
        else:
            out |= leaves(inner[0], path + ".")
    return out


def test_the_tables_cover_every_field_of_the_clients_models():
    assert leaves(models.CreateCollection) == set(CREATE)
    # `vectors` of an update is a map of per-vector diffs: one entry sets it
    assert leaves(models.UpdateCollection) - {"vectors"} == set(UPDATE) - {"vectors"}


def at(body: dict, path: str, value) -> dict:
    node = body
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return body


def reported(config: dict, path: str):
    node = config
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return KeyError(path)
        node = node[p]
    return node


def leaf(path: str) -> str:
    return path.split(".")[-1]


def expected(value, report: str):
    # `vectors.hnsw_config` is set as {"m": 8} and reported at its `m`
    return value["m"] if report.endswith("hnsw_config.m") and isinstance(value, dict) else value


@pytest.mark.parametrize("path", sorted(CREATE))
def test_a_create_setting_is_reported_back_or_refused_by_name(base_url, collection_name, path):
    value, report = CREATE[path]
    body = at({"vectors": dict(BASE["vectors"])}, path, value)
    r = requests.put(f"{base_url}/collections/{collection_name}", json=body, timeout=10)
    if r.status_code == 400:
        assert leaf(path) in r.json()["status"]["error"], r.text
        assert requests.get(f"{base_url}/collections/{collection_name}", timeout=10).status_code == 404
        return
    assert r.status_code == 200, r.text
    config = requests.get(f"{base_url}/collections/{collection_name}", timeout=10).json()["result"]["config"]
    assert reported(config, report) == expected(value, report), (path, config)


@pytest.mark.parametrize("path", sorted(UPDATE))
def test_an_update_setting_is_applied_and_reported_or_refused_by_name(base_url, collection_name, path):
    value, report = UPDATE[path]
    assert requests.put(f"{base_url}/collections/{collection_name}", json=BASE, timeout=10).status_code == 200
    before = requests.get(f"{base_url}/collections/{collection_name}", timeout=10).json()["result"]["config"]
    r = requests.patch(f"{base_url}/collections/{collection_name}", json=at({}, path, value), timeout=10)
    after = requests.get(f"{base_url}/collections/{collection_name}", timeout=10).json()["result"]["config"]
    if r.status_code == 400:
        name = "vectors.on_disk" if path == "vectors" else path
        assert name in r.json()["status"]["error"], r.text
        assert after == before, "a refused update changes nothing"
        return
    assert r.status_code == 200, r.text
    assert reported(after, report) == value, (path, after)


def test_an_update_that_sends_the_reported_settings_back_changes_nothing_and_succeeds(base_url, collection_name):
    body = {"vectors": {"size": 4, "distance": "Cosine"}, "hnsw_config": {"m": 0, "payload_m": 16}}
    assert requests.put(f"{base_url}/collections/{collection_name}", json=body, timeout=10).status_code == 200
    config = requests.get(f"{base_url}/collections/{collection_name}", timeout=10).json()["result"]["config"]
    # the seed guide's update of a collection that already has these settings
    for patch in ({"hnsw_config": {"m": 0, "payload_m": 16}},
                  {"hnsw_config": config["hnsw_config"], "optimizers_config": config["optimizer_config"]},
                  {"vectors": {"": {"on_disk": config["params"]["vectors"].get("on_disk", False)}}}, {}):
        r = requests.patch(f"{base_url}/collections/{collection_name}", json=patch, timeout=10)
        assert r.status_code == 200, (patch, r.text)
    r = requests.patch(f"{base_url}/collections/{collection_name}", json={"hnsw_config": {"m": 16, "payload_m": 16}},
                       timeout=10)
    assert r.status_code == 400 and "hnsw_config.m" in r.text and "payload_m" not in r.text, r.text
