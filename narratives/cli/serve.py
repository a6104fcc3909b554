"""`narrative serve`: the editors' review page."""

from __future__ import annotations

import ipaddress

import click

from narratives.cli._common import get_context


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
    if not _is_loopback(host) and not ctx.settings.serve.secure_cookies:
        click.secho(
            f"Warning: listening on {host}; the page holds personal stories. Put it behind "
            "HTTPS and set serve.secure_cookies = true before exposing it beyond this machine.",
            fg="yellow",
            err=True,
        )
    click.echo(f"Review page on http://{host}:{port}/  (Ctrl+C stops it)")
    # proxy_headers=False: every client of a loopback server comes from 127.0.0.1, which uvicorn
    # would otherwise trust to name the "real" client, letting anyone dodge the login limit.
    uvicorn.run(
        create_app(ctx),
        host=host,
        port=port,
        log_level="info",
        server_header=False,
        proxy_headers=False,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(cli: click.Group) -> None:
    cli.add_command(serve)
