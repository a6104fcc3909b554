"""The database: SQLite in the workspace by default (WAL, foreign keys on), any SQLAlchemy URL.

Schema changes are Alembic migrations in `narratives/migrations/versions/`, only ever appended;
`open_database` brings a database up to the newest one. Writers take short transactions
(`engine.begin()`); SQLite's busy timeout lets the web app and the scheduler share one file.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from narratives.core.config import Settings
from narratives.core.errors import ConfigError
from narratives.core.files import named_os_errors
from narratives.core.workspace import Workspace
from narratives.store.db_errors import name_database_errors, shown_url, sqlite_file

__all__ = ["open_database", "database_url", "migrate", "include_object"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Seconds a SQLite writer waits for another one before "the database is locked".
_BUSY_TIMEOUT = 30


def database_url(workspace: Workspace, settings: Settings) -> str:
    return settings.database.url or f"sqlite:///{workspace.database_path}"


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """APScheduler owns its job table in the same database; migrations leave it alone."""
    return not (type_ == "table" and name == "apscheduler_jobs")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT * 1000)}")
    cur.close()


#: The extra that brings a database's driver, by URL scheme.
_DRIVER_EXTRAS = {"postgresql": "postgres"}


def create_engine(url: str) -> Engine:
    """An engine whose environment failures (read-only, locked, server down) are named errors;
    a URL whose driver is not installed is a ConfigError naming it and the extra to install."""
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return name_database_errors(engine)
        return name_database_errors(sa.create_engine(url, pool_pre_ping=True))
    except (ModuleNotFoundError, sa.exc.NoSuchModuleError, sa.exc.ArgumentError) as exc:
        shown = _shown(url)
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        extra = _DRIVER_EXTRAS.get(scheme)
        raise ConfigError(
            f"database url {shown}: {exc}",
            hint=f"pip install 'narratives[{extra}]'"
            if extra
            else "check [database] url "
            "(or NARRATIVES_DATABASE__URL): SQLite and PostgreSQL are supported",
        ) from None


def _shown(url: str) -> str:
    try:
        return shown_url(url)
    except sa.exc.ArgumentError:
        return "(not a database URL)"


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Apply every migration not yet applied (recorded by Alembic in `alembic_version`)."""
    import logging

    from alembic import command

    # Alembic reports every check at INFO; a service's log should only show real changes.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

    cfg = _alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@cache
def _open(url: str) -> Engine:
    engine = create_engine(url)
    migrate(engine)
    if (path := sqlite_file(engine.url)) is not None:
        # Stories, consent records and password hashes: readable by the owner only.
        # (SQLite gives its -wal and -shm files the database file's permissions.)
        with named_os_errors(path, "restrict the permissions of"):
            os.chmod(path, 0o600)
    return engine


def open_database(workspace: Workspace, settings: Settings, *, create: bool = True) -> Engine:
    """The migrated engine for a workspace, made once per process and URL. With `create`
    false (a command that only reads), a SQLite file not made yet stays unmade: an empty
    database in memory stands in, so the command finds nothing instead of leaving a file."""
    url = database_url(workspace, settings)
    try:
        sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            "database url: not a database URL",
            hint="[database] url (or NARRATIVES_DATABASE__URL) takes a URL such as "
            "postgresql+psycopg://user@host/db; empty means SQLite in the workspace",
        ) from None
    if not create and _unmade_sqlite_file(url):
        return _empty_database()
    return _open(url)


def _unmade_sqlite_file(url: str) -> bool:
    path = sqlite_file(sa.engine.make_url(url))
    return path is not None and not Path(path).exists()


def _empty_database() -> Engine:
    """Every table, no rows, refusing writes: a reader's stand-in for a database not made yet."""
    # One shared connection: each new connection to "sqlite://" would be another empty database.
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    migrate(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA query_only = ON")
    return engine
