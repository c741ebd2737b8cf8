"""Every key press is a round trip the caller waits through: a request does only what it must.

Content is read and checked once per process, never per request; templates are compiled once; and
moving around the menus touches no database at all. Playing a section writes exactly one small
statement (the usage count behind the staff usage panel); leaving a message writes the call-back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
import yaml
from flask import Flask

from tests.support import Call


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
    engine = app.extensions["careline"].storage.engine
    seen = DatabaseActivity()

    def on_checkout(*_args: object) -> None:
        seen.checkouts += 1

    def on_statement(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.statements.append(" ".join(statement.split()))

    sa.event.listen(engine.pool, "checkout", on_checkout)
    sa.event.listen(engine, "before_cursor_execute", on_statement)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", on_statement)
    sa.event.remove(engine.pool, "checkout", on_checkout)


def test_menu_steps_touch_no_database(call: Call, activity: DatabaseActivity) -> None:
    call.start()
    call.press("*")  # repeat
    call.press("8")  # slower
    call.press("8")  # normal speed
    call.press("7")  # not a choice
    call.silence()
    call.say("main menu")
    call.press("9")  # Spanish
    call.press("9")  # back to English
    call.press("#")  # main menu
    assert activity.checkouts == 0, activity.statements
    assert activity.statements == []


def test_a_section_costs_one_usage_statement_and_its_further_parts_none(call: Call, activity: DatabaseActivity) -> None:
    call.start()
    call.press("1")  # "cancer that comes back": counted once, for the staff usage panel
    assert activity.checkouts == 1
    (statement,) = activity.statements
    assert statement.startswith("INSERT INTO usage_daily") and "ON CONFLICT" in statement

    activity.clear()
    call.press("1")  # more of the same section
    call.press("*")  # hear that part again
    assert activity.statements == []


def test_leaving_a_message_writes_what_the_caller_leaves(call: Call, activity: DatabaseActivity) -> None:
    call.start()
    call.press("0")  # no staff numbers configured: offered a message
    assert activity.statements == []
    call.press("1")
    assert [s.split()[:3] for s in activity.writes()] == [["INSERT", "INTO", "callback_requests"]]


@pytest.mark.sqlite_only
def test_no_prompt_file_is_read_after_start_up(app: Flask, call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[object] = []
    real_safe_load = yaml.safe_load

    def counting_safe_load(stream: object) -> object:
        reads.append(stream)
        return real_safe_load(stream)

    monkeypatch.setattr(yaml, "safe_load", counting_safe_load)
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
