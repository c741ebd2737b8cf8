"""Many processes, one line: two separate app processes on one database serve one call and one text
conversation, taking turns.

Each request goes to the other process (real gunicorn servers on two loopback ports, started with
the repository's gunicorn.conf.py), exactly as a load balancer may spread them. The caller and the
texter must notice nothing: every answer is the one a single in-process app gives to the same call
or texts, and what they leave (a voice message, an opt-out) is in the shared database once.
"""

from __future__ import annotations

import datetime as dt
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from ivr import create_app
from ivr.storage import Storage
from tests.conftest import app_config
from tests.helpers.servers import HttpClient, LineServer, line_environment
from tests.helpers.support import CALLER, Call, Phone

pytestmark = pytest.mark.slow


@pytest.fixture
def two_processes(database_url: str, tmp_path: Path) -> Iterator[tuple[LineServer, LineServer]]:
    """Two line processes (one gunicorn worker each) on the same database, started at the same time."""
    environ = line_environment(database_url)
    first = LineServer(environ, tmp_path / "first.log")
    second = LineServer(environ, tmp_path / "second.log")
    try:
        first.wait_until_ready()
        second.wait_until_ready()
        yield first, second
    finally:
        first.begin_stop()
        second.begin_stop()
        first.stop()
        second.stop()


@pytest.fixture
def reference(tmp_path: Path) -> Flask:
    """One in-process app with the same settings, on its own database: what the caller should hear."""
    config = app_config(tmp_path / "reference", STAFF_HOURS="closed")
    return create_app(config)


def _recording_status_url(document: ET.Element) -> str:
    record = document.find("Record")
    assert record is not None, "the line did not start recording"
    return record.attrib["recordingStatusCallback"]


class TwinCalls:
    """The same call played twice: spread over the two processes, and on the single reference app."""

    def __init__(self, spread: HttpClient, reference: Flask) -> None:
        self.shared = Call(spread)  # type: ignore[arg-type]  # posts like Flask's test client, over HTTP
        self.single = Call(reference.test_client())

    def do(self, what: str, act: Callable[[Call], object], in_call: bool = True) -> list[str]:
        """Do `act` on both calls; the caller must hear the same and be sent to the same next URL."""
        act(self.shared)
        act(self.single)
        assert self.shared.heard == self.single.heard, f"the caller noticed a difference after: {what}"
        assert self.shared.ended() == self.single.ended()
        if in_call and not self.shared.ended():
            assert self.shared.action() == self.single.action(), f"different next step after: {what}"
        return self.shared.heard


def test_one_call_alternating_between_two_processes(
    two_processes: tuple[LineServer, LineServer], reference: Flask, database_url: str
) -> None:
    first, second = two_processes
    spread = HttpClient([first.port, second.port])
    calls = TwinCalls(spread, reference)

    calls.do("greeting", lambda call: call.start())
    calls.do("a section by key", lambda call: call.press("1"))
    calls.do("more", lambda call: call.press("1"))
    calls.do("repeat", lambda call: call.press("*"))
    calls.do("main menu by speech", lambda call: call.say("main menu"))
    calls.do("another section", lambda call: call.press("5"))
    calls.do("main menu by key", lambda call: call.press("#"))
    calls.do("a person, out of hours", lambda call: call.press("0"))
    calls.do("leave a message", lambda call: call.press("1"))
    assert calls.shared.last is not None and calls.shared.last.find("Record") is not None
    status_url = _recording_status_url(calls.shared.last)
    recording = {
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE0001",
        "RecordingSid": "RE0001",
        "RecordingDuration": "17",
    }
    calls.do("the message ends", lambda call: call.post(call.action(), **recording))
    calls.do(
        "the recording is ready",  # Twilio's status callback: answered with an empty document
        lambda call: call.post(status_url, RecordingStatus="completed", **recording),
        in_call=False,
    )

    # The two processes took turns, request by request.
    assert len(spread.served_by) == 11
    assert spread.served_by == [(first.port, second.port)[i % 2] for i in range(11)]

    # What the caller left is in the shared database, once, exactly as the single app kept it.
    shared = Storage(database_url, "test-secret-key")
    single = reference.extensions["careline"].storage
    try:
        (message,) = shared.callback_requests()
        (expected,) = single.callback_requests()
        assert message["phone"] == CALLER
        assert message["recording_url"] == recording["RecordingUrl"]
        assert message["recording_seconds"] == 17
        same = ("channel", "kind", "phone", "topic", "lang", "urgent", "recording_sid", "note", "status")
        assert {k: message[k] for k in same} == {k: expected[k] for k in same}
        expected_usage = {("voice", "recurrence"): 1, ("voice", "hospice"): 1}
        assert usage_when(shared, lambda usage: usage == expected_usage) == expected_usage
    finally:
        shared.dispose()

    # The access logs show every request, and never a phone number, a query string or a form field.
    for server in (first, second):
        expected_lines = spread.served_by.count(server.port)
        log, requests = server.log(), []
        # gunicorn writes an access line after the answer is sent: allow it a moment to land.
        for _ in range(50):
            log = server.log()
            requests = [line for line in log.splitlines() if " POST /voice" in line]
            if len(requests) >= expected_lines:
                break
            time.sleep(0.1)
        assert len(requests) == expected_lines, log
        assert all(line.split()[-3] == "200" for line in requests), log
        for secret in (CALLER, CALLER.lstrip("+"), "Digits", "SpeechResult", "?", "RE0001", "main menu"):
            assert secret not in "\n".join(requests), f"{secret!r} leaked into the access log"
        assert CALLER not in log and CALLER.lstrip("+") not in log


def test_one_text_conversation_alternating_between_two_processes(
    two_processes: tuple[LineServer, LineServer], reference: Flask, database_url: str
) -> None:
    first, second = two_processes
    spread = HttpClient([first.port, second.port])
    shared_phone = Phone(spread)  # type: ignore[arg-type]  # posts like Flask's test client, over HTTP
    single_phone = Phone(reference.test_client())
    content = reference.extensions["careline"].content
    keyword = content.language(content.default_language).sections["hospice"].keyword
    shared = Storage(database_url, "test-secret-key")
    try:
        for body in ("MENU", keyword, "MORE", "STOP", "START"):
            answer = shared_phone.text(body)
            assert answer == single_phone.text(body), f"the texter noticed a difference after {body!r}"
            assert answer or body == "STOP", f"no answer to {body!r}"
            if body == "STOP":
                assert shared.is_opted_out(CALLER)
            if body == "START":
                assert not shared.is_opted_out(CALLER)
        # MORE went on from the section the other process had sent: the conversation lives in the database.
        assert spread.served_by == [first.port, second.port, first.port, second.port, first.port]
        usage = usage_when(shared, lambda usage: usage.get(("sms", "hospice"), 0) >= 1)
        assert usage.get(("sms", "hospice"), 0) >= 1
    finally:
        shared.dispose()
    for server in (first, second):
        log = server.log()
        assert CALLER not in log and CALLER.lstrip("+") not in log and keyword not in log, (
            "a number or a text was logged"
        )


def usage_when(storage: Storage, wanted: Callable[[dict[tuple[str, str], int]], bool]) -> dict[tuple[str, str], int]:
    """The usage counts once `wanted` holds (or after 10 s): each process adds its counts in batches,
    every USAGE_FLUSH_SECONDS (1 s by default)."""
    deadline = time.monotonic() + 10
    while True:
        rows = storage.usage(dt.date.today() - dt.timedelta(1))
        usage = {(row["channel"], row["section"]): row["count"] for row in rows}
        if wanted(usage) or time.monotonic() > deadline:
            return usage
        time.sleep(0.1)
