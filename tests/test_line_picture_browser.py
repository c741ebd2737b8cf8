"""The picture of the line in a real headless Chromium (issue 16, item 5): the charts draw with no script and
no Content-Security-Policy complaint, the tables read as tables, and a screenshot of the page is written to
build/screenshots/line-picture.png (git-ignored) for people to look at."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.helpers.browser import browser, png_size  # noqa: F401  # the Chromium fixture
from tests.helpers.staff_support import OPEN_TIME, create_staff, live_server, make_app, sign_in
from tests.helpers.support import Call, Phone, twilio_post

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


def busy_month(app) -> None:  # type: ignore[no-untyped-def]
    """Some calls and texts over a few weeks, ending at different places in the menu."""
    for back, keys in enumerate([("1",), ("1", "1"), ("0",), (), ("5", "*"), ("2",), ("1", "#")] * 3):
        app.config["NOW"] = OPEN_TIME - dt.timedelta(days=back % 20, hours=back)
        sid = f"CA{back:032x}"
        call = Call(app.test_client(), call_sid=sid)
        call.start()
        for key in keys:
            call.press(key)
        if back % 7 == 3:
            call.say("I can't breathe")  # an urgent call: kept for staff, and offered 911
        form = {"CallSid": sid, "CallStatus": "completed", "CallDuration": str(30 + back)}
        assert twilio_post(app.test_client(), "/voice/status", form).status_code == 200
        if back % 2:
            Phone(app.test_client(), number=f"+1555123{back:04d}").text("hospice")
    app.config["NOW"] = OPEN_TIME


def test_the_picture_of_the_line_in_a_real_browser(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    app = make_app(tmp_path)
    create_staff(app)
    busy_month(app)
    assert sign_in(app.test_client()).status_code == 303
    with live_server(app) as base_url:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            problems: list[str] = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.goto(f"{base_url}/staff/login?next=/staff/line")
            page.get_by_label("User name").fill("nurse.ana")
            page.get_by_label("Password").fill("correct horse battery staple")
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{base_url}/staff/line")
            expect(page.get_by_role("heading", level=1)).to_have_text("Picture of the line")
            for name in ("Calls and texts per day", "Urgent requests per day", "Where calls end"):
                expect(page.get_by_role("img", name=name)).to_be_visible()
            # Each chart's table is a real table with a caption, read by screen readers as one.
            expect(page.get_by_role("table", name="Where calls end: 21 calls in all")).to_be_visible()
            page.get_by_text("The numbers, day by day").first.click()  # the day tables open without scripts
            expect(page.get_by_role("table", name="Calls and texts per day", exact=False)).to_be_visible()
            expect(page.get_by_role("link", name="Picture of the line")).to_have_attribute("aria-current", "page")
            bars = page.locator("svg.chart rect")
            assert bars.count() > 20
            assert page.evaluate("document.scripts.length") == 0
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOTS / "line-picture.png"
            page.screenshot(path=str(shot), full_page=True)
            width, height = png_size(shot)
            assert width == 1100 and height > 900
            assert problems == []
        finally:
            context.close()
