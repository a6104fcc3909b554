"""A whole local Bluesky network with an AppView (pds/appview/launch.js: @atproto/dev-env's
TestNetwork: PLC, PDS, AppView) on 127.0.0.1, on a private PostgreSQL server (Debian's) and a
private Redis server, for tests that need what only an AppView knows: whether a reply was
refused by a threadgate, whether a quote was detached, how many likes a post has.

Loaded from tests/conftest.py (`pytest_plugins`): one network per session, started only when a
test asks for `appview`.
It fails (never skips) when a part is missing, saying how to install it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from tests.postgres_fixtures import _as_owner, _bin, _free_port

ROOT = Path(__file__).resolve().parent.parent
APPVIEW_DIR = ROOT / "pds" / "appview"


class Account(NamedTuple):
    did: str
    handle: str
    app_password: str
    access_jwt: str


class LocalNetwork:
    """The running network: its URLs, accounts, and a way to wait for the AppView."""

    def __init__(self, info: dict) -> None:
        self.pds_url: str = info["pds"]
        self.appview_url: str = info["appview"]
        self.appview_did: str = info["appviewDid"]
        self.control: str = info["control"]

    def xrpc(self, method: str, nsid: str, *, token: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(
            method, f"{self.pds_url}/xrpc/{nsid}", headers=headers, timeout=60, **kwargs
        )

    def create_account(self, prefix: str = "user") -> Account:
        handle = f"{prefix}-{secrets.token_hex(3)}.test"
        password = secrets.token_urlsafe(16)
        r = self.xrpc(
            "POST",
            "com.atproto.server.createAccount",
            json={"handle": handle, "email": f"{handle}@example.test", "password": password},
        )
        r.raise_for_status()
        created = r.json()
        r = self.xrpc(
            "POST",
            "com.atproto.server.createAppPassword",
            token=created["accessJwt"],
            json={"name": "narratives"},
        )
        r.raise_for_status()
        return Account(created["did"], handle, r.json()["password"], created["accessJwt"])

    def create(self, account: Account, collection: str, record: dict) -> dict:
        """A record written by another real account (a reply, like, repost, quote, follow)."""
        record = {"$type": collection, "createdAt": _now(), **record}
        r = self.xrpc(
            "POST",
            "com.atproto.repo.createRecord",
            token=account.access_jwt,
            json={"repo": account.did, "collection": collection, "record": record},
        )
        r.raise_for_status()
        return r.json()

    def appview(self, nsid: str, account: Account | None = None, **params):
        """An AppView query the way clients make it: through the PDS, which proxies app.bsky.*
        to the AppView (signed service auth) for a logged-in account."""
        r = self.xrpc("GET", nsid, token=account.access_jwt if account else None, params=params)
        r.raise_for_status()
        return r.json()

    def process_all(self) -> None:
        """Return once the AppView has indexed everything the PDS has sequenced."""
        httpx.post(f"{self.control}/process-all", timeout=60).raise_for_status()


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_installed() -> None:
    if not (APPVIEW_DIR / "node_modules" / "@atproto" / "dev-env").is_dir():
        pytest.fail(
            "the local AppView's Node packages are missing: run `npm ci` in pds/appview "
            "(scripts/setup does)",
            pytrace=False,
        )
    if shutil.which("redis-server") is None:
        pytest.fail(
            "redis-server is not installed: `apt-get install redis-server` (scripts/setup does)",
            pytrace=False,
        )


@pytest.fixture(scope="session", name="appview")
def appview_fixture():
    _check_installed()
    root = Path(tempfile.mkdtemp(prefix="narratives-appview-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, pg_port, redis_port = root / "data", _free_port(), _free_port()
    subprocess.run(
        _as_owner([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "pg", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    pg_ctl = _as_owner(
        [
            _bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {pg_port} -k {root} -c max_connections=200",
            "-l",
            str(root / "postgres.log"),
            "-w",
            "start",
        ]
    )
    subprocess.run(pg_ctl, check=True, capture_output=True)
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env = {
        **os.environ,
        "DB_POSTGRES_URL": f"postgres://pg@127.0.0.1:{pg_port}/postgres",
        "REDIS_HOST": f"127.0.0.1:{redis_port}",
        "LOG_ENABLED": "false",
    }
    log_path = root / "network.log"
    log = log_path.open("w")
    node = subprocess.Popen(
        ["node", "launch.js"], cwd=APPVIEW_DIR, env=env, stdout=subprocess.PIPE, stderr=log,
        text=True,
    )  # fmt: skip
    info: dict = {}

    def read() -> None:
        for line in node.stdout:
            if line.startswith("APPVIEW READY "):
                info.update(json.loads(line.removeprefix("APPVIEW READY ")))
            log.write(line)
            log.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    while not info and node.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        if not info:
            node.kill()
            pytest.fail(f"the local AppView did not start; see {log_path}", pytrace=False)
        yield LocalNetwork(info)
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()
        redis.terminate()
        redis.wait(10)
        subprocess.run(
            _as_owner([_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        log.close()
        shutil.rmtree(root, ignore_errors=True)
