"""`narrative export ID DIR`: everything about one narrator in one folder, with a manifest.

The folder holds files a person can open, and a `manifest.json` naming each with its size and
SHA-256, so a recipient can check that nothing was changed or lost on the way:

```
manifest.json        what is here, with checksums; the narrative id; when and by whom
recording/<name>     the recording (the workspace's copy, else the original if still there)
work/...             media/work/<id>/: transcripts, captions, analysis, videos, redactions
narrative.json       the narrative's row and the paths its recording was found at
consent.json         the consent record (null when none was recorded)
drafts.json          each draft with its revisions (from the audit log), comments, deliveries
audit.json           every audit row about the narrative, its consent, drafts and deliveries
rows/<table>.json    every database row that points at the narrative, table by table
                     (stage runs, drafts, deliveries and attempts, assignments, tag corrections)
```

`rows/` is found by walking the schema's foreign keys (`store.erasure.rows_about`), so a table
added later is exported without changing this module. The files are private (0600, folder
0700): they are one person's story and consent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from narratives.core.clock import utcnow
from narratives.core.errors import NotFound, UsageError
from narratives.core.files import named_os_errors
from narratives.stages.ingest import recording_file
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.erasure import audit_about, rows_about
from narratives.store.narrative_rows import recording
from narratives.store.schema import consents, narratives

__all__ = ["export", "MANIFEST"]

MANIFEST = "manifest.json"


def _default(o: Any) -> Any:
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, bytes):
        return o.hex()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _write_json(dest: Path, name: str, data: Any) -> Path:
    path = dest / name
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, indent=1, default=_default) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)
    return dst


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_dest(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file, not a folder", hint="name a new or empty folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise UsageError(
            f"{dest} is not empty",
            hint="name a new or empty folder, or pass --force to write into it anyway",
        )


def _drafts(rows: dict[str, list[dict]], audit_rows: list[dict]) -> list[dict[str, Any]]:
    """Each draft with its revisions (its audit rows, which hold each change's before and
    after), its comments and its deliveries with their attempts."""
    deliveries = rows.get("deliveries", [])
    attempts = rows.get("delivery_attempts", [])
    out = []
    for draft in rows.get("drafts", []):
        did = draft["id"]
        mine = [d for d in deliveries if d["draft_id"] == did]
        out.append(
            {
                **draft,
                "revisions": [
                    a
                    for a in audit_rows
                    if a["object_type"] == "draft" and a["object_id"] == str(did)
                ],
                "comments": [c for c in rows.get("comments", []) if c["draft_id"] == did],
                "deliveries": [
                    {**d, "attempts": [a for a in attempts if a["delivery_id"] == d["id"]]}
                    for d in mine
                ],
            }
        )
    return out


def _work_files(folder: Path) -> list[Path]:
    """The narrative's generated files, without temporary ones a kill left."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def export(
    ctx: Context, narrative_id: str, dest: Path, *, actor: str, force: bool = False
) -> dict[str, Any]:
    """Write everything about the narrative into `dest` (see the module's docstring); returns
    the manifest. A non-empty `dest` is refused unless `force`."""
    dest = dest.expanduser().resolve()
    _check_dest(dest, force)
    if ctx.workspace.contains(dest) and dest.is_relative_to(ctx.workspace.media_dir):
        raise UsageError(f"{dest} is inside the workspace's media folder", hint="export elsewhere")
    with ctx.db.connect() as conn:
        found = recording(conn, narrative_id)
        if found is None:
            raise NotFound(f"no narrative with id {narrative_id}", hint="see `narrative status`")
        row = conn.execute(sa.select(narratives).where(narratives.c.id == narrative_id)).one()
        consent = conn.execute(
            sa.select(consents).where(consents.c.narrative_id == narrative_id)
        ).first()
        rows = rows_about(conn, narrative_id)
        audit_rows = audit_about(conn, narrative_id, rows)
    with named_os_errors(dest, "write the export to"):
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        missing: list[str] = []
        written: list[Path] = []
        source = recording_file(ctx, narrative_id)
        if source is not None:
            name = (Path(found.label).stem or "recording") + source.suffix
            written.append(_copy(source, dest / "recording" / name))
        elif found.erased_at is None:
            missing.append("recording: " + ", ".join(found.paths or ["(no path)"]))
        folder = ctx.workspace.narrative_dir(narrative_id)
        for path in _work_files(folder):
            written.append(_copy(path, dest / "work" / path.relative_to(folder)))
        narrative = {**dict(row._mapping), "recording_paths": found.paths}
        written.append(_write_json(dest, "narrative.json", narrative))
        written.append(
            _write_json(dest, "consent.json", dict(consent._mapping) if consent else None)
        )
        written.append(_write_json(dest, "drafts.json", _drafts(rows, audit_rows)))
        written.append(_write_json(dest, "audit.json", audit_rows))
        for table, table_rows in rows.items():
            written.append(_write_json(dest, f"rows/{table}.json", table_rows))
        manifest = {
            "narrative_id": narrative_id,
            "label": found.label,
            "erased_at": found.erased_at,
            "exported_at": utcnow(),
            "exported_by": actor,
            "workspace": str(ctx.workspace.root),
            "missing": missing,
            "files": [
                {
                    "path": p.relative_to(dest).as_posix(),
                    "bytes": p.stat().st_size,
                    "sha256": _sha256(p),
                }
                for p in sorted(written)
            ],
        }
        _write_json(dest, MANIFEST, manifest)
    # Reading a person's whole record is worth a line in the audit log (no content in it).
    with ctx.db.begin() as conn:
        audit.record(
            conn,
            actor=actor,
            action="narrative.export",
            object_type="narrative",
            object_id=narrative_id,
            after={"files": len(manifest["files"])},
        )
    return json.loads(json.dumps(manifest, default=_default))
