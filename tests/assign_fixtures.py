"""Stories that fit no campaign, written straight into a test workspace (no models, no
render): the unassigned list and the assign buttons of the review page need only these."""

from __future__ import annotations

from narratives.store.context import Context
from narratives.store.stage_runs import stage_run
from tests.review_fixtures import add_narrative, analysis_for

#: The shipped campaigns, as the page names them.
EQUITY, MANDATE = "emotional-equity", "neural-mandate"


def off_topic_analysis(title: str = "The night bus to the sea", **overrides) -> dict:
    """An analysis whose tags fit no campaign (every score under the shipped threshold)."""
    return analysis_for(
        title=title,
        campaigns={
            EQUITY: {
                "tags": [
                    {"name": "sleep-inequality", "score": 0.41},
                    {"name": "equal-access", "score": 0.33},
                    {"name": "grief-and-healing", "score": 0.12},
                ],
                "top": "sleep-inequality",
                "on_topic": False,
            },
            MANDATE: {
                "tags": [
                    {"name": "shared-dreamscapes", "score": 0.29},
                    {"name": "neural-consent", "score": 0.05},
                ],
                "top": "shared-dreamscapes",
                "on_topic": False,
            },
        },
        **overrides,
    )


def add_unassigned(
    ctx: Context,
    seed: str = "lost-1",
    *,
    title: str = "The night bus to the sea",
    label: str = "night-bus.wav",
    consent: bool = True,
) -> str:
    """An analysed story that goes to no campaign; returns its id."""
    nid = add_narrative(ctx, seed, analysis=off_topic_analysis(title), label=label, consent=consent)
    with stage_run(ctx.db, nid, "analyse") as run:  # as the pipeline leaves it
        run.engine, run.model = "embeddings", "all-MiniLM-L6-v2"
    return nid


def without_render(workspace) -> Context:
    """A context whose settings turn rendering off: making outputs is then drafts only (fast).
    Test modules use it as their `ctx` fixture."""
    workspace.settings_path.write_text("[render]\nenabled = false\n", encoding="utf-8")
    return Context(workspace)
