"""`narrative backup DEST` and `narrative restore SRC DIR`: the whole workspace, consistent.

The SQLite database is copied with SQLite's online backup (`sqlite3.Connection.backup`, one
step), which reads one consistent snapshot while the scheduler, the web app or a `process` go
on writing; the copy is checked (`PRAGMA integrity_check`) before it counts. Then the settings,
campaigns, templates and `media/` (recordings, generated files, feeds, brand) are copied, and
`backup.json` lists every file with its size and SHA-256. Files are copied after the snapshot,
so a file made in between may be there without its row (harmless); temporary files a kill left
(`.*.part`, `.tmp-*`) are not copied, and neither is `.narratives/` (login sessions: secrets
that are made again).

DEST ending in `.tar.gz` or `.tgz` becomes one archive (written to a temporary name, then
renamed); anything else a new folder. `restore` unpacks either into a new folder, checks every
checksum against `backup.json`, and only then moves it into place: the result is a workspace
(`--workspace DIR` or NARRATIVES_HOME) whose database and files are the backup's. When the
backup holds the database snapshot but its settings name another database (`[database] url`, a
SQLite file outside the workspace), the restored `narratives.toml` is pointed at the snapshot
(`url = ""`, one line changed, the old value left in a comment); a NARRATIVES_DATABASE__URL in
the environment would still win, so restore warns about it.

A PostgreSQL database is not copied here: `pg_dump` does that (the error says so), and
`files_only` backs up everything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from narratives.core.clock import utcnow
from narratives.core.config import env_name
from narratives.core.errors import ConfigError, EnvironmentProblem, UsageError
from narratives.core.files import named_os_errors
from narratives.core.workspace import DATABASE_FILE, SETTINGS_FILE
from narratives.store.context import Context
from narratives.store.db import database_url
from narratives.store.db_errors import shown_url, sqlite_file

__all__ = ["backup", "restore", "BACKUP_MANIFEST"]

BACKUP_MANIFEST = "backup.json"
#: What a backup holds besides the database, relative to the workspace root.
_PARTS = (SETTINGS_FILE, "campaigns", "templates", "media")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def _is_archive(path: Path) -> bool:
    return path.name.endswith(_ARCHIVE_SUFFIXES)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _temporary(name: str) -> bool:
    """Leftovers of a write a kill interrupted: never part of a backup."""
    return name.startswith(".") and (name.endswith((".part", ".tmp")) or name.startswith(".tmp-"))


def _files(root: Path, part: str) -> Iterator[Path]:
    top = root / part
    if top.is_file():
        yield top
        return
    if not top.is_dir():
        return
    for folder, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not _temporary(d))
        for name in sorted(names):
            path = Path(folder) / name
            if not _temporary(name) and path.is_file() and not path.is_symlink():
                yield path


def _sqlite_snapshot(source: Path, target: Path) -> dict[str, int]:
    """Copy the database at `source` into `target` with SQLite's online backup; returns the
    row count of each table of the copy, after checking its integrity. SQLite's own failures
    (an unreadable or damaged file, a lock held too long) are named errors."""
    try:
        return _snapshot(source, target)
    except sqlite3.Error as exc:
        raise EnvironmentProblem(
            f"cannot back up the database {source}: {exc}",
            hint="check that this user may read it and that it is not damaged "
            "(`sqlite3 FILE 'PRAGMA integrity_check'`), then run the backup again",
        ) from exc


def _snapshot(source: Path, target: Path) -> dict[str, int]:
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            # One step (pages=-1): one read transaction, so one consistent snapshot even in WAL
            # mode while other processes write.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise EnvironmentProblem(
                    f"the backup of {source} failed its integrity check: {ok}",
                    hint="run the backup again; if it repeats, check the disk",
                )
            tables = [
                r[0]
                for r in dst.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            return {t: dst.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        finally:
            dst.close()
            os.chmod(target, 0o600)  # stories, consents, password hashes: the owner's only
    finally:
        src.close()


def _sqlite_source(ctx: Context) -> Path:
    url = sa.engine.make_url(database_url(ctx.workspace, ctx.settings))
    name = sqlite_file(url)
    if name is None:
        raise ConfigError(
            f"`narrative backup` copies SQLite databases; this workspace's database is "
            f"{shown_url(url)}",
            hint="back the database up with pg_dump (e.g. `pg_dump -Fc -f narratives.dump "
            "DBNAME`), and the rest of the workspace with `narrative backup DEST --files-only`",
        )
    return Path(name)


def _check_target(path: Path, what: str) -> None:
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise UsageError(
            f"{path} already exists{' and is not empty' if path.is_dir() else ''}",
            hint=f"name a new {what}",
        )


def _package_version() -> str:
    try:
        return version("narratives")
    except PackageNotFoundError:  # a checkout run without installing
        return "unknown"


def _fill(ctx: Context, folder: Path, files_only: bool) -> dict[str, Any]:
    """Write the backup's contents into `folder`; returns its manifest."""
    root = ctx.workspace.root
    tables: dict[str, int] | None = None
    if not files_only:
        source = _sqlite_source(ctx)
        if source.is_file():
            tables = _sqlite_snapshot(source, folder / DATABASE_FILE)
    for part in _PARTS:
        for path in _files(root, part):
            target = folder / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    manifest = {
        "created_at": utcnow().isoformat(),
        "workspace": str(root),
        "narratives_version": _package_version(),
        "database": None if tables is None else {"file": DATABASE_FILE, "rows": tables},
        "files": [
            {
                "path": p.relative_to(folder).as_posix(),
                "bytes": p.stat().st_size,
                "sha256": _sha256(p),
            }
            for p in files
        ],
    }
    (folder / BACKUP_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def backup(ctx: Context, dest: Path, *, files_only: bool = False) -> dict[str, Any]:
    """Back the workspace up into `dest` (a new folder, or a `.tar.gz`); returns the manifest
    with `dest` added. See the module's docstring."""
    dest = dest.expanduser().resolve()
    if ctx.workspace.contains(dest):
        raise UsageError(f"{dest} is inside the workspace", hint="back up to another folder")
    archive = _is_archive(dest)
    _check_target(dest, "file" if archive else "folder")
    with named_os_errors(dest, "write the backup to"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".backup-", dir=dest.parent))
        try:
            os.chmod(staging, 0o700)
            manifest = _fill(ctx, staging, files_only)
            if archive:
                fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
                os.close(fd)
                try:
                    with tarfile.open(tmp, "w:gz") as tar:
                        for child in sorted(staging.iterdir()):
                            tar.add(child, arcname=child.name)
                    os.chmod(tmp, 0o600)
                    os.replace(tmp, dest)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            else:
                if dest.is_dir():
                    dest.rmdir()  # empty (checked): the staged folder takes its place
                staging.rename(dest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return {**manifest, "dest": str(dest)}


def _verify(folder: Path, source: Path) -> dict[str, Any]:
    manifest_path = folder / BACKUP_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{source} is not a narratives backup (no readable {BACKUP_MANIFEST})",
            hint="name a folder or .tar.gz that `narrative backup` made",
        ) from exc
    bad = []
    for entry in manifest.get("files", []):
        path = folder / entry["path"]
        if not path.is_file():
            bad.append(f"{entry['path']} is missing")
        elif path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            bad.append(f"{entry['path']} differs from its checksum")
    if bad:
        shown = "; ".join(bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        raise UsageError(
            f"{source}: the backup is damaged: {shown}",
            hint="restore from another backup; nothing was restored",
        )
    return manifest


def restore(source: Path, target: Path) -> dict[str, Any]:
    """Unpack the backup at `source` (folder or .tar.gz) into the new folder `target`, after
    checking every file against `backup.json`; returns the manifest with `restored_to`,
    `settings_changed` (what `_use_restored_database` changed, or None) and `warnings`."""
    source = source.expanduser().resolve()
    target = target.expanduser().resolve()
    if not source.exists():
        raise UsageError(f"{source}: no such backup")
    _check_target(target, "folder (or an empty one)")
    with named_os_errors(target, "restore into"):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=target.parent))
        try:
            if source.is_dir():
                shutil.copytree(source, staging, dirs_exist_ok=True)
            else:
                try:
                    with tarfile.open(source, "r:*") as tar:
                        # "data": no absolute paths, no `..`, no links out, no devices.
                        tar.extractall(staging, filter="data")
                except (tarfile.TarError, EOFError) as exc:
                    raise UsageError(
                        f"{source}: cannot read the archive ({exc})",
                        hint="name a folder or .tar.gz that `narrative backup` made",
                    ) from exc
            manifest = _verify(staging, source)
            if not (staging / SETTINGS_FILE).is_file():
                raise UsageError(f"{source}: the backup holds no {SETTINGS_FILE}")
            changed = None
            if (staging / DATABASE_FILE).is_file():
                changed = _use_restored_database(staging / SETTINGS_FILE, source)
            if target.is_dir():
                target.rmdir()
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    warnings = []
    variable = _database_variable()
    if variable is not None and manifest.get("database") is not None:
        warnings.append(
            f"the environment variable {variable} is set and wins over {SETTINGS_FILE}: "
            f"with it, the restored workspace opens that database, not its own "
            f"{DATABASE_FILE}; unset it to use the restored one"
        )
    return {
        **manifest,
        "restored_to": str(target),
        "settings_changed": changed,
        "warnings": warnings,
    }


def _database_variable() -> str | None:
    """The environment variable that sets the database URL, when one is set (pydantic-settings
    reads names without regard to case, and `NARRATIVES_DATABASE` as the whole section)."""
    wanted = {env_name(("database", "url")), env_name(("database",))}
    return next((k for k, v in os.environ.items() if k.upper() in wanted and v), None)


#: `url = ...` (also quoted) as one line, and the table headers that start a section.
_URL_LINE = re.compile(r"""^(\s*)(?:url|"url"|'url')\s*=""")
_DOTTED_URL_LINE = re.compile(r"""^(\s*)(?:database|"database")\s*\.\s*(?:url|"url")\s*=""")
_INLINE_LINE = re.compile(r"""^(\s*)(?:database|"database")\s*=\s*\{""")
_HEADER = re.compile(r"^\s*\[")
_DATABASE_HEADER = re.compile(r"""^\s*\[\s*(?:database|"database")\s*\]\s*(?:#.*)?$""")


def _database_url_line(lines: list[str]) -> tuple[int, str] | None:
    """(index, replacement) of the line that sets database.url: `url = ...` under
    `[database]`, `database.url = ...` or `database = {...}` before any table."""
    section: str | None = ""  # "" top level, "database", or None (another table)
    for i, line in enumerate(lines):
        if _HEADER.match(line):
            section = "database" if _DATABASE_HEADER.match(line) else None
            continue
        if section == "database" and (m := _URL_LINE.match(line)):
            return i, f'{m.group(1)}url = ""'
        if section == "" and (m := _DOTTED_URL_LINE.match(line)):
            return i, f'{m.group(1)}database.url = ""'
        if section == "" and (m := _INLINE_LINE.match(line)):
            return i, f'{m.group(1)}database = {{ url = "" }}'
    return None


def _use_restored_database(settings: Path, source: Path) -> dict[str, str] | None:
    """Point the restored settings at the restored database: `[database] url` set to "" (the
    workspace's own narratives.db) when it names another. Only that line changes, and a
    comment above it keeps the old value (password hidden). Returns what changed, or None."""
    text = settings.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: its {SETTINGS_FILE} is not valid TOML: {exc}") from exc
    section = data.get("database")
    old = section.get("url") if isinstance(section, dict) else None
    if not isinstance(old, str) or not old:
        return None
    try:
        shown = shown_url(old)
    except sa.exc.ArgumentError:
        shown = "(not a database URL)"
    lines = text.splitlines(keepends=True)
    found = _database_url_line(lines)
    wanted = {**data, "database": {**section, "url": ""}}
    if found is not None:
        i, replacement = found
        ending = lines[i][len(lines[i].rstrip("\r\n")) :]
        indent = replacement[: len(replacement) - len(replacement.lstrip())]
        note = (
            f"{indent}# `narrative restore` pointed this at the backup's database; "
            f"it was {json.dumps(shown)}\n"
        )
        edited = "".join([*lines[:i], note, replacement + ending, *lines[i + 1 :]])
        try:
            ok = tomllib.loads(edited) == wanted
        except tomllib.TOMLDecodeError:
            ok = False  # e.g. a value spread over several lines
        if ok:
            settings.write_text(edited, encoding="utf-8")
            return {"file": SETTINGS_FILE, "key": "database.url", "was": shown, "now": ""}
    raise UsageError(
        f"{source}: its {SETTINGS_FILE} sets [database] url = {json.dumps(shown)} in a form "
        f"restore cannot change; nothing was restored",
        hint=f'write the url on one line (url = "...") under [database] in the workspace\'s '
        f"{SETTINGS_FILE}, back it up again and restore that backup",
    )
