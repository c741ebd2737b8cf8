"""A full shift on the staff queue in a real headless Chromium (issue 16 "Done when").

The page is open and signed in; an urgent text and a voice message arrive through the signed webhooks;
the page refreshes itself (no scripts, no one presses reload) and shows them, urgent first, with the
texted words and the message's transcript; the title counts them. A nurse claims the urgent one, logs a
no-answer attempt with a note, then a reached outcome, and closes it; the history shows each step, with
who and when. Screenshots go to build/screenshots/ (git-ignored); docs/images/staff-queue.png is a copy
of the queue one, made by hand when the page changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from ivr.phone.twilio_standin import twilio_standin
from tests.helpers.browser import browser, png_size  # noqa: F401  # the Chromium fixture
from tests.helpers.staff_support import (
    ACCOUNT_SID,
    StaffCall,
    create_staff,
    live_server,
    make_app,
    recording_sid,
)
from tests.helpers.support import AUTH_TOKEN, LINE_NUMBER, Phone, twilio_post

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
TEXTER = "+15551230002"
TEXTER_SHOWN = "(555) 123-0002"
CALLER_SHOWN = "(555) 123-0001"
URGENT_TEXT = "I can't breathe well since this morning. Please call me."
MESSAGE = "Hi, this is Ana. My father's pain is worse at night. Please call me back about hospice."


def an_urgent_text_arrives(app: Flask) -> None:
    answer = Phone(app.test_client(), number=TEXTER).text(URGENT_TEXT)
    assert answer and "911" in answer[0]


def a_voice_message_arrives(app: Flask) -> None:
    """Hospice, then 0; no one answers; a 12-second message, and Twilio's transcript of it a little later."""
    call = StaffCall(app.test_client())
    call.start()
    call.press("5")
    call.press("0")
    call.dial_ends(call.action(), "no-answer", call.staff_leg())
    call.press("1")
    record = call.last.find("Record") if call.last is not None else None
    assert record is not None and record.get("transcribe") == "true"
    call.record_ends(call.action(), 1, 12)
    form = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": call.call_sid,
        "RecordingSid": recording_sid(1),
        "TranscriptionSid": "TR" + "3" * 32,
        "TranscriptionStatus": "completed",
        "TranscriptionText": MESSAGE,
    }
    assert twilio_post(app.test_client(), str(record.get("transcribeCallback")), form).status_code == 200


def test_a_nurse_works_a_full_shift_in_a_real_browser(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with twilio_standin(ACCOUNT_SID, AUTH_TOKEN) as standin:
        # The real clock (the text line keeps its own times), with staff in round the clock so 0 rings them.
        app = make_app(
            tmp_path,
            LINE_NUMBER=LINE_NUMBER,
            TWILIO_API_BASE_URL=standin.base_url,
            STAFF_REFRESH_SECONDS=2,
            STAFF_HOURS="Mon-Sun 00:00-24:00",
            NOW=None,
        )
        create_staff(app)
        with live_server(app) as base_url:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            try:
                work_the_shift(context.new_page(), base_url, app)
            finally:
                context.close()
            phone_context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            try:
                on_a_phone(phone_context.new_page(), base_url)
            finally:
                phone_context.close()


def sign_in_page(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/staff")
    page.get_by_label("User name").fill("nurse.ana")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}/staff")


def work_the_shift(page: Page, base_url: str, app: Flask) -> None:
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    sign_in_page(page, base_url)
    expect(page.get_by_text("No one is waiting for a call back.")).to_be_visible()
    expect(page).to_have_title("Call-back requests – CareLine staff")

    # Two people reach the line while the page sits open; nobody touches the browser.
    a_voice_message_arrives(app)
    an_urgent_text_arrives(app)
    cards = page.locator("ol.requests > li")
    expect(cards).to_have_count(2, timeout=20_000)  # the page's own refresh brought them
    expect(page).to_have_title("(1 urgent, 0 overdue) Call-back requests – CareLine staff")
    # From here on the nurse works the page: a slower refresh, so no reload lands between two clicks.
    app.config["STAFF_REFRESH_SECONDS"] = 600
    page.reload()

    # Urgent first, with the words; then the voice message with its transcript.
    urgent, message = cards.nth(0), cards.nth(1)
    expect(urgent).to_contain_text("Urgent")
    expect(urgent.get_by_role("heading", level=3)).to_contain_text(f"Call-back request from {TEXTER_SHOWN}")
    expect(urgent).to_contain_text(URGENT_TEXT)
    expect(urgent).to_contain_text("Due by")
    expect(message.get_by_role("heading", level=3)).to_contain_text(f"Voice message from {CALLER_SHOWN}")
    expect(message).to_contain_text(MESSAGE)
    expect(message).to_contain_text("Hospice and end-of-life care")
    page.screenshot(path=str(SCREENSHOTS / "staff-queue-page.png"), full_page=True)
    assert png_size(SCREENSHOTS / "staff-queue-page.png")[0] == 1100
    # The queue alone, for the README (docs/images/staff-queue.png is a copy of it).
    page.locator("#queue").screenshot(path=str(SCREENSHOTS / "staff-queue.png"))
    assert png_size(SCREENSHOTS / "staff-queue.png")[0] >= 1000

    # "I'm calling": the page comes back at the card, which now says who is calling.
    urgent.get_by_role("button", name="I'm calling").click()
    card_id = re.search(r"#card-(\d+)$", page.url)
    assert card_id, page.url
    urgent = page.locator(f"#card-{card_id.group(1)}")
    expect(urgent.get_by_role("status")).to_contain_text("You are calling this person")
    expect(urgent).to_contain_text("Being called by")
    assert page.evaluate("window.scrollY") > 0 or urgent.bounding_box()["y"] < 900, "the result is in view"

    # The call: no answer, with a note typed on the request's own page (which never refreshes).
    urgent.get_by_role("link", name=re.compile("Log a call or a note")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(TEXTER_SHOWN)
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    page.get_by_label("No answer").check()
    page.get_by_label("Note (optional)").fill("Rang at 10:05, no voicemail set up. Try again in 15 minutes.")
    page.wait_for_timeout(2_500)  # longer than the queue's refresh: nothing typed here is lost
    expect(page.get_by_label("Note (optional)")).to_have_value(
        "Rang at 10:05, no voicemail set up. Try again in 15 minutes."
    )
    page.get_by_role("button", name="Save the call").click()
    expect(page.get_by_role("status")).to_contain_text("Your call is in the history.")
    assert page.url.endswith("#follow-up")

    # Tried again: reached them; then closed with that outcome.
    page.get_by_label("Reached them").check()
    page.get_by_role("button", name="Save the call").click()
    expect(page.get_by_role("status")).to_contain_text("Your call is in the history.")
    page.get_by_label("Close it: how did it end?").select_option(label="Reached them")
    page.get_by_role("button", name="Close the request").click()
    expect(page.get_by_role("status")).to_contain_text("Closed.")
    expect(page.locator("ol.requests > li")).to_have_count(1)
    expect(page).to_have_title("Call-back requests – CareLine staff")

    # The history, from Recently done: each step with who and when.
    page.locator("#done").get_by_role("link", name=re.compile(re.escape(TEXTER_SHOWN))).click()
    history = page.locator("#history li")
    expect(history).to_have_count(5)
    steps = [re.sub(r"\s+", " ", text).split(": ", 1)[1] for text in history.all_inner_texts()]
    assert steps == [
        "nurse.ana is calling",
        "nurse.ana called: no answer",
        "nurse.ana added a note",
        "nurse.ana called: reached them",
        "nurse.ana closed it: reached them",
    ], steps
    expect(page.get_by_text("Rang at 10:05, no voicemail set up.")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "staff-request-history.png"), full_page=True)
    assert [p for p in problems if "401" not in p] == []


def on_a_phone(page: Page, base_url: str) -> None:
    """The same queue on a phone's screen: one column, nothing wider than the screen."""
    page.set_default_timeout(15_000)
    sign_in_page(page, base_url)
    expect(page.locator("ol.requests > li")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(SCREENSHOTS / "staff-queue-phone.png"), full_page=True)


def test_the_readme_shows_the_queue() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "](docs/images/staff-queue.png)" in readme
    image = Path(__file__).resolve().parent.parent / "docs" / "images" / "staff-queue.png"
    assert png_size(image)[0] >= 1000
