"""The parts of the line built once per process and shared by every request."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from ivr.content import Content
from ivr.dialog import Reply
from ivr.hours import StaffHours, describe
from ivr.storage import Storage
from ivr.twiml import Links, Renderer, StaffDial
from ivr.usage import UsageCounter


class LineCache:
    """The line's one cache, per app (Services.cache): answers that depend only on the line's own
    content and settings, never on who is calling or what they said. Each entry says why it is kept
    and what it saves (in-process CPU per request, bench/ requests; README, "Benchmark").
    """

    #: Distinct voice documents kept: the line has a few thousand replies (places x keys) at most.
    VOICE_DOCUMENTS = 4096

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        #: TwiML by reply, links and dial: rendering is most of a key press (menu step 1560 -> 830 us CPU).
        self.voice_document = functools.lru_cache(maxsize=self.VOICE_DOCUMENTS)(self._voice_document)

    def _voice_document(
        self, reply: Reply, links: Links, staff: StaffDial, max_message_seconds: int, script_root: str
    ) -> str:
        # `script_root` is only part of the key: the links build their URLs under the request's script root.
        return self.renderer.voice(reply, links, staff, max_message_seconds)


@dataclass(frozen=True)
class Services:
    """Content, renderer, storage, staff hours, usage counts and the cache for one app."""

    content: Content
    renderer: Renderer
    storage: Storage
    hours: StaffHours
    usage: UsageCounter
    cache: LineCache


def services() -> Services:
    """The running app's services."""
    return app_services(current_app)


def app_services(app: Flask) -> Services:
    """`app`'s services (what `services()` gives, for code that already holds the app: no context lookup)."""
    return app.extensions["careline"]


def now(config: Mapping[str, Any] | None = None) -> dt.datetime:
    """The current time; tests freeze it through the app's NOW setting (in `config`, else the running app's)."""
    frozen = (current_app.config if config is None else config).get("NOW")
    return frozen if isinstance(frozen, dt.datetime) else dt.datetime.now(dt.UTC)


def staff_hours_text(lang: str) -> str:
    """When staff are in, in plain words in language `lang` ("Monday to Friday, 8:30 in the morning to 5 in the
    evening"), for speech or a text message; empty when STAFF_HOURS is `closed`."""
    svc = services()
    words = svc.content.language(lang).hours
    if words is None:
        return ""
    return describe(svc.hours, words, now().astimezone(svc.hours.timezone).date())
