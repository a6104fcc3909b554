"""A real Bluesky PDS on 127.0.0.1 for tests: starts `pds/launch.js` (PDS + PLC directory in one
Node process) on a free port with its own data folder, and creates accounts on it.

Used by the fixtures in `tests/pds_fixtures.py`; usable by hand too:

    server = LocalPDS(Path("/tmp/pds")).start()
    did, handle, app_password = server.create_account("alice.test")
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx

REPO = Path(__file__).resolve().parent.parent
PDS_DIR = REPO / "pds"
LAUNCHER = PDS_DIR / "launch.js"
INSTALL_HINT = "cd pds && npm ci --no-audit --no-fund"


class PDSNotInstalled(RuntimeError):
    pass


class Account(NamedTuple):
    did: str
    handle: str
    app_password: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_installed() -> None:
    """Raise PDSNotInstalled, saying how to install, when the Node packages are missing."""
    missing = [
        name
        for name in ("@atproto/pds", "@did-plc/server", "better-sqlite3")
        if not (PDS_DIR / "node_modules" / name / "package.json").is_file()
    ]
    if missing:
        raise PDSNotInstalled(
            f"the local Bluesky PDS is not installed ({', '.join(missing)} missing in "
            f"{PDS_DIR / 'node_modules'}); run `{INSTALL_HINT}` (about 4 minutes)"
        )


@dataclass
class LocalPDS:
    """One launcher process. `env` adds PDS settings, e.g. {"PDS_RATE_LIMITS_ENABLED": "true"}."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 90.0
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "launcher.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LocalPDS:
        """Start (or restart, on the same data folder and port) and wait until healthy."""
        check_installed()
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PDS_", "NARRATIVES_PDS"))}
        env.update(self.env)
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            ["node", str(LAUNCHER), "--port", str(self.port), "--data-dir", str(self.data_dir)],
            cwd=PDS_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the PDS exited at start-up:\n{self.log_text(log_offset)}")
            if "PDS ready" in self.log_text(log_offset) and self._healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"the PDS did not answer within {self.startup_timeout} s:\n{self.log_text(log_offset)}"
        )

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 15 s); the data folder stays."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/xrpc/_health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def xrpc(self, method: str, nsid: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}/xrpc/{nsid}", timeout=30, **kwargs)

    def create_account(self, handle: str) -> Account:
        """Create an account (handle must end in .test) and an app password for it."""
        password = secrets.token_urlsafe(16)
        response = self.xrpc(
            "POST",
            "com.atproto.server.createAccount",
            json={"handle": handle, "email": f"{handle}@example.test", "password": password},
        )
        response.raise_for_status()
        created = response.json()
        auth = {"Authorization": f"Bearer {created['accessJwt']}"}
        response = self.xrpc(
            "POST",
            "com.atproto.server.createAppPassword",
            json={"name": "narratives"},
            headers=auth,
        )
        response.raise_for_status()
        return Account(created["did"], created["handle"], response.json()["password"])

    def list_posts(self, did: str) -> list[dict]:
        """Every app.bsky.feed.post record of `did`, straight from the repo (no auth needed)."""
        records, cursor = [], None
        while True:
            params = {"repo": did, "collection": "app.bsky.feed.post", "limit": 100}
            if cursor:
                params["cursor"] = cursor
            response = self.xrpc("GET", "com.atproto.repo.listRecords", params=params)
            response.raise_for_status()
            page = response.json()
            records.extend(page["records"])
            cursor = page.get("cursor")
            if not cursor or not page["records"]:
                return records

    def get_post(self, did: str, rkey: str) -> dict | None:
        response = self.xrpc(
            "GET",
            "com.atproto.repo.getRecord",
            params={"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey},
        )
        if response.status_code == 400 and response.json().get("error") == "RecordNotFound":
            return None
        response.raise_for_status()
        return response.json()

    def get_blob(self, did: str, cid: str) -> bytes:
        response = self.xrpc("GET", "com.atproto.sync.getBlob", params={"did": did, "cid": cid})
        response.raise_for_status()
        return response.content
