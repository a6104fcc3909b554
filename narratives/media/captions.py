"""SRT and WebVTT captions from a Transcript, cut into cues a viewer can read.

Whisper segments run up to 30 s and hundreds of characters; captions need at most two lines
of about 42 characters on screen for a few seconds. Cues are built from word timings when the
transcript has them (else words get times spread over the segment by length), broken at
punctuation where that leaves a reasonably full cue. The small parsers exist so tests, and the
channel code that uploads captions, can check a file before it leaves the machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from narratives.core.files import atomic_write
from narratives.records.transcript import Segment, Transcript

__all__ = [
    "Cue",
    "make_cues",
    "format_timestamp",
    "to_srt",
    "to_webvtt",
    "write_srt",
    "write_webvtt",
    "parse_srt",
    "parse_webvtt",
    "CaptionError",
    "MAX_LINE_CHARS",
    "MAX_LINES",
]

MAX_LINE_CHARS = 42
MAX_LINES = 2
#: A cue longer than this is hard to follow even when short in characters.
MAX_CUE_SECONDS = 7.0
#: Break after sentence punctuation once a cue holds at least this share of its room.
_PUNCT_BREAK_SHARE = 0.5
_MIN_CUE_SECONDS = 0.2
#: A cue cut early at punctuation must still hold this share of its room.
_MIN_FILL_SHARE = 0.3
_SENTENCE_END = ".?!;:"
_CLAUSE_END = ",)"


class CaptionError(ValueError):
    """A caption file is malformed (line and reason in the message)."""


@dataclass
class Cue:
    start: float
    end: float
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _Token:
    start: float
    end: float
    text: str


def _tokens(segment: Segment) -> list[_Token]:
    if segment.words:
        return [_Token(w.start, w.end, w.text.strip()) for w in segment.words if w.text.strip()]
    # No word times: spread the segment's span over its words in proportion to their length.
    words = segment.text.split()
    total = sum(len(w) + 1 for w in words) or 1
    span, t, out = max(segment.end - segment.start, 0.0), segment.start, []
    for w in words:
        d = span * (len(w) + 1) / total
        out.append(_Token(t, t + d, w))
        t += d
    return out


def _wrap(words: list[str], width: int) -> list[str]:
    """Greedy wrap; a word longer than `width` gets a line of its own."""
    lines: list[str] = []
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= width:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return lines


def _balanced(words: list[str], width: int, max_lines: int) -> list[str]:
    """Wrap, then even out two lines so the break falls near the middle."""
    lines = _wrap(words, width)
    if len(lines) != 2 or max_lines < 2:
        return lines
    best, best_gap = lines, abs(len(lines[0]) - len(lines[1]))
    for i in range(1, len(words)):
        a, b = " ".join(words[:i]), " ".join(words[i:])
        if len(a) <= width and len(b) <= width and abs(len(a) - len(b)) < best_gap:
            best, best_gap = [a, b], abs(len(a) - len(b))
    return best


def make_cues(
    transcript: Transcript,
    *,
    max_chars: int = MAX_LINE_CHARS,
    max_lines: int = MAX_LINES,
    max_seconds: float = MAX_CUE_SECONDS,
) -> list[Cue]:
    """Readable cues in time order, never overlapping, each at most `max_lines` lines."""
    cues: list[Cue] = []
    for segment in transcript.segments:
        cues.extend(_segment_cues(segment, max_chars, max_lines, max_seconds))
    return _tidy(cues)


def _segment_cues(
    segment: Segment, max_chars: int, max_lines: int, max_seconds: float
) -> Iterable[Cue]:
    room = max_chars * max_lines
    group: list[_Token] = []
    for tok in _tokens(segment):
        words = [t.text for t in group] + [tok.text]
        fits = len(_wrap(words, max_chars)) <= max_lines
        if group and (not fits or tok.end - group[0].start > max_seconds):
            cut = _break_point(group, room)
            yield _cue(group[:cut], max_chars, max_lines)
            group = group[cut:]
        group.append(tok)
        used = len(" ".join(t.text for t in group))
        if tok.text[-1] in _SENTENCE_END and used >= room * _PUNCT_BREAK_SHARE:
            yield _cue(group, max_chars, max_lines)
            group = []
    if group:
        yield _cue(group, max_chars, max_lines)


def _break_point(group: list[_Token], room: int) -> int:
    """Where to end a full cue: after the last sentence end, else the last comma, found
    past a minimum fill; else after the whole group."""
    for marks in (_SENTENCE_END, _CLAUSE_END):
        used = 0
        best = 0
        for i, tok in enumerate(group):
            used += len(tok.text) + (1 if i else 0)
            if tok.text[-1] in marks and used >= room * _MIN_FILL_SHARE and i < len(group) - 1:
                best = i + 1
        if best:
            return best
    return len(group)


def _cue(group: list[_Token], max_chars: int, max_lines: int) -> Cue:
    lines = _balanced([t.text for t in group], max_chars, max_lines)
    return Cue(group[0].start, max(group[-1].end, group[0].start), lines)


def _tidy(cues: list[Cue]) -> list[Cue]:
    """Round to milliseconds, give each cue a minimum length, and stop overlaps."""
    out: list[Cue] = []
    for cue in cues:
        start = round(max(cue.start, 0.0), 3)
        end = round(max(cue.end, start + _MIN_CUE_SECONDS), 3)
        if out and start < out[-1].end:
            start = out[-1].end
            end = max(end, round(start + _MIN_CUE_SECONDS, 3))
        out.append(Cue(start, end, cue.lines))
    return out


def format_timestamp(seconds: float, *, sep: str = ",") -> str:
    """`HH:MM:SS,mmm` (SRT) or, with `sep="."`, `HH:MM:SS.mmm` (WebVTT)."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _vtt_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _srt_text(line: str) -> str:
    """SRT has no escaping: players read `<b>`/`{\\an8}` as styling and a line with `-->` as
    a timing line, so those spoken characters become look-alikes that are plain text."""
    line = line.replace("-->", "→").replace("<", "‹").replace(">", "›")
    return line.replace("{", "(").replace("}", ")")


def to_srt(transcript: Transcript, **options: float) -> str:
    blocks = []
    for i, cue in enumerate(make_cues(transcript, **options), 1):  # type: ignore[arg-type]
        span = f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}"
        text = "\n".join(_srt_text(x) for x in cue.lines)
        blocks.append(f"{i}\n{span}\n{text}\n")
    return "\n".join(blocks)


def to_webvtt(transcript: Transcript, **options: float) -> str:
    parts = ["WEBVTT\n"]
    for cue in make_cues(transcript, **options):  # type: ignore[arg-type]
        span = f"{format_timestamp(cue.start, sep='.')} --> {format_timestamp(cue.end, sep='.')}"
        parts.append(f"{span}\n" + "\n".join(_vtt_escape(x) for x in cue.lines) + "\n")
    return "\n".join(parts)


def write_srt(transcript: Transcript, path: str | os.PathLike[str]) -> Path:
    """Write SRT captions (replaced atomically: never half a file)."""
    return atomic_write(Path(path), to_srt(transcript))


def write_webvtt(transcript: Transcript, path: str | os.PathLike[str]) -> Path:
    """Write WebVTT captions (replaced atomically: never half a file)."""
    return atomic_write(Path(path), to_webvtt(transcript))


_SRT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})"
_VTT_TIME = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_SRT_SPAN = re.compile(rf"^{_SRT_TIME} --> {_SRT_TIME}$")
_VTT_SPAN = re.compile(rf"^{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t]+.*)?$")


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def _check_order(cues: list[Cue], where: str) -> None:
    for i, cue in enumerate(cues):
        if cue.end < cue.start:
            raise CaptionError(f"{where}: cue {i + 1} ends before it starts")
        if i and cue.start < cues[i - 1].start:
            raise CaptionError(f"{where}: cue {i + 1} starts before the cue it follows")


def _blocks(text: str) -> list[list[str]]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [b.split("\n") for b in re.split(r"\n{2,}", text.strip("\n")) if b.strip()]


def parse_srt(text: str) -> list[Cue]:
    """Strictly parse SRT: numbered blocks from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text."""
    cues: list[Cue] = []
    for n, block in enumerate(_blocks(text), 1):
        if len(block) < 3:
            raise CaptionError(f"srt block {n}: needs a number, a time span and text")
        if block[0].strip() != str(n):
            raise CaptionError(f"srt block {n}: numbered {block[0]!r}")
        m = _SRT_SPAN.match(block[1].strip())
        if not m:
            raise CaptionError(f"srt block {n}: bad time span {block[1]!r}")
        g = m.groups()
        cues.append(Cue(_seconds(*g[:4]), _seconds(*g[4:]), block[2:]))
    _check_order(cues, "srt")
    return cues


def parse_webvtt(text: str) -> list[Cue]:
    """Parse WebVTT cues (header required; NOTE/STYLE/REGION blocks skipped; ids allowed)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    first = text.split("\n", 1)[0].rstrip("\r")
    if not (first == "WEBVTT" or first.startswith(("WEBVTT ", "WEBVTT\t"))):
        raise CaptionError("webvtt: the first line must be WEBVTT")
    cues: list[Cue] = []
    for n, block in enumerate(_blocks(text)[1:], 2):
        if block[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        lines = block[1:] if "-->" not in block[0] else block
        m = _VTT_SPAN.match(lines[0].strip()) if lines else None
        if not m:
            raise CaptionError(f"webvtt block {n}: bad or missing time span")
        body = lines[1:]
        if any("-->" in x for x in body):
            raise CaptionError(f"webvtt block {n}: cue text may not contain '-->'")
        g = m.groups()
        cues.append(Cue(_seconds(*g[:4]), _seconds(*g[4:]), body))
    _check_order(cues, "webvtt")
    return cues
