"""Partner feed pulls against a real HTTP server on 127.0.0.1: a time limit for the whole of
each download, and no fetching from private, loopback or link-local addresses, redirects
included."""

from __future__ import annotations

import http.server
import ipaddress
import threading
import time

import pytest

from narratives.channels.rss.fetch import _refused
from narratives.core.errors import PermanentChannelError
from narratives.workflow import feeds

METADATA = "http://169.254.169.254/latest/meta-data/"


class _Partner(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status: int, kind: str, body: bytes = b"", **headers) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path in ("/feed.xml", "/quick.xml"):
            drip = "<item><guid>drip</guid><enclosure url='/drip.mp3' type='audio/mpeg'/></item>"
            body = (
                "<?xml version='1.0'?><rss version='2.0'><channel><title>P</title>"
                + (drip if self.path == "/feed.xml" else "")
                + "<item><guid>meta</guid><enclosure url='/to-metadata' type='audio/mpeg'/></item>"
                f"<item><guid>ok</guid><enclosure url='{base}/ok.mp3' type='audio/mpeg'/></item>"
                "</channel></rss>"
            ).encode()
            self._send(200, "application/rss+xml", body)
        elif self.path == "/drip.mp3":
            self.send_response(200)
            self.send_header("content-type", "audio/mpeg")
            self.send_header("content-length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass  # the client gave up, as it should
        elif self.path in ("/to-metadata", "/feed-to-metadata"):
            self._send(302, "text/plain", location=METADATA)
        elif self.path == "/ok.mp3":
            self._send(200, "audio/mpeg", b"ID3" + b"\x00" * 100)
        else:
            self._send(404, "text/plain", b"no")


@pytest.fixture
def partner():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Partner)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_slow_enclosure_is_given_up_at_the_deadline(ctx, workspace, partner):
    started = time.monotonic()
    report = feeds.pull(ctx, f"{partner}/feed.xml", timeout=1.5, allow_private=True)
    elapsed = time.monotonic() - started
    failed = dict(report.failed)
    assert "took longer than 1.5 s" in failed["drip"]
    assert elapsed < 5, elapsed  # the drip alone would take 20 s
    assert [p.name.endswith("ok.mp3") for p in report.downloaded] == [True]
    assert not [p for p in (workspace.media_dir / "inbox").iterdir() if p.name.startswith(".")]


def test_a_redirect_to_a_link_local_address_is_refused(ctx, partner):
    report = feeds.pull(ctx, f"{partner}/quick.xml", timeout=5, allow_private=True)
    error = dict(report.failed)["meta"]
    assert "refused to fetch" in error and METADATA in error
    with pytest.raises(PermanentChannelError, match=f"refused to fetch {METADATA}"):
        feeds.pull(ctx, f"{partner}/feed-to-metadata", timeout=5, allow_private=True)


def test_private_addresses_are_refused_unless_allowed(ctx, workspace, partner):
    with pytest.raises(PermanentChannelError, match=f"refused to fetch {partner}/feed.xml"):
        feeds.pull(ctx, f"{partner}/feed.xml", timeout=5)
    with pytest.raises(PermanentChannelError, match="only http and https"):
        feeds.pull(ctx, "file:///etc/passwd", timeout=5)
    assert not (workspace.media_dir / "inbox").exists()


@pytest.mark.parametrize(
    "addr, private_ok",
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("fd00::1", True),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
    ],
)
def test_address_policy(addr, private_ok):
    ip = ipaddress.ip_address(addr)
    assert _refused(ip, allow_private=False)
    assert _refused(ip, allow_private=True) is not private_ok


def test_public_addresses_are_fetched():
    for addr in ("93.184.216.34", "2606:2800:220:1::1", "::ffff:93.184.216.34"):
        assert not _refused(ipaddress.ip_address(addr), allow_private=False)


def test_cli_pull_refuses_private_addresses_by_default(ctx, partner):
    from click.testing import CliRunner

    from narratives.cli import cli

    res = CliRunner().invoke(cli, ["feeds", "pull", f"{partner}/feed.xml", "--no-process"])
    assert res.exit_code != 0
    assert "refused to fetch" in res.output and "Traceback" not in res.output
