"""The request plumbing every webhook goes through: Flask's own form, checked with the twilio
library's RequestValidator; and records another process spooled still reach the database.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from ivr import create_app, resilience, spool
from tests.conftest import app_config
from tests.helpers.faults import move_clock_on
from tests.helpers.support import AUTH_TOKEN, CALLER, PUBLIC_BASE_URL, Phone, sign, twilio_post

FORM_TYPE = "application/x-www-form-urlencoded"


def post_raw(client: FlaskClient, path: str, body: str, signed_for: dict[str, str]) -> int:
    """POST `body` as it is, signed as Twilio signs the fields `signed_for`; the status."""
    signature = sign(PUBLIC_BASE_URL + path, signed_for, AUTH_TOKEN)
    headers = {"X-Twilio-Signature": signature, "Content-Type": FORM_TYPE}
    return client.post(path, data=body.encode(), headers=headers).status_code


def test_a_phone_numbers_escaped_plus_is_read_as_a_plus_and_a_bare_plus_as_a_space(client: FlaskClient) -> None:
    """Twilio escapes the "+" of From and To (%2B); a bare "+" in a form is a space, and signs as one."""
    fields = {"CallSid": "CA" + "1" * 32, "From": CALLER, "To": "+15559870000", "Direction": "inbound"}
    escaped = urlencode(fields)
    assert "%2B1555" in escaped
    assert post_raw(client, "/voice", escaped, fields) == 200
    assert post_raw(client, "/voice", escaped.replace("%2B", "%2b"), fields) == 200
    bare = escaped.replace("%2B", "+")
    assert post_raw(client, "/voice", bare, fields) == 403  # read as " 1555...": not what was signed
    assert post_raw(client, "/voice", bare, {**fields, "From": " " + CALLER[1:], "To": " 15559870000"}) == 200


def test_repeated_fields_are_signed_with_every_value(client: FlaskClient) -> None:
    """A field sent twice counts with both values, as Twilio signs it; dropping one breaks the signature."""
    body = "CallSid=CA1&Digits=1&Digits=2&From=%2B15551230001"
    path = "/voice/step?n=main&l=en"
    form = MultiDict([("CallSid", "CA1"), ("Digits", "1"), ("Digits", "2"), ("From", CALLER)])
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE_URL + path, form)
    headers = {"X-Twilio-Signature": signature, "Content-Type": FORM_TYPE}
    assert client.post(path, data=body.encode(), headers=headers).status_code == 200
    only_first = "CallSid=CA1&Digits=1&From=%2B15551230001"
    assert client.post(path, data=only_first.encode(), headers=headers).status_code == 403


@pytest.mark.sqlite_only
def test_a_record_another_process_spooled_reaches_the_database(tmp_path: Path, database_url: str) -> None:
    """While the database answers, the spool is looked at once a SPOOL_CHECK_SECONDS, not per request."""
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url))
    guard: resilience.DatabaseGuard = app.extensions["careline.guard"]
    other_worker = spool.Spool(guard.spool.folder, guard.spool.path.name)
    phone = Phone(app.test_client())
    assert phone.text("hospice")
    stop = spool.new_record(
        spool.TEXT_TURN,
        dt.datetime.now(dt.UTC),
        event_key="sms:SM" + "e" * 32,
        phone_hash=app.extensions["careline"].storage.phone_hash(CALLER),
        phone="",
        outcome="stopped|en||0",
        changes={"opted_out": True},
    )
    other_worker.append(stop)
    assert phone.text("hospice") == [], "an opt-out still only in the spool is honoured at once"
    move_clock_on(app, resilience.SPOOL_CHECK_SECONDS + 0.2)  # the next check is due
    phone.text("hospice")  # this request's check moves the record in
    assert not guard.spool.has_records()
    assert app.extensions["careline"].storage.is_opted_out(CALLER)


@pytest.mark.sqlite_only
def test_what_this_process_spools_with_the_database_up_goes_in_on_the_next_request(
    tmp_path: Path, database_url: str
) -> None:
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url))
    guard: resilience.DatabaseGuard = app.extensions["careline.guard"]
    client = app.test_client()
    Phone(client).text("hospice")  # the periodic spool check has just run
    fallback = {"From": CALLER, "To": "+15559870000", "Body": "STOP", "MessageSid": "SM" + "f" * 32}
    assert twilio_post(client, "/sms/fallback", fallback).status_code == 200  # the fallback URL always spools
    assert guard.spool.has_records()
    Phone(client, number="+15551230009").text("MENU")
    assert not guard.spool.has_records()
    assert app.extensions["careline"].storage.is_opted_out(CALLER)
