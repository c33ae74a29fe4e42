"""TLS on the client-facing listeners: with a certificate configured (`--tls-cert`/`--tls-key`, here
made with `tessera cert`), REST is served over https and gRPC over TLS on their usual ports, the
official client works over both, and a plaintext client is not served."""

from __future__ import annotations

import os
import ssl
import subprocess

import pytest
import requests
from qdrant_client import QdrantClient, models

from conftest import tessera_bin
from tessera_helpers import CLIENT_TIMEOUT_S


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    run = lambda *a: subprocess.run([str(tessera_bin()), "cert", *a], check=True, capture_output=True)  # noqa: E731
    run("ca", "--out", str(root / "ca"))
    run("node", "--ca-dir", str(root / "ca"), "--out", str(root / "api"), "--name", "api", "--host", "127.0.0.1")
    return root / "api"


@pytest.fixture(scope="module")
def tessera_args(certs):
    return ("--tls-cert", str(certs / "node.pem"), "--tls-key", str(certs / "node.key"))


def test_rest_is_served_over_https_only(tessera_server, certs):
    ca = str(certs / "ca.pem")
    assert tessera_server.url.startswith("https://")
    banner = requests.get(tessera_server.url + "/", verify=ca, timeout=5).json()
    assert banner["version"]
    # the same port does not answer plaintext HTTP
    with pytest.raises(requests.ConnectionError):
        requests.get(tessera_server.url.replace("https://", "http://") + "/", timeout=5)
    # qdrant-client's version check does not use `verify` (it fails on any private CA, Qdrant's
    # too); the calls below do
    client = QdrantClient(
        url=tessera_server.url,
        verify=ssl.create_default_context(cafile=ca),
        check_compatibility=False,
        timeout=CLIENT_TIMEOUT_S,
    )
    try:
        client.create_collection("tls_rest", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
        client.upsert("tls_rest", points=[models.PointStruct(id=1, vector=[1.0, 0.5])], wait=True)
        assert [p.id for p in client.query_points("tls_rest", query=[1.0, 0.0]).points] == [1]
        assert client.delete_collection("tls_rest") is True
    finally:
        client.close()


def test_grpc_is_served_over_tls_only(tessera_server, certs):
    code = f"""
import os, sys
os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = {str(certs / "ca.pem")!r}
import grpc
from qdrant_client import QdrantClient, models
url, port = {tessera_server.url!r}, {tessera_server.grpc_port}
# the version check of qdrant-client reads REST without the CA; the calls below verify it
c = QdrantClient(url=url, grpc_port=port, prefer_grpc=True, https=True, check_compatibility=False, timeout=10)
c.create_collection("tls_grpc", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
c.upsert("tls_grpc", points=[models.PointStruct(id=7, vector=[0.5, 1.0])], wait=True)
assert [p.id for p in c.query_points("tls_grpc", query=[0.0, 1.0]).points] == [7]
assert c.delete_collection("tls_grpc") is True
plain = QdrantClient(host="127.0.0.1", port=1, grpc_port=port, prefer_grpc=True, https=False, check_compatibility=False, timeout=3)
try:
    plain.get_collections()
    sys.exit("a plaintext gRPC client was served")
except grpc.RpcError as e:
    assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), e
print("ok")
"""
    # its own process: gRPC reads the root certificates of TLS channels once per process
    env = {k: v for k, v in os.environ.items() if k != "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"}
    done = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
