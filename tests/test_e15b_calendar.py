"""The schedule as a week and month calendar per campaign, with move and cancel on each waiting
delivery (issue 15, item 5), in process and at phone size in Chromium."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from narratives.core.campaigns import get_campaign
from narratives.core.clock import utcnow
from narratives.store import delivery_queries
from narratives.workflow import scheduling
from tests.delivery_fixtures import add_draft, rss_content
from tests.review_fixtures import PASSWORD, add_user
from tests.web_client import client_for, csrf

EQUITY = "emotional-equity"


def _monday_ahead(ctx, weeks: int = 3) -> date:
    zone = get_campaign(ctx.workspace, EQUITY).slots.zone
    today = utcnow().astimezone(zone).date()
    return today + timedelta(days=7 * weeks - today.weekday())


def _cell(html: str, day: date) -> str:
    m = re.search(rf'<td class="cal-day[^"]*" id="day-{day.isoformat()}">(.*?)</td>', html, re.S)
    assert m, f"no cell for {day}"
    return m.group(1)


@pytest.fixture
def planned(ctx):
    monday = _monday_ahead(ctx)
    first = add_draft(ctx, content=rss_content("The night bus"))
    second = add_draft(ctx, content=rss_content("A garden of dreams"))
    a = scheduling.schedule(ctx, first, at=f"{monday} 09:00", actor="kai")
    b = scheduling.schedule(ctx, second, at=f"{monday + timedelta(days=2)} 18:30", actor="kai")
    return monday, a, b


def test_week_and_month_put_each_delivery_on_its_day(ctx, planned):
    monday, a, b = planned
    client = client_for(ctx)
    week = client.get(f"/schedule?campaign={EQUITY}&view=week&start={monday + timedelta(days=3)}")
    assert week.status_code == 200
    html = week.text
    assert f"Week of {monday:%-d %B %Y}" in html
    assert len(re.findall(r'class="cal-day', html)) == 7
    assert f'id="cal-delivery-{a.id}"' in _cell(html, monday)
    assert "<strong>09:00</strong>" in _cell(html, monday)
    assert f'id="cal-delivery-{b.id}"' in _cell(html, monday + timedelta(days=2))
    assert "The night bus" not in _cell(html, monday + timedelta(days=2))
    prev_week = (monday - timedelta(days=7)).isoformat()
    assert f'start={prev_week}" id="cal-prev"' in html

    month = client.get(f"/schedule?campaign={EQUITY}&view=month&start={monday}").text
    assert f"{monday:%B %Y}" in month
    cells = len(re.findall(r'class="cal-day', month))
    assert cells % 7 == 0 and 28 <= cells <= 42
    assert f'id="cal-delivery-{a.id}"' in _cell(month, monday)
    # Another month is empty and says so; nonsense parameters are clear errors.
    later = monday + timedelta(days=100)
    empty = client.get(f"/schedule?campaign={EQUITY}&view=month&start={later}").text
    assert 'id="cal-empty"' in empty and "cal-delivery-" not in empty
    assert client.get("/schedule?view=year").status_code == 400
    assert client.get("/schedule?view=week&start=someday").status_code == 400


def test_move_and_cancel_from_the_calendar_come_back_to_it(ctx, planned):
    monday, a, b = planned
    client = client_for(ctx)
    here = f"/schedule?campaign={EQUITY}&view=week&start={monday}"
    page = client.get(here).text
    assert f'action="/deliveries/{a.id}/move"' in page
    token = csrf(client, here)
    r = client.post(
        f"/deliveries/{a.id}/move",
        data={
            "csrf": token,
            "back": here,
            "mode": "at",
            "when": f"{monday + timedelta(days=4)}T12:00",
            "tz": "America/Los_Angeles",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == here
    page = client.get(here).text
    assert f"Delivery {a.id} moved to" in page
    assert f'id="cal-delivery-{a.id}"' in _cell(page, monday + timedelta(days=4))
    assert f'id="cal-delivery-{a.id}"' not in _cell(page, monday)

    r = client.post(f"/deliveries/{b.id}/cancel", data={"csrf": token, "back": here})
    assert r.status_code == 303 and r.headers["location"] == here
    page = client.get(here).text
    assert f"Delivery {b.id} cancelled." in page
    assert f'id="cal-delivery-{b.id}"' not in page  # cancelled: only with "show all"
    assert f'id="cal-delivery-{b.id}"' in client.get(here + "&show=all").text
    with ctx.db.connect() as conn:
        assert delivery_queries.get_delivery(conn, b.id).state == "cancelled"
    # Without the form's token nothing moves; a foreign "back" goes to the draft instead.
    r = client.post(f"/deliveries/{a.id}/cancel", data={"back": here})
    assert r.status_code == 403
    r = client.post(
        f"/deliveries/{a.id}/cancel", data={"csrf": token, "back": "https://evil.example/"}
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/drafts/")


@pytest.mark.browser
def test_the_calendar_in_a_phone(ctx, server, browser, planned):
    monday, a, _ = planned
    add_user(ctx, "kai")
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{server}/login")
    page.fill("#name", "kai")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{server}/schedule?campaign={EQUITY}&view=month&start={monday}")
    expect(page.locator(f"#cal-delivery-{a.id}")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator(f"#cal-delivery-{a.id} summary").click()
    page.fill(f"#move-{a.id}", f"{monday + timedelta(days=1)}T10:00")
    page.locator(f"#cal-delivery-{a.id} button", has_text="Move").click()
    expect(page.locator(".flash")).to_contain_text(f"Delivery {a.id} moved to")
    expect(page.locator(f"#day-{monday + timedelta(days=1)} #cal-delivery-{a.id}")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
