"""The staff page's work: the queue, playing a message, marking it done, texting a topic, the usage panel.

Texts and recordings go through the real `twilio` client and `requests` to a stand-in for Twilio's REST API
on 127.0.0.1 (TWILIO_API_BASE_URL), which checks the account's credentials like Twilio does.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from ivr import text_dialog
from ivr.phone.twilio_standin import TwilioStandIn, silent_mp3
from ivr.services import services
from ivr.storage import CallbackRequest, TextChanges, Use, opt_outs
from tests.helpers.staff_support import (
    ACCOUNT_SID,
    OPEN_TIME,
    PATIENT,
    add_request,
    add_staff,
    csrf_token,
    make_app,
    recording_sid,
    recording_url,
    sign_in,
)
from tests.helpers.support import LINE_NUMBER, TEXTABLE_CALLER


@pytest.fixture
def app(tmp_path: Path, standin: TwilioStandIn) -> Flask:
    app = make_app(tmp_path, LINE_NUMBER=LINE_NUMBER, TWILIO_API_BASE_URL=standin.base_url)
    add_staff(app)
    return app


def page(client: FlaskClient) -> str:
    response = client.get("/staff/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_queue_shows_urgent_first_then_newest(app: Flask, staff: FlaskClient) -> None:
    old = add_request(app, phone="+15550000011", created_at=OPEN_TIME - dt.timedelta(hours=3))
    new = add_request(app, phone="+15550000022", created_at=OPEN_TIME - dt.timedelta(hours=1))
    urgent = add_request(
        app,
        phone="+15550000033",
        channel="sms",
        kind="callback",
        urgent=True,
        created_at=OPEN_TIME - dt.timedelta(hours=5),
    )
    html = page(staff)
    order = [int(found) for found in re.findall(r'id="request-(\d+)-heading"', html)]
    assert order == [urgent, new, old]
    assert "(3 open)" in html
    assert "Urgent" in html and "Call-back request from" in html and "the text line" in html
    assert "Wed Nov 25, 7:00 AM" in html, "times are shown in the staff's time zone"


def test_a_voice_message_plays_through_the_app_with_the_accounts_credentials(
    app: Flask, staff: FlaskClient, standin: TwilioStandIn
) -> None:
    request_id = add_request(app, recording_sid=recording_sid(1), recording_url=recording_url(1), recording_seconds=65)
    html = page(staff)
    assert f'src="/staff/requests/{request_id}/recording"' in html
    assert "Voice message, 1 minute 5 seconds" in html
    assert recording_url(1) not in html, "the raw Twilio URL never reaches the browser"
    audio = staff.get(f"/staff/requests/{request_id}/recording")
    assert audio.status_code == 200
    assert audio.mimetype == "audio/mpeg"
    assert audio.data == silent_mp3()
    assert audio.headers["Cache-Control"] == "no-store"
    assert standin.requests[-1] == ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid(1)}.mp3")
    partial = staff.get(f"/staff/requests/{request_id}/recording", headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and len(partial.data) == 100
    assert partial.headers["Content-Range"].startswith("bytes 0-99/")


def test_recordings_are_only_ever_fetched_from_twilio(app: Flask, staff: FlaskClient, standin: TwilioStandIn) -> None:
    request_id = add_request(app, recording_sid=recording_sid(2), recording_url="https://evil.example/steal")
    assert staff.get(f"/staff/requests/{request_id}/recording").status_code == 200
    assert standin.requests[-1] == ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid(2)}.mp3")


def test_a_recording_twilio_no_longer_has_is_a_404(app: Flask, staff: FlaskClient, standin: TwilioStandIn) -> None:
    request_id = add_request(app, recording_sid=recording_sid(3), recording_url=recording_url(3))
    standin.deleted.add(recording_sid(3))
    assert staff.get(f"/staff/requests/{request_id}/recording").status_code == 404
    assert staff.get("/staff/requests/999/recording").status_code == 404
    without = add_request(app)
    assert staff.get(f"/staff/requests/{without}/recording").status_code == 404


def test_a_message_without_a_recording_says_so(app: Flask, staff: FlaskClient) -> None:
    add_request(app, note="no_recording")
    assert "No recording: the caller hung up before leaving a message." in page(staff)


def test_a_text_line_request_shows_its_notes_in_words(app: Flask, staff: FlaskClient) -> None:
    with app.app_context():
        ask = CallbackRequest(section="coping", lang="es", urgent=True, opted_out=True)
        services().storage.record_text_turn("sms:SM-notes", PATIENT, "", TextChanges(callback=ask))
    html = page(staff)
    assert "Call-back request from" in html and "the text line" in html and "Spanish" in html
    assert "may mean it is urgent" in html and "asked not to get texts" in html
    assert "urgent_words" not in html


def test_marking_done_notes_who_and_when_and_can_be_undone(app: Flask, staff: FlaskClient) -> None:
    request_id = add_request(app)
    token = csrf_token(page(staff))
    response = staff.post(f"/staff/requests/{request_id}/done", data={"csrf_token": token})
    assert response.status_code == 303
    with app.app_context():
        row = services().storage.callback_request(request_id)
    assert row["status"] == "done" and row["done_by"] == "nurse.ana"
    assert row["done_at"].replace(tzinfo=dt.UTC) == OPEN_TIME
    html = page(staff)
    assert "Marked done." in html and "(0 open)" in html
    assert re.search(r"<td>nurse\.ana</td>", html)
    again = staff.post(f"/staff/requests/{request_id}/done", data={"csrf_token": token}, follow_redirects=True)
    assert "already marked done" in again.get_data(as_text=True)
    staff.post(f"/staff/requests/{request_id}/reopen", data={"csrf_token": token})
    assert "(1 open)" in page(staff)


def test_sending_a_section_by_text(app: Flask, staff: FlaskClient, standin: TwilioStandIn) -> None:
    token = csrf_token(page(staff))
    response = staff.post(
        "/staff/send", data={"csrf_token": token, "phone": "(202) 555-0123", "section": "hospice", "lang": "es"}
    )
    assert response.status_code == 303
    with app.app_context():
        sms = text_dialog.whole_section(services().content, "es", "hospice")
    assert [m["Body"] for m in standin.messages] == list(sms)
    assert standin.messages[0]["Body"].startswith("HOSPICIO Y CUIDADOS AL FINAL DE LA VIDA")
    assert {m["To"] for m in standin.messages} == {TEXTABLE_CALLER}
    assert {m["From"] for m in standin.messages} == {LINE_NUMBER}
    assert "The topic was sent by text message." in page(staff)


def test_a_number_that_opted_out_gets_nothing(app: Flask, staff: FlaskClient, standin: TwilioStandIn) -> None:
    with app.app_context():
        storage = services().storage
        with storage.engine.begin() as connection:
            row = {"phone_hash": storage.phone_hash(TEXTABLE_CALLER), "opted_out": True, "changed_at": OPEN_TIME}
            connection.execute(sa.insert(opt_outs).values(**row))
    token = csrf_token(page(staff))
    response = staff.post(
        "/staff/send", data={"csrf_token": token, "phone": TEXTABLE_CALLER, "section": "hospice", "lang": "en"}
    )
    assert response.status_code == 409
    assert "asked CareLine not to send texts" in response.get_data(as_text=True)
    assert standin.messages == []


def test_a_bad_number_is_explained_and_kept_in_the_form(app: Flask, staff: FlaskClient) -> None:
    token = csrf_token(page(staff))
    response = staff.post(
        "/staff/send", data={"csrf_token": token, "phone": "12ab", "section": "hospice", "lang": "en"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'role="alert"' in html and "Enter a phone number that can get texts" in html
    assert 'value="12ab"' in html and 'aria-invalid="true"' in html


def test_twilio_refusing_the_credentials_is_a_failed_send(tmp_path: Path, standin: TwilioStandIn) -> None:
    app = make_app(
        tmp_path, LINE_NUMBER=LINE_NUMBER, TWILIO_API_BASE_URL=standin.base_url, TWILIO_ACCOUNT_SID="AC" + "7" * 32
    )
    add_staff(app)
    client = app.test_client()
    sign_in(client)
    token = csrf_token(page(client))
    response = client.post(
        "/staff/send", data={"csrf_token": token, "phone": TEXTABLE_CALLER, "section": "coping", "lang": "en"}
    )
    assert response.status_code == 502
    assert "could not be sent just now" in response.get_data(as_text=True)


def test_texting_without_a_line_number_is_explained(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    add_staff(app)
    client = app.test_client()
    sign_in(client)
    html = page(client)
    assert "Texting is not set up on this line yet" in html
    response = client.post(
        "/staff/send", data={"csrf_token": csrf_token(html), "phone": PATIENT, "section": "coping", "lang": "en"}
    )
    assert response.status_code == 503


def test_the_usage_panel_counts_calls_and_texts_per_topic_per_day_without_numbers(
    app: Flask, staff: FlaskClient
) -> None:
    today = OPEN_TIME.date()
    with app.app_context():
        storage = services().storage
        for _ in range(3):
            storage.add_uses([Use(today, "voice", "hospice")])
        storage.add_uses([Use(today, "sms", "hospice")])
        storage.add_uses([Use(today - dt.timedelta(days=1), "voice", "coping")])
        storage.add_uses([Use(today - dt.timedelta(days=40), "voice", "coping")])
    add_request(app)
    html = page(staff)
    usage = html[html.index('id="usage-heading"') :]
    cell = r'<td class="number">(\d+)</td>'
    rows = re.findall(rf'<tr><td>([^<]+)</td><th scope="row">([^<]+)</th>{cell}{cell}</tr>', usage)
    assert rows == [
        (today.strftime("%a %b %-d"), "Hospice and end-of-life care", "3", "1"),
        ((today - dt.timedelta(days=1)).strftime("%a %b %-d"), "Coping, support and family", "1", "0"),
    ]
    assert PATIENT not in usage
