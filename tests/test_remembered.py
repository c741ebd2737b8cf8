"""Remembered choices: language, speed and the last topic, per caller, told once, cleared with 7.

Calls are driven like Twilio drives them (signed requests following the TwiML's action URLs) against a
real SQLite database; the clock is the app's NOW setting, moved between calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from ivr import call_dialog, create_app
from ivr.storage import Storage, preferences
from tests.conftest import app_config, loaded_content
from tests.helpers.support import Call

MONDAY_EVENING = dt.datetime(2026, 11, 30, 19, 0, tzinfo=dt.UTC)
CONTENT = loaded_content()
EN = CONTENT.language("en")
ES = CONTENT.language("es")
NOTICE_EN = EN.say("memory_notice")
NOTICE_ES = ES.say("memory_notice")


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Flask]:
    yield create_app(app_config(tmp_path, NOW=MONDAY_EVENING))


def storage(app: Flask) -> Storage:
    return app.extensions["careline"].storage


def saved_row(app: Flask, caller: str = "+15551230001") -> dict | None:
    store = storage(app)
    query = sa.select(preferences).where(preferences.c.phone_hash == store.phone_hash(caller))
    with store.engine.connect() as connection:
        row = connection.execute(query).first()
    return dict(row._mapping) if row else None


def new_call(app: Flask, number: int, caller: str = "+15551230001") -> Call:
    return Call(app.test_client(), call_sid=f"CA{number:032d}", caller=caller)


def says(call: Call) -> list[tuple[str, str]]:
    """(language, text) of every <Say> in the last document."""
    assert call.last is not None
    return [(say.attrib["language"], " ".join("".join(say.itertext()).split())) for say in call.last.iter("Say")]


def test_first_spanish_choice_is_saved_told_once_and_greets_the_next_call_in_spanish(line: Flask) -> None:
    first = new_call(line, 1)
    first.start()
    assert NOTICE_EN not in first.heard and NOTICE_ES not in first.heard
    assert saved_row(line) is None, "nothing is saved just for calling"

    first.press("9")
    assert first.heard.count(NOTICE_ES) == 1, "told once, in the language just chosen"
    assert ES.say("menu_forget") in first.heard
    assert saved_row(line)["lang"] == "es"

    first.press("8")  # slower, later in the same call: saved again, not told again
    assert NOTICE_ES not in first.heard
    assert saved_row(line)["slow"] is True

    second = new_call(line, 2)
    second.start()
    assert all(lang == "es-US" for lang, _ in says(second)), "a returning caller hears their language at once"
    assert second.heard[0] == ES.say("greeting")
    assert NOTICE_ES not in second.heard
    assert ES.say("menu_forget") in second.heard
    assert ES.say("menu_normal_speed") in second.heard
    rates = {prosody.attrib["rate"] for prosody in second.last.iter("prosody")}
    assert rates == {line.config["SLOW_SPEECH_RATE"]}, "and at the speed they chose"


def test_last_topic_is_offered_within_seven_days_with_its_own_menu_key(line: Flask) -> None:
    first = new_call(line, 1)
    first.start()
    first.press("5")
    assert NOTICE_EN in first.heard, "the first thing saved is also when the caller is told"
    assert first.heard.index(NOTICE_EN) > 0, "after the section's words, before its choices"
    row = saved_row(line)
    assert row["last_section"] == "" and row["lang"] == "en", "issue 14: no topic is kept without consent"
    first.press("*")
    first.press("3")  # "To have us offer this topic when you call again from this phone, press 3."
    assert first.heard[0] == EN.say("topic_kept")
    assert saved_row(line)["last_section"] == "hospice"

    line.config["NOW"] = MONDAY_EVENING + dt.timedelta(days=6, hours=23)
    second = new_call(line, 2)
    second.start()
    offer = EN.say("last_topic", title="hospice and end-of-life care", key="5")
    assert offer in second.heard
    assert NOTICE_EN not in second.heard
    second.press("5")
    assert EN.sections["hospice"].voice[0] in second.heard


def test_an_old_last_topic_is_not_offered_and_is_erased(line: Flask) -> None:
    first = new_call(line, 1)
    first.start()
    first.press("3")
    first.press("*")
    first.press("3")  # the caller agrees to have the topic kept
    assert saved_row(line)["last_section"] == "palliative"
    line.config["NOW"] = MONDAY_EVENING + dt.timedelta(days=7, minutes=1)
    second = new_call(line, 2)
    second.start()
    assert not any(text.startswith("Last time") for text in second.heard)
    row = saved_row(line)
    assert row["last_section"] == "" and row["last_heard_at"] is None, "kept no longer than it is needed"
    assert EN.say("menu_forget") in second.heard, "the language and speed are still saved"


def test_seven_clears_everything_and_nothing_more_is_saved_on_that_call(line: Flask) -> None:
    first = new_call(line, 1)
    first.start()
    first.press("9")
    first.press("2")
    first.press("*")
    first.press("3")
    assert saved_row(line)["last_section"] == "treatment"

    second = new_call(line, 2)
    second.start()
    second.press("7")
    assert second.heard[0] == ES.say("memory_cleared")
    assert ES.say("menu_forget") not in second.heard
    assert saved_row(line) is None
    second.press("4")
    second.press("8")
    assert saved_row(line) is None, "after clearing, this call saves nothing"

    third = new_call(line, 3)
    third.start()
    assert third.heard[0] == EN.say("greeting"), "a cleared caller starts in the default language"
    third.press("7")
    assert third.heard[0] == EN.say("invalid_key"), "7 works only for a caller with saved choices"


def test_saying_forget_works_like_seven(line: Flask) -> None:
    first = new_call(line, 1)
    first.start()
    first.press("8")
    second = new_call(line, 2)
    second.start()
    second.say("Please forget me.")
    assert second.heard[0] == EN.say("memory_cleared")
    assert saved_row(line) is None


@pytest.mark.parametrize("caller", ["", "anonymous", "+266696687", "+7378742833", "client:kiosk", "15551230001"])
def test_hidden_or_odd_caller_ids_are_never_remembered(line: Flask, caller: str) -> None:
    call = new_call(line, 1, caller=caller)
    call.start()
    call.press("9")
    assert NOTICE_ES not in call.heard
    call.press("5")
    with storage(line).engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(preferences)).scalar() == 0
    call.press("#")
    call.press("7")
    assert call.heard[0] == ES.say("invalid_key")


def test_menu_steps_write_nothing_and_a_section_writes_once(line: Flask) -> None:
    writes: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement.split("(")[0].strip())

    sa.event.listen(storage(line).engine, "before_cursor_execute", record)
    call = new_call(line, 1)
    call.start()
    call.press("*")
    call.press("#")
    call.press("7")  # a wrong key here: this caller has nothing saved to clear
    call.silence()
    call.say("something unclear")
    assert writes == [], "the main menu never writes for a caller who has nothing to save"

    call.press("5")
    assert len(writes) == 2, writes  # the usage count and the caller's last section
    writes.clear()
    call.press("*")  # hear the same part again
    call.press("1")  # the next part
    assert not any("preferences" in w for w in writes), writes
    writes.clear()
    call.press("#")
    call.press("#")
    assert writes == []


def test_a_database_failure_never_costs_the_caller_the_call(line: Flask) -> None:
    with storage(line).engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE preferences"))
    call = new_call(line, 1)
    call.start()
    assert call.heard[0] == EN.say("greeting")
    call.press("9")
    assert ES.say("language_switched") in call.heard
    call.press("5")
    assert ES.sections["hospice"].voice[0] in call.heard


# The dialog alone: the rules, without HTTP or a database.


def _welcome(remembered: call_dialog.Remembered | None, can_remember: bool = True) -> call_dialog.Reply:
    start = call_dialog.CallStarted(can_remember=can_remember, remembered=remembered)
    return call_dialog.step(CONTENT, call_dialog.CallState(), start)


def test_dialog_offers_the_last_topic_up_to_exactly_seven_days() -> None:
    week = call_dialog.OFFER_LAST_SECTION_WITHIN
    offer = EN.say("last_topic", title="coping, support and family", key="6")
    just_in = _welcome(call_dialog.Remembered("en", False, "coping", week))
    just_out = _welcome(call_dialog.Remembered("en", False, "coping", week + dt.timedelta(seconds=1)))
    assert offer in [line.text for line in just_in.lines]
    assert offer not in [line.text for line in just_out.lines]


def test_dialog_ignores_a_saved_language_or_section_the_line_no_longer_has() -> None:
    reply = _welcome(call_dialog.Remembered("fr", True, "astrology", dt.timedelta(hours=1)))
    assert isinstance(reply.next, call_dialog.Listen)
    assert reply.next.state.lang == "en" and reply.slow
    assert not any(line.text.startswith("Last time") for line in reply.lines)


def test_dialog_memory_state_survives_the_url_round_trip() -> None:
    from ivr.twiml import state_from_query, state_to_query

    for memory in (call_dialog.MEMORY_OFF, call_dialog.MEMORY_NEW, call_dialog.MEMORY_ON):
        state = call_dialog.CallState(memory=memory)
        assert state_from_query(state_to_query(state)).memory == memory
    assert state_from_query({"r": "x"}).memory == call_dialog.MEMORY_OFF, "an odd URL never turns saving on"
