"""`process --cluster tcp://HOST:8786`: the same stages as tasks on a Dask cluster.

Imported only for `--cluster` (dask.distributed is the optional `cluster` extra).

Each worker process gets the workspace and settings once, from a worker plugin, and keeps one
Context (so one loaded model per engine) for its life, as a local pool worker does. A story is
a chain of tasks, one per stage, so one worker can transcribe the next story while another
renders. Workers write to the shared database (PostgreSQL by URL; SQLite only when every worker
is on this machine) and the shared workspace folder, which must be at the same path everywhere.
A worker killed mid-task has its task rerun elsewhere by the scheduler; the stages are
idempotent (fixed ids and record keys, atomic files), so a rerun adds no rows or files.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from distributed import Client, WorkerPlugin, as_completed

from narratives.core.config import Settings
from narratives.core.errors import EnvironmentProblem, UsageError
from narratives.store.context import Context

__all__ = ["Cluster", "connect"]

log = logging.getLogger(__name__)

#: The same offline defaults the CLI sets: a worker started by hand must not try a model hub.
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}


def connect(address: str, ctx: Context, settings: Settings | None) -> Cluster:
    """A client of the scheduler at `address`, with the workers set up for this workspace;
    EnvironmentProblem naming the address when it does not answer (before any work)."""
    if not address.startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://")):
        raise UsageError(
            f"--cluster {address}: not a scheduler address", hint="e.g. tcp://10.0.0.5:8786"
        )
    settings = settings or ctx.settings
    timeout = settings.cluster.connect_timeout
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise EnvironmentProblem(
            f"the Dask scheduler at {address} does not answer ({type(exc).__name__})",
            hint="start it (`dask scheduler`) and its workers, or check the address and port",
        ) from None
    cluster = Cluster(client, key=_run_key(ctx, settings))
    try:
        cluster.set_up_workers(str(ctx.workspace.root), settings)
    except TimeoutError:
        cluster.close()
        raise EnvironmentProblem(
            f"the Dask scheduler at {address} has no workers",
            hint="start workers with `dask worker ADDRESS` on machines that see this workspace",
        ) from None
    return cluster


def _run_key(ctx: Context, settings: Settings) -> str:
    """Which workspace and database a task is for: two runs may share one cluster."""
    where = f"{ctx.workspace.root}\0{settings.database.url}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


class Cluster:
    """A connected Dask client that runs stage chains; close it when done. `key` names this
    workspace's Context on the workers (each task passes it)."""

    def __init__(self, client: Any, key: str = "") -> None:
        self.client = client
        self.key = key

    def set_up_workers(self, root: str, settings: Settings) -> None:
        # Tasks would wait for a worker forever; say so now instead (TimeoutError).
        self.client.wait_for_workers(1, timeout=settings.cluster.connect_timeout)
        shared = [
            w.get("name") for w in self.client.scheduler_info()["workers"].values()
            if w.get("nthreads", 1) > 1
        ]  # fmt: skip
        if shared:
            # Tasks on one worker would share its Context and models at once.
            log.warning("workers %s run more than one thread; start them with --nthreads 1",
                        ", ".join(map(str, shared)))  # fmt: skip
        self.client.register_plugin(
            _WorkerSetup(root, settings, self.key), name=f"narratives-{self.key}"
        )

    def run_chains(
        self, chains: list[list[tuple[Callable[..., Any], tuple]]]
    ) -> Iterator[tuple[int, Any]]:
        """Submit each chain (a story's stage tasks; each task takes the previous one's result
        as its first argument) and yield (chain index, last result or exception) as each ends."""
        last: dict[Any, int] = {}
        for i, chain in enumerate(chains):
            future = None
            for fn, args in chain:
                first = (future,) if future is not None else ()
                future = self.client.submit(fn, *first, *args, pure=False)
            last[future] = i
        for future in as_completed(list(last), loop=self.client.loop):
            try:
                outcome = future.result()
            except Exception as exc:  # e.g. a worker that died more times than allowed
                outcome = exc
            yield last[future], outcome

    def close(self) -> None:
        self.client.close()


class _WorkerSetup(WorkerPlugin):
    """The worker plugin: this workspace and settings, one Context per worker process."""

    def __init__(self, root: str, settings: Settings, key: str) -> None:
        self.root = root
        self.settings = settings
        self.key = key
        self.name = f"narratives-{key}"

    def setup(self, worker: Any) -> None:
        from narratives.stages.pool import init_worker

        for key, value in _OFFLINE.items():
            os.environ.setdefault(key, value)
        # A Dask worker owns as many cores as it has threads (`dask worker --nthreads`); the
        # machine's cpu_count would oversubscribe a host running several workers.
        init_worker(self.root, self.settings, _worker_threads(worker), key=self.key)
        if not self.settings.cluster.worker_profiler:
            _stop_profiler(worker)
        _widen_malloc_thresholds()


#: glibc's mallopt parameters, and where its own adaptive rule takes them at most.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 64 << 20


def _widen_malloc_thresholds(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Undo what Dask's nanny does to malloc. It starts workers with MALLOC_TRIM_THRESHOLD_=65536
    (`distributed.nanny.pre-spawn-environ`) to hand memory back to the OS sooner; any such
    variable also pins glibc's mmap threshold at 128 KiB, so every large buffer the speech
    and embedding models allocate is mapped, faulted in and unmapped again each time.
    Transcription took 1.75x the CPU (9.7 CPU-s against 5.5 on the samples). The thresholds
    go to where glibc's adaptive rule would take them. Only when such a variable is set;
    False where it is not, or not glibc."""
    if not any(k.startswith("MALLOC_") and k.endswith("THRESHOLD_") for k in environ):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok
    log.debug("malloc thresholds widened on this worker: %s", ok)
    return ok


def _worker_threads(worker: Any) -> int:
    """The thread count a Dask worker was started with (the cores it may use)."""
    return max(1, int(worker.state.nthreads))


def _stop_profiler(worker: Any) -> None:
    """Stop the worker's statistical profiler (`[cluster] worker_profiler`). The plugin is
    set up on the worker's event loop, which runs these callbacks."""
    for name in ("profile", "profile-cycle"):
        callback = worker.periodic_callbacks.pop(name, None)
        if callback is not None:
            callback.stop()
