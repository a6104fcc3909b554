"""`narrative stats pull` and `narrative report`: how the campaigns' stories did on Bluesky."""

from __future__ import annotations

import csv
import sys

import click

from narratives.cli._common import console, echo_json, get_context, read_only
from narratives.core.errors import EXIT_FAILED_ITEMS


@click.group("stats")
def stats_group() -> None:
    """Likes, reposts, replies and quotes of published Bluesky posts, pulled over time."""


@stats_group.command("pull")
@click.option("--campaign", metavar="SLUG", help="Only this campaign's posts.")
@click.option("--json", "as_json", is_flag=True, help="Print what the pull did as JSON.")
def pull_cmd(campaign: str | None, as_json: bool) -> None:
    """Read the current counts of every published post from Bluesky and store them.

    The scheduler does this every hour; run it by hand for a fresh report. Exit 1 if an
    account's posts could not be read (the others are stored).
    """
    from narratives.workflow import engagement

    r = engagement.pull(get_context(), campaign)
    if as_json:
        echo_json(r.to_dict())
    else:
        waited = f", waited {r.waited:.0f} s for rate limits" if r.waited else ""
        console.print(
            f"Stored counts for {r.stored} of {r.posts} posts in {r.seconds:.1f} s "
            f"({r.requests} requests{waited})."
        )
        for e in r.errors:
            console.print(f"[red]not read:[/] {e}")
    if r.errors:
        raise SystemExit(EXIT_FAILED_ITEMS)


@click.command("report")
@click.option("--campaign", metavar="SLUG", required=True, help="The campaign to report on.")
@click.option("--json", "as_json", is_flag=True, help="The whole report as one JSON object.")
@click.option("--csv", "as_csv", is_flag=True, help="One CSV row per published story.")
@read_only
def report_cmd(campaign: str, as_json: bool, as_csv: bool) -> None:
    """How a campaign's published stories did: per story, per week and per tag.

    Counts are those of the latest `narrative stats pull` (or the scheduler's hourly pull).
    """
    from narratives.workflow import engagement

    r = engagement.report(get_context(), campaign)
    if as_json:
        echo_json(r.to_dict())
        return
    if as_csv:
        fields = ["delivery_id", "title", "published_at", "week", "tags", *engagement.COUNTS]
        writer = csv.writer(sys.stdout)
        writer.writerow(fields)
        for s in r.stories:
            row = {**s, "tags": " ".join(s["tags"]), "published_at": s["published_at"].isoformat()}
            writer.writerow([row[f] for f in fields])
        return
    if r.empty:
        click.echo(f"Nothing of {r.name} is published on Bluesky yet: there is nothing to report.")
        return
    if not r.pulled:
        console.print("No counts pulled yet: run `narrative stats pull` first.")
    for title, rows, key in (
        ("Per story", r.stories, "title"),
        ("Per week", r.weeks, "week"),
        ("Per tag", r.tags, "tag"),
    ):
        console.print(f"[bold]{title}[/]")
        for row in rows:
            counts = "  ".join(f"{k} {row[k]}" for k in engagement.COUNTS)
            console.print(f"  {row[key]}: {counts}", highlight=False)


def register(cli: click.Group) -> None:
    cli.add_command(stats_group)
    cli.add_command(report_cmd)
