"""Erasing one narrator's rows: the one writer that crosses tables, on purpose.

Every other write has one owner per table; erasure is the exception because its point is to
reach every row about a narrative, including those of tables added later. It walks the
schema's foreign keys instead of naming tables: every row that points at the narrative (and,
recursively, every row that points at those: drafts' deliveries, comments, attempts) is
deleted, children first, in the caller's transaction. Three tables are kept, stripped:

- `narratives`: the row stays as a tombstone (`narrative_rows.mark_erased`), so `show` says
  erased and the same recording is recognised if it comes back; its `narrative_paths` go, but
  those of originals the caller is about to remove stay until it has (`keep_paths`);
- `consents`: who gave it and the notes are blanked, and it is marked withdrawn (nothing may go
  out again without an admin recording consent anew); when and how stay, as evidence;
- `audit_log`: the rows about the narrative and its drafts, deliveries and consent keep who did
  what and when, but lose their before/after state and detail (they held the text).

`feed_items` (partner pulls) only forget which narrative an item became, as their foreign key
says (`ondelete="SET NULL"`), so the item is not pulled again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.store import audit
from narratives.store.narrative_rows import ERASED_LABEL, mark_erased
from narratives.store.schema import audit_log, consents, metadata, narratives

__all__ = ["erase_rows", "rows_about", "audit_about"]

#: Tables kept (stripped) rather than deleted, handled by name below.
_KEPT = {"narratives", "narrative_paths", "consents", "audit_log"}


def _children(parent: sa.Table) -> list[tuple[sa.Table, sa.Column, sa.Column]]:
    """(table, its column, the parent's column) for every foreign key into `parent`."""
    out = []
    for table in metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table is parent and table is not parent:
                out.append((table, fk.parent, fk.column))
    return out


def _walk(
    conn: Connection, parent: sa.Table, key: sa.Column, values: list[Any], found: dict
) -> None:
    """Collect, depth first, the primary keys of every row reaching `parent` rows whose `key`
    is in `values`: found[table name] = (table, [row key dicts])."""
    if not values:
        return
    for table, column, target in _children(parent):
        if table.name in _KEPT or target is not key:
            continue
        if any(fk.ondelete == "SET NULL" for fk in column.foreign_keys):
            continue  # it only forgets the link (feed_items)
        pk = list(table.primary_key.columns)
        rows = conn.execute(sa.select(*pk).where(column.in_(values))).all()
        if not rows:
            continue
        entry = found.setdefault(table.name, (table, []))
        entry[1].extend(dict(r._mapping) for r in rows)
        # Rows of tables that point at this one (drafts -> deliveries -> attempts).
        for child_key in pk:
            _walk(conn, table, child_key, [r._mapping[child_key.name] for r in rows], found)


def rows_about(conn: Connection, narrative_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table that points (directly or through drafts, deliveries...) at
    the narrative, as plain dicts by table name: what an export holds and erasure removes."""
    found: dict[str, tuple[sa.Table, list[dict[str, Any]]]] = {}
    _walk(conn, narratives, narratives.c.id, [narrative_id], found)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, (table, keys) in found.items():
        pk = list(table.primary_key.columns)
        rows = []
        for key in keys:
            cond = sa.and_(*(c == key[c.name] for c in pk))
            rows += [dict(r._mapping) for r in conn.execute(sa.select(table).where(cond))]
        out[name] = sorted(rows, key=lambda r: tuple(str(r[c.name]) for c in pk))
    return out


def audit_about(
    conn: Connection, narrative_id: str, rows: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The audit rows about the narrative, its consent and (from `rows`, as `rows_about`
    gave them) its drafts and deliveries, oldest first."""
    ids = {name: [str(r["id"]) for r in found if "id" in r] for name, found in rows.items()}
    targets = [
        ("narrative", [narrative_id]),
        ("consent", [narrative_id]),
        ("draft", ids.get("drafts", [])),
        ("delivery", ids.get("deliveries", [])),
    ]
    clauses = [
        sa.and_(audit_log.c.object_type == kind, audit_log.c.object_id.in_(values))
        for kind, values in targets
        if values
    ]
    query = sa.select(audit_log).where(sa.or_(*clauses)).order_by(audit_log.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


def _delete_all(conn: Connection, found: dict) -> dict[str, int]:
    """Delete the collected rows, children before parents (reverse dependency order)."""
    counts: dict[str, int] = {}
    for table in reversed(metadata.sorted_tables):
        if table.name not in found:
            continue
        _, keys = found[table.name]
        pk = list(table.primary_key.columns)
        done = 0
        if len(pk) == 1:
            values = [k[pk[0].name] for k in keys]
            for i in range(0, len(values), 500):
                done += conn.execute(table.delete().where(pk[0].in_(values[i : i + 500]))).rowcount
        else:
            for key in keys:
                done += conn.execute(
                    table.delete().where(sa.and_(*(c == key[c.name] for c in pk)))
                ).rowcount
        counts[table.name] = done
    return counts


def _audit_targets(found: dict, narrative_id: str) -> list[tuple[str, list[str]]]:
    """The audit log's (object_type, object_ids) that are about the narrative."""
    ids = {name: [str(k.get("id")) for k in keys] for name, (_t, keys) in found.items()}
    return [
        ("narrative", [narrative_id]),
        ("consent", [narrative_id]),
        ("draft", ids.get("drafts", [])),
        ("delivery", ids.get("deliveries", [])),
    ]


def _scrub_audit(conn: Connection, targets: Iterable[tuple[str, list[str]]]) -> int:
    scrubbed = 0
    for object_type, object_ids in targets:
        for i in range(0, len(object_ids), 500):
            scrubbed += conn.execute(
                audit_log.update()
                .where(
                    audit_log.c.object_type == object_type,
                    audit_log.c.object_id.in_(object_ids[i : i + 500]),
                )
                .values(before=None, after=None, detail=None)
            ).rowcount
    return scrubbed


def _strip_consent(conn: Connection, narrative_id: str, now: datetime) -> int:
    return conn.execute(
        consents.update()
        .where(consents.c.narrative_id == narrative_id)
        .values(
            given_by=ERASED_LABEL,
            notes=None,
            withdrawn_at=sa.func.coalesce(consents.c.withdrawn_at, now),
            updated_at=now,
            version=consents.c.version + 1,
        )
    ).rowcount


def _unlink(conn: Connection, narrative_id: str) -> int:
    """Rows whose link to the narrative is `ondelete="SET NULL"` forget it, and stay."""
    done = 0
    for table, column, _target in _children(narratives):
        if table.name not in _KEPT and any(fk.ondelete == "SET NULL" for fk in column.foreign_keys):
            done += conn.execute(
                table.update().where(column == narrative_id).values({column.name: None})
            ).rowcount
    return done


def erase_rows(
    conn: Connection,
    narrative_id: str,
    *,
    actor: str,
    now: datetime,
    files: dict[str, int],
    keep_paths: Collection[str] = (),
) -> dict[str, int]:
    """Erase the narrative's rows in the caller's transaction (see the module's docstring) and
    write the tombstone audit row: who, when, and how many of what went (`files`: counts of
    the files the caller removes), never what they held. Returns the counts.

    `keep_paths`: remembered paths of originals the caller is about to remove; they stay
    (so that `erase` again finds them if it is interrupted) until the caller forgets them
    with `narrative_rows.forget_paths`. They count among the paths that go."""
    found: dict[str, tuple[sa.Table, list[dict[str, Any]]]] = {}
    _walk(conn, narratives, narratives.c.id, [narrative_id], found)
    targets = _audit_targets(found, narrative_id)
    counts = _delete_all(conn, found)
    counts["links_forgotten"] = _unlink(conn, narrative_id)
    counts["recording_paths"] = mark_erased(
        conn, narrative_id, now=now, keep_paths=keep_paths
    ) + len(set(keep_paths))
    counts["consents_stripped"] = _strip_consent(conn, narrative_id, now)
    counts["audit_rows_scrubbed"] = _scrub_audit(conn, targets)
    counts.update(files)
    counts = {k: v for k, v in sorted(counts.items()) if v}
    audit.record(
        conn,
        actor=actor,
        action="narrative.erase",
        object_type="narrative",
        object_id=narrative_id,
        after={"erased": counts},
    )
    return counts
