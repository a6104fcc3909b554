"""Editors and admins: names, roles and argon2id password hashes.

Passwords are never stored or logged; `authenticate` spends the same hashing work for an
unknown name as for a wrong password, so response times do not reveal who has an account.
Every change is in the audit log (object type "user"), without the hash.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from narratives.core.clock import utcnow
from narratives.core.errors import InvalidState, NotFound, PermissionDenied, UsageError
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.schema import users

__all__ = [
    "ROLES",
    "MIN_PASSWORD_LENGTH",
    "User",
    "add_user",
    "authenticate",
    "set_password",
    "disable_user",
    "enable_user",
    "get_user",
    "get_user_by_id",
    "list_users",
    "require_active",
    "end_sessions",
    "set_role",
    "remove_user",
]

ROLES = ("editor", "admin")
MIN_PASSWORD_LENGTH = 10
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

# argon2-cffi's defaults are argon2id with RFC 9106's low-memory profile.
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown users (equal timing); made on first login, not
    at import, since hashing takes a tenth of a second."""
    return _hasher.hash("not a real password: equalises timing")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    created_at: datetime
    disabled: bool
    session_epoch: int = 0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _user(row) -> User:
    return User(row.id, row.name, row.role, row.created_at, bool(row.disabled), row.session_epoch)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password or "\n" in password:
        raise UsageError("the password must not start or end with spaces or hold line breaks")


def _row(conn, name: str):
    return conn.execute(sa.select(users).where(users.c.name == name)).first()


def add_user(ctx: Context, name: str, password: str, *, role: str = "editor", actor: str) -> User:
    """Create a user; names are lowercase letters, digits, `.`, `_` and `-`."""
    if not _NAME.match(name):
        raise UsageError(
            f"bad user name {name!r}",
            hint="use lowercase letters, digits, '.', '_' or '-' (at most 64)",
        )
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"one of: {', '.join(ROLES)}")
    _check_password(password)
    digest = _hasher.hash(password)
    with ctx.db.begin() as conn:
        if _row(conn, name) is not None:
            raise InvalidState(f"user {name!r} already exists", hint="use `narrative users passwd`")
        user_id = conn.execute(
            users.insert().values(
                name=name, password_hash=digest, role=role, created_at=utcnow(), disabled=False
            )
        ).inserted_primary_key[0]
        audit.record(
            conn,
            actor=actor,
            action="user.add",
            object_type="user",
            object_id=name,
            after={"role": role},
        )
        return _user(conn.execute(sa.select(users).where(users.c.id == user_id)).one())


def get_user(ctx: Context, name: str) -> User:
    with ctx.db.connect() as conn:
        row = _row(conn, name)
    if row is None:
        raise NotFound(f"no user {name!r}", hint="see `narrative users list`")
    return _user(row)


def get_user_by_id(ctx: Context, user_id: int) -> User | None:
    with ctx.db.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    return _user(row) if row else None


def list_users(ctx: Context) -> list[User]:
    with ctx.db.connect() as conn:
        return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]


def require_active(ctx: Context, name: str) -> User:
    """The user named `name`, who must exist and not be disabled (for actions on records)."""
    try:
        user = get_user(ctx, name)
    except NotFound as exc:
        raise PermissionDenied(
            f"{name!r} is not a user here",
            hint="add one with `narrative users add NAME --role editor`",
        ) from exc
    if user.disabled:
        raise PermissionDenied(f"user {name!r} is disabled")
    return user


def authenticate(ctx: Context, name: str, password: str) -> User | None:
    """The user if the name and password match an enabled account, else None."""
    with ctx.db.connect() as conn:
        row = _row(conn, name)
    digest = row.password_hash if row is not None else _dummy_hash()
    try:
        _hasher.verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    if _hasher.check_needs_rehash(digest):
        # Parameters were raised since this hash was made; upgrade it while we know the password.
        with ctx.db.begin() as conn:
            conn.execute(
                users.update()
                .where(users.c.id == row.id)
                .values(password_hash=_hasher.hash(password))
            )
    return _user(row)


def set_password(ctx: Context, name: str, password: str, *, actor: str) -> None:
    _check_password(password)
    digest = _hasher.hash(password)
    with ctx.db.begin() as conn:
        row = _row(conn, name)
        if row is None:
            raise NotFound(f"no user {name!r}")
        conn.execute(
            users.update()
            .where(users.c.id == row.id)
            .values(password_hash=digest, session_epoch=users.c.session_epoch + 1)
        )
        audit.record(conn, actor=actor, action="user.passwd", object_type="user", object_id=name)


def _keep_an_admin(conn, row, doing: str) -> None:
    """Refuse a change that would leave no enabled admin (nobody could then widen a consent,
    correct one, or manage users from the page). The admins' rows are locked first, so two
    such changes at once cannot each count the other admin (Postgres; SQLite's one writer
    does the same)."""
    if row.role != "admin" or row.disabled:
        return
    others = conn.execute(
        sa.select(users.c.id)
        .where(users.c.role == "admin", users.c.disabled == sa.false(), users.c.id != row.id)
        .with_for_update()
    ).all()
    if not others:
        raise InvalidState(
            f"{row.name} is the last admin; {doing} would leave no admin",
            hint="make another user an admin first: `narrative users role NAME admin`",
        )


def _set_disabled(ctx: Context, name: str, disabled: bool, *, actor: str) -> User:
    with ctx.db.begin() as conn:
        row = _row(conn, name)
        if row is None:
            raise NotFound(f"no user {name!r}")
        if disabled:
            _keep_an_admin(conn, row, "disabling them")
        conn.execute(
            users.update()
            .where(users.c.id == row.id)
            .values(disabled=disabled, session_epoch=users.c.session_epoch + 1)
        )
        audit.record(
            conn,
            actor=actor,
            action="user.disable" if disabled else "user.enable",
            object_type="user",
            object_id=name,
            before={"disabled": bool(row.disabled)},
            after={"disabled": disabled},
        )
        return _user(conn.execute(sa.select(users).where(users.c.id == row.id)).one())


def end_sessions(ctx: Context, user_id: int) -> None:
    """End every open session of a user (logout ends them everywhere: cookies are stateless,
    so a copied cookie must not outlive it)."""
    with ctx.db.begin() as conn:
        conn.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(session_epoch=users.c.session_epoch + 1)
        )


def disable_user(ctx: Context, name: str, *, actor: str) -> User:
    """Disable a user: they can no longer log in, and their open sessions stop working."""
    return _set_disabled(ctx, name, True, actor=actor)


def enable_user(ctx: Context, name: str, *, actor: str) -> User:
    return _set_disabled(ctx, name, False, actor=actor)


def set_role(ctx: Context, name: str, role: str, *, actor: str) -> User:
    """Make a user an editor or an admin (audited); their open sessions end, so the new role
    applies from their next login. The last admin stays one."""
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"one of: {', '.join(ROLES)}")
    with ctx.db.begin() as conn:
        row = _row(conn, name)
        if row is None:
            raise NotFound(f"no user {name!r}", hint="see `narrative users list`")
        if row.role == role:
            return _user(row)
        if role != "admin":
            _keep_an_admin(conn, row, "making them an editor")
        conn.execute(
            users.update()
            .where(users.c.id == row.id)
            .values(role=role, session_epoch=users.c.session_epoch + 1)
        )
        audit.record(
            conn,
            actor=actor,
            action="user.role",
            object_type="user",
            object_id=name,
            before={"role": row.role},
            after={"role": role},
        )
        return _user(conn.execute(sa.select(users).where(users.c.id == row.id)).one())


def remove_user(ctx: Context, name: str, *, actor: str) -> None:
    """Remove a user (audited; their name stays in the audit log, and their sessions end: a
    session names its user, so a later user given the same id is not them). Refused for the
    last admin."""
    with ctx.db.begin() as conn:
        row = _row(conn, name)
        if row is None:
            raise NotFound(f"no user {name!r}", hint="see `narrative users list`")
        _keep_an_admin(conn, row, "removing them")
        conn.execute(users.delete().where(users.c.id == row.id))
        audit.record(
            conn,
            actor=actor,
            action="user.remove",
            object_type="user",
            object_id=name,
            before={"role": row.role, "disabled": bool(row.disabled)},
        )
