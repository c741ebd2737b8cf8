"""The outbound-text policy (issue 15 item 1): texts on demand only to a textable number, each section
once per call, at most TEXT_DAILY_LIMIT texts a day to one number (and STAFF_TEXT_DAILY_LIMIT from one
staff member), counted in the shared database, and never on the strength of the unsigned idempotency
header. Every text goes through the real `twilio` client to the stand-in API (ivr/phone/twilio_standin.py)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from pathlib import Path

import pytest
from flask import Flask

from ivr import create_app
from ivr.config import DEFAULTS, ConfigError, parse_settings
from ivr.content import load_content
from ivr.outbound_texts import textable
from ivr.phone.twilio_standin import TwilioStandIn, twilio_standin
from ivr.storage import DailyCounter, Storage
from tests.helpers.staff_support import (
    ACCOUNT_SID,
    OPEN_TIME,
    STAFF_PHONE,
    add_staff,
    csrf_token,
    make_app,
    sign_in,
    staff_config,
)
from tests.helpers.support import (
    AUTH_TOKEN,
    LINE_NUMBER,
    PUBLIC_BASE_URL,
    TEXTABLE_CALLER,
    Call,
    parse_twiml,
    sign,
    spoken,
)

EN = load_content().language("en")
#: Menu keys, and how many messages each section is by text in English.
KEYS = {"recurrence": "1", "palliative": "3", "directives": "4", "hospice": "5"}
PARTS = {section: len(EN.sections[section].sms) for section in KEYS}
#: Sections that make exactly 10 messages together (the default daily limit): the next one is the 11th.
TEN_MESSAGES = ("palliative", "directives", "recurrence")


def line(tmp_path: Path, standin: TwilioStandIn, **settings: object) -> Flask:
    return make_app(tmp_path, LINE_NUMBER=LINE_NUMBER, TWILIO_API_BASE_URL=standin.base_url, **settings)


def new_call(app: Flask, caller: str = TEXTABLE_CALLER) -> Call:
    call = Call(app.test_client(), call_sid="CA" + uuid.uuid4().hex, caller=caller)
    call.start()
    return call


def text_me(app: Flask, section: str, caller: str = TEXTABLE_CALLER) -> Call:
    """A new call that asks for `section` and presses 2 for it by text."""
    call = new_call(app, caller)
    call.press(KEYS[section])
    call.press("2")
    return call


def test_the_sections_add_up_to_the_default_limit() -> None:
    assert sum(PARTS[section] for section in TEN_MESSAGES) == 10 == DEFAULTS["TEXT_DAILY_LIMIT"]


def test_twelve_presses_in_one_call_text_the_section_once(tmp_path: Path, standin: TwilioStandIn) -> None:
    app = line(tmp_path, standin, TEXT_DAILY_LIMIT=1000)
    call = new_call(app)
    call.press(KEYS["hospice"])
    heard = [call.press("2")[0] for _ in range(12)]
    assert heard[0] == EN.say("text_sent")
    assert heard[1:] == [EN.say("text_already_sent")] * 11
    assert len(standin.messages) == PARTS["hospice"]
    # Another section in the same call is its own text.
    call.press("#")
    call.press(KEYS["palliative"])
    assert call.press("2")[0] == EN.say("text_sent")
    assert len(standin.messages) == PARTS["hospice"] + PARTS["palliative"]


def test_the_11th_message_of_the_day_is_refused_kindly_and_staff_offered(
    tmp_path: Path, standin: TwilioStandIn
) -> None:
    app = line(tmp_path, standin)  # TEXT_DAILY_LIMIT: the default, 10
    for section in TEN_MESSAGES:
        assert text_me(app, section).heard[0] == EN.say("text_sent")
    assert len(standin.messages) == 10
    refused = text_me(app, "hospice")
    assert refused.heard[0] == EN.say("text_limit_reached")
    assert EN.say("section_person") in refused.heard  # "To talk with a person, press 0."
    assert len(standin.messages) == 10, "not one message past the limit"
    # 0 is the usual way to staff, and it still works.
    refused.press("0")
    assert refused.last is not None
    dial = refused.last.find("Dial")
    assert dial is not None and STAFF_PHONE in [n.text for n in dial.iter("Number")]
    # Another number is not held back by this one's texts; the next day, this number may be texted again.
    assert text_me(app, "hospice", caller="+12025550124").heard[0] == EN.say("text_sent")
    app.config["NOW"] = OPEN_TIME + dt.timedelta(days=1)
    assert text_me(app, "hospice").heard[0] == EN.say("text_sent")


@pytest.mark.parametrize(
    "caller",
    [
        "+882123456789",  # international networks: no country, a known SMS-pumping range
        "+2693212345",  # Comoros: a valid mobile, not in TEXT_COUNTRIES
        "+447700900123",  # the UK: not in TEXT_COUNTRIES
        "+1abc",
        "anonymous",
        "+",
        "266696687",  # ANONYMOUS on a keypad, without the +
        "+266696687",  # with it
        "+18005550123",  # toll-free
        "+15551230001",  # a 555-123x "number": no valid US number
        "client:kiosk",
        "",
    ],
)
def test_no_text_reaches_the_api_for_a_number_the_line_may_not_text(
    tmp_path: Path, standin: TwilioStandIn, caller: str
) -> None:
    call = text_me(line(tmp_path, standin), "hospice", caller=caller)
    assert call.heard[0] == EN.say("text_no_number")
    assert standin.received == []


def test_textable_numbers() -> None:
    us_ca = ("US", "CA")
    assert textable("+12025550123", us_ca)
    assert textable("+14165550123", us_ca)  # Toronto
    assert not textable("+14165550123", ("US",))
    # Where phonenumbers can tell the types apart: a mobile yes; a landline, VoIP or toll-free line no.
    assert textable("+447400123456", ("GB",))
    assert not textable("+441212345678", ("GB",))
    assert not textable("+445612345678", ("GB",))
    assert not textable("+18002345678", us_ca)
    assert not textable("+12025550123 ", us_ca)
    assert not textable("+1 202 555 0123", us_ca)  # callers' IDs come as E.164; anything else is refused


def test_text_countries_are_checked_at_start() -> None:
    assert parse_settings({"TEXT_COUNTRIES": "us, ca,MX"})["TEXT_COUNTRIES"] == ("US", "CA", "MX")
    for bad in ("", "USA", "XX", "US;CA"):
        with pytest.raises(ConfigError, match="TEXT_COUNTRIES"):
            parse_settings({"TEXT_COUNTRIES": bad})


def test_a_replayed_signed_request_with_a_new_token_sends_nothing(tmp_path: Path, standin: TwilioStandIn) -> None:
    """The idempotency token is not covered by Twilio's signature: an attacker who captured one signed
    "press 2" can send it again with any token. It must not text again."""
    app = line(tmp_path, standin)
    call = new_call(app)
    call.press(KEYS["hospice"])
    url = call.action()
    form = call.form(Digits="2")
    signature = sign(PUBLIC_BASE_URL + url, form)
    client = app.test_client()
    answers = []
    for _ in range(5):
        headers = {"X-Twilio-Signature": signature, "I-Twilio-Idempotency-Token": uuid.uuid4().hex}
        response = client.post(url, data=form, headers=headers)
        assert response.status_code == 200
        answers.append(spoken(parse_twiml(response.data))[0])
    assert len(standin.messages) == PARTS["hospice"]
    assert answers[0] == EN.say("text_sent") and set(answers[1:]) == {EN.say("text_already_sent")}


def test_the_daily_cap_holds_across_two_app_instances_on_one_database(
    tmp_path: Path, standin: TwilioStandIn, database_url: str
) -> None:
    """Two processes' worth of line (two apps, two engines and pools) share one database; six callers
    from one number ask at once on both: the number gets whole sections and never more than the limit."""
    apps = [line(tmp_path, standin, DATABASE_URL=database_url) for _ in range(2)]
    sections = ["palliative", "directives", "recurrence", "hospice"] * 3
    heard: list[tuple[str, str]] = []
    start = threading.Barrier(len(sections))

    def ask(index: int, section: str) -> None:
        app = apps[index % 2]
        call = new_call(app)
        call.press(KEYS[section])
        start.wait(timeout=30)
        heard.append((section, call.press("2")[0]))

    threads = [threading.Thread(target=ask, args=(i, s)) for i, s in enumerate(sections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(heard) == len(sections)
    assert {answer for _, answer in heard} == {EN.say("text_sent"), EN.say("text_limit_reached")}
    sent = len(standin.messages)
    assert sent <= 10
    # Whole sections only: what went out is the sections heard as sent, and every refused one did not fit.
    assert sent == sum(PARTS[section] for section, answer in heard if answer == EN.say("text_sent"))
    assert all(sent + PARTS[section] > 10 for section, answer in heard if answer == EN.say("text_limit_reached"))


def test_the_counts_are_one_statement_each_and_never_pass_the_limit(storage: Storage) -> None:
    """Many threads reserving at once on one engine: exactly the limit is counted, none past it
    (on SQLite a read-then-write would fail at once with BUSY_SNAPSHOT; see ivr/storage/outbound.py)."""
    day = dt.date(2026, 12, 7)
    counter = DailyCounter("to:test", 10)
    results: list[object] = []
    start = threading.Barrier(12)

    def reserve() -> None:
        start.wait(timeout=30)
        results.append(storage.reserve_texts([counter], day, 1, "", OPEN_TIME))

    threads = [threading.Thread(target=reserve) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results.count("reserved") == 10
    assert results.count(counter) == 2
    storage.release_texts([counter], day, 3, "", sent_none=False)
    assert storage.reserve_texts([counter], day, 3, "", OPEN_TIME) == "reserved"
    assert storage.reserve_texts([counter], day, 1, "", OPEN_TIME) == counter


def test_staff_sends_are_capped_per_staff_member_and_per_number(tmp_path: Path, standin: TwilioStandIn) -> None:
    app = create_app(
        staff_config(
            tmp_path,
            LINE_NUMBER=LINE_NUMBER,
            TWILIO_API_BASE_URL=standin.base_url,
            STAFF_TEXT_DAILY_LIMIT=12,
        )
    )
    add_staff(app)
    add_staff(app, "nurse.bo")
    ana = app.test_client()
    sign_in(ana)

    def send(client: object, phone: str, section: str) -> tuple[int, str]:
        token = csrf_token(client.get("/staff/").get_data(as_text=True))  # type: ignore[attr-defined]
        data = {"csrf_token": token, "phone": phone, "section": section, "lang": "en"}
        response = client.post("/staff/send", data=data)  # type: ignore[attr-defined]
        return response.status_code, response.get_data(as_text=True)

    # Per number: the number's 10 a day, whoever sends them (a call's text counts too).
    text_me(app, "palliative")
    assert send(ana, TEXTABLE_CALLER, "directives")[0] == 303
    assert send(ana, TEXTABLE_CALLER, "recurrence")[0] == 303
    status, html = send(ana, TEXTABLE_CALLER, "hospice")
    assert status == 409 and "as many texts from CareLine today as it may get" in html
    assert len(standin.messages) == 10
    # Per staff member: Ana has sent 7 of her 12; 3 more to a new number, then 3 more is past her cap.
    assert send(ana, "+12025550150", "hospice")[0] == 303
    status, html = send(ana, "+12025550151", "hospice")
    assert status == 409 and "you have sent as many texts today as one staff member may" in html
    assert len(standin.messages) == 13
    # A colleague is not held back by Ana's count.
    bo = app.test_client()
    sign_in(bo, "nurse.bo")
    assert send(bo, "+12025550151", "hospice")[0] == 303


def test_an_api_failure_gives_the_texts_back(tmp_path: Path) -> None:
    """A section the API refused is not counted, and the call may ask for it again."""
    with twilio_standin(ACCOUNT_SID, AUTH_TOKEN, unreachable=[TEXTABLE_CALLER]) as standin:
        app = line(tmp_path, standin, TEXT_DAILY_LIMIT=3)
        call = new_call(app)
        call.press(KEYS["hospice"])
        assert call.press("2")[0] == EN.say("text_failed")
    with twilio_standin(ACCOUNT_SID, AUTH_TOKEN) as working:
        app.config["TWILIO_API_BASE_URL"] = working.base_url
        assert call.press("2")[0] == EN.say("text_sent")
        assert len(working.messages) == PARTS["hospice"] == 3
