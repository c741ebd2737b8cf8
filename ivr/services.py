"""The parts of the line built once per process and shared by every request."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from ivr.content import Content
from ivr.hours import StaffHours, describe
from ivr.storage import Storage
from ivr.twiml import Renderer
from ivr.usage import UsageCounter


@dataclass(frozen=True)
class Services:
    """Content, renderer, storage, staff hours and usage counts for one app."""

    content: Content
    renderer: Renderer
    storage: Storage
    hours: StaffHours
    usage: UsageCounter


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
