"""The staff page in a real headless Chromium, against the app served by a real HTTP server.

A caller leaves a voice message through the signed webhooks; then a staff member signs in, finds it,
plays it (the audio comes through the app from a stand-in for Twilio's REST API), marks it done and
texts a topic to a patient (through the real `twilio` client to the same stand-in).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from ivr.phone.twilio_standin import TwilioStandIn, twilio_standin
from tests.helpers.browser import browser, png_size  # noqa: F401  # the Chromium fixture
from tests.helpers.staff_support import ACCOUNT_SID, StaffCall, create_staff, live_server, make_app, recording_sid
from tests.helpers.support import AUTH_TOKEN, LINE_NUMBER, TEXTABLE_CALLER

pytestmark = pytest.mark.slow

SCREENSHOT_COPY = Path("/tmp/staff-page.png")
#: The caller's number as the page shows it: national format, as the line's own number is in the same country.
CALLER_SHOWN = "(555) 123-0001"


def leave_voice_message(app: Flask) -> None:
    """A caller hears about hospice, asks for a person, nobody answers, and leaves a 12-second message."""
    call = StaffCall(app.test_client())
    call.start()
    call.press("5")
    call.press("0")
    call.dial_ends(call.action(), "no-answer", call.staff_leg())
    call.press("1")
    call.record_ends(call.action(), 1, 12)


def test_a_staff_member_works_a_voice_message_in_a_real_browser(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    with twilio_standin(ACCOUNT_SID, AUTH_TOKEN) as standin:
        app = make_app(tmp_path, LINE_NUMBER=LINE_NUMBER, TWILIO_API_BASE_URL=standin.base_url)
        create_staff(app)
        leave_voice_message(app)
        with live_server(app) as base_url:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            try:
                run_staff_session(context.new_page(), base_url, standin, tmp_path)
            finally:
                context.close()


def run_staff_session(page: Page, base_url: str, standin: TwilioStandIn, tmp_path: Path) -> None:
    page.set_default_timeout(15_000)
    # Anything the Content-Security-Policy blocks, or any missing file, shows up as a console error.
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)

    # Not signed in: the page sends us to sign in, and comes back after.
    page.goto(f"{base_url}/staff")
    expect(page).to_have_url(f"{base_url}/staff/login?next=/staff")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the CareLine staff page")
    page.get_by_label("User name").fill("nurse.ana")
    page.get_by_label("Password").fill("a wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_label("Password").press("Enter")  # the keyboard works as well as the mouse
    expect(page).to_have_url(f"{base_url}/staff")

    # The skip link is the first thing the keyboard reaches, and it moves focus to the content.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # The caller's message is in the queue, with what they last heard.
    message = page.get_by_role("article").filter(has_text=CALLER_SHOWN)
    expect(message.get_by_role("heading", level=3)).to_contain_text(f"Voice message from {CALLER_SHOWN}")
    expect(message).to_contain_text("Hospice and end-of-life care")
    expect(message).to_contain_text("Voice message, 12 seconds")

    # Play it: the <audio> points at the app, which fetches the MP3 from "Twilio" with the account's credentials.
    audio = message.locator("audio")
    src = audio.get_attribute("src")
    assert src is not None and src.startswith("/staff/requests/") and src.endswith("/recording")
    audio.evaluate("el => el.play()")
    page.wait_for_function("el => el.currentTime > 0 || el.ended", arg=audio.element_handle())
    assert audio.evaluate("el => el.error === null && el.duration > 0")
    assert ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid(1)}.mp3") in standin.requests

    page.screenshot(path=str(tmp_path / "staff-page.png"), full_page=True)
    shutil.copyfile(tmp_path / "staff-page.png", SCREENSHOT_COPY)
    width, height = png_size(tmp_path / "staff-page.png")
    assert width == 1100 and height > 900

    # Mark it done: it leaves the queue and shows who did it.
    message.get_by_role("button", name="Mark done").click()
    expect(page.get_by_role("status")).to_contain_text("Marked done.")
    expect(page.get_by_role("heading", name="Call-back requests (0 open)")).to_be_visible()
    done = page.locator("#done table")
    expect(done).to_contain_text("nurse.ana")
    expect(done).to_contain_text(CALLER_SHOWN)

    # Text a topic, in Spanish, to the patient.
    page.get_by_label("Phone number").fill("(202) 555-0123")  # a number the outbound-text policy lets the line text
    page.get_by_label("Topic", exact=True).select_option(label="Hospice and end-of-life care")
    page.get_by_label("Language of the texts").select_option(label="Spanish")
    page.get_by_role("button", name="Send by text").click()
    expect(page.get_by_role("status")).to_contain_text("The topic was sent by text message.")
    assert standin.messages and {m["To"] for m in standin.messages} == {TEXTABLE_CALLER}
    assert standin.messages[0]["Body"].startswith("HOSPICIO Y CUIDADOS AL FINAL DE LA VIDA")

    page.screenshot(path=str(tmp_path / "staff-page-after.png"), full_page=True)
    assert png_size(tmp_path / "staff-page-after.png")[0] == 1100
    # The wrong password's 401 is the only error the browser should have noted.
    assert [p for p in problems if "401" not in p] == []
