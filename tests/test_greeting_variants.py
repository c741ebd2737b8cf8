"""A returning caller is greeted by what the line saved about them, and only them.

What the line saved about a caller (language, speed, last section and when they heard it) decides
their greeting: each caller gets their own, in any order of calls, never another caller's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from ivr import create_app
from tests.conftest import app_config, loaded_content
from tests.helpers.support import Call, twilio_post

MONDAY_EVENING = dt.datetime(2026, 11, 30, 19, 0, tzinfo=dt.UTC)
CONTENT = loaded_content()
SECTION = sorted(CONTENT.section_ids)[0]
OTHER_SECTION = sorted(CONTENT.section_ids)[1]


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(app_config(tmp_path, NOW=MONDAY_EVENING, STAFF_NUMBERS="+15550001111"))
    yield app
    app.extensions["careline"].storage.dispose()


def remember(app: Flask, caller: str, lang: str, slow: bool, section: str = "", days_ago: float = 0) -> None:
    heard_at = MONDAY_EVENING - dt.timedelta(days=days_ago)
    app.extensions["careline"].storage.remember_choices(caller, lang, slow, section, heard_at)


def greeting(app: Flask, caller: str) -> tuple[int, dict[str, str], bytes]:
    response = twilio_post(app.test_client(), "/voice", Call(app.test_client(), caller=caller).form())
    return response.status_code, dict(response.headers), response.data


@pytest.mark.sqlite_only
def test_no_caller_is_greeted_with_another_callers_remembered_greeting(line: Flask) -> None:
    callers = {
        "spanish, slow, recent section": "+15551230001",
        "new": "+15551230002",
        "spanish": "+15551230003",
        "english, slow": "+15551230004",
        "spanish, slow, other section": "+15551230005",
        "english, section too old to offer": "+15551230006",
        "hidden number": "+266696687",
    }
    remember(line, callers["spanish, slow, recent section"], "es", True, SECTION, days_ago=2)
    remember(line, callers["spanish"], "es", False)
    remember(line, callers["english, slow"], "en", True)
    remember(line, callers["spanish, slow, other section"], "es", True, OTHER_SECTION, days_ago=1)
    remember(line, callers["english, section too old to offer"], "en", False, SECTION, days_ago=9)

    own = {who: greeting(line, number) for who, number in callers.items()}
    assert len({body for _, _, body in own.values()}) == len(callers)  # each variant its own greeting
    # Again, in an order where each caller follows one with other saved choices, twice.
    order = [*callers, *reversed(callers), *callers]
    for who in order:
        assert greeting(line, callers[who]) == own[who], who
