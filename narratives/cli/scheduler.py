"""`narrative scheduler run`: the long-lived publishing service."""

from __future__ import annotations

import logging

import click

from narratives.cli import logs
from narratives.cli._common import get_context


@click.group("scheduler")
def scheduler_group() -> None:
    """The service that publishes scheduled deliveries on time."""


@scheduler_group.command("run")
@click.option(
    "--sync-interval",
    type=click.FloatRange(min=0.5),
    default=10.0,
    show_default=True,
    help="Seconds between looks for deliveries changed by other processes.",
)
@click.option("--workers", type=click.IntRange(1, 32), default=4, show_default=True)
@click.option(
    "--stats-interval",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="Seconds between pulls of likes, reposts, replies and quotes (0: never).",
)
def run_cmd(sync_interval, workers, stats_interval):
    """Publish due deliveries until stopped (SIGTERM/SIGINT finish the post in flight).

    On start it reconciles: every due delivery runs once, deliveries older than the campaign's
    slots.missed_after_hours are marked missed, and a delivery a crash left mid-publish is
    retried safely. Run one per workspace (a lock file refuses a second).
    """
    # A service logs what it does (info) unless told otherwise with -v/-q.
    verbose, quiet = click.get_current_context().find_root().obj.get("verbosity", (0, 0))
    logs.configure(logs.level_for(verbose, quiet, base=logging.INFO))
    # APScheduler and the publishers load only when the scheduler runs, not for `--help`.
    from narratives.workflow.scheduler import SchedulerService

    SchedulerService(
        get_context(),
        sync_interval=sync_interval,
        workers=workers,
        stats_interval=stats_interval or None,
    ).run()


def register(cli: click.Group) -> None:
    cli.add_command(scheduler_group)
