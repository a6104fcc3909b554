"""`narrative serve --port` moves the feeds' links with the server (issue 16, item 7), unless
serve.base_url names a public address; the scheduler's later rebuilds agree with it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa

from narratives.store.context import Context
from narratives.workflow.feeds import feeds_base_url, write_all_feeds

SLUG = "emotional-equity"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(workspace, port: int) -> subprocess.Popen:
    env = {**os.environ, "NARRATIVES_HOME": str(workspace.root)}
    cmd = [sys.executable, "-m", "narratives", "serve", "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _get(url: str, proc: subprocess.Popen) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(proc.stdout.read().decode()) from None
            time.sleep(0.2)


def test_serve_port_moves_the_feed_links(workspace):
    port = _free_port()
    proc = _serve(workspace, port)
    try:
        feed = _get(f"http://127.0.0.1:{port}/feeds/{SLUG}.xml", proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert feed.status_code == 200
    assert f"http://127.0.0.1:{port}/feeds/{SLUG}.xml" in feed.text
    assert "127.0.0.1:8765" not in feed.text
    # A rebuild in another process (the scheduler's) keeps the served address.
    ctx = Context(workspace)
    assert feeds_base_url(ctx) == f"http://127.0.0.1:{port}"
    write_all_feeds(ctx)
    rebuilt = (workspace.feeds_dir / f"{SLUG}.xml").read_text()
    assert f"http://127.0.0.1:{port}/feeds/{SLUG}.xml" in rebuilt


def test_an_explicit_base_url_wins(workspace):
    text = workspace.settings_path.read_text()
    workspace.settings_path.write_text(
        text.replace("[serve]", '[serve]\nbase_url = "https://stories.example.org"'), "utf-8"
    )
    port = _free_port()
    proc = _serve(workspace, port)
    try:
        feed = _get(f"http://127.0.0.1:{port}/feeds/{SLUG}.atom", proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "https://stories.example.org/feeds/" in feed.text
    assert f"127.0.0.1:{port}" not in feed.text


def test_a_workspace_that_spelled_out_the_old_default_follows_the_port(workspace, monkeypatch):
    text = workspace.settings_path.read_text()
    workspace.settings_path.write_text(
        text.replace("[serve]", '[serve]\nbase_url = "http://127.0.0.1:8765"'), "utf-8"
    )
    monkeypatch.setenv("NARRATIVES_SERVE__PORT", "8999")
    assert feeds_base_url(Context(workspace)) == "http://127.0.0.1:8999"


def test_a_port_in_use_leaves_the_feed_links_alone(workspace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve(workspace, port)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, out.decode()
    assert not (workspace.state_dir / "served-at").exists()


@pytest.mark.parametrize(
    ("host", "shown"), [("::1", "[::1]"), ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", None)]
)
def test_the_address_as_a_link_names_it(host, shown):
    from narratives.cli.serve import _url_host

    if shown is None:  # a wildcard address is no place to link to: this machine's name
        assert _url_host(host) not in ("0.0.0.0", "") and ":" not in _url_host(host)
    else:
        assert _url_host(host) == shown


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.mark.parametrize("trusted", [True, False])
def test_the_limiter_sees_the_real_client_only_behind_a_trusted_proxy(
    workspace, monkeypatch, trusted
):
    if trusted:
        monkeypatch.setenv("NARRATIVES_SERVE__TRUSTED_PROXIES", '["127.0.0.1"]')
    port = _free_port()
    proc = _serve(workspace, port)
    try:
        _get(f"http://127.0.0.1:{port}/login", proc)  # up and listening
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        token = _CSRF.search(client.get("/login").text).group(1)
        client.post(
            "/login",
            data={"name": "ada", "password": "wrong one", "csrf": token},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with sa.create_engine(f"sqlite:///{workspace.database_path}").connect() as conn:
        addresses = [r[0] for r in conn.exec_driver_sql("SELECT address FROM login_failures")]
    assert addresses == (["203.0.113.9"] if trusted else ["127.0.0.1"])
