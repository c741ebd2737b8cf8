"""The cheap request plumbing every webhook goes through reads exactly what werkzeug and Twilio's
library would: the same form and query fields, the same signature, the same limits; and records
another process spooled still reach the database.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from flask import Flask, Request
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from ivr import create_app, dialog, resilience, spool
from ivr.dialog import CallState
from ivr.security import WebhookFields, WebhookRequest, parse_form, signature_matches, twilio_signature
from ivr.twiml import DocumentCache, Links, StaffDial
from tests.conftest import app_config
from tests.helpers.support import AUTH_TOKEN, CALLER, Phone, twilio_post

FORM_TYPE = "application/x-www-form-urlencoded"

#: Pieces of raw bodies and queries: percent-escapes of any bytes (invalid UTF-8 too), raw non-ASCII,
#: pluses, stray separators, empty names and values.
piece = st.one_of(
    st.binary(max_size=12).map(lambda b: "".join(f"%{byte:02X}" for byte in b)),
    st.sampled_from(["%", "%G1", "%2", "+", "&", "&&", "=", "==", "a=b=c", "", "é", "\u202e", "%C3%28"]),
    # Phone numbers as Twilio escapes them, and near misses of that shape.
    st.sampled_from(["%2B15551230001", "%2b1", "%2B", "%2B1%", "%2B1%2B", "%2B1+2", "+%2B1", "%2B1%C3%A9", "%2Bé"]),
    st.text(alphabet="abcXYZ019 +-_.~*'<>;", max_size=10),
)
raw_text = st.lists(st.tuples(piece, st.sampled_from(["=", "", "=="]), piece), max_size=8).map(
    lambda parts: "&".join(name + sign + value for name, sign, value in parts)
)


def environ(body: bytes, query: str = "", content_type: str = FORM_TYPE, **extra: Any) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/voice/step",
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": content_type,
        **extra,
    }


def read(request_class: type[Request], app: Flask, env: dict[str, Any], what: str) -> Any:
    """`request.form` or `request.args` as `request_class` reads `env` in `app`: its lists, or the error raised."""
    with app.app_context():
        try:
            return list(getattr(request_class(env), what).lists())
        except Exception as error:  # the comparison is of what each raises
            return type(error)


@pytest.fixture(scope="module")
def bare_app() -> Flask:
    app = Flask("plumbing")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    return app


@settings(max_examples=400, deadline=None)
@given(text=raw_text, latin=st.booleans())
def test_forms_and_queries_read_as_werkzeug_reads_them(bare_app: Flask, text: str, latin: bool) -> None:
    body = text.encode("latin-1", "replace") if latin else text.encode()  # latin-1: raw bytes that are not UTF-8
    query = quote(text, safe="=&+%") if latin else text.encode().decode("latin-1")  # as a WSGI server hands it
    env = environ(body, query)
    assert read(WebhookRequest, bare_app, dict(env, **{"wsgi.input": io.BytesIO(body)}), "form") == read(
        Request, bare_app, dict(env, **{"wsgi.input": io.BytesIO(body)}), "form"
    )
    assert read(WebhookRequest, bare_app, env, "args") == read(Request, bare_app, env, "args")
    assert parse_form(text) == parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")


def test_bodies_that_are_not_forms_and_too_large_bodies_are_werkzeugs_business(bare_app: Flask) -> None:
    for content_type in ("multipart/form-data; boundary=xyz", "application/json", "text/plain", ""):
        body = b'--xyz\r\nContent-Disposition: form-data; name="Body"\r\n\r\nSTOP\r\n--xyz--\r\n'
        assert read(WebhookRequest, bare_app, environ(body, content_type=content_type), "form") == read(
            Request, bare_app, environ(body, content_type=content_type), "form"
        )
    big = b"Body=" + b"x" * (64 * 1024)
    assert read(WebhookRequest, bare_app, environ(big), "form") is RequestEntityTooLarge
    # A server that terminates the stream itself (gunicorn) gets werkzeug's own limit while reading.
    for body in (big, b"Body=STOP"):
        terminated = [environ(body, **{"wsgi.input_terminated": True}) for _ in range(2)]
        for env in terminated:
            del env["CONTENT_LENGTH"]
        assert read(WebhookRequest, bare_app, terminated[0], "form") == read(Request, bare_app, terminated[1], "form")


def test_a_missing_field_is_a_plain_miss_with_multidict_answers() -> None:
    fields = WebhookFields([("Digits", "1"), ("Digits", "2"), ("Empty", ""), ("Count", "x")])
    reference = MultiDict(fields)
    for name in ("Digits", "Empty", "SpeechResult", "Count"):
        assert fields.get(name) == reference.get(name)
        assert fields.get(name, "none") == reference.get(name, "none")
        assert fields.get(name, 0, type=int) == reference.get(name, 0, type=int)


field_names = st.sampled_from(["Digits", "From", "To", "Body", "CallSid", "b", "B", "é", ""])
field_values = st.text(max_size=8)


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(field_names, field_values), max_size=8), path=st.sampled_from(["/voice", "/sms?x=1"]))
def test_signatures_are_twilios_for_repeated_fields_too(pairs: list[tuple[str, str]], path: str) -> None:
    validator = RequestValidator(AUTH_TOKEN)
    url = "https://line.example.org" + path
    form = MultiDict(pairs)
    expected = validator.compute_signature(url, form)
    assert twilio_signature(AUTH_TOKEN, url, form) == expected
    assert twilio_signature(AUTH_TOKEN, url, WebhookFields(pairs)) == expected
    assert signature_matches(AUTH_TOKEN, url, form, expected)
    single = dict(pairs)
    assert twilio_signature(AUTH_TOKEN, url, single) == validator.compute_signature(url, single)
    if len(set(form.getlist("Digits"))) > 1:  # Twilio signs each distinct value of a field: dropping one breaks it
        assert not signature_matches(AUTH_TOKEN, url, MultiDict(form.to_dict()), expected)


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
    time.sleep(resilience.SPOOL_CHECK_SECONDS + 0.2)
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


def test_the_app_remembers_only_that_plain_functions_need_no_async_wrapper(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path))
    view = app.view_functions["voice.step"]
    assert app.ensure_sync(view) is view and app.ensure_sync(view) is view

    async def asynchronous() -> str:
        return ""

    try:
        expected: Any = type(Flask.ensure_sync(app, asynchronous))
    except RuntimeError as error:  # Flask without its async extra refuses async views
        expected = type(error)
    for _ in range(2):
        try:
            got: Any = type(app.ensure_sync(asynchronous))
        except RuntimeError as error:
            got = type(error)
        assert got is expected and got is not type(asynchronous)


@pytest.mark.sqlite_only
def test_a_document_found_by_its_reply_object_is_the_one_for_the_same_dial_and_links(app: Flask) -> None:
    svc = app.extensions["careline"]
    links = Links(step=lambda state: f"/step?n={state.node}", whisper=lambda _t: "/w", recording_status=lambda _s: "/r")
    cache = DocumentCache(svc.renderer)
    reply = dialog.step(svc.content, CallState(), dialog.Heard(digits="0"), dialog.Circumstances(staff_open=True))
    twin = dialog.step(svc.content, CallState(), dialog.Heard(digits="0"), dialog.Circumstances(staff_open=True))
    assert reply == twin and reply is not twin
    one, other = StaffDial(("+15550000001",), "+15559870000"), StaffDial(("+15550000002",), "+15559870000")
    first = cache.voice(reply, links, "", one)
    assert first == svc.renderer.voice(reply, links, one)
    assert cache.voice(reply, links, "", one) == first == cache.voice(twin, links, "", one)
    assert cache.voice(reply, links, "", other) == svc.renderer.voice(reply, links, other) != first
    assert cache.voice(reply, links, "/mounted", one) == first  # the links themselves decide the URLs here
    assert cache.voice(reply, links, "", one, max_message_seconds=60) == svc.renderer.voice(reply, links, one, 60)
