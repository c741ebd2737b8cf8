"""A returning caller's greeting is remembered per variant, never per caller.

What the line saved about a caller (language, speed, last section and when they heard it) comes to one
of a few dozen greetings. The step cache keys a greeting by that variant (`dialog.greeting_variant`),
so the variant must give exactly the caller's own greeting, one caller's greeting must never reach
another, and the cache must grow with the variants, not with the callers.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from ivr import create_app, dialog
from ivr.content import load_content
from ivr.dialog import CallStarted, CallState, Circumstances, Remembered
from tests.conftest import app_config
from tests.helpers.support import Call, twilio_post

MONDAY_EVENING = dt.datetime(2026, 11, 30, 19, 0, tzinfo=dt.UTC)
CONTENT = load_content()
SECTION = sorted(CONTENT.section_ids)[0]
OTHER_SECTION = sorted(CONTENT.section_ids)[1]


def test_a_greeting_variant_is_greeted_exactly_as_the_caller_it_came_from() -> None:
    week = dialog.OFFER_LAST_SECTION_WITHIN
    ages = [None, dt.timedelta(0), dt.timedelta(hours=5), week, week + dt.timedelta(seconds=1), dt.timedelta(days=30)]
    worlds = [Circumstances(), Circumstances(staff_open=True)]
    events = [CallStarted(), CallStarted(can_remember=True)] + [
        CallStarted(can_remember=can, remembered=Remembered(lang, slow, last, age))
        for can, lang, slow, last, age in itertools.product(
            (True, False), ("en", "es", "fr", ""), (False, True), ("", SECTION, "no-such-section"), ages
        )
    ]
    for event, world, lang in itertools.product(events, worlds, ("en", "es")):
        state = CallState(lang=lang)
        variant = dialog.greeting_variant(CONTENT, event)
        assert dialog.step(CONTENT, state, variant, world) == dialog.step(CONTENT, state, event, world), event
        assert dialog.greeting_variant(CONTENT, variant) == variant


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


def greeting_from_cold_caches(app: Flask, caller: str) -> tuple[int, dict[str, str], bytes]:
    """The caller's greeting worked out afresh: every remembered step and document dropped first."""
    for cache in ("careline.steps", "careline.documents"):
        app.extensions.pop(cache, None)
    return greeting(app, caller)


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

    own = {who: greeting_from_cold_caches(line, number) for who, number in callers.items()}
    assert len({body for _, _, body in own.values()}) == len(callers)  # each variant its own greeting
    # Now with warm caches, in an order where each caller follows one with other saved choices, twice.
    order = [*callers, *reversed(callers), *callers]
    for who in order:
        assert greeting(line, callers[who]) == own[who], who


@pytest.mark.sqlite_only
def test_the_greeting_cache_grows_with_variants_not_with_callers(line: Flask) -> None:
    for number in range(40):  # forty callers, two variants: Spanish slow with SECTION, and English
        caller = f"+1555123{number:04d}"
        if number % 2:
            remember(line, caller, "es", True, SECTION, days_ago=number / 10)  # every one a different age
        else:
            remember(line, caller, "en", False)
        greeting(line, caller)
    steps = line.extensions["careline.steps"]
    greetings = [key for key in steps.remembered() if isinstance(key[1], CallStarted)]
    assert len(greetings) == 2
    ages = {key[1].remembered.last_heard_ago for key in greetings}
    assert ages <= {None, dt.timedelta(0)}, "no caller's own timing is kept"
    assert steps.size == 8192  # and the step cache has its bound (least recently used out first)
