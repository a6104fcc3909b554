"""Bluesky failures sorted for the scheduler: `TransientChannelError` (network, 5xx, 429 with
`retry_after` from `ratelimit-reset`) is worth retrying; `PermanentChannelError` (bad
credentials, invalid record, blob too large, unsupported media) is not."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from atproto_client.exceptions import (
    BadRequestError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    UnauthorizedError,
)

from narratives.channels.bluesky.post import reject
from narratives.core.errors import ChannelError, RateLimited, TransientChannelError

__all__ = ["classify", "error_name", "session_rejected"]


def error_name(exc: RequestErrorBase) -> str:
    content = exc.response.content if exc.response is not None else None
    return getattr(content, "error", None) or ""


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, RequestErrorBase) and exc.response is not None:
        return exc.response.status_code
    return None


def _rate_limit_delay(exc: RateLimitExceededError) -> float | None:
    if exc.reset_at is not None:
        return max((exc.reset_at - datetime.now(UTC)).total_seconds(), 0.0)
    return exc.retry_after


def classify(exc: BaseException, action: str) -> ChannelError:
    """Map an SDK or transport failure to a transient or permanent channel error."""
    if isinstance(exc, ChannelError):
        return exc
    status = _status(exc)
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, RateLimitExceededError):
        delay = _rate_limit_delay(exc)
        return RateLimited(
            f"Bluesky rate limit reached while trying to {action}",
            retry_after=delay,
            hint=f"retry in {delay:.0f} s" if delay is not None else None,
        )
    if isinstance(exc, httpx.TransportError) or (isinstance(exc, NetworkError) and status is None):
        cause = exc.__cause__ or exc
        return TransientChannelError(
            f"cannot reach Bluesky to {action}: {type(cause).__name__} {cause}".rstrip()
        )
    if status == 413:
        return reject(f"Bluesky refused to {action}: the file is too large ({detail})")
    if isinstance(exc, UnauthorizedError):
        return reject(
            f"Bluesky refused the credentials while trying to {action} ({detail})",
            hint="check the account's app password",
        )
    if isinstance(exc, BadRequestError):
        return reject(f"Bluesky rejected the request to {action} ({detail})")
    if status is not None and (status >= 500 or status in {408, 409}):
        return TransientChannelError(f"Bluesky failed to {action} ({detail})")
    if status is not None:
        return reject(f"Bluesky refused to {action} ({detail})")
    return TransientChannelError(f"failed to {action}: {detail}")


_SESSION_GONE = {"ExpiredToken", "InvalidToken", "AuthenticationRequired", "AuthMissing"}


def session_rejected(exc: BaseException) -> bool:
    return isinstance(exc, UnauthorizedError | BadRequestError) and (
        error_name(exc) in _SESSION_GONE or _status(exc) == 401
    )
