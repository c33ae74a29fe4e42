"""Fixtures that run a real `tessera serve` process and point the official qdrant-client at it.

- `tessera_args` (module): extra command-line flags for the module's server; a module overrides it
  (it may be parametrized) to run its tests against a differently configured node.
- `tessera_server` (module): a running server (`.url`, `.log_tail()`); SIGTERMed on teardown, killed if
  it does not stop within `STOP_TIMEOUT_S`.
- `base_url` (module): the server's base URL, e.g. http://127.0.0.1:40123. With $TESSERA_URL set,
  the suite runs against that node instead of starting one (the cluster tests use it).
- `small_body_server` (module): a second server started with `--max-body-bytes 65536`.
- `transport` (module): "rest", or "grpc" too in a module that sets `TRANSPORTS = ("rest", "grpc")`:
  its tests then run once over each front door.
- `client` (function): a `QdrantClient(url=..., timeout=...)` over the module's transport
  (`prefer_grpc=True` and the server's gRPC port for "grpc"); its server version check runs to
  completion inside the fixture and any warning it emits fails the test.
- `collection_name` (function): a fresh collection name, deleted on teardown.

The binary comes from $TESSERA_BIN (default target/debug/tessera under the repository root).
On a failed test the tail of the server's log is attached to the report.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from tessera_helpers import make_client

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
MAX_BODY_BYTES_SMALL = 65536


def tessera_bin() -> Path:
    env = os.environ.get("TESSERA_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "tessera"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env() -> dict[str, str]:
    # Settings come from our flags only: drop TESSERA_* variables the caller may have set
    # (TESSERA_CONFIG, TESSERA_MAX_LIMIT, ...), except the log filter.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_") or k == "TESSERA_LOG"}
    env.setdefault("TESSERA_LOG", "info")
    env.setdefault("RUST_BACKTRACE", "1")
    return env


class TesseraServer:
    """One `tessera serve` process on a free local port with its own data directory."""

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ()):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "tessera.log"
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.grpc_port: int | None = None
        self.url = ""
        # a node serving TLS (--tls-cert from `tessera cert node`): https, verified against the
        # CA written next to the certificate
        args = list(self.extra_args)
        cert = args[args.index("--tls-cert") + 1] if "--tls-cert" in args else None
        self.scheme = "https" if cert else "http"
        self.verify: str | bool = str(Path(cert).parent / "ca.pem") if cert else True

    def start(self) -> None:
        binary = tessera_bin()
        if not binary.exists():
            pytest.fail(f"tessera binary not found at {binary}; run `cargo build -p tessera-node` or set TESSERA_BIN")
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.port = _free_port()
            self.grpc_port = _free_port()
            self.url = f"{self.scheme}://127.0.0.1:{self.port}"
            cmd = [
                str(binary), "serve",
                "--http-addr", f"127.0.0.1:{self.port}",
                "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
                "--data-dir", str(self.data_dir),
                *self.extra_args,
            ]
            with open(self.log_path, "ab") as log:
                log.write(f"\n$ {' '.join(cmd)}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=_server_env(), cwd=self.workdir,
                )
            if self._wait_ready():
                return
            last_error = self.log_tail()
            self._terminate()
            if "in use" not in last_error.lower():
                break
        pytest.fail(f"tessera did not become ready at {self.url}/readyz:\n{last_error}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                if requests.get(f"{self.url}/readyz", timeout=1, verify=self.verify).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.02)
        return False

    def _terminate(self) -> int | None:
        """SIGTERM, wait, then SIGKILL. Returns the exit code, or None if it had to be killed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None

    def stop(self) -> None:
        was_running = self.proc is not None and self.proc.poll() is None
        started = time.monotonic()
        rc = self._terminate()
        took = time.monotonic() - started
        if not was_running:
            pytest.fail(f"tessera exited before teardown (code {rc}):\n{self.log_tail()}")
        if rc is None:
            pytest.fail(f"tessera ignored SIGTERM for {STOP_TIMEOUT_S}s and was killed:\n{self.log_tail()}")
        if rc != 0:
            pytest.fail(f"tessera exited with code {rc} on SIGTERM (after {took:.1f}s):\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        return "\n".join(text.splitlines()[-lines:])


def _run_server(tmp_path_factory, name: str, args: tuple[str, ...]):
    server = TesseraServer(tmp_path_factory.mktemp(name), args)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tessera_args() -> tuple[str, ...]:
    """Extra flags for the module's server; override in a module to change them."""
    return ()


class ExternalServer:
    """A node someone else runs (the cluster tests point the suite at each node of a swarm)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        port = os.environ.get("TESSERA_GRPC_PORT")
        self.grpc_port = int(port) if port else None

    def log_tail(self) -> str:
        return "(external server: see the harness's logs)"


@pytest.fixture(scope="module")
def tessera_server(tmp_path_factory, tessera_args):
    external = os.environ.get("TESSERA_URL")
    if external:
        yield ExternalServer(external)
        return
    yield from _run_server(tmp_path_factory, "tessera", tuple(tessera_args))


@pytest.fixture(scope="module")
def base_url(tessera_server) -> str:
    return tessera_server.url


@pytest.fixture(scope="module")
def small_body_server(tmp_path_factory):
    yield from _run_server(tmp_path_factory, "tessera-small-body", ("--max-body-bytes", str(MAX_BODY_BYTES_SMALL)))


def pytest_generate_tests(metafunc):
    if "transport" in metafunc.fixturenames:
        transports = getattr(metafunc.module, "TRANSPORTS", ("rest",))
        # an external node's gRPC port is known only when given
        if os.environ.get("TESSERA_URL") and not os.environ.get("TESSERA_GRPC_PORT"):
            transports = ("rest",)
        metafunc.parametrize("transport", transports, scope="module")


@pytest.fixture(scope="module")
def transport() -> str:
    return "rest"


@pytest.fixture(scope="module")
def grpc_port(tessera_server, transport):
    """The server's gRPC port when the module's transport is gRPC, else None (REST)."""
    return tessera_server.grpc_port if transport == "grpc" else None


@pytest.fixture
def client(base_url, grpc_port):
    c = make_client(base_url, grpc_port)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def collection_name(request, base_url):
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)[:40] + "_" + uuid.uuid4().hex[:8]
    yield name
    try:
        requests.delete(f"{base_url}/collections/{name}", timeout=10)
    except requests.RequestException:
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    funcargs = getattr(item, "funcargs", {}) or {}
    for value in funcargs.values():
        if isinstance(value, (TesseraServer, ExternalServer)):
            rep.sections.append((f"tessera log ({value.url})", value.log_tail()))
