"""Fixtures for tests against a real local Bluesky PDS (see tests/pds.py).

Loaded from tests/conftest.py with `pytest_plugins = ["tests.pds_fixtures"]`.

- `pds`: one server for the whole session, default settings (100 MB blobs, no rate limits).
  Tests may `stop()` and `start()` it (same data folder and port) but must leave it running.
- `pds_limited`: a second server with rate limits on and a 200 kB blob limit, for fault tests.
- `start_pds(**env)`: start another server with the given PDS settings; stopped at session end.

When the Node packages are missing these fixtures fail (they do not skip): run `npm ci` in pds/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.pds import LocalPDS, PDSNotInstalled, check_installed

LIMITED_BLOB_BYTES = 200_000


@pytest.fixture(scope="session")
def start_pds(tmp_path_factory) -> Iterator[Callable[..., LocalPDS]]:
    servers: list[LocalPDS] = []

    def start(**env: str) -> LocalPDS:
        try:
            check_installed()
        except PDSNotInstalled as exc:
            pytest.fail(str(exc), pytrace=False)
        server = LocalPDS(tmp_path_factory.mktemp("pds"), env=dict(env))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def pds(start_pds) -> LocalPDS:
    return start_pds()


@pytest.fixture(scope="session")
def pds_limited(start_pds) -> LocalPDS:
    return start_pds(PDS_RATE_LIMITS_ENABLED="true", PDS_BLOB_UPLOAD_LIMIT=str(LIMITED_BLOB_BYTES))


@pytest.fixture
def running_pds(pds) -> Iterator[LocalPDS]:
    """The session server, restarted after the test if the test stopped it."""
    yield pds
    if not pds.running:
        pds.start()
