"""Database failures that are the machine's state, named for the user.

SQLAlchemy raises them as `OperationalError` from wherever the first query happens (opening
the database, a migration, any later write), so one `handle_error` listener on the engine
turns them into `EnvironmentProblem` naming the file or the server's URL (password hidden),
instead of every caller catching them. Other database errors (a constraint refusing a row, a
bug in a query) pass unchanged.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, ExceptionContext

from narratives.core.errors import EnvironmentProblem

__all__ = ["name_database_errors", "shown_url", "sqlite_file"]

#: (words in SQLite's message, what went wrong, what helps), first match wins.
_SQLITE = (
    (
        "readonly",
        "the database {} is read-only",
        "check that this user may write the file and its folder (SQLite writes -wal and -shm "
        "files beside it)",
    ),
    (
        "locked",
        "the database {} is locked by another process",
        "wait for the other command, the scheduler or the web app to finish its write, or "
        "stop the one that hangs; then run the command again",
    ),
    (
        "unable to open",
        "cannot open the database {}",
        "check that it is a file, that its folder exists and that this user may read and "
        "write both",
    ),
    ("full", "the disk holding the database {} is full", "free some space, then try again"),
    ("i/o error", "input/output error on the database {}", "check the disk"),
)


def shown_url(url: URL | str) -> str:
    """The URL as it may be shown: the password replaced by ***."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def sqlite_file(url: URL) -> str | None:
    """The file of a SQLite URL, also in the `file:PATH?mode=ro&uri=true` form."""
    name = url.database
    if url.get_backend_name() != "sqlite" or name in (None, "", ":memory:"):
        return None
    if url.query.get("uri") == "true" and name.startswith("file:"):
        return name.removeprefix("file:")
    return name


def _first_line(exc: BaseException, url: URL) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def _sqlite(url: URL, exc: BaseException) -> EnvironmentProblem | None:
    message = str(exc).lower()
    for words, what, hint in _SQLITE:
        if words in message:
            if words == "readonly" and url.query.get("mode") == "ro":
                hint = "[database] url in narratives.toml opens it read-only (mode=ro)"
            return EnvironmentProblem(what.format(sqlite_file(url) or shown_url(url)), hint=hint)
    return None


def _server(url: URL, context: ExceptionContext) -> EnvironmentProblem | None:
    # Only failures to connect or a lost connection: a deadlock or a refused row is not the
    # server being down.
    if context.connection is not None and not context.is_disconnect:
        return None
    return EnvironmentProblem(
        f"cannot reach the database server at {shown_url(url)}: "
        f"{_first_line(context.original_exception, url)}",
        hint="check that the server is running and accepts this user's connections "
        "([database] url in narratives.toml)",
    )


def _name(url: URL, context: ExceptionContext) -> None:
    if context.is_pre_ping or not isinstance(context.sqlalchemy_exception, sa.exc.OperationalError):
        return  # a failed pre-ping is retried on a new connection by the pool itself
    if url.get_backend_name() == "sqlite":
        problem = _sqlite(url, context.original_exception)
    else:
        problem = _server(url, context)
    if problem is not None:
        raise problem from context.original_exception


def name_database_errors(engine: Engine) -> Engine:
    """Make `engine` raise `EnvironmentProblem` for a read-only, locked, unopenable or full
    SQLite file and for a database server it cannot reach."""
    url = engine.url
    sa.event.listen(engine, "handle_error", lambda context: _name(url, context))
    return engine
