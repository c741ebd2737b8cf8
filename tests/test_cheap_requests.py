"""Every key press is a round trip the caller waits through: a request does only what it must.

Content is read and checked once per process, never per request; templates are compiled once; and
moving around the menus touches no database at all. Playing a section writes exactly one small
statement (the usage count behind the staff usage panel; the line batches those, see
tests/test_usage.py, but these tests write each at once); leaving a message writes the call-back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from flask import Flask, Response
from flask.testing import FlaskClient

from ivr import dialog, voice
from ivr.dialog import CallState
from ivr.twiml import DocumentCache, Links
from tests.helpers.support import Call, Phone, twilio_post


@dataclass
class DatabaseActivity:
    """What the app asked of its database: connections taken from the pool, and SQL statements sent."""

    checkouts: int = 0
    statements: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.checkouts = 0
        self.statements.clear()

    def writes(self) -> list[str]:
        return [s for s in self.statements if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]


@pytest.fixture
def activity(app: Flask) -> Iterator[DatabaseActivity]:
    storage = app.extensions["careline"].storage
    engines = (storage.engine, storage.conversation_engine)
    seen = DatabaseActivity()

    def on_checkout(*_args: object) -> None:
        seen.checkouts += 1

    def on_statement(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.statements.append(" ".join(statement.split()))

    def on_hot_statement(engine: sa.Engine, statement: str) -> None:
        # The line's most frequent statements go straight to the driver (Storage._hot_once): seen here.
        seen.statements.append(" ".join(statement.split()))

    for engine in engines:
        sa.event.listen(engine.pool, "checkout", on_checkout)
        sa.event.listen(engine, "before_cursor_execute", on_statement)
    storage.trace = on_hot_statement
    yield seen
    storage.trace = None
    for engine in engines:
        sa.event.remove(engine, "before_cursor_execute", on_statement)
        sa.event.remove(engine.pool, "checkout", on_checkout)


def test_moving_around_the_menus_touches_no_database(call: Call, activity: DatabaseActivity) -> None:
    call.start()
    # The greeting reads what the line saved about this caller (language, speed): one read, no write.
    (statement,) = activity.statements
    assert statement.startswith("SELECT") and "FROM preferences" in statement
    activity.clear()

    call.press("*")  # repeat
    call.silence()
    call.say("main menu")
    call.press("#")  # main menu
    call.press("1")  # a section (counted below)
    activity.clear()
    call.press("1")  # more of it
    call.press("*")  # that part again
    call.press("#")  # main menu
    assert activity.checkouts == 0, activity.statements
    assert activity.statements == []


def test_only_choices_worth_keeping_are_written(call: Call, activity: DatabaseActivity) -> None:
    call.start()
    for key, table in (
        ("8", "INSERT INTO preferences"),
        ("9", "INSERT INTO preferences"),
        ("7", "DELETE FROM preferences"),
    ):
        activity.clear()
        call.press(key)  # slower, the other language, forget my choices: each kept (or erased) at once
        assert [s[: len(table)] for s in activity.statements] == [table], key


def test_a_section_costs_one_usage_statement_and_its_further_parts_none(call: Call, activity: DatabaseActivity) -> None:
    call.start()
    activity.clear()
    call.press("1")  # "cancer that comes back"
    # One count for the staff usage panel, and the caller's last section heard (so a returning
    # caller can pick up where they left off).
    usage, choices = activity.statements
    assert usage.startswith("INSERT INTO usage_daily") and "ON CONFLICT" in usage
    assert choices.startswith("INSERT INTO preferences")

    activity.clear()
    call.press("1")  # more of the same section
    call.press("*")  # hear that part again
    assert activity.statements == []


def test_a_caller_with_a_hidden_number_costs_only_the_usage_count(
    client: FlaskClient, activity: DatabaseActivity
) -> None:
    call = Call(client, caller="anonymous")
    call.start()
    call.press("8")
    call.press("1")
    (usage,) = activity.statements
    assert usage.startswith("INSERT INTO usage_daily")


def test_leaving_a_message_writes_what_the_caller_leaves(call: Call, activity: DatabaseActivity) -> None:
    call.start()
    activity.clear()
    call.press("0")  # no staff numbers configured: offered a message
    assert activity.statements == []
    call.press("1")
    assert [s.split()[:3] for s in activity.writes()] == [["INSERT", "INTO", "callback_requests"]]


@pytest.mark.sqlite_only
def test_no_prompt_file_is_read_after_start_up(app: Flask, call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[object] = []
    real_safe_load, real_load = yaml.safe_load, yaml.load

    def counting_safe_load(stream: object) -> object:
        reads.append(stream)
        return real_safe_load(stream)

    def counting_load(stream: object, Loader: Any) -> object:
        reads.append(stream)
        return real_load(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "safe_load", counting_safe_load)
    monkeypatch.setattr(yaml, "load", counting_load)  # ivr.content reads with libyaml's safe loader
    call.start()
    for key in ("2", "1", "*", "#", "9", "5", "#"):
        call.press(key)
    call.say("hospice")
    assert reads == []


@pytest.mark.sqlite_only
def test_templates_are_compiled_once_and_kept(app: Flask) -> None:
    # Flask recompiles changed templates only in debug mode; the line never runs in it.
    assert not app.debug
    assert not app.jinja_env.auto_reload
    assert app.jinja_env.cache is not None


@pytest.mark.sqlite_only
def test_a_document_is_rendered_once_then_remembered_within_a_bound(app: Flask) -> None:
    svc = app.extensions["careline"]
    links = Links(step=lambda state: f"/step?n={state.node}", whisper=lambda _t: "/w", recording_status=lambda _s: "/r")
    replies = [dialog.step(svc.content, CallState(), dialog.Heard(digits=key)) for key in ("*", "1", "2")]
    cache = DocumentCache(svc.renderer, size=2)
    rendered: list[object] = []
    real_voice = svc.renderer.voice

    def counting_voice(*args: object, **kwargs: object) -> str:
        rendered.append(args[0])
        return real_voice(*args, **kwargs)

    svc.renderer.voice = counting_voice  # type: ignore[method-assign]
    try:
        documents = [cache.voice(reply, links, "") for reply in replies]
        assert documents == [real_voice(reply, links) for reply in replies]
        assert cache.voice(replies[2], links, "") == documents[2]
        assert len(rendered) == 3 and len(cache) == 2  # the least recently used one made room
        assert cache.voice(replies[0], links, "") == documents[0]
        assert len(rendered) == 4
        assert cache.voice(replies[2], links, "/mounted") == documents[2]  # other links: rendered again
        assert len(rendered) == 5
    finally:
        del svc.renderer.voice


@pytest.mark.sqlite_only
def test_steps_are_remembered_but_never_what_a_caller_said(app: Flask, client: FlaskClient) -> None:
    call = Call(client, caller="anonymous")  # nothing saved between calls: the same words every time
    call.start()
    call.say("hospice")
    spoken_answer = call.heard
    call.press("#")
    call.press("5")
    assert call.heard == spoken_answer  # the key and the words lead to the same place
    call.press("#")
    steps = app.extensions["careline.steps"]
    remembered = len(steps)
    call.press("5")
    call.press("#")
    assert len(steps) == remembered  # the same places and keys: answered from memory
    events = [key[1] for key in steps.remembered()]
    assert events and not any(isinstance(e, dialog.Heard) and e.speech for e in events)


def test_a_topic_keyword_is_stored_without_reading_its_conversation_first(
    client: FlaskClient, activity: DatabaseActivity
) -> None:
    """A keyword's answer is the same in every conversation (textline.fixed_decision): the text is
    stored, and the opt-out checked, in one statement on PostgreSQL (one transaction on SQLite),
    with no read before it. MORE depends on the conversation: it reads it first."""
    phone = Phone(client)
    phone.text("hospice")
    turn = [s for s in activity.statements if "usage_daily" not in s]  # the count is its own (batched) write
    if turn[0].startswith("WITH"):  # PostgreSQL: one data-modifying WITH
        (statement,) = turn
        assert "INSERT INTO processed_events" in statement and "INSERT INTO sms_sessions" in statement
    else:
        assert [s.split()[2] for s in turn] == ["processed_events", "sms_sessions"]  # INSERT INTO ...
    assert "FROM opt_outs" in turn[0]  # the opt-out is checked where the turn is stored

    activity.clear()
    assert phone.text("MORE")
    assert activity.statements[0].startswith("SELECT") and "FROM sms_sessions" in activity.statements[0]

    activity.clear()
    assert phone.text("MORE", sid=phone.last_sid)  # a retry: found with the conversation, nothing written
    (read,) = activity.statements
    assert read.startswith("SELECT") and "FROM processed_events" in read


@pytest.mark.sqlite_only
def test_a_remembered_document_is_served_as_its_utf8_bytes_with_the_usual_content_type(
    app: Flask, client: FlaskClient
) -> None:
    svc = app.extensions["careline"]
    links = Links(step=lambda state: f"/step?l={state.lang}", whisper=lambda _t: "/w", recording_status=lambda _s: "/r")
    cache = DocumentCache(svc.renderer)
    reply = dialog.step(svc.content, CallState(lang="es"), dialog.Heard(digits="*"))  # "ñ": not ASCII
    assert cache.voice_body(reply, links, "") == svc.renderer.voice(reply, links).encode("utf-8")
    assert cache.voice_body(reply, links, "") is cache.voice_body(reply, links, "")  # encoded once
    assert cache.voice(reply, links, "") == svc.renderer.voice(reply, links)
    assert Response("", mimetype="text/xml").content_type == voice.TWIML_CONTENT_TYPE
    greeting = twilio_post(client, "/voice", Call(client, caller="+15551230077").form())
    assert greeting.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert greeting.headers["Content-Length"] == str(len(greeting.data))


@pytest.mark.sqlite_only
def test_the_staff_dial_is_one_object_while_the_line_number_and_settings_stay(app: Flask) -> None:
    first = voice._staff_dial(app, "+15559870000")
    assert voice._staff_dial(app, "+15559870000") is first
    other_line = voice._staff_dial(app, "+15559870001")
    assert other_line.caller_id == "+15559870001" and other_line is not first
    app.config["STAFF_RING_SECONDS"] = first.ring_seconds + 5
    assert voice._staff_dial(app, "+15559870001").ring_seconds == first.ring_seconds + 5
