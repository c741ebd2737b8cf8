"""A real server process, killed with SIGKILL in the middle of a stream of requests, loses nothing it answered.

`python -m ivr` (tests/helpers/servers.py) serves a stream of call-back requests (texts saying CALL),
opt-outs (STOP) and voice messages from several threads at once. Part way through, another process
locks the SQLite database (as a backup tool or a stuck process would), so the line keeps what it must
in its spool instead; then the server is killed with SIGKILL while requests are in flight. After a
restart (which moves the spool into the database), every request that got an answer is in the
database, exactly once. SQLite runs with synchronous=FULL, so what was committed is on disk.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from ivr.storage import Storage
from tests.helpers.servers import LineServer, local_line
from tests.helpers.support import LINE_NUMBER, PUBLIC_BASE_URL, sign

pytestmark = pytest.mark.slow

TOKEN = "crash-test-token"
RECORDING_URL = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/"


@dataclass
class Answered:
    """What the server confirmed, by kind, from all threads."""

    callbacks: list[str] = field(default_factory=list)  # MessageSids of CALL texts
    stops: list[str] = field(default_factory=list)  # numbers that texted STOP
    messages: list[str] = field(default_factory=list)  # CallSids whose caller reached the beep
    recordings: list[tuple[str, str]] = field(default_factory=list)  # (CallSid, RecordingSid) heard "saved"
    errors: list[str] = field(default_factory=list)  # answers that were wrong (not a killed server)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total(self) -> int:
        with self.lock:
            return len(self.callbacks) + len(self.stops) + len(self.messages) + len(self.recordings)


class Twilio:
    """Sends what Twilio would, signed, to one server."""

    def __init__(self, server: LineServer) -> None:
        self.server = server
        self.session = requests.Session()

    def post(self, path: str, params: dict[str, str]) -> ET.Element:
        headers = {"X-Twilio-Signature": sign(PUBLIC_BASE_URL + path, params, TOKEN)}
        response = self.session.post(self.server.url + path, data=params, headers=headers, timeout=30)
        assert response.status_code == 200, (path, response.status_code)
        return ET.fromstring(response.content)


def action(root: ET.Element) -> str:
    for node in root:
        if "action" in node.attrib:
            return node.attrib["action"]
    raise AssertionError("no action to follow")


def client_thread(server: LineServer, answered: Answered, numbers: itertools.count, stop: threading.Event) -> None:
    """One stream of requests: a CALL text, a STOP text, a voice message, again and again."""
    twilio = Twilio(server)
    try:
        while not stop.is_set():
            n = next(numbers)
            caller = f"+1555{n:07d}"
            sid = f"SM{n:032x}"
            kind = n % 3
            if kind == 0:
                root = twilio.post("/sms", {"From": caller, "To": LINE_NUMBER, "Body": "CALL", "MessageSid": sid})
                assert root.find("Message") is not None
                with answered.lock:
                    answered.callbacks.append(sid)
            elif kind == 1:
                twilio.post("/sms", {"From": caller, "To": LINE_NUMBER, "Body": "STOP", "MessageSid": sid})
                with answered.lock:
                    answered.stops.append(caller)
            else:
                call = {"CallSid": f"CA{n:032x}", "From": caller, "To": LINE_NUMBER}
                root = twilio.post("/voice", call)
                root = twilio.post(action(root), {**call, "Digits": "0"})  # no staff numbers: the message offer
                root = twilio.post(action(root), {**call, "Digits": "1"})
                assert root.find("Record") is not None
                with answered.lock:
                    answered.messages.append(call["CallSid"])
                recording = f"RE{n:032x}"
                params = {**call, "RecordingSid": recording, "RecordingUrl": RECORDING_URL + recording}
                twilio.post(action(root), {**params, "RecordingDuration": "9", "Digits": "#"})
                with answered.lock:
                    answered.recordings.append((call["CallSid"], recording))
    except (requests.RequestException, OSError):
        return  # the server was killed
    except AssertionError as error:
        with answered.lock:
            answered.errors.append(repr(error))


def run_until(server: LineServer, answered: Answered, numbers: itertools.count, target: int) -> list[threading.Thread]:
    """Start four streams; return once `target` requests in all were answered (the streams go on)."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=client_thread, args=(server, answered, numbers, stop), daemon=True) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while answered.total() < target:
        assert time.monotonic() < deadline, f"only {answered.total()} answers:\n{server.log()}"
        assert any(thread.is_alive() for thread in threads), server.log()
        time.sleep(0.02)
    return threads


def test_every_answered_request_survives_sigkill_even_with_the_database_locked(tmp_path: Path) -> None:
    settings = {
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "SPOOL_DIR": str(tmp_path / "spool"),
        "DATABASE_RETRY_SECONDS": "300",  # once locked out, the killed server spools to the end
    }
    server = local_line(tmp_path / "line", settings)
    database_file = server.environ["DATABASE_URL"].split("///", 1)[1]
    answered = Answered()
    numbers = itertools.count(1)

    threads = run_until(server, answered, numbers, target=40)
    locker = sqlite3.connect(database_file, timeout=30, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # every write now waits 5 s (busy_timeout), then fails
    before_lock = answered.total()
    run_until(server, answered, numbers, target=before_lock + 40)
    server.process.kill()  # SIGKILL, with requests in flight
    server.process.wait(timeout=10)
    for thread in threads:
        thread.join(timeout=30)
    locker.execute("ROLLBACK")
    locker.close()
    assert (tmp_path / "spool").is_dir() and any((tmp_path / "spool").iterdir()), "the lock sent records to the spool"

    restarted = local_line(tmp_path / "line", settings)  # moves the spool in at start
    try:
        storage = Storage(server.environ["DATABASE_URL"], server.environ["SECRET_KEY"])
        with storage.engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT * FROM callback_requests"))
            requests_rows = [dict(row._mapping) for row in rows]
            opt_outs = {row.phone_hash: row.opted_out for row in connection.execute(sa.text("SELECT * FROM opt_outs"))}
        by_key = {}
        for row in requests_rows:
            assert row["dedupe_key"] not in by_key, f"{row['dedupe_key']} twice"
            by_key[row["dedupe_key"]] = row
        for message_sid in answered.callbacks:
            assert f"sms:{message_sid}" in by_key, message_sid
        for number in answered.stops:
            assert opt_outs.get(storage.phone_hash(number)), number
        for call_sid in answered.messages:
            assert f"voicemail:{call_sid}" in by_key, call_sid
        for call_sid, recording in answered.recordings:
            assert by_key[f"voicemail:{call_sid}"]["recording_sid"] == recording, call_sid
        assert not any((tmp_path / "spool").glob("*.jsonl")), "the spool was emptied into the database"
        assert answered.total() >= 80 and answered.errors == []
        storage.engine.dispose()
    finally:
        restarted.stop()


KEPT_TABLES = ("callback_requests", "opt_outs", "sms_sessions", "processed_events", "preferences")


def test_what_callers_leave_is_written_only_on_connections_that_wait_for_the_disk(tmp_path: Path) -> None:
    """SQLite: everything a caller leaves commits with synchronous=FULL (fsync'ed before the answer).

    Texts that only move a conversation along (MENU, a topic, MORE) and remembered choices
    (language, speed, last section: a convenience) go through connections that do not wait for the
    disk, which a power cut may cost the last few of (a crash of the process costs nothing): check
    nothing a person leaves ever takes that way.
    """
    from ivr import create_app
    from tests.conftest import app_config
    from tests.helpers.staff_support import StaffCall
    from tests.helpers.support import Phone

    app = create_app(app_config(tmp_path))
    storage: Storage = app.extensions["careline"].storage
    writes: list[tuple[str, int]] = []

    def on_checkout(driver: Any, *_args: Any) -> None:
        # Seen where SQLite takes them, so both ways to the database count: SQLAlchemy's `Connection` and a
        # text's plain turn on the pooled driver connection (ivr/storage/driver.py). The setting a commit
        # uses is the one the connection was last told (SQLite cannot change it inside a transaction).
        setting = [driver.execute("PRAGMA synchronous").fetchone()[0]]

        def traced(statement: str) -> None:
            words = statement.split()
            if len(words) > 1 and words[0].upper() == "PRAGMA" and words[1].lower().startswith("synchronous="):
                setting[0] = {"FULL": 2, "NORMAL": 1}[words[1].split("=")[1].upper()]
            elif words and words[0].upper() in ("INSERT", "UPDATE", "DELETE"):
                # The table written: INSERT INTO t, DELETE FROM t, UPDATE t (a subquery may name others).
                written = words[1] if words[0].upper() == "UPDATE" else words[2]
                table = next((name for name in (*KEPT_TABLES, "usage_daily") if name == written.strip('"')), "")
                writes.append((table, setting[0]))

        driver.set_trace_callback(traced)

    def on_checkin(driver: Any, *_args: Any) -> None:
        if driver is not None:
            driver.set_trace_callback(None)

    # One engine and pool: every connection is taken from it, durable transactions' too.
    sa.event.listen(storage.engine, "checkout", on_checkout)
    sa.event.listen(storage.engine, "checkin", on_checkin)
    call = StaffCall(app.test_client())
    call.start()
    call.press("9")  # Spanish: remembered choices are written
    call.press("5")  # a section: a usage count
    call.press("0")
    call.press("1")
    record = call.last.find("Record") if call.last is not None else None
    assert record is not None
    call.record_ends(record.attrib["action"], 1, seconds=10)
    phone = Phone(app.test_client())
    for body in ("hospice", "call me", "STOP"):
        phone.text(body)
    # The listeners stay: the app goes with this test (and a pool the engine made anew since, on dispose,
    # has copies that SQLAlchemy cannot remove by name).

    full = 2
    kept = [(table, sync) for table, sync in writes if table != "usage_daily"]
    assert {table for table, _ in kept} >= {"callback_requests", "opt_outs", "sms_sessions", "processed_events"}
    # What a person leaves (a voice message, a call-back request, an opt-out) always waits.
    left = [write for write in kept if write[0] in ("callback_requests", "opt_outs")]
    assert left and all(sync == full for _, sync in left), left
    # A text that only moves the conversation along ("hospice") may skip the fsync; the texts that
    # leave something ("call me", STOP) write their session and message key with it, durably.
    assert [sync for table, sync in kept if table == "processed_events"] == [1, full, full], kept
    assert [sync for table, sync in kept if table == "preferences"] == [1, 1], "remembered choices skip it"
    # Usage counts (ivr/usage.py; here one at a time) are a statistic, never something a person left, and skip
    # the fsync since 2026-12-07 (a batch waiting for the disk held SQLite's write lock, the texts behind it):
    # the section heard, the section texted, and each of the three texts received (the picture of the line).
    assert [sync for table, sync in writes if table == "usage_daily"] == [1] * 5
