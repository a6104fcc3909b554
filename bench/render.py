"""Bench: a 60 s 1080x1920 30 fps audiogram, our MoviePy renderer vs a direct ffmpeg graph.

Both run in the same invocation on the same audio and design: the renderer (`render_video`,
in a child process so its memory and CPU are its own) and an equivalent ffmpeg filter graph
(the same static background decoded once, showwaves, one drawtext per caption line, a progress
bar, x264 veryfast, yuv420p throughout). Prints wall time, real-time factor, CPU seconds, peak
memory of the renderer process and of its encoder (largest child), and the ratio.

Targets (issue 4): renderer <= 0.8x real time on 2 cores, and <= 1.5x the ffmpeg graph's time.

`--batch N` also renders N videos of `--batch-seconds` two ways: one after another with the
encoder on every core, and as `process --workers <cores>` does (one render per core, the cores
shared out among encoders), printing wall time and how busy the cores were (CPU-s / wall /
cores; near 1.0 means busy and not oversubscribed).

`--compare 1080x30,720x24` renders the same story once per look (short edge in px x frames per
second, through `render_video` as the render stage calls it for a campaign's `[look] resolution`
and `fps`), alternating them `--rounds` times and keeping each look's fastest, and prints encode
seconds, CPU seconds, file size, the probed size and rate (PyAV), and a look check against the
first look: SSIM of its frame, downscaled, against each other look's frame at the same moment
(whole frame and the caption box), and the caption font size in px.

    .venv/bin/python bench/render.py [--seconds 60] [--batch 4 --batch-seconds 20] [--json]
    .venv/bin/python bench/render.py --seconds 60 --compare 1080x30,720x24 [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SAMPLES = ["amara-sanctuary-line.wav", "tomas-night-shift.mp3", "lena-grandmother.m4a"]
CAMPAIGN = "emotional-equity"
FPS = 30
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def _make_audio(folder: Path, seconds: float) -> tuple[Path, list]:
    """Samples joined into one WAV of `seconds`, with words spread over each sample."""
    from narratives.media.audio import probe
    from narratives.records.transcript import Word

    parts = [REPO / "media" / "samples" / n for n in SAMPLES]
    words, offset = [], 0.0
    for p in parts:
        dur = probe(p).duration
        text = p.with_suffix(".txt").read_text(encoding="utf-8").split()
        span = dur - 0.6
        total = sum(len(w) + 1 for w in text)
        t = offset + 0.3
        for w in text:
            d = span * (len(w) + 1) / total
            if t + d < seconds:
                words.append(Word(t, t + 0.85 * d, " " + w))
            t += d
        offset += dur
    out = folder / "bench.wav"
    inputs = [a for p in parts for a in ("-i", str(p))]
    chain = "".join(f"[{i}:a]" for i in range(len(parts)))
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-y",
            *inputs,
            "-filter_complex",
            f"{chain}concat=n={len(parts)}:v=0:a=1,aresample=44100,pan=mono|c0=c0[a]",
            "-map",
            "[a]",
            "-t",
            str(seconds),
            str(out),
        ],
        check=True,
    )
    return out, words


def _transcript(words, seconds: float):
    from narratives.records.transcript import Segment, Transcript

    seg = Segment(0, words[0].start, words[-1].end, " ".join(w.text for w in words), words)
    return Transcript("0" * 64, "en", seconds, [seg], "bench", "none")


def _worker(args) -> None:
    """Child process: render with our renderer, print its own rusage as JSON."""
    from narratives.core.campaigns import load_campaign_file
    from narratives.core.workspace import DEFAULTS_ROOT
    from narratives.records.transcript import Transcript
    from narratives.stages.render.video import render_video

    data = json.loads(Path(args.worker).read_text())
    from narratives.stages.render.layout import load_layout
    from narratives.stages.render.video import frame_scale

    campaign = load_campaign_file(DEFAULTS_ROOT / "campaigns" / f"{CAMPAIGN}.toml")
    layout = load_layout(None, "vertical")
    r = render_video(
        Path(data["audio"]),
        Transcript.from_dict(data["transcript"]),
        campaign,
        Path(data["out"]),
        fmt="vertical",
        layout=layout,
        title=data["title"],
        fps=data.get("fps", FPS),
        scale=frame_scale(layout, data.get("resolution", 1080)),
        preset="veryfast",
        threads=data["threads"],
    )
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "duration": r.duration,
                "requested": data["seconds"],
                "self_cpu": me.ru_utime + me.ru_stime,
                "self_maxrss_mb": me.ru_maxrss / 1024,
                "children_cpu": kids.ru_utime + kids.ru_stime,
                "children_maxrss_mb": kids.ru_maxrss / 1024,
            }
        )
    )


def _run_measured(cmd: list[str], folder: Path) -> tuple[float, resource.struct_rusage, str]:
    """Wall time and the process's own rusage (os.wait4: CPU and peak memory of that child,
    including the children it waited for)."""
    out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd[:3])}...\n{err_path.read_text()[-2000:]}")
    return wall, usage, out_path.read_text()


def _ffmpeg_graph(folder: Path, audio: Path, seconds: float, title: str, words) -> list[str]:
    """The same design as one ffmpeg graph: background PNG, showwaves, drawtext, progress."""
    import numpy as np
    from PIL import Image

    from narratives.core.campaigns import load_campaign_file
    from narratives.core.workspace import DEFAULTS_ROOT
    from narratives.stages.render.design import Design
    from narratives.stages.render.fonts import roboto
    from narratives.stages.render.layout import load_layout

    campaign = load_campaign_file(DEFAULTS_ROOT / "campaigns" / f"{CAMPAIGN}.toml")
    layout = load_layout(None, "vertical")
    design = Design(
        layout=layout,
        scale=1.0,
        campaign=campaign,
        title=title,
        words=[(w.start, w.end, w.text) for w in words],
        duration=seconds,
        fps=FPS,
        levels=np.zeros(int(seconds * FPS) + 1),
        font_path=None,
        logo=REPO / campaign.look.logo,
        background_image=None,
        redactions=None,
    )
    bg = folder / "background.png"
    Image.fromarray(design.base).save(bg)
    font = roboto("Bold")
    text_c, accent = campaign.look.text_color, campaign.look.accent_color
    cap, size = layout.captions, layout.captions.size
    draws = []
    for k, page in enumerate(design.pages):
        for li, line in enumerate(page.lines):
            f = folder / f"cap-{k}-{li}.txt"
            f.write_text(line, encoding="utf-8")
            y = cap.top + 80 + li * int(size * 1.3)
            draws.append(
                f"drawtext=fontfile={font}:textfile={f}:fontsize={size}:fontcolor={text_c}"
                f":x=(w-tw)/2:y={y}:enable='between(t,{page.start:.3f},{page.end:.3f})'"
            )
    wf, pr, left = layout.waveform, layout.progress, layout.safe_area.left
    inner = layout.width - left - layout.safe_area.right
    graph = (
        f"[0:v]format=yuv420p,loop=loop=-1:size=1:start=0,setpts=N/{FPS}/TB[bg];"
        f"[1:a]apad,atrim=0:{seconds},asplit[a][aw];"
        f"[aw]showwaves=s={inner}x{wf.height}:mode=cline:rate={FPS}:colors={accent},"
        f"format=yuva420p[wv];"
        f"color=c={accent}:s={inner}x{pr.height}:r={FPS},format=yuv420p[pb];"
        f"[bg][wv]overlay={left}:{wf.top}:format=yuv420[v1];"
        f"[v1][pb]overlay=x='{left}-{inner}+{inner}*t/{seconds}':y={pr.top}:format=yuv420"
        + ("," + ",".join(draws) if draws else "")
        + "[v]"
    )
    return [
        FFMPEG, "-v", "error", "-y", "-i", str(bg), "-i", str(audio),
        "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-t", str(seconds),
        "-r", str(FPS), "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
        "-threads", str(os.cpu_count() or 1), str(folder / "ffmpeg.mp4"),
    ]  # fmt: skip


def _batch(folder: Path, job: dict, n: int, cores: int) -> dict:
    """N renders one after another (all cores each), then `cores` at a time (one core each)."""
    jobs = []
    for i in range(n):
        path = folder / f"batch-{i}.json"
        jobs.append(path)
        path.write_text(json.dumps({**job, "out": str(folder / f"batch-{i}-vertical.mp4")}))

    def run(threads: int, parallel: int) -> dict:
        for path in jobs:
            path.write_text(json.dumps({**json.loads(path.read_text()), "threads": threads}))
        pending, running, cpu = list(jobs), {}, 0.0
        t0 = time.perf_counter()
        while pending or running:
            while pending and len(running) < parallel:
                path = pending.pop(0)
                cmd = [sys.executable, __file__, "--worker", str(path)]
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
                running[proc.pid] = proc
            pid, status, usage = os.wait4(-1, 0)
            if pid in running:
                if os.waitstatus_to_exitcode(status):
                    raise SystemExit(f"batch render failed: {running[pid].args}")
                del running[pid]
                cpu += usage.ru_utime + usage.ru_stime
        wall = time.perf_counter() - t0
        return {"wall": round(wall, 2), "cpu": round(cpu, 1), "busy": round(cpu / wall / cores, 2)}

    return {
        "videos": n,
        "sequential": run(threads=cores, parallel=1),
        # What process --workers <cores> does: cpu_count // workers encoder threads each.
        "shared": run(threads=1, parallel=cores),
    }


def _looks(text: str) -> list[tuple[int, int]]:
    """ "1080x30,720x24" -> [(1080, 30), (720, 24)]."""
    looks = []
    for item in text.split(","):
        res, _, fps = item.strip().partition("x")
        looks.append((int(res), int(fps)))
    return looks


def _frame_at(path: Path, t: float):
    """The luma plane (float array) of the frame shown at `t` seconds, decoded with PyAV."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        best = None
        for frame in container.decode(stream):
            if frame.time is not None and frame.time > t + 1e-6:
                break
            best = frame
        assert best is not None
        return np.asarray(best.to_ndarray(format="gray"), dtype=np.float64)


def _ssim(a, b) -> float:
    """Mean SSIM of two luma images (Gaussian window, sigma 1.5; Wang et al. 2004)."""
    from scipy.ndimage import gaussian_filter

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = gaussian_filter(a, 1.5), gaussian_filter(b, 1.5)
    var_a = gaussian_filter(a * a, 1.5) - mu_a**2
    var_b = gaussian_filter(b * b, 1.5) - mu_b**2
    cov = gaussian_filter(a * b, 1.5) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())


def _text_px(box) -> int:
    """Rows of a caption box that hold caption text (luma over 180: the light text on the
    dark campaign background), i.e. the glyphs' height in px summed over the lines."""
    return int(((box > 180).sum(axis=1) > 0).sum())


def _sharpness(box) -> float:
    """Mean squared Sobel gradient (Tenengrad) of a luma image: higher is crisper."""
    from scipy.ndimage import sobel

    return float((sobel(box, axis=0) ** 2 + sobel(box, axis=1) ** 2).mean())


def _probe(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        v = container.streams.video[0]
        return {"width": v.width, "height": v.height, "fps": float(v.average_rate)}


def _compare(folder: Path, job: dict, looks: list[tuple[int, int]], rounds: int, words) -> dict:
    """The same story rendered at each look; timings keep each look's fastest round."""
    import numpy as np
    from PIL import Image

    from narratives.stages.render.layout import load_layout
    from narratives.stages.render.video import frame_scale

    best: dict[tuple[int, int], dict] = {}
    for r in range(rounds):
        # Alternate the order, so neither look always runs on the busier half of the time.
        for res, fps in looks if r % 2 == 0 else looks[::-1]:
            out = folder / f"compare-{res}x{fps}.mp4"
            path = folder / f"compare-{res}x{fps}.json"
            path.write_text(json.dumps({**job, "out": str(out), "resolution": res, "fps": fps}))
            wall, usage, text = _run_measured(
                [sys.executable, __file__, "--worker", str(path)], folder
            )
            worker = json.loads(text.strip().splitlines()[-1])
            row = {
                "wall": round(wall, 2),
                "cpu": round(usage.ru_utime + usage.ru_stime, 1),
                "encoder_cpu": round(worker["children_cpu"], 1),
                "bytes": out.stat().st_size,
                "video_seconds": worker["duration"],
                **_probe(out),
            }
            if (res, fps) not in best or row["wall"] < best[(res, fps)]["wall"]:
                best[(res, fps)] = {**row, "path": out}
    layout = load_layout(None, "vertical")
    cap = layout.captions
    # A moment with a caption on screen (the middle of the first word after 2 s), on a frame
    # of every look: a whole number of 1/gcd(fps) seconds, where each rate has a frame.
    mid = next((w.start + w.end) / 2 for w in words if w.start >= 2.0)
    step = math.gcd(*(fps for _, fps in looks))
    at = math.floor(mid * step) / step
    ref_res = looks[0][0]
    reference = _frame_at(best[looks[0]]["path"], at)
    rows = []
    for res, fps in looks:
        row = best[(res, fps)]
        scale = frame_scale(layout, res)
        frame = _frame_at(row.pop("path"), at)
        h, w = frame.shape
        small = Image.fromarray(reference.astype("uint8")).resize((w, h), Image.Resampling.LANCZOS)
        small = np.asarray(small, dtype=np.float64)
        top, bottom = round(cap.top * scale), round((cap.top + cap.height) * scale)
        rows.append(
            {
                "look": f"{res}x{fps}",
                **row,
                "rtf": round(row["wall"] / row["video_seconds"], 3),
                "mb": round(row["bytes"] / 1e6, 2),
                "caption_px": round(cap.size * scale),
                "caption_text_rows_px": _text_px(frame[top:bottom]),
                # Crispness of this look's captions over the first look's scaled to this size.
                f"sharpness_vs_{ref_res}_scaled": round(
                    _sharpness(frame[top:bottom]) / _sharpness(small[top:bottom]), 3
                ),
                f"ssim_vs_{ref_res}": round(_ssim(small, frame), 4),
                f"ssim_captions_vs_{ref_res}": round(
                    _ssim(small[top:bottom], frame[top:bottom]), 4
                ),
                "at": round(at, 2),
            }
        )
    return {"rounds": rounds, "looks": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--compare", help="looks to compare: RESxFPS,... e.g. 1080x30,720x24")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of --compare (fastest kept)")
    ap.add_argument("--batch", type=int, default=0, help="also render N videos two ways")
    ap.add_argument("--batch-seconds", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        folder = Path(tmp)
        audio, words = _make_audio(folder, args.seconds)
        title = "The line for the Sleep Sanctuary"
        job = folder / "job.json"
        job.write_text(
            json.dumps(
                {
                    "audio": str(audio),
                    "transcript": _transcript(words, args.seconds).to_dict(),
                    "out": str(folder / "video-bench-vertical.mp4"),
                    "title": title,
                    "seconds": args.seconds,
                    "threads": cores,
                }
            )
        )
        if args.compare:
            data = json.loads(job.read_text())
            result = _compare(folder, data, _looks(args.compare), args.rounds, words)
            _print_compare(result, args)
            return
        wall_r, usage_r, out = _run_measured(
            [sys.executable, __file__, "--worker", str(job)], folder
        )
        worker = json.loads(out.strip().splitlines()[-1])
        cpu_r = usage_r.ru_utime + usage_r.ru_stime
        # The same length as the renderer's video (which ends with an end card).
        cmd = _ffmpeg_graph(folder, audio, worker["duration"], title, words)
        wall_f, usage_f, _ = _run_measured(cmd, folder)
        cpu_f = usage_f.ru_utime + usage_f.ru_stime
        video_seconds = worker["duration"]
        result = {
            "seconds": args.seconds,
            "video_seconds": video_seconds,
            "cores": cores,
            "load_before": os.getloadavg()[0],
            "renderer": {
                "wall": round(wall_r, 2),
                "rtf": round(wall_r / video_seconds, 3),
                "cpu": round(cpu_r, 1),
                "python_cpu": round(worker["self_cpu"], 1),
                "encoder_cpu": round(worker["children_cpu"], 1),
                "python_peak_mb": round(worker["self_maxrss_mb"], 1),
                "encoder_peak_mb": round(worker["children_maxrss_mb"], 1),
            },
            "ffmpeg": {
                "wall": round(wall_f, 2),
                "rtf": round(wall_f / video_seconds, 3),
                "cpu": round(cpu_f, 1),
                "peak_mb": round(usage_f.ru_maxrss / 1024, 1),
            },
        }
        result["ratio"] = round(wall_r / wall_f, 2)
        result["targets_met"] = {
            "rtf<=0.8": result["renderer"]["rtf"] <= 0.8,
            "ratio<=1.5": result["ratio"] <= 1.5,
        }
        if args.batch:
            (folder / "short").mkdir()
            short, short_words = _make_audio(folder / "short", args.batch_seconds)
            job = json.loads(job.read_text())
            job.update(
                audio=str(short),
                transcript=_transcript(short_words, args.batch_seconds).to_dict(),
                seconds=args.batch_seconds,
            )
            result["batch"] = _batch(folder, job, args.batch, cores)
    if args.json:
        print(json.dumps(result))
        return
    r, f = result["renderer"], result["ffmpeg"]
    print(
        f"{args.seconds:g} s audiogram, 1080x1920 @ {FPS} fps, {cores} cores "
        f"(load avg before: {result['load_before']:.2f}; other work shares these cores)"
    )
    print(
        f"  renderer (MoviePy): {r['wall']:6.1f} s wall  {r['rtf']:.2f}x real time  "
        f"{r['cpu']:6.1f} CPU-s (python {r['python_cpu']}, encoder {r['encoder_cpu']})  "
        f"peak {r['python_peak_mb']} MB python / {r['encoder_peak_mb']} MB encoder"
    )
    print(
        f"  ffmpeg graph:       {f['wall']:6.1f} s wall  {f['rtf']:.2f}x real time  "
        f"{f['cpu']:6.1f} CPU-s  peak {f['peak_mb']} MB"
    )
    print(f"  ratio renderer/ffmpeg: {result['ratio']:.2f}x   targets: {result['targets_met']}")
    print(f"  (both videos {video_seconds:.1f} s: {args.seconds:g} s of speech + end card)")
    if args.batch:
        b = result["batch"]
        print(f"  batch of {b['videos']} x {args.batch_seconds:g} s:")
        for name, label in (("sequential", "one at a time"), ("shared", f"{cores} at a time")):
            x = b[name]
            print(
                f"    {label:14s} {x['wall']:6.1f} s wall  {x['cpu']:6.1f} CPU-s  "
                f"cores busy {x['busy']:.2f}"
            )


def _print_compare(result: dict, args) -> None:
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.seconds:g} s of speech, vertical, fastest of {result['rounds']} rounds "
        f"(load avg now: {os.getloadavg()[0]:.2f}; other work shares these cores)"
    )
    for x in result["looks"]:
        ssim = [f"{k} {v}" for k, v in x.items() if k.startswith(("ssim", "sharp"))]
        print(
            f"  {x['look']:>8}: {x['width']}x{x['height']} @ {x['fps']:g} fps  "
            f"{x['wall']:6.1f} s wall ({x['rtf']:.2f}x real time)  {x['cpu']:6.1f} CPU-s "
            f"(encoder {x['encoder_cpu']})  {x['mb']:.2f} MB  captions {x['caption_px']} px font, "
            f"{x['caption_text_rows_px']} px of text rows  " + "  ".join(ssim)
        )


if __name__ == "__main__":
    main()
