"""The `narrative` command: one group, subcommands and subgroups named after things.

Each command group lives in its own module and registers itself in `_COMMAND_MODULES`.
User errors (`NarrativesError`) print a clean message and exit with the error's code;
anything else is a bug and shows a traceback only with `--debug`.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from narratives.core.errors import NarrativesError

__all__ = ["main", "cli"]

# Offline by design: a model name that is not installed must fail at once, not hang on a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# On small shared machines, spinning OpenMP threads make Whisper 10-20x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_COMMAND_MODULES = [
    "workspace_cmds",
    "process",
    "render",
    "analyse",
    "campaigns",
    "drafts",
    "users",
    "serve",
    "schedule",
    "scheduler",
    "publish",
    "feeds",
    "consent",
    "assign",
]


#: Ctrl-C, as shells report a process ended by SIGINT (128 + 2); not "some inputs failed".
EXIT_INTERRUPTED = 130


class NarrativeGroup(click.Group):
    """Turns NarrativesError into a message and an exit code, and Ctrl-C into 130."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Caught here because Click's own handler would print "Aborted!" and exit 1.
            click.echo("\nInterrupted.", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except NarrativesError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(f"Error: {exc}", fg="red", err=True)
            if exc.hint:
                click.echo(f"Hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=NarrativeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="The workspace to use (made by `narrative init DIR`); beats NARRATIVES_HOME.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="narratives")
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None, debug: bool) -> None:
    """narratives: turn recorded spoken stories into reviewed, scheduled campaign broadcasts.

    The workspace is --workspace DIR, else NARRATIVES_HOME, else the current directory. It
    must be a folder `narrative init DIR` made (it has narratives.toml); every command refuses
    any other with exit 2. Commands that only look (status, show, list ...) change nothing in it.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["workspace"] = workspace


for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(cli)


def main() -> None:
    try:
        cli(prog_name="narrative")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
