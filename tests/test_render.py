"""The render stage: real MoviePy/ffmpeg renders, checked with ffprobe and decoded frames.

Renders are tiny (a few seconds of espeak-ng speech at scale 0.25 and 10 fps) and shared by
module-scoped fixtures; one full-size 1080x1920 30 fps smoke test. Word times are built by
hand (spread over the speech by word length), so no transcription model is needed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from narratives.core.campaigns import load_campaign_file
from narratives.core.clock import utcnow
from narratives.core.config import RenderSettings, Settings
from narratives.core.errors import ConfigError, InvalidState
from narratives.core.workspace import DEFAULTS_ROOT
from narratives.records.redactions import Redactions
from narratives.records.transcript import Segment, Transcript, Word
from narratives.records.video import FORMATS
from narratives.stages.render import cut, fonts, pages
from narratives.stages.render import stage as R
from narratives.stages.render.design import Design
from narratives.stages.render.layout import Layout, load_layout
from narratives.stages.render.video import render_video
from narratives.store.context import Context
from narratives.store.schema import narrative_paths, narratives
from narratives.store.stage_runs import get_run

pytestmark = pytest.mark.slow

SENTENCES = [
    "Last night in Valparaíso, Zoë dreamed of the quiet sanctuary.",
    "Everyone should get the same rest.",
]
SCALE, FPS = 0.25, 10
NID = "ab" * 32


def _speak(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-s", "165", "-w", str(path), text], check=True)
    return path


def _speech_bounds(path: Path) -> tuple[float, float, float]:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    return loud[0] / rate, loud[-1] / rate, x.size / rate


def _transcript(sentences: list[str], on: float, off: float, duration: float, gap=0.5):
    """Words spread over [on, off] by length, with `gap` seconds between sentences."""
    chars = [sum(len(w) + 1 for w in s.split()) for s in sentences]
    span = off - on - gap * (len(sentences) - 1)
    t, segs = on, []
    for i, s in enumerate(sentences):
        words, t0 = [], t
        for w in s.split():
            d = span * (len(w) + 1) / sum(chars)
            words.append(Word(round(t, 3), round(t + 0.85 * d, 3), " " + w))
            t += d
        segs.append(Segment(i, t0, words[-1].end, s, words))
        t += gap
    return Transcript(NID, "en", duration, segs, "hand", "none")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    clip = _speak(" ".join(SENTENCES), folder / "clip.wav")
    on, off, duration = _speech_bounds(clip)
    return clip, _transcript(SENTENCES, max(on, 0.5), off, duration)


@pytest.fixture(scope="module")
def campaign():
    return load_campaign_file(DEFAULTS_ROOT / "campaigns" / "emotional-equity.toml")


def _render(speech, campaign, out: Path, **kw):
    clip, transcript = speech
    kw.setdefault("fps", FPS)
    kw.setdefault("scale", SCALE)
    return render_video(clip, transcript, campaign, out, title="Zoë in Valparaíso", **kw)


@pytest.fixture(scope="module")
def rendered(speech, campaign, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "video-emotional-equity-vertical.mp4"
    return _render(speech, campaign, out)


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def _top_atoms(path: Path) -> list[str]:
    atoms, data, pos = [], path.read_bytes(), 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        atoms.append(data[pos + 4 : pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return atoms


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=16000)
        parts = [f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in rs.resample(fr)]
    return np.concatenate(parts), 16000


def _accent(region: np.ndarray) -> int:
    """Pixels near the accent colour #ffa300 (blue channel separates it from text #fff1e8)."""
    r, g, b = (region[..., i].astype(int) for i in range(3))
    return int(((r > 200) & (g > 120) & (g < 200) & (b < 90)).sum())


def _texty(region: np.ndarray) -> int:
    """Pixels near the text colour #fff1e8."""
    return int((region.min(axis=-1) > 200).sum())


def _caption_box(frame: np.ndarray, layout: Layout) -> np.ndarray:
    top = round(layout.captions.top * SCALE)
    return frame[top : top + round(layout.captions.height * SCALE)]


# ------------------------------------------------------------------ container and files


def test_mp4_is_h264_yuv420p_aac_faststart_and_as_long_as_its_audio(rendered):
    info = _probe(rendered.video)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["pix_fmt"], audio["codec_name"]) == (
        "h264",
        "yuv420p",
        "aac",
    )
    assert (video["width"], video["height"]) == (270, 480) == (rendered.width, rendered.height)
    assert abs(float(video["duration"]) - float(audio["duration"])) <= 0.1
    assert abs(float(info["format"]["duration"]) - rendered.duration) <= 0.1
    atoms = _top_atoms(rendered.video)
    assert "moov" in atoms and "mdat" in atoms and atoms.index("moov") < atoms.index("mdat")
    assert not rendered.cut and rendered.cut_ranges == [
        (0.0, pytest.approx(rendered.cut_ranges[0][1]))
    ]
    # Nothing but the three outputs in the folder (temporary files renamed or removed).
    names = sorted(p.name for p in rendered.video.parent.iterdir())
    stem = "video-emotional-equity-vertical"
    assert names == [f"{stem}.mp4", f"{stem}.png", f"{stem}.vtt"]


def test_end_card_shows_after_the_last_word(rendered, speech, campaign):
    _, transcript = speech
    frames = _frames(rendered.video)
    layout = load_layout(None, "vertical")
    last = _caption_box(frames[-1], layout)
    # The hashtags in the accent colour, the link in the text colour; the line stays
    # inside the frame (checked with the safe area) and is the campaign's.
    assert _accent(last) > 30 and _texty(last) > 10
    design = _design(campaign, words=[(w.start, w.end, w.text) for w in transcript.words],
                     duration=rendered.duration)  # fmt: skip
    card = _caption_box(design.frame(rendered.duration - 0.05), layout)
    assert np.abs(card.astype(int) - last.astype(int)).mean() < 6


def test_video_is_the_audio_plus_the_end_card(rendered, speech):
    clip, transcript = speech
    duration = _speech_bounds(clip)[2]
    last_word = transcript.words[-1].end
    expected = max(duration, last_word + pages.PAGE_HOLD + 2.5)
    assert abs(rendered.duration - expected) <= 0.1


def test_vtt_beside_video_is_valid_and_matches_the_words(rendered, speech):
    text = rendered.captions.read_text(encoding="utf-8")
    assert rendered.captions == rendered.video.with_suffix(".vtt")
    assert text.startswith("WEBVTT\n\n")
    cue = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})$")
    times, words, prev_end = [], [], 0.0
    for block in text.split("\n\n")[1:]:
        if not block.strip():
            continue
        lines = block.strip().split("\n")
        assert lines[0].isdigit()
        m = cue.match(lines[1])
        assert m, lines[1]
        v = [int(x) for x in m.groups()]
        a = v[0] * 3600 + v[1] * 60 + v[2] + v[3] / 1000
        b = v[4] * 3600 + v[5] * 60 + v[6] + v[7] / 1000
        assert prev_end - 1e-3 <= a < b <= rendered.duration + 1e-3
        prev_end = b
        times.append((a, b))
        words += " ".join(lines[2:]).split()
    assert words == " ".join(SENTENCES).split()
    assert len(times) == 2  # one cue per caption page: one per sentence here


def test_thumbnail_is_a_captioned_frame(rendered):
    from PIL import Image

    img = np.asarray(Image.open(rendered.thumbnail).convert("RGB"))
    assert img.shape == (480, 270, 3)
    layout = load_layout(None, "vertical")
    assert _texty(_caption_box(img, layout)) > 50


# ------------------------------------------------------------------ captions in the frames


def test_highlight_only_while_the_word_is_spoken(rendered, speech):
    _, transcript = speech
    frames = _frames(rendered.video)
    layout = load_layout(None, "vertical")
    words = transcript.words

    def frame_at(a: float, b: float) -> np.ndarray:
        """A frame whose time lies inside [a, b)."""
        i = int(np.ceil(a * FPS + 1e-6))
        assert i / FPS < b, (a, b)
        return frames[i]

    # Before the first word: no caption at all.
    blank = _caption_box(frames[0], layout)
    assert _texty(blank) == 0 and _accent(blank) == 0
    # Inside "Valparaíso," (a long word): its line is up and the word is in the accent colour.
    w = next(w for w in words if "Valpara" in w.text)
    inside = _caption_box(frame_at(w.start, w.end), layout)
    assert _accent(inside) > 40 and _texty(inside) > 100
    # In the pause after the first sentence: the page is still up, nothing highlighted.
    first_end, second_start = transcript.segments[0].end, transcript.segments[1].start
    pause = _caption_box(frame_at(first_end + 0.05, second_start - 0.15), layout)
    assert _texty(pause) > 100 and _accent(pause) == 0
    # The second sentence's page differs from the first one's.
    w2 = transcript.segments[1].words[0]
    second = _caption_box(frame_at(w2.start, w2.end), layout)
    assert _accent(second) > 10
    assert np.abs(second.astype(int) - pause.astype(int)).max() > 100


def _outside_safe_area(diff: np.ndarray, layout: Layout, scale: float, slack: int) -> float:
    """Largest difference from the background outside the safe area (shrunk by `slack` px)."""
    safe, h, w = layout.safe_area, diff.shape[1], diff.shape[2]
    top, bottom = round(safe.top * scale) - slack, h - round(safe.bottom * scale) + slack
    left, right = round(safe.left * scale) - slack, w - round(safe.right * scale) + slack
    return max(
        diff[:, :top].max(), diff[:, bottom:].max(), diff[:, :, :left].max(),
        diff[:, :, right:].max(),
    )  # fmt: skip


def test_everything_is_drawn_inside_the_safe_area(rendered, speech, campaign):
    layout = load_layout(None, "vertical")
    c0, c1 = (np.array(fonts.hex_rgb(c)) for c in campaign.look.background)
    t = np.linspace(0, 1, rendered.height)[:, None, None]
    gradient = np.round(c0 * (1 - t) + c1 * t).astype(np.int16)[None]  # 1 x H x 1 x 3
    # The drawing itself, before compression: exactly the background outside the safe area.
    _, transcript = speech
    words = [(w.start, w.end, w.text) for w in transcript.words]
    design = Design(
        layout=layout, scale=SCALE, campaign=campaign, title="Zoë in Valparaíso " * 4,
        words=words, duration=rendered.duration, fps=FPS, levels=np.ones(100), font_path=None,
        logo=DEFAULTS_ROOT / campaign.look.logo, background_image=None, redactions=None,
    )  # fmt: skip
    drawn = np.stack([design.frame(i / FPS) for i in range(int(rendered.duration * FPS))])
    drawn_diff = np.abs(drawn.astype(np.int16) - gradient)
    assert _outside_safe_area(drawn_diff, layout, SCALE, 0) <= 1
    assert drawn_diff.max() > 100  # the inside does hold the design
    # The encoded video: only compression noise (chroma is subsampled 2x2) near the edge.
    diff = np.abs(_frames(rendered.video).astype(np.int16) - gradient)
    assert _outside_safe_area(diff, layout, SCALE, 4) < 16


@pytest.mark.parametrize("scale", [SCALE, 0.37])
def test_yuv_frames_are_the_drawn_frames_converted(speech, campaign, scale):
    """The encoder gets I420 frames composed from layers converted once; they must equal
    the RGB frame converted whole, so every layer must sit on even rows and columns."""
    from narratives.media.video_writer import rgb_to_i420

    _, transcript = speech
    design = Design(
        layout=load_layout(None, "vertical"), scale=scale, campaign=campaign,
        title="Zoë in Valparaíso", words=[(w.start, w.end, w.text) for w in transcript.words],
        duration=transcript.duration + 2, fps=FPS, levels=np.linspace(0, 1, 100),
        font_path=None, logo=DEFAULTS_ROOT / campaign.look.logo, background_image=None,
        redactions=None,
    )  # fmt: skip
    patches = [design.end_card] + [p for page in design.pages for p in [page.image] + [
        w[2] for w in page.words]]  # fmt: skip
    assert all(p.y % 2 == p.x % 2 == 0 for p in patches)
    assert all(p.pixels.shape[0] % 2 == p.pixels.shape[1] % 2 == 0 for p in patches)
    times = np.arange(0, design.duration, 0.25)
    seen = set()
    for t in times:
        rgb = design.frame(t)
        whole = np.concatenate([p.ravel() for p in rgb_to_i420(rgb)])
        assert np.array_equal(design.frame_i420(t), whole), t
        seen.add(rgb.tobytes())
    assert len(seen) > len(times) // 2  # the frames do change: captions, bars, progress


@pytest.mark.parametrize(
    ("fmt", "scale"), [("vertical", SCALE), ("vertical", 0.67), ("square", 0.5)]
)
def test_the_encoders_composer_gives_every_frame_whole(speech, campaign, fmt, scale):
    """The composer changes only what differs from the frame before; whatever order the
    frames are asked in (forwards, a jump back, a repeat), each must equal the frame
    composed whole."""
    _, transcript = speech
    rng = np.random.default_rng(7)
    design = Design(
        layout=load_layout(None, fmt), scale=scale, campaign=campaign,
        title="Zoë in Valparaíso", words=[(w.start, w.end, w.text) for w in transcript.words],
        duration=transcript.duration + 2, fps=FPS, levels=rng.random(400),
        font_path=None, logo=DEFAULTS_ROOT / campaign.look.logo, background_image=None,
        redactions=None,
    )  # fmt: skip
    compose = design.composer()
    n = int(design.duration * FPS)
    order = [*range(n), n // 2, n // 2, 3, *range(n // 3, n // 3 + 8), 0, n - 1]
    changed = 0
    previous = None
    for i in order:
        frame = compose(i / FPS)
        assert np.array_equal(frame, design.frame_i420(i / FPS)), i
        changed += previous is not None and not np.array_equal(frame, previous)
        previous = frame.copy()
    assert changed > len(order) // 2


def test_a_highlighted_word_is_the_page_drawn_with_that_word_highlighted():
    """Word patches are drawn from only the words that reach them; they must equal the
    whole page drawn with that word in the accent colour, then cropped, also where lines
    sit close enough for descenders and stacked accents to cross into the next line."""
    from PIL import Image

    bold = fonts.Fonts.of(None).bold
    font = fonts.load_font(bold, 40)
    box = pages.CaptionBox(
        background=Image.new("RGB", (480, 200), (20, 40, 60)), top=100, height=200, left=20,
        inner=440, text_rgb=(250, 250, 250), accent_rgb=(255, 200, 0),
    )  # fmt: skip
    lines = [["Gyp", "jogged,", "Ỗlga's"], ["quay", "ÉÂÑ", "fly;", "pique"], ["Ýj", "gig", "Qy"]]
    for spacing in (0.8, 1.0, 1.25):
        boxes = pages._word_boxes(box, lines, font, spacing)
        inks = [pages._ink(b, font) for b in boxes]
        for k in range(len(boxes)):
            patch = pages._word_patch(box, boxes, inks, font, k)
            h, w = patch.pixels.shape[:2]
            y, x = patch.y - box.top, patch.x
            whole = np.asarray(box.draw(boxes, font, k).crop((x, y, x + w, y + h)))
            assert np.array_equal(patch.pixels, whole), (spacing, boxes[k][2])
            assert (patch.pixels == box.accent_rgb).all(axis=-1).any()


def _design(campaign, fmt: str = "vertical", scale: float = SCALE, **kw) -> Design:
    kw.setdefault("title", "Zoë in Valparaíso")
    kw.setdefault("words", [])
    kw.setdefault("duration", 4.0)
    return Design(
        layout=load_layout(None, fmt), scale=scale, campaign=campaign, fps=FPS,
        levels=np.ones(100), font_path=None, logo=DEFAULTS_ROOT / campaign.look.logo,
        background_image=None, redactions=None, **kw,
    )  # fmt: skip


def _background(campaign, height: int) -> np.ndarray:
    c0, c1 = (np.array(fonts.hex_rgb(c)) for c in campaign.look.background)
    t = np.linspace(0, 1, height)[:, None, None]
    return np.round(c0 * (1 - t) + c1 * t).astype(np.int16)[None]


@pytest.mark.parametrize("fmt", ["vertical", "square"])
def test_long_title_name_words_and_title_line_stay_inside_the_safe_area(campaign, fmt):
    long = campaign.model_copy(
        update={
            "name": "The Coalition For Emotional Equity Everywhere",
            "look": campaign.look.model_copy(
                update={"title_line": "a story for emotional equity, " * 4}
            ),
        }
    )
    title = "https://www.example.org/a/very/long/address/that/never/breaks and more words"
    speech = "Floccinaucinihilipilificationisticallyspeaking was what she said, twice."
    words = [(0.5 + 0.4 * i, 0.8 + 0.4 * i, " " + w) for i, w in enumerate(speech.split())]
    design = _design(long, fmt, scale=0.5, title=title, words=words)
    drawn = np.stack([design.frame(t) for t in np.arange(0, 4.0, 0.2)])
    diff = np.abs(drawn.astype(np.int16) - _background(long, design.height))
    layout = load_layout(None, fmt)
    assert _outside_safe_area(diff, layout, 0.5, 0) <= 1
    assert diff.max() > 100


def test_scripts_the_font_lacks_use_a_fallback_font_and_stay_in_the_vtt(campaign):
    latin = _design(campaign, words=[(0.5, 1.0, " Zoë"), (1.0, 1.5, " Nguyễn")])
    assert latin.fonts.bold.endswith("Roboto-Bold.ttf") and latin.missing_glyphs == ""
    said = ["I", "met", "שרה", "and", "王小明", "yesterday."]
    words = [(0.5 + 0.3 * i, 0.75 + 0.3 * i, " " + w) for i, w in enumerate(said)]
    design = _design(campaign, words=words)
    # DejaVu Sans (Debian's fonts-dejavu-core) draws the Hebrew; nothing here draws the Han.
    assert design.fonts.bold.endswith("DejaVuSans-Bold.ttf")
    assert design.missing_glyphs == "".join(sorted("王小明"))
    [page] = design.pages
    assert " ".join(page.lines) == "I met שרה and … yesterday."
    assert " ".join(page.spoken) == " ".join(said)
    # The captions file breaks lines where the picture does.
    assert [len(ln.split()) for ln in page.spoken] == [len(ln.split()) for ln in page.lines]
    assert "\n".join(page.spoken) in pages.vtt(design.pages, 4.0)
    # The Hebrew word is drawn: the frame differs from one where it is left out.
    without = _design(campaign, words=[w for w in words if "שרה" not in w[2]])
    assert np.abs(design.frame(0.6).astype(int) - without.frame(0.6).astype(int)).max() > 100


def test_the_highlight_covers_stacked_accents(campaign):
    """A word alone on its page: while spoken, none of it keeps the text colour."""
    design = _design(campaign, scale=1.0, words=[(0.5, 2.0, " ỖỄẲẴ")])
    box = design.frame(1.0)[design.cap_top : design.cap_top + design.cap_h]
    assert _accent(box) > 20 and _texty(box) == 0


def test_background_image_is_tinted_by_the_gradient(campaign, tmp_path):
    from PIL import Image

    red = tmp_path / "red.png"
    Image.new("RGB", (50, 80), (255, 0, 0)).save(red)
    look = campaign.look.model_copy(update={"background_image": "red.png"})
    plain = _design(campaign)
    tinted = Design(
        layout=load_layout(None, "vertical"), scale=SCALE, campaign=campaign.model_copy(
            update={"look": look}), title="Zoë", words=[], duration=4.0, fps=FPS,
        levels=np.zeros(100), font_path=None, logo=None, background_image=red, redactions=None,
    )  # fmt: skip
    # A corner outside the safe area: 35 % image, 65 % gradient.
    expected = 0.35 * np.array([255, 0, 0]) + 0.65 * plain.frame(0)[2, 2]
    assert np.abs(tinted.frame(0)[2, 2] - expected).max() <= 2


def test_non_ascii_names_render_and_emoji_are_dropped():
    roboto = str(fonts.roboto("Bold"))
    assert fonts.printable("Zoë 🌙 Valparaíso\u200d", roboto) == "Zoë Valparaíso"
    campaign = load_campaign_file(DEFAULTS_ROOT / "campaigns" / "neural-mandate.toml")
    layout = load_layout(None, "square")

    def title_frame(title: str) -> np.ndarray:
        design = Design(
            layout=layout, scale=0.5, campaign=campaign, title=title, words=[], duration=2.0,
            fps=10, levels=np.zeros(20), font_path=None, logo=None, background_image=None,
            redactions=None,
        )  # fmt: skip
        return design.frame(0.0).astype(int)

    plain, accented = title_frame("Zoe Valparaiso"), title_frame("Zoë Valparaíso")
    changed = np.argwhere(np.abs(plain - accented).max(axis=-1) > 60)
    assert len(changed) > 20  # the diaeresis and acute accent are drawn
    ys = changed[:, 0]
    title_top = layout.title.top * 0.5
    assert ys.min() >= title_top - 2 and ys.max() < title_top + layout.title.size * 0.5


# ------------------------------------------------------------------ cutting


def test_plan_cut_keeps_whole_sentences_around_the_quote():
    # Ten sentences of 4 s with 1 s pauses; the quote is sentence 6.
    words, t = [], 1.0
    for s in range(10):
        for k in range(4):
            words.append(Word(t + k, t + k + 0.8, f" w{s}{k}" + ("." if k == 3 else "")))
        t += 5.0
    quote = (26.0, 29.8)
    ranges = cut.plan_cut(words, 52.0, 16.0, [quote])
    assert cut.length(ranges) <= 16.0
    assert any(a <= quote[0] and b >= quote[1] for a, b in ranges)
    kept = cut.remap(words, ranges)
    # Whole sentences: each kept sentence has all four words.
    names = [w[2].strip(" .")[:2] for w in kept]
    assert all(names.count(n) == 4 for n in set(names))
    assert len(set(names)) == 3 and "w5" in names
    # No cut needed: the whole recording.
    assert cut.plan_cut(words, 52.0, 60.0, [quote]) == [(0.0, 52.0)]


def test_plan_cut_one_long_sentence_is_cut_at_a_word():
    words = [Word(i * 0.5, i * 0.5 + 0.4, f" w{i}") for i in range(100)]
    (a, b), *rest = cut.plan_cut(words, 50.0, 10.0)
    assert not rest and b - a <= 10.0 and b - a > 8.0
    assert any(abs(b - cut.PAD_AFTER - w.end) < 1e-6 for w in words)


def test_long_narrative_is_cut_under_the_campaign_limit(samples_dir, campaign, tmp_path):
    clip = samples_dir / "amara-sanctuary-line.wav"
    text = (samples_dir / "amara-sanctuary-line.txt").read_text().strip()
    sentences = re.split(r"(?<=[.!?])\s+", text)
    with av.open(str(clip)) as c:
        duration = float(c.duration / av.time_base)
    transcript = _transcript(sentences, 0.3, duration - 0.3, duration, gap=0.4)
    quote_words = transcript.segments[2].words
    quote = (quote_words[0].start, quote_words[-1].end)
    short = campaign.model_copy(update={"max_video_seconds": 12.0})
    r = render_video(
        clip, transcript, short, tmp_path / "video-emotional-equity-square.mp4", fmt="square",
        title="The Sleep Sanctuary", keys=[quote], fps=8, scale=0.2,
    )  # fmt: skip
    assert r.cut and duration > 20
    assert r.duration <= 12.0
    assert float(_probe(r.video)["format"]["duration"]) <= 12.05
    assert any(a <= quote[0] and b >= quote[1] for a, b in r.cut_ranges)
    # The cut falls at sentence boundaries: every range starts before a sentence and ends
    # after one, never inside a word.
    starts = [s.start for s in transcript.segments]
    ends = [s.end for s in transcript.segments]
    for a, b in r.cut_ranges:
        assert any(0 <= s - a <= 0.25 for s in starts)
        assert any(0 <= b - e <= 0.35 for e in ends)
    vtt = r.captions.read_text(encoding="utf-8")
    assert " ".join(w.text.strip() for w in quote_words[:3]) in vtt.replace("\n", " ")
    assert sentences[0].split()[0] + " " + sentences[0].split()[1] not in vtt.replace("\n", " ")


# ------------------------------------------------------------------ redactions


def test_redacted_interval_is_a_tone_and_the_name_is_replaced(rendered, speech, campaign, tmp_path):
    _, transcript = speech
    name = next(w for w in transcript.words if "Zoë" in w.text)
    red = Redactions(intervals=[(name.start, name.end)], replacements={"zoë": "[name]"})
    r = _render(speech, campaign, tmp_path / "video-x-vertical.mp4", redactions=red)

    def tone_share(path: Path) -> float:
        x, rate = _audio(path)
        seg = x[int((name.start + 0.03) * rate) : int((name.end - 0.03) * rate)]
        spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) ** 2
        f = np.fft.rfftfreq(seg.size, 1 / rate)
        return float(spec[(f > 950) & (f < 1050)].sum() / spec.sum())

    assert tone_share(r.video) > 0.9
    assert tone_share(rendered.video) < 0.5  # the same interval unredacted is speech
    vtt = r.captions.read_text(encoding="utf-8")
    assert "[name]" in vtt and "Zoë" not in vtt
    assert "Valparaíso" in vtt


# ------------------------------------------------------------------ layout config


def _write_layout(workspace, text: str) -> Path:
    path = workspace.templates_dir / "video" / "vertical.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_layouts_load(workspace):
    for fmt in FORMATS:
        layout = load_layout(workspace, fmt)
        assert layout.path == workspace.templates_dir / "video" / f"{fmt}.toml"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("size = 68", "size = -4"), "captions.size"),
        (("bars = 41", "bars = 41\nwobble = 3"), "waveform.wobble"),
        (("[progress]\ntop = 1620", "[progress]\ntop = 1800"), "progress.top"),
        (("[captions]\ntop = 780", "[captions]\ntop = 600"), "captions.top"),
        (("max_lines = 3\nline_spacing", "max_lines = 5\nline_spacing"), "captions.max_lines"),
        # Too short for three lines at min_size: the third line would be cut off.
        (
            ("[captions]\ntop = 780\nheight = 520", "[captions]\ntop = 780\nheight = 120"),
            "captions.height",
        ),
        (("[title]\ntop = 320\nheight = 400", "[title]\ntop = 320\nheight = 60"), "title.height"),
    ],
)
def test_bad_layout_is_a_config_error_naming_file_and_key(workspace, change, key):
    shipped = (DEFAULTS_ROOT / "templates" / "video" / "vertical.toml").read_text()
    assert change[0] in shipped
    path = _write_layout(workspace, shipped.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as err:
        load_layout(workspace, "vertical")
    assert str(path) in str(err.value) and key in str(err.value)


def test_unreadable_layout_and_unknown_format(workspace):
    path = _write_layout(workspace, "width = [")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_layout(workspace, "vertical")
    with pytest.raises(ConfigError, match="landscape"):
        load_layout(workspace, "landscape")


# ------------------------------------------------------------------ the stage


def _register(
    ctx: Context,
    clip: Path,
    transcript: Transcript,
    analysis: dict | None = None,
    nid: str = NID,
):
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            narratives.insert().values(
                id=nid, created_at=now, updated_at=now, size_bytes=clip.stat().st_size,
                label=clip.name, title=None,
            )
        )  # fmt: skip
        conn.execute(
            narrative_paths.insert().values(
                narrative_id=nid, path=str(clip), first_seen=now, last_seen=now
            )
        )
    folder = ctx.workspace.narrative_dir(nid)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transcript.json").write_text(json.dumps(transcript.to_dict()), encoding="utf-8")
    if analysis is not None:
        (folder / "analysis.json").write_text(json.dumps(analysis), encoding="utf-8")
    return folder


@pytest.fixture
def small_ctx(workspace):
    return Context(workspace, Settings(render=RenderSettings(fps=8, scale=0.2)))


def test_stage_records_each_video_and_skips_done_work(small_ctx, speech, tmp_path):
    clip, transcript = speech
    local = shutil.copy(clip, tmp_path / "clip.wav")
    folder = _register(small_ctx, Path(local), transcript)
    with pytest.raises(InvalidState, match="not analysed"):
        R.run(small_ctx, NID)
    [res] = R.run(small_ctx, NID, campaigns=["emotional-equity"], formats=["square"])
    assert res.video == folder / "video-emotional-equity-square.mp4" and res.video.is_file()
    run = get_run(small_ctx.db, NID, "render", "emotional-equity/square")
    assert run.status == "done" and run.engine == "moviepy"
    rel = f"media/work/{NID}/video-emotional-equity-square"
    output = dict(run.output)
    assert len(output.pop("privacy")) == 16 and len(output.pop("inputs")) == 16
    assert output == {
        "video": f"{rel}.mp4", "captions": f"{rel}.vtt", "thumbnail": f"{rel}.png",
        "duration": res.duration, "width": 216, "height": 216, "cut": False,
        "cut_ranges": [[0.0, pytest.approx(res.cut_ranges[0][1])]], "missing_glyphs": "",
    }  # fmt: skip
    mtime = res.video.stat().st_mtime_ns
    [again] = R.run(small_ctx, NID, campaigns=["emotional-equity"], formats=["square"])
    assert again.skipped and again.video.stat().st_mtime_ns == mtime

    # A newly marked name changes what must be hidden: the video is made again.
    from narratives.store.redactions import mark_term

    spoken = transcript.words[1].text.strip(" .,")
    mark_term(small_ctx, NID, spoken, actor="editor")
    [redone] = R.run(small_ctx, NID, campaigns=["emotional-equity"], formats=["square"])
    assert not redone.skipped and redone.video.stat().st_mtime_ns != mtime
    vtt = redone.captions.read_text()
    assert "[name]" in vtt and f" {spoken} " not in f" {vtt} "


def test_stage_takes_campaigns_and_title_from_the_analysis(small_ctx, speech, tmp_path):
    clip, transcript = speech
    words = transcript.segments[1].words
    analysis = {
        "title": "Équité: the same rest",
        "quote": {"text": SENTENCES[1], "start": words[0].start, "end": words[-1].end},
        "summary": [
            {
                "text": SENTENCES[1],
                "raw": SENTENCES[1],
                "start": words[0].start,
                "end": words[-1].end,
            }
        ],
        "campaigns": {
            "emotional-equity": {"on_topic": False, "top": [], "tags": []},
            "neural-mandate": {"on_topic": True, "top": [], "tags": []},
        },
        "empty": False,
    }
    folder = _register(small_ctx, Path(shutil.copy(clip, tmp_path / "c.wav")), transcript, analysis)
    results = R.run(small_ctx, NID, formats=["vertical"])
    assert [(r.campaign, r.format) for r in results] == [("neural-mandate", "vertical")]
    assert sorted(p.name for p in folder.iterdir()) == [
        "analysis.json", "transcript.json", "video-neural-mandate-vertical.mp4",
        "video-neural-mandate-vertical.png", "video-neural-mandate-vertical.vtt",
    ]  # fmt: skip


def test_a_failed_render_leaves_no_partial_files(small_ctx, speech, tmp_path):
    clip, transcript = speech
    folder = _register(small_ctx, Path(shutil.copy(clip, tmp_path / "c.wav")), transcript)

    def stop(key, done, total):
        if done >= 3:
            raise RuntimeError("interrupted at frame 3")

    with pytest.raises(RuntimeError, match="frame 3"):
        R.run(small_ctx, NID, campaigns=["neural-mandate"], formats=["square"], progress=stop)
    assert sorted(p.name for p in folder.iterdir()) == ["transcript.json"]
    run = get_run(small_ctx.db, NID, "render", "neural-mandate/square")
    assert run.status == "failed" and "frame 3" in run.error


def test_cli_renders_and_prints_json(workspace, speech, tmp_path):
    import click
    from click.testing import CliRunner

    from narratives.cli import render as render_cmd

    workspace.settings_path.write_text("[render]\nfps = 8\nscale = 0.2\n", encoding="utf-8")
    clip, transcript = speech
    ctx = Context(workspace)
    _register(ctx, Path(shutil.copy(clip, tmp_path / "c.wav")), transcript)

    @click.group()
    def cli():
        pass

    render_cmd.register(cli)
    args = ["render", NID[:10], "--campaign", "neural-mandate", "--format", "square", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    [line] = result.output.strip().splitlines()
    out = json.loads(line)
    assert out["campaign"] == "neural-mandate" and out["width"] == 216 and not out["skipped"]
    assert (workspace.root / out["video"]).is_file()
    bad = CliRunner().invoke(cli, ["render", "ffff", "--json"])
    assert bad.exit_code != 0


# ------------------------------------------------------------------ full size


def test_full_size_vertical_smoke(speech, campaign, tmp_path):
    r = _render(speech, campaign, tmp_path / "video-full-vertical.mp4", fps=30, scale=1.0)
    info = _probe(r.video)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["width"], video["height"], video["r_frame_rate"]) == (1080, 1920, "30/1")
    assert (video["codec_name"], video["pix_fmt"], audio["codec_name"]) == (
        "h264",
        "yuv420p",
        "aac",
    )
    assert abs(float(video["duration"]) - float(audio["duration"])) <= 0.1
    atoms = _top_atoms(r.video)
    assert atoms.index("moov") < atoms.index("mdat")
    assert r.video.stat().st_size < 5 * 1000 * 1000


def test_a_cut_video_is_said_in_its_drafts_and_on_the_review_page(workspace, samples_dir, tmp_path):
    """The 24 s sample under a 12 s campaign limit: the drafts and the editor are told."""
    from narratives.stages.draft import stage as drafting
    from narratives.workflow import review
    from tests.review_fixtures import analysis_for
    from tests.web_client import client_for

    path = workspace.campaigns_dir / "emotional-equity.toml"
    toml = path.read_text(encoding="utf-8")
    assert "max_video_seconds = 90" in toml
    path.write_text(toml.replace("max_video_seconds = 90", "max_video_seconds = 12"), "utf-8")
    clip = Path(shutil.copy(samples_dir / "amara-sanctuary-line.wav", tmp_path / "a.wav"))
    text = (samples_dir / "amara-sanctuary-line.txt").read_text(encoding="utf-8").strip()
    sentences = re.split(r"(?<=[.!?])\s+", text)
    with av.open(str(clip)) as c:
        duration = float(c.duration / av.time_base)
    transcript = _transcript(sentences, 0.3, duration - 0.3, duration, gap=0.4)
    words = transcript.segments[2].words
    quote = {"text": transcript.segments[2].text, "start": words[0].start, "end": words[-1].end}
    analysis = analysis_for(quote={**quote, "raw": quote["text"]}, summary=[])
    ctx = Context(workspace, Settings(render=RenderSettings(fps=8, scale=0.2)))
    _register(ctx, clip, transcript, analysis)

    [video] = R.run(ctx, NID, formats=["vertical"])
    assert video.campaign == "emotional-equity" and video.cut
    found = {(d.campaign, d.channel): d for d in map(
        lambda i: review.get_draft(ctx, i), drafting.run(ctx, NID))}  # fmt: skip
    bsky, rss = found["emotional-equity", "bluesky"], found["emotional-equity", "rss"]
    kept = sum(b - a for a, b in video.cut_ranges)
    said = (
        f"The video is a {drafting.clock(kept)} excerpt of the "
        f"{drafting.clock(transcript.duration)} recording"
    )
    assert kept <= 12 and drafting.clock(transcript.duration) == "0:24"
    assert said in "\n".join(bsky.posts)
    assert said in rss.content["content"]
    assert bsky.data["video_cut"]["kept"] == [list(r) for r in video.cut_ranges]
    # The editor sees which parts of the recording the video keeps.
    page = client_for(ctx).get(f"/drafts/{bsky.id}").text
    first = video.cut_ranges[0]
    assert f"Excerpt: the video keeps {drafting.clock(first[0])}–{drafting.clock(first[1])}" in page


def test_cli_all_renders_every_ready_narrative_and_skips_the_rest(workspace, speech, tmp_path):
    import click
    from click.testing import CliRunner

    from narratives.cli import render as render_cmd
    from narratives.store.schema import stage_runs

    workspace.settings_path.write_text("[render]\nfps = 8\nscale = 0.2\n", encoding="utf-8")
    clip, transcript = speech
    ctx = Context(workspace)
    _register(ctx, Path(shutil.copy(clip, tmp_path / "c.wav")), transcript)
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            stage_runs.insert().values(
                narrative_id=NID, stage="transcribe", key="", status="done", started_at=now,
                finished_at=now,
            )
        )  # fmt: skip
        # Registered but not transcribed yet (a recording still in the queue).
        conn.execute(
            narratives.insert().values(
                id="cd" * 32, created_at=now, updated_at=now, size_bytes=1, label="queued.wav"
            )
        )

    @click.group()
    def cli():
        pass

    render_cmd.register(cli)
    runner = CliRunner()
    # Transcribed but not analysed: --all has nothing ready without --campaign.
    none = runner.invoke(cli, ["render", "--all", "--json"])
    assert none.exit_code == 0 and none.output == ""
    args = ["render", "--all", "--campaign", "neural-mandate", "--format", "square", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.output.strip().splitlines()]
    assert [(x["narrative_id"], x["format"], x["skipped"]) for x in lines] == [
        (NID, "square", False)
    ]
    # Named explicitly, the queued one is an error (exit 1) and the other is still done.
    both = runner.invoke(cli, ["render", NID[:8], "cdcd", "--campaign", "neural-mandate",
                               "--format", "square", "--json"])  # fmt: skip
    assert both.exit_code == 1
    out = [json.loads(x) for x in both.output.strip().splitlines()]
    assert out[0]["skipped"] is True and "transcript" in out[1]["error"]


def test_characters_no_font_draws_are_shown_to_the_editor(workspace, speech, tmp_path):
    from narratives.stages.draft import stage as drafting
    from narratives.workflow import review
    from tests.review_fixtures import analysis_for
    from tests.web_client import client_for

    clip, transcript = speech
    seg = transcript.segments[0]
    words = [Word(w.start, w.end, " 王小明") if "Zoë" in w.text else w for w in seg.words]
    text = " ".join(w.text.strip() for w in words)
    segments = [Segment(0, seg.start, seg.end, text, words), *transcript.segments[1:]]
    odd = Transcript(NID, "en", transcript.duration, segments, "hand", "none")
    ctx = Context(workspace, Settings(render=RenderSettings(fps=8, scale=0.2)))
    _register(ctx, Path(shutil.copy(clip, tmp_path / "c.wav")), odd, analysis_for())
    [video] = R.run(ctx, NID, formats=["vertical"])
    assert video.missing_glyphs == "".join(sorted("王小明"))
    assert "王小明" in video.captions.read_text(encoding="utf-8")
    ids = drafting.run(ctx, NID)
    bsky = next(d for d in map(lambda i: review.get_draft(ctx, i), ids) if d.channel == "bluesky")
    assert bsky.data["video_missing_glyphs"] == video.missing_glyphs
    page = client_for(ctx).get(f"/drafts/{bsky.id}").text
    assert f"The video could not draw “{video.missing_glyphs}”" in page


def test_cli_renders_narratives_in_parallel_workers(workspace, speech, tmp_path):
    """`render --workers 2`: two narratives at once in spawned processes, the same output."""
    import click
    from click.testing import CliRunner

    from narratives.cli import render as render_cmd
    from tests.review_fixtures import analysis_for

    workspace.settings_path.write_text("[render]\nfps = 8\nscale = 0.2\n", encoding="utf-8")
    clip, transcript = speech
    ctx = Context(workspace)
    other = "ef" * 32
    for nid in (NID, other):
        copy = Path(shutil.copy(clip, tmp_path / f"{nid[:4]}.wav"))
        _register(ctx, copy, transcript, analysis_for(), nid=nid)
    ctx.db.dispose()  # the workers open their own connections

    @click.group()
    def cli():
        pass

    render_cmd.register(cli)
    args = ["render", NID[:6], other[:6], "--format", "square", "--workers", "2", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = sorted((json.loads(x) for x in result.output.strip().splitlines()),
                   key=lambda x: x["narrative_id"])  # fmt: skip
    assert [(x["narrative_id"], x["campaign"], x["skipped"]) for x in lines] == [
        (NID, "emotional-equity", False), (other, "emotional-equity", False)]  # fmt: skip
    for x in lines:
        assert (workspace.root / x["video"]).stat().st_size > 1000
        run = get_run(ctx.db, x["narrative_id"], "render", "emotional-equity/square")
        assert run.status == "done" and run.output["width"] == 216
