"""Triage and follow-through on the staff page (issue 16 items 1 to 4).

Each card shows the person's words, the voice message's transcript (or why there is none), language,
topic, how long they have waited and when the call back is due, counted in staff hours (nights,
weekends and holidays do not count), with overdue ones marked and counted in the page title. A nurse
claims a request, logs call attempts with outcomes and notes (sealed), and closes it; each step is in
its history. Numbers show as people read them; every time is in STAFF_TIMEZONE.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from ivr.hours import StaffHours
from ivr.services import services
from ivr.storage import CallbackRequest, as_utc, callback_requests, request_notes
from ivr.storage.queue import request_callback_in
from ivr.web.staff import waited
from tests.helpers.staff_support import (
    EVENING,
    HOLIDAY,
    LA,
    OPEN_TIME,
    PATIENT,
    SATURDAY,
    add_request,
    add_staff,
    csrf_token,
    make_app,
    recording_sid,
    recording_url,
    sign_in,
)
from tests.helpers.support import twilio_post

HOURS = StaffHours.parse("Mon-Fri 08:30-17:00", "America/Los_Angeles", ["2026-11-26"])
FRIDAY_4PM = dt.datetime(2026, 11, 27, 16, 0, tzinfo=LA)


# -- due by, in staff hours ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "staff_hours", "due"),
    [
        # Wednesday 10:00: 7 hours left that day, Thursday is a holiday, so the 8th hour is Friday morning.
        (OPEN_TIME, 8, dt.datetime(2026, 11, 27, 9, 30, tzinfo=LA)),
        (OPEN_TIME, 1, dt.datetime(2026, 11, 25, 11, 0, tzinfo=LA)),
        # Friday 4 PM: one hour Friday, the weekend does not count, seven on Monday.
        (FRIDAY_4PM, 8, dt.datetime(2026, 11, 30, 15, 30, tzinfo=LA)),
        # Saturday: the clock starts on Monday at 8:30.
        (SATURDAY, 8, dt.datetime(2026, 11, 30, 16, 30, tzinfo=LA)),
        # Wednesday evening, an urgent one: the holiday is skipped, Friday 9:30.
        (EVENING, 1, dt.datetime(2026, 11, 27, 9, 30, tzinfo=LA)),
        # On the holiday itself, the same.
        (HOLIDAY, 1, dt.datetime(2026, 11, 27, 9, 30, tzinfo=LA)),
    ],
)
def test_due_by_is_counted_in_staff_hours(start: dt.datetime, staff_hours: int, due: dt.datetime) -> None:
    assert HOURS.after_open_time(start, dt.timedelta(hours=staff_hours)) == due


def test_no_staff_hours_means_no_due_time() -> None:
    closed = StaffHours.parse("closed", "America/Los_Angeles")
    assert closed.after_open_time(OPEN_TIME, dt.timedelta(hours=8)) is None


def test_waiting_time_in_words() -> None:
    assert waited(20) == "less than a minute"
    assert waited(45 * 60) == "45 minutes"
    assert waited(3 * 3600 + 600) == "3 hours 10 minutes"
    assert waited(2 * 86400 + 4 * 3600 + 59) == "2 days 4 hours"
    assert waited(86400) == "1 day"


# -- the page ------------------------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = make_app(tmp_path, LINE_NUMBER="+15559870000")
    add_staff(app)
    return app


def texted(app: Flask, words: str, urgent: bool = False, at: dt.datetime = OPEN_TIME, phone: str = PATIENT) -> None:
    with app.app_context():
        storage = services().storage
        ask = CallbackRequest(
            section="coping", lang="en", urgent=urgent, kind="distress" if urgent else "", words=storage.seal(words)
        )
        with storage.durable() as connection:
            request_callback_in(connection, phone, ask, "sms", f"SM{words[:20]}{at.isoformat()}", as_utc(at))


def page(client: FlaskClient, path: str = "/staff/") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def card_of(html: str, request_id: int) -> str:
    start = html.index(f'id="card-{request_id}"')
    return html[start : html.index("</article>", start)]


def test_a_card_shows_waited_time_due_by_and_overdue_and_the_title_counts(app: Flask, staff: FlaskClient) -> None:
    # Monday 10:00: due 8 staff hours later, Tuesday 9:30; now is Wednesday 10:00.
    late = add_request(app, created_at=dt.datetime(2026, 11, 23, 10, 0, tzinfo=LA), phone="+15550000011")
    fresh = add_request(app, created_at=OPEN_TIME - dt.timedelta(minutes=45), phone="+15550000022")
    texted(app, "I feel hopeless today", urgent=True, at=OPEN_TIME - dt.timedelta(minutes=30))
    html = page(staff)
    assert "<title>(1 urgent, 1 overdue) Call-back requests" in html
    late_card = card_of(html, late)
    assert "2 days" in late_card and "Tue Nov 24, 9:30 AM" in late_card and "Overdue" in late_card
    fresh_card = card_of(html, fresh)
    # 9:15 Wednesday: 7 h 45 that day, none on the holiday, 15 minutes on Friday.
    assert "45 minutes" in fresh_card and "Fri Nov 27, 8:45 AM" in fresh_card and "Overdue" not in fresh_card
    # The urgent text: its words, due within one staff hour (URGENT_DUE_HOURS).
    urgent_id = int(re.findall(r'id="card-(\d+)"', html)[0])
    urgent_card = card_of(html, urgent_id)
    assert "I feel hopeless today" in urgent_card and "Wed Nov 25, 10:30 AM" in urgent_card
    assert '<meta http-equiv="refresh" content="60">' in html, "the queue refreshes itself, no scripts"


def test_numbers_show_as_people_read_them(app: Flask, staff: FlaskClient) -> None:
    home = add_request(app, phone=PATIENT)
    abroad = add_request(app, phone="+442079460000", created_at=OPEN_TIME - dt.timedelta(minutes=5))
    html = page(staff)
    assert '<a href="tel:+15551230001">(555) 123-0001</a>' in card_of(html, home)
    assert '<a href="tel:+442079460000">+44 20 7946 0000</a>' in card_of(html, abroad)


def test_a_line_in_another_country_shows_its_own_numbers_nationally(tmp_path: Path) -> None:
    app = make_app(tmp_path, LINE_NUMBER="+442079460001")
    add_staff(app)
    client = app.test_client()
    sign_in(client)
    uk = add_request(app, phone="+442079460000")
    us = add_request(app, phone=PATIENT, created_at=OPEN_TIME - dt.timedelta(minutes=5))
    html = page(client)
    assert ">020 7946 0000</a>" in card_of(html, uk)
    assert ">+1 555-123-0001</a>" in card_of(html, us)


def test_usage_is_counted_on_the_staffs_days(app: Flask, staff: FlaskClient) -> None:
    # 9 PM in Los Angeles is already the next day in UTC: counted on the local day, as the queue shows it.
    with app.app_context():
        services().usage.add("voice", "hospice", at=dt.datetime(2026, 11, 24, 21, 0, tzinfo=LA))
        services().usage.flush()
    html = page(staff)
    usage = html[html.index('id="usage"') :]
    assert "Tue Nov 24" in usage and "Wed Nov 25" not in usage
    assert "UTC" not in usage


def test_plain_words_when_texting_is_not_set_up(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    add_staff(app)
    client = app.test_client()
    sign_in(client)
    html = page(client)
    assert "Texting is not set up on this line yet" in html
    assert "it needs LINE_NUMBER" not in html
    assert "docs/configuration.md" in html


# -- transcripts -------------------------------------------------------------------------------------------


def voicemail(app: Flask, lang: str = "en", number: int = 1) -> int:
    return add_request(
        app,
        recording_sid=recording_sid(number),
        recording_url=recording_url(number),
        recording_seconds=9,
        lang=lang,
        phone=f"+1555000{number:04d}",
    )


def transcription(app: Flask, sid: str, text: str, status: str = "completed", signed: bool = True) -> int:
    form = {
        "AccountSid": "AC" + "0" * 31 + "1",
        "CallSid": "CA" + "1" * 32,
        "RecordingSid": sid,
        "TranscriptionSid": "TR" + "2" * 32,
        "TranscriptionStatus": status,
        "TranscriptionText": text,
    }
    client = app.test_client()
    if signed:
        return int(twilio_post(client, "/voice/transcription", form).status_code)
    return int(client.post("/voice/transcription", data=form).status_code)


def test_a_transcript_is_kept_sealed_and_shown_on_the_card(app: Flask, staff: FlaskClient) -> None:
    request_id = voicemail(app)
    assert "not back from Twilio yet" in card_of(page(staff), request_id)
    assert transcription(app, recording_sid(1), "Hi this is Ana, the pain is worse at night.", signed=False) == 403
    assert transcription(app, recording_sid(1), "Hi this is Ana, the pain is worse at night.") == 200
    with app.app_context(), services().storage.engine.connect() as connection:
        stored = connection.execute(sa.select(callback_requests.c.transcript)).scalar_one()
    assert "pain" not in stored, "kept sealed"
    assert "Hi this is Ana, the pain is worse at night." in card_of(page(staff), request_id)


def test_no_transcript_is_said_plainly(app: Flask, staff: FlaskClient) -> None:
    spanish = voicemail(app, lang="es", number=2)
    failed = voicemail(app, number=3)
    assert transcription(app, recording_sid(3), "", status="failed") == 200
    html = page(staff)
    assert "Twilio writes out English messages only" in card_of(html, spanish)
    assert "Twilio could not write this message out" in card_of(html, failed)


def test_english_messages_ask_for_a_transcript_and_spanish_ones_do_not(tmp_path: Path) -> None:
    from tests.helpers.staff_support import StaffCall

    for lang_keys, wanted in (([], True), (["9"], False)):
        call = StaffCall(make_app(tmp_path / str(wanted)).test_client())
        call.start()
        for key in lang_keys:
            call.press(key)
        call.press("0")
        call.dial_ends(call.action(), "no-answer", call.staff_leg())
        call.press("1")
        record = call.last.find("Record")
        assert record is not None
        assert (record.get("transcribe") == "true") is wanted
        assert (record.get("transcribeCallback") == "/voice/transcription") is wanted


# -- following a request through -------------------------------------------------------------------------


def post(client: FlaskClient, path: str, **data: str) -> object:
    token = csrf_token(page(client))
    return client.post(path, data={"csrf_token": token, **data})


def test_claim_attempts_notes_and_close_each_land_in_the_history(app: Flask, staff: FlaskClient) -> None:
    texted(app, "Please call me about my dad's pain medicine")
    request_id = int(re.findall(r'id="card-(\d+)"', page(staff))[0])

    claimed = post(staff, f"/staff/requests/{request_id}/claim")
    assert claimed.status_code == 303  # type: ignore[attr-defined]
    assert claimed.headers["Location"].endswith(f"/staff/#card-{request_id}"), "back where the nurse was"  # type: ignore[attr-defined]
    card = card_of(page(staff), request_id)
    assert "Being called by" in card and "nurse.ana" in card

    # The request's own page: no refresh there, so a half-typed note survives.
    detail = page(staff, f"/staff/requests/{request_id}")
    assert 'http-equiv="refresh"' not in detail
    assert "Please call me about my dad&#39;s pain medicine" in detail

    no_outcome = post(staff, f"/staff/requests/{request_id}/attempt", outcome="hung up on me")
    assert no_outcome.headers["Location"].endswith(f"/staff/requests/{request_id}#follow-up")  # type: ignore[attr-defined]
    assert "Choose how the call went" in page(staff, f"/staff/requests/{request_id}")

    post(staff, f"/staff/requests/{request_id}/attempt", outcome="no_answer", note="Voicemail box full, try after 2")
    assert "Your call is in the history." in page(staff, f"/staff/requests/{request_id}")
    post(staff, f"/staff/requests/{request_id}/attempt", outcome="reached")
    post(staff, f"/staff/requests/{request_id}/note", note="Daughter will bring the med list")
    closed = post(staff, f"/staff/requests/{request_id}/done", through=str(request_id), outcome="reached")
    assert closed.headers["Location"].endswith("/staff/#queue")  # type: ignore[attr-defined]
    queue = page(staff)
    assert "Closed. It is listed under Recently done." in queue
    assert "(reached them)" in queue[queue.index('id="done"') :]

    detail = page(staff, f"/staff/requests/{request_id}")
    history = detail[detail.index('id="history"') :]
    steps = re.findall(r"<strong>nurse.ana</strong>\s*([^<]+)</li>", history)
    assert [step.strip() for step in steps] == [
        "is calling",
        "called: no answer",
        "added a note",
        "called: reached them",
        "added a note",
        "closed it: reached them",
    ]
    assert "Voicemail box full, try after 2" in detail and "Daughter will bring the med list" in detail
    with app.app_context(), services().storage.engine.connect() as connection:
        sealed = connection.execute(sa.select(request_notes.c.words)).scalars().all()
    assert len(sealed) == 2 and not any("Voicemail" in words or "Daughter" in words for words in sealed)

    assert post(staff, f"/staff/requests/{request_id}/reopen").status_code == 303  # type: ignore[attr-defined]
    assert "put it back in the queue" in page(staff, f"/staff/requests/{request_id}")


def test_follow_through_forms_need_the_csrf_token_and_a_sign_in(app: Flask, staff: FlaskClient) -> None:
    request_id = add_request(app)
    assert staff.post(f"/staff/requests/{request_id}/claim").status_code == 400
    stranger = app.test_client()
    response = stranger.get(f"/staff/requests/{request_id}")
    assert response.status_code == 303 and "/staff/login" in response.headers["Location"]
    assert staff.get("/staff/requests/9999").status_code == 404


def test_send_result_shows_beside_the_form(app: Flask, staff: FlaskClient) -> None:
    html = page(staff)
    assert 'action="/staff/send#send"' in html, "a refused send opens the page at the form"
