"""One voice message per recording, whatever the order or timing of Twilio's two callbacks.

Twilio reports a recording twice: the <Record action> and the recordingStatusCallback. They can
arrive at the same moment on two workers; the red-team test of issue 15 saw 22 of 30 messages listed
twice on SQLite and 29 of 30 on PostgreSQL. Here both callbacks of each message are released at
once from two threads (a barrier), round after round, on each database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

from ivr import create_app
from ivr.storage import Storage
from tests.conftest import app_config
from tests.helpers.staff_support import StaffCall, recording_sid

ROUNDS = 30


def at_once(*steps: Callable[[], object]) -> None:
    """Run `steps` in threads of their own, released together by a barrier; re-raise what failed."""
    barrier = threading.Barrier(len(steps))
    failures: list[BaseException] = []

    def run(step: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            step()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures, failures


def leave_message_with_both_callbacks_at_once(app: Flask, number: int) -> None:
    """A caller reaches the beep; Twilio's Record action and status callback then arrive together."""
    call = StaffCall(app.test_client(), call_sid=f"CA{number:032x}", caller=f"+1555123{number:04d}")
    call.start()
    call.press("0")
    call.press("1")
    record = call.last.find("Record") if call.last is not None else None
    assert record is not None, call.heard
    status_call = StaffCall(app.test_client(), call_sid=call.call_sid, caller=call.caller)
    at_once(
        partial(call.record_ends, record.attrib["action"], number, 9),
        partial(status_call.recording_status, record.attrib["recordingStatusCallback"], number, 9),
    )


def test_both_callbacks_at_once_list_each_message_once(tmp_path: Path, database_url: str) -> None:
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url))
    storage: Storage = app.extensions["careline"].storage
    try:
        for number in range(1, ROUNDS + 1):
            leave_message_with_both_callbacks_at_once(app, number)
        with storage.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT recording_sid, COUNT(*) FROM callback_requests GROUP BY recording_sid")
            ).all()
        assert {sid: count for sid, count in rows} == {recording_sid(n): 1 for n in range(1, ROUNDS + 1)}
    finally:
        storage.dispose()
