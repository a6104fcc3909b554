"""`narrative export`, `erase`, `backup`, `restore` and `relink`: a narrator's data and the
workspace's, as files."""

from __future__ import annotations

from pathlib import Path

import click

from narratives.cli._common import (
    actor_option,
    confirm_or_yes,
    console,
    echo_json,
    err_console,
    get_context,
    read_only,
    require_actor,
    resolve_narrative_id,
    shown_name,
)
from narratives.core.workspace import DATABASE_FILE
from narratives.stages.ingest import relink as do_relink
from narratives.store.backup import backup as do_backup
from narratives.store.backup import restore as do_restore
from narratives.workflow.erasure import Erasure
from narratives.workflow.erasure import erase as do_erase
from narratives.workflow.export import export as do_export

__all__ = ["register", "print_erasure"]


@click.command()
@click.argument("narrative_id")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into DIRECTORY even if it is not empty.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@actor_option
def export(narrative_id: str, directory: Path, force: bool, as_json: bool, actor) -> None:
    """Write everything about one narrator into DIRECTORY, with a manifest.json.

    The recording, transcripts, captions, analysis, videos, drafts with every revision,
    deliveries, consent, campaign assignments and the audit rows about them, and a
    manifest.json with each file's SHA-256. The export is recorded in the audit log.
    Exit codes: 0 done, 2 DIRECTORY is not empty (pass --force) or a usage error,
    5 no such narrative, 9 the folder cannot be written.
    """
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    manifest = do_export(ctx, nid, directory, actor=require_actor(actor), force=force)
    if as_json:
        echo_json(manifest)
        return
    total = sum(f["bytes"] for f in manifest["files"])
    console.print(
        f"Exported {nid[:12]}: {len(manifest['files'])} files ({total / 1e6:.1f} MB) to "
        f"{shown_name(str(directory))}; manifest.json lists them with their SHA-256.",
        highlight=False,
    )
    for missing in manifest["missing"]:
        console.print(f"[yellow]not found:[/] {shown_name(missing)}", highlight=False)


def print_erasure(result: Erasure) -> None:
    """What `erase` did, for a person."""
    short = result.narrative_id[:12]
    if result.already:
        left = len(result.removed)
        console.print(f"{short} was already erased; {left} leftover file(s) removed.")
    else:
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.counts.items())
        console.print(f"Erased {short}: {counts or 'nothing was left'}.", highlight=False)
        console.print("The audit log keeps a tombstone (who, when, how many), not the content.")
    for path in result.originals_kept:
        console.print(
            f"  the original is still at {shown_name(path)}: left in place (without "
            "--include-original) and no longer remembered; delete it yourself if it should go",
            highlight=False,
        )


@click.command()
@click.argument("narrative_id")
@click.option(
    "--include-original",
    is_flag=True,
    help="Also delete the original recording at the paths it was found at (when it is the "
    "same file: its hash is checked).",
)
@click.option("--yes", is_flag=True, help="Do not ask first (a script without a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print what was erased as JSON.")
@actor_option
def erase(narrative_id: str, include_original: bool, yes: bool, as_json: bool, actor) -> None:
    """Erase one narrator's data: the recording, every file made from it, its drafts, tags,
    assignments and the personal fields of its consent.

    The audit log keeps a tombstone (who erased it, when, how many of what), never the
    content; `narrative show ID` then says erased, and `process` refuses the same recording
    unless --force. Published posts must be taken down first (`narrative consent withdraw`).
    Asks first on a terminal; a script passes --yes. Exit codes: 0 done, 2 usage (no
    terminal to ask on: pass --yes), 5 no such narrative, 6 deliveries still live,
    9 a file could not be removed (run it again once fixed).
    """
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    who = require_actor(actor)
    if not yes:
        what = " and the original recording" if include_original else ""
        confirm_or_yes(f"Erase everything about {nid[:12]}{what}? This cannot be undone.")
    result = do_erase(ctx, nid, actor=who, include_original=include_original)
    if as_json:
        echo_json(result.to_dict())
    else:
        print_erasure(result)


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--files-only",
    is_flag=True,
    help="Leave the database out (a PostgreSQL database: back it up with pg_dump).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the backup's manifest as JSON.")
@read_only
def backup(dest: Path, files_only: bool, as_json: bool) -> None:
    """Back the workspace up to DEST: a new folder, or a .tar.gz archive.

    The SQLite database is copied with SQLite's online backup (consistent while the
    scheduler, the web app or `process` keep writing), then the settings, campaigns,
    templates and media; backup.json lists every file with its SHA-256. Restore with
    `narrative restore DEST DIR`. Exit codes: 0 done, 2 DEST exists, or the database is
    PostgreSQL (use pg_dump, and --files-only for the rest), 9 it cannot be written.
    """
    manifest = do_backup(get_context(), dest, files_only=files_only)
    if as_json:
        echo_json(manifest)
        return
    total = sum(f["bytes"] for f in manifest["files"])
    rows = sum((manifest["database"] or {}).get("rows", {}).values())
    console.print(
        f"Backed up to {shown_name(manifest['dest'])}: {len(manifest['files'])} files "
        f"({total / 1e6:.1f} MB)"
        + (f", database with {rows} rows" if manifest["database"] else ", no database"),
        highlight=False,
    )


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the backup's manifest as JSON.")
def restore(source: Path, directory: Path, as_json: bool) -> None:
    """Restore the backup SOURCE (folder or .tar.gz) into the new folder DIRECTORY.

    Every file is checked against the backup's checksums before anything is put in place.
    When the backup holds the database but its narratives.toml names another one, the
    restored file is pointed at the restored database ([database] url = "", said on
    output); a NARRATIVES_DATABASE__URL in the environment would still win (a warning says
    so). Use the result with `--workspace DIRECTORY` or NARRATIVES_HOME. Exit codes: 0 done,
    2 DIRECTORY is not empty, or SOURCE is not a backup or is damaged, 9 it cannot be written.
    """
    manifest = do_restore(source, directory)
    for warning in manifest["warnings"]:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if as_json:
        echo_json(manifest)
        return
    console.print(
        f"Restored {len(manifest['files'])} files into {shown_name(manifest['restored_to'])} "
        f"(backup of {manifest['created_at'][:16].replace('T', ' ')} UTC).",
        highlight=False,
    )
    changed = manifest["settings_changed"]
    if changed:
        console.print(
            f'Changed {changed["file"]}: [database] url was {changed["was"]}, now "" '
            f"(the restored {DATABASE_FILE}).",
            highlight=False,
            markup=False,
        )
    console.print(f"Use it with: narrative --workspace {shown_name(manifest['restored_to'])} ...")


@click.command()
@click.argument("narrative_id")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--copy", is_flag=True, help="Also copy it into the workspace (media/recordings/).")
@click.option("--json", "as_json", is_flag=True, help="Print where the recording is as JSON.")
def relink(narrative_id: str, path: Path, copy: bool, as_json: bool) -> None:
    """Tell the workspace where a recording kept by reference is now (it moved).

    PATH must be the same file, byte for byte: its SHA-256 must be the narrative's id.
    Exit codes: 0 done, 2 not the same file (or no such file), 5 no such narrative,
    6 the narrative was erased.
    """
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    found = do_relink(ctx, nid, path, copy=copy)
    if as_json:
        echo_json({"narrative_id": nid, "stored_as": found.stored_as, "paths": found.paths})
        return
    where = found.stored_as or str(path.resolve())
    console.print(f"{nid[:12]}: recording at {shown_name(where)}", highlight=False)


def register(cli: click.Group) -> None:
    for command in (export, erase, backup, restore, relink):
        cli.add_command(command)
