"""Two editors at once, for real: concurrent HTTP requests from threads against the review app
served by uvicorn on 127.0.0.1, on SQLite and on PostgreSQL, for hundreds of rounds.

Each round both editors read the same version of a draft, wait at a barrier, and send their
forms at the same moment. Counted: lost edits (a save reported as done whose text is not the
draft's text, or two saves from the same text both accepted) and approvals of unseen text (an
approval that landed on a text other than the one its form carried). Both must be 0; the
refused side must get a 409 page that names who changed the draft and shows its text now.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from narratives.records.draft import DraftState
from narratives.stages.draft import stage as drafting
from narratives.store.context import Context
from narratives.store.schema import audit_log
from narratives.web import create_app
from narratives.workflow import review
from tests.browser_fixtures import free_port
from tests.review_fixtures import PASSWORD, add_narrative, add_user

# Hundreds of real concurrent requests take minutes: the full suite runs them, not test-fast.
pytestmark = pytest.mark.slow

#: Rounds of each race per database (E15A_RACE_ROUNDS raises it for a longer soak).
ROUNDS = int(os.environ.get("E15A_RACE_ROUNDS", "100"))
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Tally:
    rounds: int = 0
    both_refused: int = 0
    lost_edits: int = 0
    unseen_approvals: int = 0
    conflicts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Live:
    """The review app under uvicorn on a free port of 127.0.0.1."""

    def __init__(self, ctx: Context) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(ctx), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _editor(base: str, name: str) -> tuple[httpx.Client, str]:
    """A logged-in client and its session's CSRF token."""
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=60)
    token = _CSRF.search(client.get("/login").text).group(1)
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": token})
    assert r.status_code == 303, r.text
    return client, _CSRF.search(client.get("/").text).group(1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def race_ctx(request, workspace):
    """A workspace on SQLite, or on a fresh database of the tests' PostgreSQL server."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        name = f"e15a_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        workspace.settings_path.write_text(f'[database]\nurl = "{url.rsplit("/", 1)[0]}/{name}"\n')
    ctx = Context(workspace)
    assert ctx.db.dialect.name == request.param.replace("postgres", "postgresql")
    return ctx


def _draft_id(ctx: Context) -> int:
    add_user(ctx, "ann")
    add_user(ctx, "bob")
    nid = add_narrative(ctx, f"race-{uuid.uuid4()}")
    ids = drafting.run(ctx, nid)
    return next(i for i in ids if review.get_draft(ctx, i).channel == "bluesky")


def _at_once(*calls):
    """Run the calls in threads released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _audit_since(ctx: Context, draft_id: int, after_id: int) -> list:
    with ctx.db.connect() as conn:
        return conn.execute(
            sa.select(audit_log)
            .where(
                audit_log.c.object_type == "draft",
                audit_log.c.object_id == str(draft_id),
                audit_log.c.id > after_id,
            )
            .order_by(audit_log.c.id)
        ).all()


def _last_audit_id(ctx: Context) -> int:
    with ctx.db.connect() as conn:
        return conn.execute(sa.select(sa.func.max(audit_log.c.id))).scalar() or 0


def _start_round(ctx: Context, did: int, n: int, kind: str):
    """The draft pending review with a fresh text both editors then read."""
    review.edit(ctx, did, {"posts": [f"{kind} round {n}: the text both editors read"]}, actor="ann")
    return review.get_draft(ctx, did)


def test_two_saves_at_once_never_lose_an_edit(race_ctx):
    ctx = race_ctx
    did = _draft_id(ctx)
    tally = Tally()
    with Live(ctx) as base:
        (ann, ann_csrf), (bob, bob_csrf) = _editor(base, "ann"), _editor(base, "bob")

        def save(client, token, version, words):
            form = {
                "csrf": token,
                "version": version,
                "text": words,
                "alt": "",
                "content_warning": "",
            }
            return client.post(f"/drafts/{did}/edit", data=form)

        for n in range(ROUNDS):
            read = _start_round(ctx, did, n, "edit")
            mark = _last_audit_id(ctx)
            texts = (f"text by ann, round {n}", f"text by bob, round {n}")
            r_ann, r_bob = _at_once(
                lambda v=read.version, t=texts[0]: save(ann, ann_csrf, v, t),
                lambda v=read.version, t=texts[1]: save(bob, bob_csrf, v, t),
            )
            codes = (r_ann.status_code, r_bob.status_code)
            tally.rounds += 1
            tally.outcomes[str(codes)] = tally.outcomes.get(str(codes), 0) + 1
            assert set(codes) <= {303, 409}, (codes, r_ann.text[:300], r_bob.text[:300])
            won = [t for t, c in zip(texts, codes, strict=True) if c == 303]
            edits = [r for r in _audit_since(ctx, did, mark) if r.action == "draft.edit"]
            now = review.get_draft(ctx, did)
            if len(won) != 1 or len(edits) != 1 or now.posts != won:
                tally.lost_edits += 1
            if not won:
                tally.both_refused += 1
            for r, c in ((r_ann, codes[0]), (r_bob, codes[1])):
                if c == 409:
                    tally.conflicts += 1
                    # Who won, and the draft's text now, on the page the loser gets.
                    assert "was changed since you opened it (edited by " in r.text
                    assert won and won[0] in r.text
    print(f"\n{ctx.db.dialect.name} save vs save: {tally}")
    assert tally.rounds == ROUNDS
    assert tally.lost_edits == 0, tally
    assert tally.conflicts == ROUNDS, tally  # exactly one of the two refused each round


def test_an_edit_racing_an_approval_never_approves_unseen_text(race_ctx):
    ctx = race_ctx
    did = _draft_id(ctx)
    tally = Tally()
    with Live(ctx) as base:
        (ann, ann_csrf), (bob, bob_csrf) = _editor(base, "ann"), _editor(base, "bob")
        for n in range(ROUNDS):
            read = _start_round(ctx, did, n, "approve")
            assert read.state == DraftState.PENDING_REVIEW
            mark = _last_audit_id(ctx)
            edit_form = {
                "csrf": ann_csrf,
                "version": read.version,
                "text": f"a change by ann, round {n}",
                "alt": "",
                "content_warning": "",
            }
            approve_form = {"csrf": bob_csrf, "version": read.version}
            r_edit, r_approve = _at_once(
                lambda f=edit_form: ann.post(f"/drafts/{did}/edit", data=f),
                lambda f=approve_form: bob.post(f"/drafts/{did}/approve", data=f),
            )
            codes = (r_edit.status_code, r_approve.status_code)
            tally.rounds += 1
            tally.outcomes[str(codes)] = tally.outcomes.get(str(codes), 0) + 1
            assert set(codes) <= {303, 409}, (codes, r_edit.text[:300], r_approve.text[:300])
            # Replay the audit log of the round: the text in force at each approval.
            text, approvals = read.content, 0
            for row in _audit_since(ctx, did, mark):
                if row.action == "draft.edit":
                    text = row.after["content"]
                elif row.action == "draft.approve":
                    approvals += 1
                    if text != read.content:
                        tally.unseen_approvals += 1
            assert approvals == (codes[1] == 303)
            now = review.get_draft(ctx, did)
            if codes[0] == 303 and now.posts != [edit_form["text"]]:
                tally.lost_edits += 1
            if now.state == DraftState.APPROVED and now.version != read.version:
                tally.unseen_approvals += 1
            tally.conflicts += codes.count(409)
    print(f"\n{ctx.db.dialect.name} edit vs approve: {tally}")
    assert tally.rounds == ROUNDS
    assert tally.unseen_approvals == 0, tally
    assert tally.lost_edits == 0, tally


def test_two_consent_changes_at_once_never_overwrite_each_other(race_ctx):
    """Consents are compare-and-swapped too: of two changes made from the same record, the
    second to write is a Conflict (or, if the first had committed before it read, it builds on
    it); the audit log's `before` of each change is always the row it replaced."""
    from narratives.core.errors import Conflict
    from narratives.policy import consent as ledger
    from narratives.store import audit

    ctx = race_ctx
    add_user(ctx, "root", role="admin")  # adding a channel back each round: an admin
    nid = add_narrative(ctx, f"consent-race-{uuid.uuid4()}", consent=False)
    ledger.record_consent(
        ctx, nid, given_by="Amara", method="form", channels=["bluesky", "rss"], actor="root"
    )
    tally = Tally()

    def change(notes: str, channels: list[str]) -> str:
        try:
            ledger.record_consent(
                ctx,
                nid,
                given_by="Amara",
                method="form",
                channels=channels,
                notes=notes,
                actor="root",
            )
            return "ok"
        except Conflict:
            return "conflict"

    for n in range(ROUNDS):
        narrower = ["rss"] if n % 2 else ["bluesky"]
        results = _at_once(
            lambda n=n: change(f"round {n}: a note", ["bluesky", "rss"]),
            lambda n=n, c=narrower: change(f"round {n}: narrower", c),
        )
        tally.rounds += 1
        tally.outcomes[str(results)] = tally.outcomes.get(str(results), 0) + 1
        tally.conflicts += results.count("conflict")
        tally.both_refused += results.count("ok") == 0
    with ctx.db.connect() as conn:
        log = [r for r in audit.history(conn, "consent", nid) if r["action"] == "consent.set"]
    # Each change's `before` is the previous change's `after`: none was overwritten unseen.
    tally.lost_edits = sum(
        cur["before"] != prev["after"] for prev, cur in zip(log, log[1:], strict=False)
    )
    print(f"\n{ctx.db.dialect.name} consent vs consent: {tally}")
    oks = sum(v * k.count("ok") for k, v in tally.outcomes.items())
    assert len(log) == 1 + oks
    assert tally.lost_edits == 0, tally
    assert tally.both_refused == 0, tally
    assert tally.conflicts > 0, tally  # the race really happened


def _process_editor(root: str, name: str, barrier, rounds: int, jobs, results) -> None:
    """One editor in its own process (its own engine and connections): each round, wait at
    the barrier, then do the job the parent set (edit or approve from the version read)."""
    from narratives.core.errors import Conflict as _Conflict
    from narratives.core.workspace import Workspace
    from narratives.workflow import review as _review

    ctx = Context(Workspace(Path(root)))
    for _ in range(rounds):
        kind, did, version, words = jobs.get()
        barrier.wait()
        try:
            if kind == "edit":
                _review.edit(ctx, did, {"posts": [words]}, actor=name, seen=version)
            else:
                _review.approve(ctx, did, actor=name, seen=version)
            results.put((name, "ok"))
        except _Conflict:
            results.put((name, "conflict"))


def test_an_edit_and_an_approval_from_two_processes(race_ctx):
    """The same race between two processes (the CLI and the web app are separate ones)."""
    ctx = race_ctx
    did = _draft_id(ctx)
    rounds = max(ROUNDS // 3, 40)
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(2)
    jobs = {"ann": mp.Queue(), "bob": mp.Queue()}
    results = mp.Queue()
    root = str(ctx.workspace.root)
    workers = [
        mp.Process(target=_process_editor, args=(root, n, barrier, rounds, jobs[n], results))
        for n in ("ann", "bob")
    ]
    for w in workers:
        w.start()
    tally = Tally()
    try:
        for n in range(rounds):
            read = _start_round(ctx, did, n, "process")
            mark = _last_audit_id(ctx)
            jobs["ann"].put(("edit", did, read.version, f"a change by ann, round {n}"))
            jobs["bob"].put(("approve", did, read.version, ""))
            got = dict(results.get(timeout=60) for _ in range(2))
            tally.rounds += 1
            key = f"edit {got['ann']}, approve {got['bob']}"
            tally.outcomes[key] = tally.outcomes.get(key, 0) + 1
            text = read.content
            for row in _audit_since(ctx, did, mark):
                if row.action == "draft.edit":
                    text = row.after["content"]
                elif row.action == "draft.approve" and text != read.content:
                    tally.unseen_approvals += 1
            if got["ann"] == "ok" and review.get_draft(ctx, did).posts != [
                f"a change by ann, round {n}"
            ]:
                tally.lost_edits += 1
    finally:
        for w in workers:
            w.join(timeout=60)
    print(f"\n{ctx.db.dialect.name} two processes: {tally}")
    assert all(w.exitcode == 0 for w in workers)
    assert tally.rounds == rounds
    assert tally.unseen_approvals == 0 and tally.lost_edits == 0, tally


def test_the_login_limit_holds_under_a_burst_on_both_databases(race_ctx):
    """20 guesses at once for one name from one address: exactly 5 reach the password check;
    then 40 names from one address: the address waits after 20 (SQLite and Postgres)."""
    from narratives.web.security import LoginLimiter

    limiter = LoginLimiter(race_ctx, limit=5, address_limit=20)
    results = _at_once(*[lambda: limiter.acquire("kai", "10.9.9.9") for _ in range(20)])
    assert sum(r.wait == 0 for r in results) == 5
    spray = _at_once(*[lambda i=i: limiter.acquire(f"user{i}", "10.8.8.8") for i in range(40)])
    assert sum(r.wait == 0 for r in spray) == 20


def test_the_new_tables_and_columns_match_the_migrations(race_ctx):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from narratives.store.db import include_object
    from narratives.store.schema import metadata

    with race_ctx.db.connect() as conn:
        mc = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object}
        )
        assert compare_metadata(mc, metadata) == []
