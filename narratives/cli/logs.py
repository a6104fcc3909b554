"""`-v` / `-q`: how much a command logs to stderr.

Commands log warnings by default; `-v` adds progress notes (info), `-vv` everything (debug),
`-q` keeps errors only. Long-running services (the scheduler) start one step more talkative.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["level_for", "configure"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries that narrate every request at info level; they speak only with -vv.
_CHATTY = ("httpx", "httpcore", "apscheduler", "urllib3", "faster_whisper", "alembic")


def level_for(verbose: int, quiet: int, *, base: int = logging.WARNING) -> int:
    """The log level for `-v` x verbose and `-q` x quiet, counted from `base`."""
    return max(logging.DEBUG, min(logging.CRITICAL, base - 10 * verbose + 10 * quiet))


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record arrives (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.set_name("narratives-cli")
        self.setFormatter(logging.Formatter(_FORMAT))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; always follow sys.stderr
        pass


def configure(level: int) -> None:
    """Route log records at `level` and above to stderr; safe to call more than once."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "narratives-cli"]:
        root.removeHandler(handler)
    handler = _Stderr()
    handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(min(level, logging.WARNING))
    for name in _CHATTY:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
