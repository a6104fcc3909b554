"""The one owner of writes to `login_failures`: failed logins, and attempts in flight.

An attempt is recorded *before* its password is checked (a reservation) and forgotten when it
succeeds, so a burst of parallel guesses is counted in full; the counts are read in the same
transaction as the reservation, by id order, so exactly the first `limit` attempts of a burst
get through. Stored in the database so a restart of the web app does not clear the limit.
The rules (how many, how long) are `web.security.LoginLimiter`'s.

An IPv6 client is counted by its /64 prefix (`address_key`): one home or host gets a whole /64
and can pick a new address in it for every guess, so its full address would never add up.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from narratives.store.schema import login_failures

__all__ = ["Counts", "address_key", "reserve", "release", "forget_success", "prune"]

L = login_failures.c


@dataclass(frozen=True)
class Counts:
    """Attempts in the window up to and including this one."""

    #: this name from this address
    pair: int
    #: any name from this address
    address: int
    #: this name from any address
    name: int
    #: when the oldest counted attempt of the pair and of the address was made
    pair_oldest: datetime | None
    address_oldest: datetime | None


def address_key(address: str) -> str:
    """What a client's attempts are counted by: an IPv6 address's /64 network
    ("2001:db8:1:2::/64"), an IPv4 address (also one written IPv4-mapped, "::ffff:192.0.2.1")
    as it is, anything else (not an address: a test client, a proxy's name) unchanged."""
    try:
        ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def reserve(
    db: Engine, name: str, address: str, now: datetime, since: datetime
) -> tuple[int, Counts]:
    """Record an attempt and count what came before it (since `since`); (its id, counts)."""
    address = address_key(address)
    with db.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Attempts from one address take turns, so none counts before an earlier one has
            # committed (SQLite's single writer gives the same order by itself).
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:a))"), {"a": address})
        attempt = conn.execute(
            login_failures.insert().values(name=name, address=address, at=now)
        ).inserted_primary_key[0]
        upto = sa.and_(L.id <= attempt, L.at >= since)

        def count(*where):
            row = conn.execute(
                sa.select(sa.func.count(), sa.func.min(L.at)).where(upto, *where)
            ).one()
            return row[0], row[1]

        pair, pair_oldest = count(L.name == name, L.address == address)
        by_address, address_oldest = count(L.address == address)
        by_name, _ = count(L.name == name)
    return attempt, Counts(pair, by_address, by_name, pair_oldest, address_oldest)


def release(db: Engine, attempt: int) -> None:
    """Forget one reserved attempt (it was refused before its password was checked)."""
    with db.begin() as conn:
        conn.execute(login_failures.delete().where(L.id == attempt))


def forget_success(db: Engine, name: str, address: str) -> None:
    """A good password from this address: its failures for this name no longer count."""
    address = address_key(address)
    with db.begin() as conn:
        conn.execute(login_failures.delete().where(L.name == name, L.address == address))


def prune(db: Engine, before: datetime) -> int:
    """Forget attempts older than the window; returns how many."""
    with db.begin() as conn:
        return conn.execute(login_failures.delete().where(L.at < before)).rowcount
