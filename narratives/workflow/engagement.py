"""How the campaigns' stories did on Bluesky (issue 19): likes, reposts, replies and quotes of
every published post, pulled from the AppView through each account's server the way Bluesky's
own app reads them, kept as a time series (`store.post_stats`), and reported per story, per
week and per tag, with SVG charts that need no JavaScript.

A pull asks `app.bsky.feed.getPosts` for 25 posts a request, one account at a time; a rate
limit (HTTP 429) is waited out (up to `max_wait` seconds in all) rather than skipped, so a pull
never hammers the server and never stores half a picture without saying so.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from narratives.core.campaigns import get_campaign, load_campaigns
from narratives.core.clock import utcnow
from narratives.core.errors import ChannelError, RateLimited
from narratives.store import post_stats as stats_store
from narratives.store.context import Context
from narratives.workflow.accounts import accounts_of

__all__ = ["PullReport", "Report", "charts", "pull", "report"]

COUNTS = stats_store.COUNTS


@dataclass
class PullReport:
    at: datetime
    posts: int = 0
    stored: int = 0
    requests: int = 0
    seconds: float = 0.0
    waited: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d


def pull(
    ctx: Context,
    campaign: str | None = None,
    *,
    channel_factory: Any = None,
    max_wait: float = 300.0,
) -> PullReport:
    """Store the current counts of every published Bluesky post (of one campaign, or all)."""
    # The atproto SDK takes about a second to import: only when stats are pulled.
    from narratives.channels.bluesky.client import BlueskyChannel
    from narratives.channels.bluesky.publisher import video_upload

    started = time.monotonic()
    report = PullReport(at=utcnow())
    with ctx.db.connect() as conn:
        published = stats_store.published_posts(conn, campaign)
    by_campaign: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in published:
        for post in row.posts or ():
            if post.get("uri"):
                by_campaign[row.campaign].append((row.id, post["uri"]))
    campaigns = {c.slug: c for c in load_campaigns(ctx.workspace)}
    for account, slugs in accounts_of(ctx, campaign).items():
        wanted = [item for slug in slugs for item in by_campaign.get(slug, ())]
        if not wanted:
            continue
        cfg = campaigns[slugs[0]].channels.bluesky
        make = channel_factory or (
            lambda a, cfg=cfg: BlueskyChannel(a, ctx.workspace, video=video_upload(cfg))
        )
        with make(account) as channel:
            counts = _counts(channel, [uri for _, uri in wanted], report, max_wait)
            report.requests += channel.requests
        if counts is None:
            continue
        rows = [(d, uri, counts[uri]) for d, uri in wanted if uri in counts]
        report.posts += len(wanted)
        with ctx.db.begin() as conn:
            report.stored += stats_store.record(conn, report.at, rows)
    report.seconds = time.monotonic() - started
    return report


def _counts(channel: Any, uris: list[str], report: PullReport, max_wait: float) -> Any:
    while True:
        try:
            return channel.post_counts(uris)
        except RateLimited as exc:
            wait = (exc.retry_after or 5.0) + 1.0
            if report.waited + wait > max_wait:
                report.errors.append(f"{channel.account.handle}: {exc} (gave up waiting)")
                return None
            report.waited += wait
            time.sleep(wait)
        except ChannelError as exc:
            report.errors.append(f"{channel.account.handle}: {exc}")
            return None


@dataclass
class Report:
    campaign: str
    name: str
    stories: list[dict[str, Any]]
    weeks: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    series: list[dict[str, Any]]

    @property
    def empty(self) -> bool:
        return not self.stories

    @property
    def pulled(self) -> bool:
        return any(s["pulled_at"] for s in self.stories)

    def to_dict(self) -> dict[str, Any]:
        def clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()}
                for r in rows
            ]

        return {
            "campaign": self.campaign,
            "name": self.name,
            "published": len(self.stories),
            "stories": clean(self.stories),
            "weeks": clean(self.weeks),
            "tags": clean(self.tags),
            "series": clean(self.series),
        }


def _sum(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for r in rows:
        for k in r[key] if isinstance(r[key], list) else [r[key]]:
            t = totals.setdefault(k, {key.rstrip("s"): k, "stories": 0, **dict.fromkeys(COUNTS, 0)})
            t["stories"] += 1
            for c in COUNTS:
                t[c] += r[c]
    return [totals[k] for k in sorted(totals)]


def report(ctx: Context, campaign: str) -> Report:
    """The campaign's engagement: per story (latest counts), per week published, per tag, and
    the totals at each pull."""
    c = get_campaign(ctx.workspace, campaign)
    with ctx.db.connect() as conn:
        stories = stats_store.latest_by_delivery(conn, campaign)
        series = stats_store.totals_over_time(conn, campaign)
    for s in stories:
        year, week, _ = s["published_at"].isocalendar()
        s["week"] = f"{year}-W{week:02d}"
    weeks = _sum(stories, "week")
    tags = _sum(stories, "tags")
    return Report(campaign, c.name, stories, weeks, tags, series)


#: The story chart shows this many stories, the most engaged; the table lists them all.
TOP_STORIES = 25


def _top(stories: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return sorted(stories, key=lambda s: -sum(s[k] for k in COUNTS))[:n]


def charts(r: Report) -> dict[str, str]:
    """SVG bar charts of the report (per story, per week, per tag), keyed by name; none for a
    campaign with nothing published (the page says so instead of drawing empty axes)."""
    if r.empty:
        return {}
    # matplotlib takes a while to import: only when a chart is drawn.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out = {}
    groups = {
        "story": [(s["title"][:40], s) for s in _top(r.stories, TOP_STORIES)],
        "week": [(w["week"], w) for w in r.weeks],
        "tag": [(t["tag"], t) for t in r.tags],
    }
    colours = {"likes": "#d6336c", "reposts": "#2b8a3e", "replies": "#1971c2", "quotes": "#f08c00"}
    for name, rows in groups.items():
        if not rows:
            continue
        fig = Figure(figsize=(8, 0.45 * len(rows) + 1.4))
        ax = fig.add_subplot()
        labels = [label for label, _ in rows]
        left = [0] * len(rows)
        for count in COUNTS:
            values = [row[count] for _, row in rows]
            ax.barh(labels, values, left=left, label=count, color=colours[count])
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.invert_yaxis()
        ax.set_xlabel("likes, reposts, replies and quotes")
        ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
        svg = buffer.getvalue()
        out[name] = svg[svg.index("<svg") :]
    return out
