"""The exception hierarchy, drawn once.

Every error a user can cause or meet derives from `NarrativesError`; the CLI maps
`exit_code` to the process exit status and prints `str(exc)` plus `hint`, and the
web app maps `http_status` to an error page. Anything else is a bug and shows a
traceback only with `--debug`.
"""

from __future__ import annotations

import errno

__all__ = [
    "NarrativesError",
    "UsageError",
    "ConfigError",
    "WorkspaceError",
    "ModelNotAvailable",
    "BadRecording",
    "StageFailed",
    "UnreadableFile",
    "NotFound",
    "InvalidState",
    "ConsentError",
    "Conflict",
    "PermissionDenied",
    "ChannelError",
    "TransientChannelError",
    "RateLimited",
    "PermanentChannelError",
    "EnvironmentProblem",
    "EXIT_OK",
    "EXIT_FAILED_ITEMS",
    "EXIT_USAGE",
]

EXIT_OK = 0
#: Some inputs of a batch failed; the rest were processed.
EXIT_FAILED_ITEMS = 1
#: Bad command line or configuration: nothing was done.
EXIT_USAGE = 2


class NarrativesError(Exception):
    """Base of every error meant for a user's eyes."""

    exit_code = 3
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(NarrativesError):
    """The command line or a request was malformed."""

    exit_code = EXIT_USAGE
    http_status = 400


class ConfigError(NarrativesError):
    """A settings or campaign file is invalid; the message names file and key."""

    exit_code = EXIT_USAGE
    http_status = 500


class WorkspaceError(NarrativesError):
    """The workspace is missing or unusable."""

    exit_code = EXIT_USAGE


class ModelNotAvailable(NarrativesError):
    """Model weights are not installed here; the hint says how to get them."""

    exit_code = 4


class BadRecording(NarrativesError):
    """A recording cannot be decoded or holds no usable audio."""

    exit_code = EXIT_FAILED_ITEMS
    http_status = 422


class StageFailed(NarrativesError):
    """A pipeline stage failed for one narrative (recorded on that narrative)."""

    exit_code = EXIT_FAILED_ITEMS


class UnreadableFile(StageFailed):
    """A narrative's file (transcript.json, analysis.json) exists but cannot be read or parsed;
    the message names the file."""


class NotFound(NarrativesError):
    """No narrative, draft, delivery or user with that id."""

    exit_code = 5
    http_status = 404


class InvalidState(NarrativesError):
    """The action is not allowed from the record's current state."""

    exit_code = 6
    http_status = 409


class Conflict(InvalidState):
    """Someone changed the record since the user read it (an edit, a regeneration)."""


class ConsentError(InvalidState):
    """The narrator's consent does not cover this use."""

    http_status = 403


class PermissionDenied(NarrativesError):
    """The user's role does not allow this action."""

    exit_code = 7
    http_status = 403


class ChannelError(NarrativesError):
    """Publishing to a channel failed."""

    exit_code = 8
    http_status = 502


class TransientChannelError(ChannelError):
    """Worth retrying later (network down, 5xx, rate limited)."""

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class RateLimited(TransientChannelError):
    """The server said to wait (HTTP 429); `retry_after` is seconds until its limit resets.
    Waiting for it is not a failed attempt: it does not count toward the attempt limit."""


class PermanentChannelError(ChannelError):
    """Retrying cannot help (bad credentials, content rejected, too large)."""


_OWNER = "check the owner and permissions of it and its folders"
#: errno -> (what went wrong, what helps): the OSErrors that are the machine's state, not a bug.
_OS_PROBLEMS = {
    errno.EACCES: ("permission denied", _OWNER),
    errno.EPERM: ("operation not permitted", _OWNER),
    errno.EROFS: ("the file system is read-only", "use a writable workspace"),
    errno.ENOSPC: ("the disk is full", "free some space, then run the command again"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space, then run the command again"),
    errno.ENOTDIR: ("a file is where a folder should be", "move that file out of the way"),
    errno.EEXIST: ("a file is where a folder should be", "move that file out of the way"),
    errno.EISDIR: ("it is a folder, not a file", "move that folder out of the way"),
    errno.EIO: ("input/output error", "check the disk"),
}


class EnvironmentProblem(NarrativesError):
    """The machine is in the way, not the input: a file or folder that cannot be read or
    written, a read-only or locked database, a database server that does not answer, a full
    disk. The message names the path or URL (never a password); running again once it is
    fixed works."""

    exit_code = 9
    http_status = 503

    @classmethod
    def from_os_error(cls, exc: OSError, path: object, doing: str) -> EnvironmentProblem | None:
        """The named error for `exc` met while `doing` (read, write) `path`, or None when
        `exc` is not about the environment (then the caller re-raises it)."""
        known = _OS_PROBLEMS.get(exc.errno or 0)
        if known is None:
            return None
        what, hint = known
        return cls(f"cannot {doing} {path}: {what}", hint=hint)
