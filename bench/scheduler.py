"""Scheduler benchmark: 10,000 scheduled deliveries across both campaigns in a temp workspace.

Measures the service's start-up (reconcile: recover, mark missed, write every job), dispatch
lateness (claim time minus scheduled time) for deliveries that come due while it runs, and peak
memory. The channel is `FastFakeChannel`, a fake that returns at once (bench only: it measures
the scheduler, not a network). Targets: p99 lateness <= 1 s, start-up <= 5 s.

    .venv/bin/python bench/scheduler.py [--deliveries 10000] [--window 20] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from narratives.channels.base import Outgoing, PublishResult
from narratives.core.clock import utcnow
from narratives.core.workspace import init_workspace
from narratives.store.context import Context
from narratives.store.schema import consents, deliveries, drafts, narratives
from narratives.workflow.scheduler import SchedulerService

CAMPAIGNS = ("emotional-equity", "neural-mandate")


class FastFakeChannel:
    """A fake channel for the benchmark: records lateness and returns at once."""

    def __init__(self, channel: str, lateness: dict[int, float], lock: threading.Lock):
        self.channel = channel
        self.lateness = lateness
        self.lock = lock

    def publish(self, item: Outgoing) -> PublishResult:
        late = (utcnow() - item.delivery.scheduled_at).total_seconds()
        with self.lock:
            self.lateness[item.delivery.id] = late
        return PublishResult()

    def after_commit(self, item: Outgoing) -> None:
        return None


def populate(ctx: Context, total: int, window: float, lead: float) -> dict[str, list[int]]:
    """Rows straight into the tables (the API's per-row audit is not what is measured)."""
    now = utcnow()
    n_window, n_due, n_missed = total // 5, total * 3 // 100, total // 100
    plan = (
        ["window"] * n_window
        + ["due"] * n_due
        + ["missed"] * n_missed
        + ["future"] * (total - n_window - n_due - n_missed)
    )
    narr, cons, drf, dlv = [], [], [], []
    for i, kind in enumerate(plan):
        nid = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
        campaign = CAMPAIGNS[i % 2]
        channel = ("rss", "bluesky")[(i // 2) % 2]
        if kind == "window":
            at = now + timedelta(seconds=lead + window * (i / n_window))
        elif kind == "due":
            at = now - timedelta(minutes=30)
        elif kind == "missed":
            at = now - timedelta(hours=30)
        else:
            at = now + timedelta(hours=1 + (i % 720))
        narr.append(dict(id=nid, created_at=now, updated_at=now, size_bytes=1, label=f"{i}.wav"))
        cons.append(
            dict(
                narrative_id=nid,
                given_by="bench",
                given_at=now,
                method="form",
                channels=["bluesky", "rss"],
                updated_at=now,
            )
        )
        content = (
            {"posts": [{"text": f"story {i}"}], "langs": ["en"]}
            if channel == "bluesky"
            else {"title": f"story {i}", "summary": "s", "content": "c", "link": ""}
        )
        drf.append(
            dict(
                id=i + 1,
                narrative_id=nid,
                campaign=campaign,
                channel=channel,
                state="approved",
                template="t",
                template_hash="0" * 64,
                generated=content,
                content=content,
                created_at=now,
                updated_at=now,
            )
        )
        dlv.append(
            dict(
                id=i + 1,
                draft_id=i + 1,
                campaign=campaign,
                channel=channel,
                state="scheduled",
                scheduled_at=at,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
    with ctx.db.begin() as conn:
        for table, rows in ((narratives, narr), (consents, cons), (drafts, drf), (deliveries, dlv)):
            conn.execute(table.insert(), rows)
    kinds: dict[str, list[int]] = {}
    for i, kind in enumerate(plan):
        kinds.setdefault(kind, []).append(i + 1)
    return kinds


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if values else float("nan")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deliveries", type=int, default=10_000)
    ap.add_argument("--window", type=float, default=20.0, help="seconds over which 20%% come due")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="narratives-bench-") as tmp:
        ws = init_workspace(Path(tmp), force=True)
        ctx = Context(ws)
        t0 = time.perf_counter()
        lead = 8.0  # the window starts after start-up, so lateness is not start-up time
        kinds = populate(ctx, args.deliveries, args.window, lead)
        populate_s = time.perf_counter() - t0

        lateness: dict[int, float] = {}
        lock = threading.Lock()
        publishers = {c: FastFakeChannel(c, lateness, lock) for c in ("rss", "bluesky")}
        service = SchedulerService(ctx, publishers=publishers, sync_interval=10.0)
        t1 = time.perf_counter()
        report = service.start()
        startup_s = time.perf_counter() - t1

        expected = set(kinds["window"]) | set(kinds["due"])
        deadline = time.monotonic() + lead + args.window + 120
        while time.monotonic() < deadline:
            with lock:
                if expected <= lateness.keys():
                    break
            time.sleep(0.2)
        service.stop()

        window = [lateness[i] for i in kinds["window"] if i in lateness]
        with ctx.db.connect() as conn:
            states = dict(
                conn.execute(
                    sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state)
                ).all()
            )
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = {
            "deliveries": args.deliveries,
            "populate_s": round(populate_s, 2),
            "startup_s": round(startup_s, 3),
            "reconcile": {
                k: v if isinstance(v, int) else len(v) for k, v in report.to_dict().items()
            },
            "window_deliveries": len(kinds["window"]),
            "dispatched_in_window": len(window),
            "lateness_p50_s": round(pct(window, 50), 3),
            "lateness_p99_s": round(pct(window, 99), 3),
            "lateness_max_s": round(max(window), 3) if window else None,
            "states": states,
            "peak_rss_mb": round(peak_mb, 1),
            "targets_met": bool(window)
            and pct(window, 99) <= 1.0
            and startup_s <= 5.0
            and len(window) == len(kinds["window"]),
        }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    sys.exit(0 if result["targets_met"] else 1)


if __name__ == "__main__":
    main()
