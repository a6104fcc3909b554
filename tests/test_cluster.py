"""`process --cluster` (issue 18, item 4): a real `dask scheduler` and two `dask worker`
processes on 127.0.0.1, the test PostgreSQL as the shared database and the workspace folder as
the shared media store. One worker is killed (with its nanny) while it runs a stage: its task is
rerun on the other, and the database ends with no duplicate rows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.errors import EnvironmentProblem, UsageError

SAMPLES = Path(__file__).resolve().parent.parent / "media" / "samples"
DASK = Path(sys.executable).with_name("dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_scheduler_that_does_not_answer_is_named_before_any_work(workspace, tmp_path):
    recording = shutil.copy(SAMPLES / "amara-sanctuary-line.wav", tmp_path / "a.wav")
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {"NARRATIVES_CLUSTER__CONNECT_TIMEOUT": "2"}
    res = CliRunner().invoke(cli, ["process", "--cluster", address, str(recording)], env=env)
    assert res.exit_code == EnvironmentProblem.exit_code, res.output
    assert address in res.output and "dask scheduler" in res.output
    assert not (workspace.media_dir / "recordings").exists()  # nothing taken in
    assert not workspace.database_path.exists() or "narratives" not in _ids(workspace)


def test_a_bad_address_is_a_usage_error(workspace, tmp_path):
    recording = shutil.copy(SAMPLES / "amara-sanctuary-line.wav", tmp_path / "a.wav")
    res = CliRunner().invoke(cli, ["process", "--cluster", "10.0.0.5", str(recording)])
    assert res.exit_code == UsageError.exit_code and "tcp://" in res.output


def _ids(workspace) -> str:
    with sa.create_engine(f"sqlite:///{workspace.database_path}").connect() as conn:
        return str(conn.exec_driver_sql("SELECT id FROM narratives").fetchall())


class _Cluster:
    """A scheduler and two workers, each in its own process group (so a kill takes the nanny)."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        common = ["--no-dashboard"]
        self._start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                  str(self.port), *common], tmp)  # fmt: skip
        for name in ("w1", "w2"):
            self._start(name, [DASK, "worker", self.address, "--name", name, "--nthreads", "1",
                               "--nworkers", "1", "--host", "127.0.0.1", "--memory-limit", "0",
                               *common], tmp)  # fmt: skip

    def _start(self, name: str, cmd: list, tmp: Path) -> None:
        log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.procs[name] = subprocess.Popen(
            [str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def dask_cluster(tmp_path):
    from distributed import Client

    cluster = _Cluster(tmp_path)
    try:
        with Client(cluster.address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield cluster
    finally:
        cluster.stop()


def _busy_worker(cluster: _Cluster) -> str | None:
    """The name of a worker that is running a task now, if any."""
    from distributed import Client

    with Client(cluster.address, timeout=30) as client:
        addresses = {a: info["name"] for a, info in client.scheduler_info()["workers"].items()}
        for address, keys in client.processing().items():
            if keys:
                return str(addresses[address])
    return None


@pytest.mark.slow
@pytest.mark.postgres
def test_cluster_processes_survives_a_killed_worker_and_adds_no_duplicates(
    workspace, fresh_postgres_url, dask_cluster, tmp_path
):
    recordings = tmp_path / "in"
    recordings.mkdir()
    names = ["lena-grandmother.m4a", "amara-sanctuary-line.wav", "priya-neurosync.flac"]
    for name in names:
        shutil.copy(SAMPLES / name, recordings / name)
    (recordings / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    # The shared database by URL from the environment; the workers get the client's settings.
    env = {**os.environ, "NARRATIVES_HOME": str(workspace.root),
           "NARRATIVES_DATABASE__URL": fresh_postgres_url,
           "NARRATIVES_RENDER__SCALE": "0.2", "NARRATIVES_RENDER__FPS": "8"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "narratives", "process", "--json", "--cluster",
         dask_cluster.address, str(recordings)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed = None
    deadline = time.monotonic() + 600
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        killed = _busy_worker(dask_cluster)
        if killed is not None:
            time.sleep(1.0)  # well inside a stage (model loading, transcription)
            dask_cluster.kill(killed)
        else:
            time.sleep(0.5)
    out, err = proc.communicate(timeout=900)
    assert killed is not None, f"no worker was ever busy: {out[-2000:]} {err[-3000:]}"
    assert proc.returncode == 1, out + err  # the broken file fails; the others do not
    assert out.strip(), err[-3000:]
    items = {Path(i["path"]).name: i for i in map(json.loads, out.splitlines())}
    assert set(items) == {*names, "broken.wav"}
    assert (
        items["broken.wav"]["status"] == "failed" and "broken.wav" in items["broken.wav"]["error"]
    )
    for name in names:
        assert items[name]["status"] in ("ok", "unassigned"), items[name]
        assert items[name]["stages"].get("draft") in ("done", "skipped"), items[name]
    engine = sa.create_engine(fresh_postgres_url)
    with engine.connect() as conn:
        drafts = conn.exec_driver_sql("SELECT narrative_id, campaign, channel FROM drafts").all()
        creations = conn.exec_driver_sql(
            "SELECT object_id, count(*) FROM audit_log WHERE action = 'draft.create' "
            "GROUP BY object_id"
        ).all()
        transcribed = conn.exec_driver_sql(
            "SELECT narrative_id FROM stage_runs WHERE stage = 'transcribe' AND status = 'done'"
        ).all()
    engine.dispose()
    # Every routed story has one draft per campaign and channel, each created once, even
    # though a task was cut short and run again.
    routed = {(items[n]["id"], c["campaign"]) for n in names for c in items[n]["campaigns"]}
    assert routed, "no story reached a campaign"
    assert sorted(drafts) == sorted(
        (nid, campaign, channel) for nid, campaign in routed for channel in ("bluesky", "rss")
    )
    assert [count for _, count in creations] == [1] * len(drafts)
    assert sorted(nid for (nid,) in transcribed) == sorted(items[n]["id"] for n in names)
    for name in names:
        folder = workspace.work_dir / items[name]["id"]
        assert (folder / "transcript.json").is_file() and (folder / "analysis.json").is_file()


class _CountingCluster:
    """Stands in for the connected client in tests of when it is closed (the real client is
    tested above, against a real scheduler and workers)."""

    key = "k"

    def __init__(self) -> None:
        self.closed = 0

    def run_chains(self, chains):
        for i, _chain in enumerate(chains):
            yield i, RuntimeError("no worker in this test")

    def close(self) -> None:
        self.closed += 1


def test_the_client_is_closed_when_the_caller_stops_early(workspace, tmp_path, monkeypatch):
    from narratives.stages import pipeline
    from narratives.store.context import Context

    fake = _CountingCluster()
    monkeypatch.setattr(pipeline, "_connect", lambda *a: fake)
    (tmp_path / "a.wav").write_bytes(b"not audio")
    (tmp_path / "b.wav").write_bytes(b"not audio either")
    results = pipeline.process_paths(Context(workspace), [tmp_path], cluster="tcp://x:1")
    first = next(results)
    assert first.status == "failed" and "could not run it" in first.error and fake.closed == 0
    results.close()  # the caller stops reading (or Ctrl-C arrives at the yield)
    assert fake.closed == 1


def test_the_client_is_closed_when_intake_raises(workspace, tmp_path, monkeypatch):
    from narratives.stages import pipeline
    from narratives.store.context import Context

    fake = _CountingCluster()
    monkeypatch.setattr(pipeline, "_connect", lambda *a: fake)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "find_recordings", interrupted)
    with pytest.raises(KeyboardInterrupt):
        list(pipeline.process_paths(Context(workspace), [tmp_path], cluster="tcp://x:1"))
    assert fake.closed == 1


def test_two_workspaces_on_one_cluster_get_their_own_worker_context(workspace, tmp_path):
    from narratives.core.config import Settings
    from narratives.core.workspace import init_workspace
    from narratives.stages.cluster import _run_key, _WorkerSetup
    from narratives.stages.pool import worker_context
    from narratives.store.context import Context

    other = init_workspace(tmp_path / "other")
    a, b = Context(workspace), Context(other)
    key_a, key_b = _run_key(a, a.settings), _run_key(b, b.settings)
    assert key_a != key_b
    elsewhere = Settings(database={"url": f"sqlite:///{tmp_path / 'x.db'}"})
    assert _run_key(a, elsewhere) != key_a  # same folder, another database
    for ctx, key in ((a, key_a), (b, key_b)):
        plugin = _WorkerSetup(str(ctx.workspace.root), ctx.settings, key)
        assert plugin.name == f"narratives-{key}"
        plugin.setup(
            worker=SimpleNamespace(state=SimpleNamespace(nthreads=1), periodic_callbacks={})
        )
    assert worker_context(key_a).workspace.root == workspace.root
    assert worker_context(key_b).workspace.root == other.root


@pytest.mark.slow
def test_each_dask_worker_encodes_with_its_own_threads_not_the_machines_cores(
    workspace, dask_cluster
):
    """Two one-thread workers on one host must not each take every core for x264 (that made
    `--cluster` slower than `--workers 2` on the same machine)."""
    import cloudpickle
    from distributed import Client

    from narratives.stages.cluster import Cluster
    from narratives.stages.pool import worker_context
    from narratives.store.context import Context

    ctx = Context(workspace)
    fixed = ctx.settings.model_copy(
        update={"render": ctx.settings.render.model_copy(update={"threads": 3})}
    )
    with Client(dask_cluster.address, timeout=60) as client:
        for key, settings, expected in (("auto", ctx.settings, 1), ("fixed", fixed, 3)):
            Cluster(client, key).set_up_workers(str(workspace.root), settings)
            threads = client.run(lambda key=key: worker_context(key).settings.render.threads)
            assert sorted(threads.values()) == [expected, expected], (key, threads)
        # Dask's statistical profiler is stopped on every worker (`[cluster] worker_profiler`).
        running = client.run(lambda dask_worker: sorted(dask_worker.periodic_callbacks))
        assert len(running) == 2
        assert all("profile" not in names for names in running.values()), running
        # Dask's nanny pins malloc's thresholds; the plugin widens them again, so a large
        # buffer freed and allocated again is reused, not mapped and faulted in anew.
        trims = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert set(trims.values()) == {"65536"}, trims
        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/
        try:
            faults = client.run(_page_faults_of_large_buffers)
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        assert all(n < 5_000 for n in faults.values()), faults


def _page_faults_of_large_buffers(rounds: int = 100) -> int:
    """Minor page faults of allocating, filling and freeing a 2 MiB array `rounds` times: about
    512 each when every allocation is a fresh mapping, next to none when the heap reuses it."""
    import resource

    import numpy as np

    np.ones(1 << 18)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        np.ones(1 << 18)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_malloc_thresholds_pinned_by_the_environment_are_widened_again():
    """In a process started as Dask's nanny starts workers (MALLOC_TRIM_THRESHOLD_=65536),
    every 2 MiB buffer is a new mapping until the plugin's call widens the thresholds; without
    the variable the call changes nothing."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from tests.test_cluster import _page_faults_of_large_buffers as probe; "
        "from narratives.stages.cluster import _widen_malloc_thresholds as widen; "
        "before = probe(); done = widen(); print(json.dumps([before, done, probe()]))"
    )
    repo = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    pinned = subprocess.run(
        [sys.executable, "-c", code, repo], env={**env, "MALLOC_TRIM_THRESHOLD_": "65536"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    before, done, after = json.loads(pinned.stdout)
    assert done is True
    assert before > 20_000 and after < 5_000, (before, after)
    free = subprocess.run(
        [sys.executable, "-c", code, repo], env=env, capture_output=True, text=True, check=True
    )
    before, done, after = json.loads(free.stdout)
    assert done is False and before < 5_000 and after < 5_000, (before, after)


def test_the_worker_plugin_gives_renders_the_workers_threads_on_any_machine(workspace, monkeypatch):
    """On a many-core host the plugin must still give each one-thread worker one encoder
    thread (the cluster test above sees only this machine's cores)."""
    from narratives.stages import pool
    from narratives.stages.cluster import _WorkerSetup
    from narratives.store.context import Context

    monkeypatch.setattr(pool.os, "cpu_count", lambda: 8)
    settings = Context(workspace).settings
    for nthreads in (1, 4):
        _WorkerSetup(str(workspace.root), settings, f"k{nthreads}").setup(
            SimpleNamespace(state=SimpleNamespace(nthreads=nthreads), periodic_callbacks={})
        )
        assert pool.worker_context(f"k{nthreads}").settings.render.threads == nthreads
    assert pool.core_share(2) == 4  # the local pool still shares the machine out

    class Callback:
        stopped = 0

        def stop(self) -> None:
            self.stopped += 1

    for keep in (False, True):
        profile = Callback()
        worker = SimpleNamespace(
            state=SimpleNamespace(nthreads=1), periodic_callbacks={"profile": profile}
        )
        chosen = settings.model_copy(
            update={"cluster": settings.cluster.model_copy(update={"worker_profiler": keep})}
        )
        _WorkerSetup(str(workspace.root), chosen, f"p{keep}").setup(worker)
        assert ("profile" in worker.periodic_callbacks) is keep
        assert profile.stopped == (0 if keep else 1)
