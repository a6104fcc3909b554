"""`narrative feeds ...`: rebuild, export and pull RSS/Atom feeds."""

from __future__ import annotations

from pathlib import Path

import click

from narratives.cli._common import console, echo_json, get_context, read_only
from narratives.core.errors import EXIT_FAILED_ITEMS
from narratives.stages.pipeline import process_paths
from narratives.workflow import feeds


@click.group("feeds")
def feeds_group() -> None:
    """The campaigns' RSS/Atom feeds, and partner feeds pulled in as recordings."""


@feeds_group.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def rebuild_cmd(as_json):
    """Rewrite media/feeds/<slug>.xml and .atom for every campaign with an RSS channel."""
    for f in feeds.write_all_feeds(get_context()):
        if as_json:
            echo_json({"rss": str(f.rss), "atom": str(f.atom), "items": f.items})
        else:
            console.print(f"{f.rss} and {f.atom}: {f.items} items")


@feeds_group.command("build")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--base-url",
    metavar="URL",
    help="Where DIRECTORY will be served (default: serve.base_url, else this server's address).",
)
@click.option("--campaign", "campaigns", multiple=True, metavar="SLUG", help="Only these.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON lines.")
@read_only
def build_cmd(directory, base_url, campaigns, as_json):
    """Export the feeds and the media they enclose to DIRECTORY for static hosting.

    Writes DIRECTORY/feeds/<slug>.xml, <slug>.atom and feeds/media/*, every link under
    --base-url.
    """
    ctx = get_context()
    written = feeds.build_static(
        ctx,
        directory,
        base_url=base_url or feeds.feeds_base_url(ctx),
        campaigns=list(campaigns) or None,
    )
    for p in written:
        echo_json({"path": str(p)}) if as_json else console.print(str(p))


@feeds_group.command("pull")
@click.argument("url")
@click.option("--no-process", is_flag=True, help="Only download; do not run the pipeline.")
@click.option("--max-mb", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds allowed for the feed and for each file, in total.",
)
@click.option(
    "--allow-private",
    is_flag=True,
    help="Also fetch from private and loopback addresses (a partner on this network).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def pull_cmd(url, no_process, max_mb, timeout, allow_private, as_json):
    """Download new audio/video enclosures of a partner feed into media/inbox/ and process them.

    Items pulled before are skipped; an enclosure that fails (404, not audio/video, too large,
    too slow) is reported and retried next time. Exit status 1 if any item failed. Addresses
    that are private, loopback, link-local or reserved are refused, redirects included.
    """
    # No --campaign: the analysis decides which campaigns a pulled story is for, as it does
    # for any recording.
    ctx = get_context()
    report = feeds.pull(
        ctx,
        url,
        timeout=timeout,
        max_bytes=max_mb * 1024 * 1024,
        allow_private=allow_private,
    )
    processed = []
    if report.downloaded and not no_process:
        processed = [
            r.to_json(with_transcript=False) for r in process_paths(ctx, report.downloaded)
        ]
    if as_json:
        echo_json({**report.to_dict(), "processed": processed})
    else:
        console.print(
            f"{report.title or url}: {len(report.downloaded)} new, "
            f"{len(report.skipped)} already pulled, {len(report.failed)} failed"
        )
        for p in report.downloaded:
            console.print(f"  + {p}")
        for guid, err in report.failed:
            console.print(f"  [red]![/red] {guid}: {err}")
        for r in processed:
            console.print(f"  processed {r['path']}: {r['status']}")
    if report.failed or any(r["status"] == "failed" for r in processed):
        raise SystemExit(EXIT_FAILED_ITEMS)


def register(cli: click.Group) -> None:
    cli.add_command(feeds_group)
