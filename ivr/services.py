"""The parts of the line built once per process and shared by every request."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from ivr import sms_segments, text_dialog
from ivr.call_dialog import Reply
from ivr.content import Content
from ivr.hours import StaffHours, describe
from ivr.storage import Storage
from ivr.twiml import Links, Renderer, StaffDial, messages
from ivr.usage import UsageCounter

log = logging.getLogger(__name__)


class LineCache:
    """The line's one cache, per app (Services.cache): answers that depend only on the line's own
    content and settings, never on who is calling or what they said. Each entry says why it is kept
    and what it saves: CPU per request in process, over bench/'s requests (README, "Benchmark").
    """

    def __init__(self, content: Content, renderer: Renderer, hours: StaffHours) -> None:
        self.content, self.renderer, self.hours = content, renderer, hours
        #: TwiML by reply (a frozen dataclass, its own key), links and dial: about half a key press (1560 -> 800 us).
        self.voice_document = functools.lru_cache(maxsize=4096)(self._voice_document)
        #: A text's answer by outcome and staff phone (a few hundred): its messages, checked, as TwiML (-25%).
        self.text_reply = functools.lru_cache(maxsize=1024)(self._text_reply)
        #: Staff hours in words, by language and day (holidays are named until they pass): ~8% of a key press.
        self.staff_hours_text = functools.lru_cache(maxsize=64)(self._staff_hours_text)

    def _voice_document(
        self, reply: Reply, links: Links, staff: StaffDial, max_message_seconds: int, script_root: str
    ) -> str:
        # `script_root` is only part of the key: the links build their URLs under the request's script root.
        return self.renderer.voice(reply, links, staff, max_message_seconds)

    def _text_reply(self, outcome: text_dialog.Outcome, staff_phone: str) -> str:
        facts = text_dialog.text_facts(self.content, self.hours, staff_phone)
        bodies = text_dialog.render(self.content, outcome, facts)
        for body in bodies:
            if not sms_segments.fits(body):
                # Only STAFF_HOURS or STAFF_PHONE can make a checked prompt longer; say which kind, not the text.
                taken = sms_segments.segments(body)
                log.warning("A %s reply takes %d text segments; shorten STAFF_HOURS", outcome.kind, taken)
        return messages(bodies)

    def _staff_hours_text(self, lang: str, today: dt.date) -> str:
        words = self.content.language(lang).hours
        return describe(self.hours, words, today) if words is not None else ""


@dataclass(frozen=True)
class Services:
    """Content, renderer, storage, staff hours, usage counts and the cache for one app."""

    content: Content
    renderer: Renderer
    storage: Storage
    hours: StaffHours
    usage: UsageCounter
    cache: LineCache


def services(app: Flask | None = None) -> Services:
    """`app`'s services; without `app`, the running app's (in a request or app context)."""
    return (current_app if app is None else app).extensions["careline"]


def now(config: Mapping[str, Any] | None = None) -> dt.datetime:
    """The current time; tests freeze it through the app's NOW setting (in `config`, else the running app's)."""
    frozen = (current_app.config if config is None else config).get("NOW")
    return frozen if isinstance(frozen, dt.datetime) else dt.datetime.now(dt.UTC)


def staff_hours_text(lang: str) -> str:
    """When staff are in, in plain words in language `lang` ("Monday to Friday, 8:30 in the morning to 5 in the
    evening"), for speech or a text message; empty when STAFF_HOURS is `closed`."""
    svc = services()
    return svc.cache.staff_hours_text(lang, now().astimezone(svc.hours.timezone).date())
