"""A person one key away: ringing staff with a whisper, every Dial outcome, voice messages, hours, transfers in.

Each test drives the line as Twilio would (signed requests to the URLs in the TwiML), with the clock frozen
in or out of staff hours, and checks what the caller hears and what the database keeps.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from ivr.config import ConfigError
from ivr.services import services
from ivr.storage import callback_requests
from tests.conftest import loaded_content
from tests.helpers.staff_support import (
    EVENING,
    HOLIDAY,
    OPEN_TIME,
    SATURDAY,
    STAFF_PHONE,
    STAFF_SIP,
    StaffCall,
    make_app,
    recording_sid,
    recording_url,
)
from tests.helpers.support import CALLER, LINE_NUMBER, twilio_post

NOT_ANSWERED = ["busy", "no-answer", "failed", "canceled"]
CONTENT = loaded_content()
HOURS_EN = "Monday to Friday, 8:30 in the morning to 5 in the evening, except on holidays"
HOURS_ES = "de lunes a viernes, de 8:30 de la mañana a 5 de la tarde, menos los días festivos"


def closed(hours: str, lang: str = "en") -> str:
    """What the line says when staff are out: the staff_closed prompt with the hours in words."""
    return CONTENT.language(lang).say("staff_closed", hours=hours)


CRISIS = "call or text 988"


def new_call(app: Flask) -> StaffCall:
    return StaffCall(app.test_client())


def requests_in(app: Flask) -> list[dict[str, Any]]:
    with app.app_context():
        return services().storage.callback_requests(status=None)


def dial_of(call: StaffCall) -> Any:
    assert call.last is not None
    dial = call.last.find("Dial")
    assert dial is not None, f"no Dial in {call.heard}"
    return dial


def record_of(call: StaffCall) -> Any:
    assert call.last is not None
    record = call.last.find("Record")
    assert record is not None, f"no Record in {call.heard}"
    return record


def ask_for_person_after_hospice(call: StaffCall) -> None:
    call.start()
    call.press("5")
    call.press("0")


# -- in hours: ringing staff ------------------------------------------------------------------------------


def test_zero_rings_every_staff_number_at_once_with_a_whisper_and_the_line_as_caller_id(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    ask_for_person_after_hospice(call)
    assert "Please hold while we connect you with a staff member." in call.text()
    assert "press star" in call.text()
    dial = dial_of(call)
    assert dial.attrib["timeout"] == "20"
    assert dial.attrib["callerId"] == LINE_NUMBER
    assert dial.attrib["hangupOnStar"] == "true"
    assert dial.attrib["action"].startswith("/voice/step?n=staff")
    number, sip = dial.find("Number"), dial.find("Sip")
    assert number is not None and number.text == STAFF_PHONE
    assert sip is not None and sip.text == STAFF_SIP
    assert number.attrib["url"] == sip.attrib["url"] == "/voice/whisper?topic=hospice"


def test_ring_time_and_caller_id_come_from_the_settings(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path, STAFF_RING_SECONDS=35, LINE_NUMBER="+15557770000"))
    ask_for_person_after_hospice(call)
    assert dial_of(call).attrib["timeout"] == "35"
    assert dial_of(call).attrib["callerId"] == "+15557770000"


def test_the_staff_member_hears_who_is_calling_and_pressing_1_connects(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    ask_for_person_after_hospice(call)
    dial = dial_of(call)
    leg = call.staff_leg()
    call.whisper(leg, dial.find("Number").attrib["url"])
    whisper = (
        "CareLine caller. They speak English. They last heard about hospice and end-of-life care. "
        "Press 1 to take the call."
    )
    assert call.heard[0] == whisper
    assert call.last.find("Hangup") is not None, "no key at all must hang up the staff leg (voicemail)"
    call.staff_presses(leg, "1")
    assert call.heard == [] and len(call.last) == 0, "an empty document connects the two"
    heard = call.dial_ends(dial.attrib["action"], "completed", leg)
    assert heard[0] == "Thank you. You are back at CareLine."
    assert "To talk with a person, press 0." in heard and "For hospice and end-of-life care, press 5." in heard
    assert requests_in(call.client.application) == []


def test_a_whisper_without_a_topic_still_says_it_is_careline(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    call.start()
    call.press("0")
    url = dial_of(call).find("Number").attrib["url"]
    assert url == "/voice/whisper"
    call.whisper(call.staff_leg(), url)
    assert call.heard[0] == "CareLine caller. They speak English. Press 1 to take the call."


def test_a_declined_whisper_offers_the_caller_a_message(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    ask_for_person_after_hospice(call)
    dial = dial_of(call)
    leg = call.staff_leg()
    call.whisper(leg, dial.find("Number").attrib["url"])
    call.staff_presses(leg, "2")
    redirect = call.last.find("Redirect")
    assert redirect is not None, "a wrong key hears the whisper once more"
    call.whisper(leg, redirect.text)
    call.staff_presses(leg, "3")
    assert call.last.find("Hangup") is not None
    heard = call.dial_ends(dial.attrib["action"], "completed", leg)
    assert heard[0] == "Sorry, no one could answer right now."
    assert CRISIS in call.text()
    assert "To leave a message for our staff, press 1." in call.text()


def test_a_staff_voicemail_that_picks_up_never_takes_the_call(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    ask_for_person_after_hospice(call)
    dial = dial_of(call)
    leg = call.staff_leg()
    call.whisper(leg, dial.find("Number").attrib["url"])  # a machine hears it, presses nothing: <Hangup/>
    heard = call.dial_ends(dial.attrib["action"], "completed", leg)
    assert heard[0] == "Sorry, no one could answer right now."
    call.press("1")
    assert record_of(call) is not None


@pytest.mark.parametrize("status", NOT_ANSWERED)
def test_nobody_answering_is_met_kindly_with_a_message_offer(tmp_path: Path, status: str) -> None:
    call = new_call(make_app(tmp_path))
    ask_for_person_after_hospice(call)
    heard = call.dial_ends(dial_of(call).attrib["action"], status, call.staff_leg() if status != "failed" else "")
    assert heard[0] == "Sorry, no one could answer right now."
    assert "If this is an emergency, hang up and call 911." in call.text()
    assert CRISIS in call.text()
    assert "To leave a message for our staff, press 1. For the main menu, press pound." in call.text()
    assert call.last.find("Gather") is not None


@pytest.mark.parametrize("status", ["completed", *NOT_ANSWERED])
def test_every_dial_outcome_ends_in_a_saved_message(tmp_path: Path, status: str) -> None:
    """Not accepted (any status) -> offer -> 1 -> record -> saved, with number, recording, topic and time."""
    app = make_app(tmp_path)
    call = new_call(app)
    ask_for_person_after_hospice(call)
    call.dial_ends(dial_of(call).attrib["action"], status, call.staff_leg())
    call.press("1")
    assert "After the beep" in call.text()
    record = record_of(call)
    assert record.attrib["maxLength"] == "120"
    assert record.attrib["playBeep"] == "true"
    assert record.attrib["recordingStatusCallback"].startswith("/voice/recording-status")
    heard = call.record_ends(record.attrib["action"], 1, 42)
    assert heard[0].startswith("Thank you. Your message is saved. A staff member will call you back")
    [saved] = requests_in(app)
    assert saved["phone"] == CALLER
    assert saved["channel"] == "voice" and saved["kind"] == "voicemail"
    assert saved["recording_url"] == recording_url(1)
    assert saved["recording_sid"] == recording_sid(1)
    assert saved["recording_seconds"] == 42
    assert saved["topic"] == "hospice"
    assert saved["lang"] == "en"
    assert saved["status"] == "open" and saved["note"] == ""
    assert saved["created_at"].replace(tzinfo=dt.UTC) == OPEN_TIME


def test_a_second_try_in_the_same_call_is_not_taken_for_the_first_ones_answer(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    ask_for_person_after_hospice(call)
    dial = dial_of(call)
    first = call.staff_leg()
    call.whisper(first, dial.find("Number").attrib["url"])
    call.staff_presses(first, "1")
    assert call.dial_ends(dial.attrib["action"], "completed", first)[0] == "Thank you. You are back at CareLine."
    call.press("0")
    second = call.staff_leg()
    heard = call.dial_ends(dial_of(call).attrib["action"], "completed", second)  # declined this time
    assert heard[0] == "Sorry, no one could answer right now."


def test_a_dial_action_retried_by_twilio_says_the_same_and_changes_nothing(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    call = new_call(app)
    ask_for_person_after_hospice(call)
    action = dial_of(call).attrib["action"]
    leg = call.staff_leg()
    first = call.dial_ends(action, "no-answer", leg)
    again = call.dial_ends(action, "no-answer", leg)
    assert first == again
    assert requests_in(app) == []


def test_long_silence_in_hours_ends_with_a_person(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    call.start()
    call.silence()
    call.silence()
    call.silence()
    assert "We have not heard from you, so we will end this call now." in call.heard
    assert dial_of(call) is not None


def test_no_staff_numbers_means_no_ringing_even_in_hours(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path, STAFF_NUMBERS=""))
    call.start()
    call.press("0")
    assert call.last.find("Dial") is None
    assert call.heard[0] == "Sorry, no one could answer right now."
    assert "They are here" not in call.text()
    call.press("1")
    assert record_of(call) is not None


# -- out of hours ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", [EVENING, SATURDAY, HOLIDAY], ids=["evening", "saturday", "holiday"])
def test_out_of_hours_zero_says_when_staff_are_in_and_offers_a_message(tmp_path: Path, moment: dt.datetime) -> None:
    app = make_app(tmp_path, NOW=moment)
    call = new_call(app)
    call.start()
    call.press("0")
    assert call.last.find("Dial") is None
    # The holiday (Nov 26) is mentioned until it has passed.
    hours = HOURS_EN if moment < SATURDAY else HOURS_EN.replace(", except on holidays", "")
    assert call.heard[0] == closed(hours)
    assert "They are here Monday to Friday, 8:30 in the morning to 5 in the evening" in call.heard[0]
    assert "If this is an emergency, hang up and call 911." in call.text()
    assert CRISIS in call.text()
    assert "To leave a message for our staff, press 1." in call.text()
    call.press("1")
    heard = call.record_ends(record_of(call).attrib["action"], 7, 15)
    assert heard[0].startswith("Thank you. Your message is saved.")
    [saved] = requests_in(app)
    assert saved["recording_seconds"] == 15
    assert saved["created_at"].replace(tzinfo=dt.UTC) == moment


def test_out_of_hours_in_spanish(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path, NOW=EVENING))
    call.start()
    call.press("9")
    call.press("0")
    assert call.heard[0] == closed(HOURS_ES, "es")
    assert "llame o mande un texto al 988." in call.text()
    assert call.last.find("Gather").attrib["language"] == "es-US"


def test_past_holidays_are_not_mentioned(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path, NOW=dt.datetime(2026, 12, 1, 20, 0, tzinfo=OPEN_TIME.tzinfo)))
    call.start()
    call.press("0")
    assert call.heard[0] == closed(HOURS_EN.replace(", except on holidays", ""))


def test_staff_who_are_never_in_are_not_given_hours(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path, STAFF_HOURS="closed"))
    call.start()
    call.press("0")
    assert call.heard[0] == "Sorry, no one could answer right now."
    assert "To leave a message for our staff, press 1." in call.text()


def test_long_silence_out_of_hours_says_goodbye_with_the_hours(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path, NOW=EVENING))
    call.start()
    for _ in range(3):
        call.silence()
    assert call.ended()
    assert closed(HOURS_EN) in call.heard
    assert call.heard[-1] == "Thank you for calling CareLine. Please take care. Goodbye."


# -- voice messages: nothing is lost, nothing is doubled ---------------------------------------------------


def start_message(app: Flask) -> StaffCall:
    call = new_call(app)
    call.start()
    call.press("5")
    call.press("0")
    call.dial_ends(dial_of(call).attrib["action"], "no-answer", call.staff_leg())
    call.press("1")
    return call


def test_the_request_exists_before_the_beep_so_a_hang_up_still_leaves_one(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    call = start_message(app)
    record = record_of(call)
    [waiting] = requests_in(app)
    assert waiting["phone"] == CALLER and waiting["topic"] == "hospice"
    assert waiting["note"] == "no_recording" and waiting["recording_url"] is None
    # The caller hangs up during the beep: Twilio reports the recording absent, and nothing else.
    call.recording_status(record.attrib["recordingStatusCallback"], 1, 0, status="absent")
    [kept] = requests_in(app)
    assert kept["id"] == waiting["id"] and kept["note"] == "no_recording" and kept["status"] == "open"


def test_an_empty_recording_is_not_a_dead_end(tmp_path: Path) -> None:
    """Twilio skips the action after an empty recording; the <Redirect> after <Record> takes over."""
    app = make_app(tmp_path)
    call = start_message(app)
    redirect = call.last.find("Redirect")
    assert redirect is not None and redirect.text == record_of(call).attrib["action"]
    call.post(redirect.text)
    assert call.heard[0] == "Sorry, we did not hear a message."
    assert "To leave a message for our staff, press 1." in call.text()
    call.press("1")
    call.record_ends(record_of(call).attrib["action"], 2, 9)
    [saved] = requests_in(app)
    assert saved["recording_seconds"] == 9, "the second try fills the same request"


def test_the_status_callback_alone_attaches_the_recording(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    call = start_message(app)
    # The caller hangs up mid-message: the action's answer is ignored, the callback brings the recording.
    call.recording_status(record_of(call).attrib["recordingStatusCallback"], 3, 20)
    [saved] = requests_in(app)
    assert saved["recording_sid"] == recording_sid(3) and saved["recording_seconds"] == 20
    assert saved["phone"] == CALLER


def test_retries_of_the_same_recording_and_call_change_nothing(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    call = start_message(app)
    record = record_of(call)
    callback = record.attrib["recordingStatusCallback"]
    before = requests_in(app)
    call.record_ends(record.attrib["action"], 4, 31)
    call.record_ends(record.attrib["action"], 4, 31)
    call.recording_status(callback, 4, 31)
    call.recording_status(callback, 4, 31)
    after = requests_in(app)
    assert len(after) == 1 and before[0]["id"] == after[0]["id"]
    assert after[0]["recording_sid"] == recording_sid(4) and after[0]["recording_seconds"] == 31


def test_twilio_retrying_the_request_that_starts_the_recording_keeps_one_request(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    call = new_call(app)
    call.start()
    call.press("0")
    call.dial_ends(dial_of(call).attrib["action"], "busy", call.staff_leg())
    offer = call.action()
    call.post(offer, Digits="1")
    call.post(offer, Digits="1")  # the same webhook again, as Twilio does after a timeout
    assert len(requests_in(app)) == 1


def test_two_messages_in_one_call_are_two_requests(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    call = start_message(app)
    call.record_ends(record_of(call).attrib["action"], 5, 12)
    call.press("0")
    call.dial_ends(dial_of(call).attrib["action"], "no-answer", call.staff_leg())
    call.press("1")
    record = record_of(call)
    call.recording_status(record.attrib["recordingStatusCallback"], 5, 12)  # a late repeat of the first
    call.record_ends(record.attrib["action"], 6, 25)
    saved = sorted(requests_in(app), key=lambda row: row["id"])
    assert [(row["recording_sid"], row["recording_seconds"]) for row in saved] == [
        (recording_sid(5), 12),
        (recording_sid(6), 25),
    ]


def test_call_back_requests_survive_a_restart(tmp_path: Path) -> None:
    first = make_app(tmp_path)
    call = start_message(first)
    call.record_ends(record_of(call).attrib["action"], 8, 33)
    first_rows = requests_in(first)
    with first.app_context():
        services().storage.engine.dispose()
    restarted = make_app(tmp_path)  # a new app, a new engine: the same database file
    assert requests_in(restarted) == first_rows
    with restarted.app_context():
        rows = services().storage.engine.connect().execute(sa.select(sa.func.count()).select_from(callback_requests))
        assert rows.scalar_one() == 1


def test_a_call_placed_by_the_line_keeps_the_right_number(tmp_path: Path) -> None:
    """Outbound calls (REST API) have From and To the other way round: the person is `To`."""
    app = make_app(tmp_path)
    call = new_call(app)
    call.post("/voice", Direction="outbound-api", From=LINE_NUMBER, To=CALLER)
    call.post(call.action(), Direction="outbound-api", From=LINE_NUMBER, To=CALLER, Digits="0")
    assert dial_of(call).attrib["callerId"] == LINE_NUMBER
    call.post(
        dial_of(call).attrib["action"],
        Direction="outbound-api",
        From=LINE_NUMBER,
        To=CALLER,
        DialCallStatus="no-answer",
    )
    call.post(call.action(), Direction="outbound-api", From=LINE_NUMBER, To=CALLER, Digits="1")
    [saved] = requests_in(app)
    assert saved["phone"] == CALLER


# -- transfers into the line ------------------------------------------------------------------------------


def test_a_transfer_lands_in_the_section_with_the_911_line_then_the_options(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    heard = call.start("/voice/section/hospice")
    assert heard[0] == (
        "Welcome to CareLine. If this is an emergency, hang up and call 911."
        " Here is some information on hospice and end-of-life care."
    )
    assert heard[1].startswith("If your time to live may be short")
    assert "To get this by text message, press 2." in heard
    assert "To talk with a person, press 0." in heard
    call.press("1")
    assert call.heard[0].startswith("To join a hospice program")


def test_a_transfer_can_land_in_spanish_and_any_case_works(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    heard = call.start("/voice/section/Palliative?l=es")
    assert heard[0] == CONTENT.language("es").say("section_from_transfer", title="cuidados paliativos")
    assert "911" in heard[0]
    assert heard[1].startswith("Los cuidados paliativos")
    assert call.last.find("Gather").attrib["language"] == "es-US"


def test_a_transfer_to_an_unknown_section_gets_the_greeting(tmp_path: Path) -> None:
    call = new_call(make_app(tmp_path))
    heard = call.start("/voice/section/nonsense")
    assert heard[0].startswith("Welcome to CareLine")
    assert "To talk with a person, press 0." in heard and "For hospice and end-of-life care, press 5." in heard


def test_a_transfer_counts_as_hearing_the_section(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    new_call(app).start("/voice/section/hospice")
    with app.app_context():
        [row] = services().storage.usage(OPEN_TIME.date() - dt.timedelta(days=1))
    assert (row["channel"], row["section"], row["count"]) == ("voice", "hospice", 1)


@pytest.mark.parametrize(
    "path", ["/voice/section/hospice", "/voice/whisper", "/voice/whisper/answer", "/voice/recording-status"]
)
def test_staff_webhooks_refuse_unsigned_requests(tmp_path: Path, path: str) -> None:
    client = make_app(tmp_path).test_client()
    assert client.post(path, data={"CallSid": "CA1", "Digits": "1"}).status_code == 403
    assert twilio_post(client, path, {"CallSid": "CA1"}, token="not-the-token").status_code == 403


def test_an_unsigned_whisper_answer_cannot_accept_a_call(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    app.test_client().post("/voice/whisper/answer", data={"CallSid": "CA9", "Digits": "1"})
    with app.app_context():
        assert not services().storage.staff_accepted("CA9")


def test_more_staff_numbers_than_twilio_can_ring_stop_start_up(tmp_path: Path) -> None:
    numbers = ",".join(f"+1555000{n:04d}" for n in range(11))
    with pytest.raises(ConfigError, match="at most 10"):
        make_app(tmp_path, STAFF_NUMBERS=numbers)
    with pytest.raises(ConfigError, match="LINE_NUMBER"):
        make_app(tmp_path, LINE_NUMBER="555-1234")
