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
from narratives.core.workspace import Workspace

__all__ = ["open_database", "database_url", "migrate", "include_object"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


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
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        # Stories, consent records and password hashes: readable by the owner only.
        # (SQLite gives its -wal and -shm files the database file's permissions.)
        os.chmod(engine.url.database, 0o600)
    return engine


def open_database(workspace: Workspace, settings: Settings) -> Engine:
    """The migrated engine for a workspace, made once per process and URL."""
    return _open(database_url(workspace, settings))
