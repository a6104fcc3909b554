"""The `narrative` command: one group, subcommands and subgroups named after things.

Each command group lives in its own module, listed in `_COMMANDS` and imported when it runs.
User errors (`NarrativesError`) print a clean message and exit with the error's code;
anything else is a bug and shows a traceback only with `--debug`.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from narratives.cli import logs
from narratives.core.errors import NarrativesError

__all__ = ["main", "cli"]

# Offline by design: a model name that is not installed must fail at once, not hang on a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# On small shared machines, spinning OpenMP threads make Whisper 10-20x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Every command: the module that defines it and the first paragraph of its help, so that
#: `narrative --help` lists them without importing any (tests/test_cli_startup.py checks that
#: these lines match the commands' own help, and that every command is here).
_COMMANDS: dict[str, tuple[str, str]] = {
    "accounts": ("accounts", "Bluesky accounts: check, log out, retry credential failures."),
    "analyse": (
        "analyse",
        "Summarise, title, tag and flag transcribed narratives (writes analysis.json).",
    ),
    "assign": ("assign", "Assign story ID to a campaign, then make its video and drafts."),
    "campaigns": ("campaigns", "Campaigns: who runs them, their tags, channels and posting slots."),
    "consent": (
        "consent",
        "The narrator's consent: who agreed, to which channels, named or anonymous, until when.",
    ),
    "drafts": ("drafts", "Drafts of posts and feed items, and their review."),
    "feeds": ("feeds", "The campaigns' RSS/Atom feeds, and partner feeds pulled in as recordings."),
    "init": (
        "workspace_cmds",
        "Create a workspace in DIRECTORY from the shipped campaigns, templates and settings.",
    ),
    "process": (
        "process",
        "Run every stage on the recordings in PATHS (files or folders, recursive).",
    ),
    "publish": ("publish", "Publish approved draft DRAFT_ID now, exactly as the scheduler would."),
    "replies": (
        "replies",
        "Replies and quote posts of published stories; hide a reply or detach a quote.",
    ),
    "report": (
        "engagement",
        "How a campaign's published stories did: per story, per week and per tag.",
    ),
    "render": (
        "render",
        "Render captioned audiogram videos (MP4, WebVTT, PNG thumbnail) for narratives.",
    ),
    "schedule": (
        "schedule",
        "Schedule approved drafts: at a time, in the next free slot, or fill all free slots.",
    ),
    "scheduler": ("scheduler", "The service that publishes scheduled deliveries on time."),
    "serve": ("serve", "Run the review page (on 127.0.0.1 unless told otherwise)."),
    "show": (
        "workspace_cmds",
        "Show one narrative: its recordings, stages, transcript and analysis.",
    ),
    "stats": (
        "engagement",
        "Likes, reposts, replies and quotes of published Bluesky posts, pulled over time.",
    ),
    "status": (
        "workspace_cmds",
        "List narratives and the state of each stage (done, failed, pending).",
    ),
    "tag": (
        "analyse",
        "Correct a campaign tag of story ID: the story becomes an example for (or "
        "against) the tag, so later analyses learn from it, and the story is re-scored "
        "now (audited).",
    ),
    "transcribe": (
        "process",
        "Transcribe the recordings in PATHS into timed transcripts and captions.",
    ),
    "transcript": ("transcript", "Read and correct a story's transcript."),
    "unassign": (
        "assign",
        "Say story ID is not for a campaign (its tags no longer send it there either).",
    ),
    "users": ("users", "Editors and admins of the review page."),
    "backup": ("data", "Back the workspace up to DEST: a new folder, or a .tar.gz archive."),
    "erase": (
        "data",
        "Erase one narrator's data: the recording, every file made from it, its drafts, tags, "
        "assignments and the personal fields of its consent.",
    ),
    "export": ("data", "Write everything about one narrator into DIRECTORY, with a manifest.json."),
    "relink": (
        "data",
        "Tell the workspace where a recording kept by reference is now (it moved).",
    ),
    "restore": (
        "data",
        "Restore the backup SOURCE (folder or .tar.gz) into the new folder DIRECTORY.",
    ),
}

#: Modules whose commands are not in `_COMMANDS` yet: imported up front (slower `--help`).
_COMMAND_MODULES: list[str] = []


#: Ctrl-C, as shells report a process ended by SIGINT (128 + 2); not "some inputs failed".
EXIT_INTERRUPTED = 130


class NarrativeGroup(click.Group):
    """Loads each command's module when that command runs (`--help` imports none of them);
    turns NarrativesError into a message and an exit code, and Ctrl-C into 130."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            _register(_COMMANDS[cmd_name][0])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:
                rows.append((name, _short_help(name, limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

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
@click.option("-v", "--verbose", count=True, help="Log more: -v progress notes, -vv everything.")
@click.option("-q", "--quiet", count=True, help="Log errors only.")
@click.version_option(package_name="narratives")
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None, debug: bool, verbose: int, quiet: int) -> None:
    """narratives: turn recorded spoken stories into reviewed, scheduled campaign broadcasts.

    The workspace is --workspace DIR, else NARRATIVES_HOME, else the current directory. It
    must be a folder `narrative init DIR` made (it has narratives.toml); every command refuses
    any other with exit 2. Commands that only look (status, show, list ...) change nothing in it.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["workspace"] = workspace
    ctx.obj["verbosity"] = (verbose, quiet)
    logs.configure(logs.level_for(verbose, quiet))


def _short_help(name: str, limit: int) -> str:
    """A command's line in `--help` from the table, shortened as Click shortens its own."""
    return click.Command(name, help=_COMMANDS[name][1]).get_short_help_str(limit)


def _register(module: str) -> None:
    importlib.import_module(f"{__name__}.{module}").register(cli)


for _name in _COMMAND_MODULES:
    _register(_name)


def main() -> None:
    try:
        cli(prog_name="narrative")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
