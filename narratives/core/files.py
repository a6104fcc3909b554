"""Files written so that a reader never sees half of one, and the user cache.

Every artifact, settings index and feed goes through `atomic_write` (a temporary file in the
same folder, then `os.replace`), so a crash or kill leaves either the old file or the new one.
`file_sha256` remembers digests of large weight files by path, size and mtime, so checking
shipped weights at load time costs a hash only when a file changed. A write the machine
refuses (permissions, a full disk, a read-only file system) is an `EnvironmentProblem` naming
the file, so the user sees which one and no traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from narratives.core.errors import EnvironmentProblem

__all__ = [
    "cache_dir",
    "atomic_write",
    "atomic_write_json",
    "write_files_atomically",
    "file_sha256",
    "named_os_errors",
    "remove_stale_parts",
    "STALE_PART_SECONDS",
]

#: A temporary `.part` file nothing has written to for this long was left by a killed copy
#: (a day: a copy whose source stalls for minutes, a network share or a suspended laptop,
#: must not lose its file).
STALE_PART_SECONDS = 24 * 3600


@contextmanager
def named_os_errors(path: Path | str, doing: str) -> Iterator[None]:
    """An OSError raised inside that is the machine's state (see `EnvironmentProblem`)
    becomes an `EnvironmentProblem` saying it could not `doing` `path`; others pass as they
    are, being bugs."""
    try:
        yield
    except OSError as exc:
        problem = EnvironmentProblem.from_os_error(exc, path, doing)
        if problem is None:
            raise
        raise problem from exc


def cache_dir() -> Path:
    """`NARRATIVES_CACHE`, else `$XDG_CACHE_HOME/narratives`, else `~/.cache/narratives`."""
    if env := os.environ.get("NARRATIVES_CACHE"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "narratives"


def atomic_write(path: Path, data: bytes | str, *, mode: int = 0o644, fsync: bool = False) -> Path:
    """Write `data` (text is UTF-8) to `path` via a temporary file in the same folder.

    `mode` applies before the file appears under its name (0o600 for secrets); `fsync` for
    files that must survive a power cut, such as feeds and sessions.
    """
    path = Path(path)
    with named_os_errors(path, "write"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
                if fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def atomic_write_json(path: Path, data: Any, **options: Any) -> Path:
    """`atomic_write` of `data` as indented UTF-8 JSON."""
    text = json.dumps(data, ensure_ascii=False, indent=1, **options)
    return atomic_write(path, text + "\n")


def write_files_atomically(folder: Path, files: dict[str, str | bytes]) -> None:
    """Write several files into `folder` so that all appear or, on an error, none do.

    They are written into a temporary folder beside the target, then renamed into place.
    """
    with named_os_errors(folder, "write in"):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
        try:
            for name, content in files.items():
                data = content.encode("utf-8") if isinstance(content, str) else content
                (tmp / name).write_bytes(data)
            for name in files:
                (tmp / name).replace(folder / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path, cache: Path | None = None) -> str:
    """SHA-256 of a file, remembered in `<cache>/digests.json` by path, size and mtime."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    index = (cache or cache_dir()) / "digests.json"
    try:
        known = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    entry = known.get(str(path))
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        return str(entry["sha256"])
    digest = _hash(path)
    known[str(path)] = {**stamp, "sha256": digest}
    try:
        atomic_write_json(index, known, sort_keys=True)
    except (OSError, EnvironmentProblem):
        pass  # a read-only cache only costs a re-hash next time
    return digest


def remove_stale_parts(folder: Path, *, older_than: float = STALE_PART_SECONDS) -> list[Path]:
    """Remove the temporary `.*.part` files in `folder` that no copy has written to for
    `older_than` seconds, and return them: what a killed copy left behind (a copy in progress
    writes as it goes, so its file is never that old). Files that cannot be removed are left."""
    cutoff = time.time() - older_than
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".part")):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # gone already (another process swept it), or not ours to remove
    return removed
