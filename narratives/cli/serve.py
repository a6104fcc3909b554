"""`narrative serve`: the editors' review page."""

from __future__ import annotations

import ipaddress
import socket

import click

from narratives.cli._common import get_context
from narratives.workflow.feeds import record_served_address


@click.command()
@click.option("--host", default=None, help="Address to listen on [settings: serve.host].")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="[settings: serve.port]")
def serve(host: str | None, port: int | None) -> None:
    """Run the review page (on 127.0.0.1 unless told otherwise)."""
    # Imported here, not at the top: uvicorn, Starlette and the templates are only needed to
    # serve, and `narrative --help` should not load them.
    import uvicorn

    from narratives.web import create_app

    ctx = get_context()
    host = host or ctx.settings.serve.host
    port = port or ctx.settings.serve.port
    # The feeds' links follow the address served, unless serve.base_url names a public one.
    ctx.settings.serve = ctx.settings.serve.model_copy(update={"host": host, "port": port})
    if not _is_loopback(host) and not ctx.settings.serve.secure_cookies:
        click.secho(
            f"Warning: listening on {host}; the page holds personal stories. Put it behind "
            "HTTPS and set serve.secure_cookies = true before exposing it beyond this machine.",
            fg="yellow",
            err=True,
        )
    ctx.workspace.ensure()
    url = f"http://{_url_host(host)}:{port}"
    trusted = ctx.settings.serve.trusted_proxies
    config = uvicorn.Config(
        create_app(ctx),
        host=host,
        port=port,
        log_level="info",
        server_header=False,
        # Off unless serve.trusted_proxies names the proxy: every client of a loopback server
        # comes from 127.0.0.1, and trusting any sender's X-Forwarded-For would let anyone
        # dodge the login limiter by naming another address.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=",".join(trusted) if trusted else None,
    )
    click.echo(f"Review page on {url}/  (Ctrl+C stops it)")
    _run_until_stopped(config, on_listening=lambda: record_served_address(ctx, url))


def _run_until_stopped(config, on_listening) -> None:
    """uvicorn's server, telling us once it listens: only then do the feeds' links move to
    its address (a port already in use must not leave them pointing at a dead one)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                on_listening()

    Server(config).run()


def _url_host(host: str) -> str:
    """`host` as a URL names it: IPv6 in brackets; a wildcard address by this machine's name."""
    if host in ("0.0.0.0", "::", ""):
        return socket.getfqdn()
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(cli: click.Group) -> None:
    cli.add_command(serve)
