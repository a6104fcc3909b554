"""Bluesky record keys (TIDs): fixed before the first attempt so a retry finds a post instead of
posting it twice. SDK-free, so scheduling can fix a delivery's keys without loading atproto."""

from __future__ import annotations

import re
import secrets
import threading
import time

__all__ = ["new_tid", "thread_rkeys", "check_tid"]

_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TID_RE = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
#: new_tid() uses clock ids below this, so thread_rkeys() has room to count up without wrapping.
_CLOCK_IDS = 512
_tid_lock = threading.Lock()
_last_tid_micros = 0


def _encode_tid(micros: int, clock_id: int) -> str:
    value = (micros << 10) | clock_id
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _decode_tid(tid: str) -> tuple[int, int]:
    if not _TID_RE.match(tid):
        raise ValueError(f"not a TID record key: {tid!r}")
    value = 0
    for char in tid:
        value = value * 32 + _TID_ALPHABET.index(char)
    return value >> 10, value & 1023


def new_tid() -> str:
    """A fresh record key (TID): microseconds since the epoch, strictly increasing here."""
    global _last_tid_micros
    with _tid_lock:
        micros = max(time.time_ns() // 1000, _last_tid_micros + 1)
        _last_tid_micros = micros
    return _encode_tid(micros, secrets.randbelow(_CLOCK_IDS))


def thread_rkeys(first: str, count: int) -> list[str]:
    """Record keys for a thread of `count` posts, derived from the first one.

    A delivery stores one rkey; its thread's other keys are the same timestamp with the next
    clock ids, so they are fixed as soon as the first is, and sort in thread order.
    """
    micros, clock_id = _decode_tid(first)
    if count < 1 or clock_id + count > 1024:
        raise ValueError(f"cannot derive {count} record keys from {first!r}")
    return [_encode_tid(micros, clock_id + i) for i in range(count)]


def check_tid(rkey: str) -> None:
    """Raise ValueError unless `rkey` is a TID record key."""
    _decode_tid(rkey)
