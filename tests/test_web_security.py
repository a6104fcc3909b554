"""Sessions end for real, the login limit holds under bursts, templates cannot run code,
and the database is private."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from narratives.cli import cli
from narratives.store import users
from narratives.store.schema import login_failures
from narratives.web import create_app
from narratives.web.security import LoginLimiter
from narratives.workflow import review
from tests.web_client import client_for, csrf, post


def _replay(client: TestClient) -> TestClient:
    return TestClient(client.app, follow_redirects=False, cookies=dict(client.cookies))


def test_a_copied_cookie_stops_working_after_logout(ctx):
    client = client_for(ctx)
    copy = _replay(client)
    assert copy.get("/").status_code == 200
    assert post(client, "/logout").status_code == 303
    assert copy.get("/").status_code == 303  # back to the login page
    assert copy.post("/drafts/1/approve", data={"csrf": "x"}).status_code in (401, 403)


def test_a_new_password_or_disabling_ends_open_sessions(ctx):
    client = client_for(ctx)
    copy = _replay(client)
    users.set_password(ctx, "kai", "another long passphrase", actor="admin")
    assert copy.get("/").status_code == 303 and client.get("/").status_code == 303

    users.add_user(ctx, "fayez", "a long enough passphrase", actor="admin")
    other = TestClient(client.app, follow_redirects=False)
    r = other.post(
        "/login",
        data={"name": "fayez", "password": "a long enough passphrase", "csrf": csrf(other)},
    )
    assert r.status_code == 303 and other.get("/").status_code == 200
    users.disable_user(ctx, "fayez", actor="admin")
    users.enable_user(ctx, "fayez", actor="admin")
    assert other.get("/").status_code == 303  # re-enabling does not revive the old session


def test_limiter_reserves_attempts_so_a_burst_cannot_slip_through(ctx):
    limiter = LoginLimiter(ctx, limit=5)
    results = []
    barrier = threading.Barrier(20)

    def attempt():
        barrier.wait()
        results.append(limiter.acquire("kai", "127.0.0.1"))

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for r in results if r.wait == 0) == 5


def test_limiter_throttles_spraying_from_one_address(ctx):
    """40 different names from one address: the address waits after `address_limit`."""
    limiter = LoginLimiter(ctx, address_limit=20)
    allowed = [limiter.acquire(f"user{i}", "10.0.0.1").wait == 0 for i in range(40)]
    assert allowed.count(True) == 20 and allowed[:20] == [True] * 20
    assert limiter.acquire("someone-else", "10.0.0.2").wait == 0  # other addresses are not


def test_a_name_under_attack_from_many_addresses_is_slowed_never_locked(ctx):
    limiter = LoginLimiter(ctx, limit=5, name_soft=10, delay_step=0.25, max_delay=2.0)
    for i in range(4):  # 5 wrong passwords from each of 4 addresses
        assert all(limiter.acquire("kai", f"10.0.0.{i}").wait == 0 for _ in range(5))
        assert limiter.acquire("kai", f"10.0.0.{i}").wait > 0
    fresh = limiter.acquire("kai", "192.168.1.9")
    assert fresh.wait == 0 and 0 < fresh.delay <= 2.0
    many = [limiter.acquire("kai", f"172.16.0.{i}") for i in range(30)]
    assert all(a.wait == 0 for a in many) and max(a.delay for a in many) == 2.0


def test_the_right_password_gets_in_from_a_fresh_address_during_an_attack(ctx):
    users.add_user(ctx, "kai", "a long enough passphrase", actor="admin")
    limiter = LoginLimiter(ctx, name_soft=10, delay_step=0.05, max_delay=0.3)
    app = create_app(ctx, limiter=limiter)

    def attempt(address: str, password: str) -> int:
        client = TestClient(app, follow_redirects=False, client=(address, 4000))
        data = {"name": "kai", "password": password, "csrf": csrf(client)}
        return client.post("/login", data=data).status_code

    for i in range(4):
        codes = [attempt(f"10.0.0.{i}", "wrong password!") for _ in range(6)]
        assert codes == [400] * 5 + [429]
    assert attempt("10.0.0.0", "a long enough passphrase") == 429  # that pair waits
    assert attempt("192.168.1.9", "a long enough passphrase") == 303


def test_the_limit_survives_a_restart_of_the_app(ctx):
    users.add_user(ctx, "kai", "a long enough passphrase", actor="admin")
    for _ in range(5):
        client = TestClient(create_app(ctx), follow_redirects=False)
        data = {"name": "kai", "password": "wrong password!", "csrf": csrf(client)}
        assert client.post("/login", data=data).status_code == 400
    restarted = TestClient(create_app(ctx), follow_redirects=False)
    data = {"name": "kai", "password": "a long enough passphrase", "csrf": csrf(restarted)}
    assert restarted.post("/login", data=data).status_code == 429


def test_limiter_window_passes_and_success_forgets(ctx):
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    limiter = LoginLimiter(ctx, limit=2, window=60, clock=lambda: now[0])
    assert limiter.acquire("kai", "1.2.3.4").wait == 0
    assert limiter.acquire("KAI", "1.2.3.4").wait == 0
    assert 59 <= limiter.acquire("kai", "1.2.3.4").wait <= 60
    assert limiter.acquire("kai", "5.6.7.8").wait == 0
    now[0] += timedelta(seconds=61)
    assert limiter.acquire("kai", "1.2.3.4").wait == 0
    for _ in range(10):
        assert limiter.acquire("fayez", "1.2.3.4").wait == 0
        limiter.succeeded("fayez", "1.2.3.4")  # successes do not use up the allowance


def test_login_burst_over_http_is_limited(ctx):
    users.add_user(ctx, "kai", "a long enough passphrase", actor="admin")
    client = TestClient(create_app(ctx), follow_redirects=False)
    codes = []
    for _ in range(7):
        token = csrf(client)
        codes.append(
            client.post(
                "/login", data={"name": "kai", "password": "wrong password!", "csrf": token}
            ).status_code
        )
    assert codes[:5] == [400] * 5 and codes[5:] == [429, 429]


def test_workspace_page_templates_are_sandboxed(ctx, workspace):
    override = workspace.templates_dir / "web"
    override.mkdir(parents=True, exist_ok=True)
    (override / "login.html").write_text(
        "{{ cycler.__init__.__globals__.os.popen('echo pwned-$((6*7))').read() }}"
    )
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    r = client.get("/login")
    assert "pwned-42" not in r.text and r.status_code == 500


def test_the_database_is_readable_by_its_owner_only(ctx):
    assert ctx.db is not None  # opens (and creates) the database
    mode = stat.S_IMODE(os.stat(ctx.workspace.database_path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(ctx.workspace.work_dir).st_mode) == 0o700


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_serve_never_trusts_forwarded_headers(monkeypatch, host):
    import uvicorn
    from click.testing import CliRunner

    seen = {}

    def run(server, sockets=None):  # the configured server, not started
        seen.update(proxy_headers=server.config.proxy_headers, host=server.config.host)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    result = CliRunner().invoke(cli, ["serve", "--host", host, "--port", "8999"])
    assert result.exit_code == 0, result.output
    assert seen["proxy_headers"] is False and seen["host"] == host
    # (tests/test_serve_address.py checks the same against a running server, and that a
    # proxy named in serve.trusted_proxies is trusted.)


def test_an_oversized_id_is_not_found_and_errors_keep_the_security_headers(ctx, monkeypatch):
    client = client_for(ctx)
    r = client.get("/drafts/" + "9" * 30)
    assert r.status_code == 404 and "content-security-policy" in r.headers

    # Fault injection (named as such): a bug deep in a page raises. The 500 still carries
    # the CSP and no-store, and says nothing about the error itself.
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(review, "get_draft", broken)
    quiet = TestClient(client.app, raise_server_exceptions=False, cookies=dict(client.cookies))
    r = quiet.get("/drafts/1")
    assert r.status_code == 500 and "secret detail" not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert "default-src" in r.headers["content-security-policy"]


def test_old_attempts_are_pruned_and_long_names_cut(ctx):
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    limiter = LoginLimiter(ctx, address_limit=5000, clock=lambda: now[0])
    for i in range(300):
        limiter.acquire(f"user{i}", "10.0.0.1")
    now[0] += timedelta(seconds=1000)  # all of those are older than the window
    limiter._calls = 100  # the next call prunes
    assert limiter.acquire("x" * 100_000, "10.0.0.1").wait == 0
    with ctx.db.connect() as conn:
        names = conn.execute(sa.select(login_failures.c.name)).scalars().all()
    assert names == ["x" * 64]


def test_a_long_name_is_cut_before_it_is_remembered(ctx):
    client = TestClient(create_app(ctx), follow_redirects=False)
    token = csrf(client)
    r = client.post("/login", data={"name": "x" * 100_000, "password": "p", "csrf": token})
    assert r.status_code == 400
    with ctx.db.connect() as conn:
        names = conn.execute(sa.select(login_failures.c.name)).scalars().all()
    assert names and all(len(n) <= 64 for n in names)
