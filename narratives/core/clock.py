"""The one clock: every timestamp the package stores is timezone-aware UTC from here, so a
time zone is applied only where a person reads or types a time."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)
