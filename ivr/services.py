"""The parts of the line built once per process and shared by every request."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from ivr.content import Content
from ivr.hours import StaffHours, describe
from ivr.storage import Storage
from ivr.twiml import Renderer
from ivr.usage import UsageCounter


class LineApp(Flask):
    """The line's Flask app: Flask itself, minus a per-request cost of its async support.

    Flask asks, for every hook and view on every request, whether it is an `async def` function
    (`ensure_sync`, an `inspect` call each time). The line's hooks and views never change, so the
    answer for each is remembered (plain functions only, at most SYNC_FUNCTIONS_KEPT of them).
    """

    #: Plain functions remembered as needing no async wrapper; more (unlikely) are checked each time.
    SYNC_FUNCTIONS_KEPT = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: set[Any] = set()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """`func` itself when it is a plain function (remembered), else Flask's wrapper for it."""
        try:
            if func in self._sync_functions:
                return func
        except TypeError:  # an unhashable callable: Flask's own check, every time
            return super().ensure_sync(func)
        wrapped = super().ensure_sync(func)
        if wrapped is func and len(self._sync_functions) < self.SYNC_FUNCTIONS_KEPT:
            self._sync_functions.add(func)
        return wrapped


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
