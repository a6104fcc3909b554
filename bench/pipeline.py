"""Whole-pipeline benchmark (issue 18): `narrative process` on N recordings in a fresh workspace.

The bundled samples are repeated (each copy padded with a few ms of silence, so every copy is
its own narrative) until about `--minutes` of audio, each assigned to one campaign as staff
would (`--campaign`, alternating). Prints wall time, audio-seconds per wall-second, CPU seconds
per audio-second (all processes) and stage seconds per audio-second by stage (from stage_runs),
how busy the cores were, peak memory of the largest process, videos made, and the x264 floor:
the same frames (decoded from the videos made, beforehand and untimed) encoded again by x264
alone with the renderer's own encoder options (`video_writer.x264_args`), measured in the same
run. Targets: >= 3x real time; render <= 1.3x the floor.

`render_s_over_floor` divides the render stage's seconds, taken while the other stages of
other stories compete for the cores, by an idle one-at-a-time floor. The render pass compares
like with like: `narrative render --all --force --workers N` on the same stories (the renderer
alone: drawing, audio, encoding, writing the rows) against x264 alone on the same frames with
the same N encodes at once, wall and CPU seconds.

    .venv/bin/python bench/pipeline.py [--minutes 10] [--workers 2] [--cluster ADDR |
                                       --local-cluster] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "media" / "samples"
BIN = Path(sys.executable).parent
CAMPAIGNS = ("emotional-equity", "neural-mandate")


def _ffmpeg() -> str:
    sys.path.insert(0, str(REPO))
    from narratives.media.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


def _duration(path: Path) -> float:
    sys.path.insert(0, str(REPO))
    from narratives.media.audio import probe

    return float(probe(path).duration or 0.0)


def _recordings(folder: Path, minutes: float) -> tuple[list[Path], float]:
    """Copies of the samples, each made distinct by a few ms of trailing silence."""
    samples = sorted(p for p in SAMPLES.iterdir() if p.suffix != ".txt")
    made, total, i = [], 0.0, 0
    while total < minutes * 60:
        src = samples[i % len(samples)]
        dst = folder / f"{i:03d}-{src.stem}.flac"
        subprocess.run(
            [_ffmpeg(), "-nostdin", "-v", "error", "-y", "-i", str(src), "-vn",
             "-af", f"apad=pad_dur={0.01 * (i + 1):.2f}", str(dst)],
            check=True,
        )  # fmt: skip
        made.append(dst)
        total += _duration(dst)
        i += 1
    return made, total


def _process(ws: Path, recordings: list[Path], workers: int, cluster: str | None) -> dict:
    """Runs process per campaign half; wall, CPU of all children, peak RSS of the largest."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for k, campaign in enumerate(CAMPAIGNS):
        share = recordings[k :: len(CAMPAIGNS)]
        if not share:
            continue
        cmd = [str(BIN / "narrative"), "--workspace", str(ws), "process", "--json",
               "--workers", str(workers), "--campaign", campaign, *map(str, share)]  # fmt: skip
        if cluster:
            cmd += ["--cluster", cluster]
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": after.ru_maxrss / 1024}


def _stage_seconds(ws: Path) -> dict[str, float]:
    with sqlite3.connect(ws / "narratives.db") as db:
        rows = db.execute(
            "SELECT stage, sum(seconds) FROM stage_runs WHERE status='done' GROUP BY stage"
        ).fetchall()
    return {stage: seconds or 0.0 for stage, seconds in rows}


def _videos(ws: Path) -> list[tuple[Path, str]]:
    """Every video the run made, with its size and frame rate (e.g. 1080x1920@30)."""
    sys.path.insert(0, str(REPO))
    import av

    out = []
    for mp4 in sorted((ws / "media" / "work").glob("*/video-*.mp4")):
        with av.open(str(mp4)) as c:
            v = c.streams.video[0].codec_context
            rate = round(float(c.streams.video[0].average_rate or 0))
            out.append((mp4, f"{v.width}x{v.height}@{rate}"))
    return out


def _x264_floor(videos: list[tuple[Path, str]], preset: str, threads: int) -> float:
    """Seconds for x264 alone to encode the same frames again, one video after another, with
    as many encoder threads as each render had (the cores shared out among the workers), so
    it compares with the render stage's seconds. Decoding is done beforehand and not timed."""
    wall = 0.0
    for mp4, _ in videos:
        with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
            inputs = _decoded(mp4, Path(tmp))
            wall += _timed(lambda inputs=inputs: _encode_again(inputs, preset, threads))[0]
    return wall


def _decoded(mp4: Path, folder: Path) -> list[str]:
    """The video's frames as a raw I420 file in `folder`, and the ffmpeg options reading it."""
    import av

    with av.open(str(mp4)) as c:
        stream = c.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = round(float(stream.average_rate or 0))
    raw = folder / f"{mp4.parent.name}-{mp4.stem}.yuv"
    subprocess.run(
        [_ffmpeg(), "-nostdin", "-v", "error", "-y", "-i", str(mp4), "-an",
         "-f", "rawvideo", "-pix_fmt", "yuv420p", str(raw)],
        check=True,
    )  # fmt: skip
    from narratives.media.video_writer import raw_input_args

    return [*raw_input_args(width, height, rate), str(raw)]


def _encode_again(inputs: list[str], preset: str, threads: int) -> None:
    """x264 alone on raw frames, with the renderer's own encoder options; output discarded."""
    from narratives.media.video_writer import x264_args

    subprocess.run(
        [_ffmpeg(), "-nostdin", "-v", "error", "-y", *inputs, "-an",
         *x264_args(preset, threads=threads), "-f", "null", "-"],
        check=True,
    )  # fmt: skip


def _timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the children it waited for) of `run()`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _render_pass(ws: Path, workers: int) -> tuple[float, float]:
    """`narrative render --all --force --workers N`: the same videos encoded again by the
    renderer alone (no other stage competing for the cores)."""
    cmd = [str(BIN / "narrative"), "--workspace", str(ws), "render", "--all", "--force",
           "--json", "--workers", str(workers)]  # fmt: skip
    return _timed(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL))


def _parallel_floor(
    videos: list[tuple[Path, str]], preset: str, workers: int
) -> tuple[float, float]:
    """x264 alone on the same frames with the render pass's parallelism: `workers` encodes at
    once, each with the cores shared out, as `render --workers` runs them. Each group of
    `workers` videos is decoded first, untimed, then encoded at once, timed."""
    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    wall = cpu = 0.0
    for i in range(0, len(videos), workers):
        with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
            group = [_decoded(mp4, Path(tmp)) for mp4, _ in videos[i : i + workers]]

            def run(group=group) -> None:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(lambda inputs: _encode_again(inputs, preset, threads), group))

            w, c = _timed(run)
            wall, cpu = wall + w, cpu + c
    return wall, cpu


class _LocalCluster:
    """A `dask scheduler` and two one-thread `dask worker`s on 127.0.0.1, as the tests start
    them, for comparing `--cluster` with `--workers 2` on this machine."""

    def __init__(self, tmp: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        dask = str(BIN / "dask")
        logs = open(tmp / "cluster.log", "wb")  # noqa: SIM115 (closed in stop)
        self._logs = logs
        common = {"stdout": logs, "stderr": subprocess.STDOUT}
        self.procs = [
            subprocess.Popen(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                **common,
            )  # fmt: skip
        ]
        for name in ("w1", "w2"):
            self.procs.append(
                subprocess.Popen(
                    [
                        dask,
                        "worker",
                        self.address,
                        "--name",
                        name,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--memory-limit",
                        "0",
                        "--no-dashboard",
                    ],
                    **common,
                )  # fmt: skip
            )
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._logs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="audio to process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cluster", help="a Dask scheduler address (process --cluster)")
    parser.add_argument(
        "--local-cluster",
        action="store_true",
        help="start a scheduler and two one-thread workers on 127.0.0.1 and use them",
    )
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    local = None
    try:
        if args.local_cluster:
            local = _LocalCluster(tmp)
            args.cluster = local.address
        recordings, audio_s = _recordings(tmp, args.minutes)
        ws = tmp / "ws"
        subprocess.run([str(BIN / "narrative"), "init", str(ws)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        run = _process(ws, recordings, args.workers, args.cluster)
        stages = _stage_seconds(ws)
        videos = _videos(ws)
        cores = os.cpu_count() or 1
        per_render = 1 if args.cluster else max(1, cores // max(1, args.workers))
        floor = _x264_floor(videos, preset="veryfast", threads=per_render)
        # The same videos again, renderer alone against x264 alone, same parallelism: the
        # figures above compare stage seconds under the whole pipeline's load with an idle floor.
        pass_workers = max(1, args.workers)
        render_wall, render_cpu = _render_pass(ws, pass_workers)
        floor_wall, floor_cpu = _parallel_floor(videos, "veryfast", pass_workers)
        figures = {
            "recordings": len(recordings),
            "audio_s": round(audio_s, 1),
            "wall_s": round(run["wall_s"], 1),
            "x_real_time": round(audio_s / run["wall_s"], 2),
            "cpu_s_per_audio_s": round(run["cpu_s"] / audio_s, 3),
            "stage_s_per_audio_s": {k: round(v / audio_s, 3) for k, v in stages.items()},
            "cores_busy": round(run["cpu_s"] / (run["wall_s"] * cores), 2),
            "peak_rss_mb": round(run["peak_rss_mb"]),
            "videos": len(videos),
            "video_sizes": sorted({size for _, size in videos}),
            "x264_floor_s": round(floor, 1),
            "render_s_over_floor": round(stages.get("render", 0.0) / floor, 2) if floor else None,
            "render_pass_wall_cpu_s": [round(render_wall, 1), round(render_cpu, 1)],
            "floor_pass_wall_cpu_s": [round(floor_wall, 1), round(floor_cpu, 1)],
            "render_pass_over_floor": {
                "wall": round(render_wall / floor_wall, 2),
                "cpu": round(render_cpu / floor_cpu, 2),
            },
            "workers": args.workers,
            "cluster": args.cluster,
            "load_avg_1m": round(os.getloadavg()[0], 1),
        }
    finally:
        if local is not None:
            local.stop()
        if args.keep:
            print(f"workspace kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
