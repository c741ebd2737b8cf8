"""With the database unreachable, locked or gone mid-call, the line still answers and loses nothing.

Menus and sections play and text keywords answer without a database; what must be kept (a voice
message, a call-back request, an opt-out) goes to the durable spool (ivr/spool.py) and into the
database, exactly once, when it is back. See tests/test_crash_safety.py for a killed server process.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from ivr import create_app
from ivr.phone import free_port
from ivr.resilience import DatabaseGuard
from ivr.storage import Storage
from tests.conftest import app_config, loaded_content
from tests.helpers.databases import configured_postgres_url
from tests.helpers.faults import Outage, ReadOnly, move_clock_on
from tests.helpers.staff_support import StaffCall, recording_sid
from tests.helpers.support import CALLER, Phone, twilio_post

EN = loaded_content().language("en")
OTHER = "+15551230002"
THIRD = "+15551230003"


def guard(app: Flask) -> DatabaseGuard:
    return app.extensions["careline.guard"]


def spooled(app: Flask) -> list[dict[str, Any]]:
    return guard(app).spool.records()


def leave_a_message(call: StaffCall, number: int) -> None:
    """0 (no staff numbers: the message offer), 1, then Twilio's Record action and status callback."""
    call.press("0")
    assert EN.say("message_offer") in call.heard
    call.press("1")
    assert call.last is not None and call.last.find("Record") is not None, call.heard
    record = call.last.find("Record")
    assert record is not None
    call.record_ends(record.attrib["action"], number, seconds=12)
    assert call.heard[0] == EN.say("record_saved")
    call.recording_status(record.attrib["recordingStatusCallback"], number, seconds=12)


# -- no database at all -------------------------------------------------------------------------------


def unreachable_postgresql(tmp_path: Path) -> str:
    return f"postgresql+psycopg://careline:not-a-real-password@127.0.0.1:{free_port()}/careline"


def unwritable_sqlite(tmp_path: Path) -> str:
    (tmp_path / "a-file").write_text("a file where the database folder should be")
    return f"sqlite:///{tmp_path / 'a-file' / 'careline.sqlite3'}"


@pytest.mark.parametrize("database", [unreachable_postgresql, unwritable_sqlite])
def test_the_line_starts_and_answers_with_no_database_at_all(
    tmp_path: Path, database: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = database(tmp_path)
    config = app_config(tmp_path, DATABASE_URL=url)
    app = create_app(config)  # no exception: the database is retried later
    assert guard(app).is_down()
    assert "Database unavailable while starting up (OperationalError)" in caplog.text

    call = StaffCall(app.test_client())
    assert EN.say("greeting") in call.start()
    call.press("5")
    assert " ".join(EN.sections["hospice"].voice[0].split()) in call.heard
    call.press("#")
    leave_a_message(call, number=1)
    call.post("/voice/fallback")
    assert call.heard[0] == EN.say("error_apology") and EN.say("menu_person") in call.heard

    phone, other = Phone(app.test_client()), Phone(app.test_client(), number=OTHER)
    assert phone.text("hospice")[0].startswith(EN.sections["hospice"].sms[0])
    assert phone.text("HELP")[0].startswith("CareLine: health info")
    assert phone.text("CALL")[0] == EN.text("callback_saved", hours="Mon-Fri 8:30am-5pm")
    assert phone.text("STOP") == []
    assert phone.text("hospice") == [], "an opt-out only the spool holds is honoured"
    fallback = twilio_post(app.test_client(), "/sms/fallback", other.form("MENU", "SM" + "f" * 32))
    assert fallback.status_code == 200 and b"CareLine topics" in fallback.data

    kinds = [record["kind"] for record in spooled(app)]
    # Every text with a MessageSid, even one that changes nothing (HELP, a topic after STOP, MENU): a retry
    # finds its first answer.
    assert kinds == ["voicemail", "recording", "recording", *["text_turn"] * 6]
    # The number in the clear only where staff need it: the message and the call-back request.
    with_number = [
        record["kind"] + (":" + record["outcome"] if record["kind"] == "text_turn" else "")
        for record in spooled(app)
        if CALLER in json.dumps(record)
    ]
    assert with_number == ["voicemail", "recording", "text_turn:callback|en||0"]
    assert (guard(app).spool.path.stat().st_mode & 0o777) == 0o600

    # A new process on the same (still missing) database honours the spooled opt-out too.
    again = create_app(config)
    assert Phone(again.test_client(), number=CALLER, sent=50).text("hospice") == []
    assert Phone(again.test_client(), number=THIRD).text("hospice")

    logged = caplog.text
    assert CALLER not in logged and CALLER[2:] not in logged and "not-a-real-password" not in logged


def test_what_cannot_be_kept_is_never_reported_as_kept(tmp_path: Path) -> None:
    """No database and no spool (a file where its folder should be): no 'message saved', an apology."""
    (tmp_path / "spool-file").write_text("")
    config = app_config(
        tmp_path, DATABASE_URL=unwritable_sqlite(tmp_path), SPOOL_DIR=str(tmp_path / "spool-file" / "spool")
    )
    app = create_app(config)
    call = StaffCall(app.test_client())
    call.start()
    call.press("0")
    call.press("1")
    assert call.last is not None and call.last.find("Record") is None
    assert call.heard[0] == EN.say("error_apology")
    (apology,) = Phone(app.test_client()).text("CALL")
    assert apology.startswith("CareLine: Sorry, something went wrong") and "555-987-0000" in apology


# -- the database goes away in the middle of a conversation ------------------------------------------


def rows(app: Flask, table: str) -> list[dict[str, Any]]:
    storage: Storage = app.extensions["careline"].storage
    with storage.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.text(f"SELECT * FROM {table}"))]


def wait_for_retry(app: Flask) -> None:
    """The retry time passes for the app's database guard (at once: its clock moves on)."""
    move_clock_on(app, guard(app).retry_seconds + 0.1)


def test_a_database_lost_mid_conversation_gets_every_record_once_when_it_returns(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On SQLite the file goes; on PostgreSQL the server ends every session and refuses new ones."""
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url, DATABASE_RETRY_SECONDS=1))
    outage = Outage(app, admin_url=configured_postgres_url())
    caller = StaffCall(app.test_client())
    texter, stopper = Phone(app.test_client()), Phone(app.test_client(), number=OTHER)
    caller.start()
    caller.press("5")
    assert texter.text("hospice")
    assert stopper.text("hospice")

    outage.begin()
    leave_a_message(caller, number=7)  # the call goes on: message, recording, status callback all spooled
    assert texter.text("MORE")  # answered (without the conversation: the menu)
    (saved,) = texter.text("call me please")
    assert saved.startswith("Thank you. We saved your request.")
    assert texter.text("call me please", sid=texter.last_sid) == [saved], "a retry gets the same answer"
    assert stopper.text("STOP") == []
    assert stopper.text("hospice") == []
    assert Phone(app.test_client(), number=THIRD).text("PARAR")[0].startswith("CareLine: Ya no")
    # The message, its recording (twice: the Record action and the status callback), the call-back
    # request once (not again for its retry), two opt-outs, and the texts that changed nothing (MORE with
    # no conversation to go on, a topic after STOP), so that a retry finds its first answer.
    assert [record["kind"] for record in spooled(app)] == ["voicemail", "recording", "recording", *["text_turn"] * 5]
    backup = guard(app).spool.path.read_bytes()

    outage.end()
    wait_for_retry(app)
    assert stopper.text("hospice") == [], "now from the database"
    assert not guard(app).spool.has_records()
    requests = rows(app, "callback_requests")
    assert sorted((r["kind"], r["channel"], r["recording_sid"]) for r in requests) == [
        ("callback", "sms", None),
        ("voicemail", "voice", recording_sid(7)),
    ]
    assert all(r["phone"] == CALLER for r in requests)
    storage: Storage = app.extensions["careline"].storage
    opted = {r["phone_hash"]: r["opted_out"] for r in rows(app, "opt_outs")}
    assert opted == {storage.phone_hash(OTHER): True, storage.phone_hash(THIRD): True}
    assert "Moved 8 spooled record(s) into the database" in caplog.text

    # A crash after the records reached the database but before the spool was emptied: replayed, nothing changes.
    guard(app).spool.path.write_bytes(backup)
    guard(app).drain()
    assert len(rows(app, "callback_requests")) == 2 and len(rows(app, "opt_outs")) == 2
    assert "Moved 8 spooled record(s) into the database (8 were there already)" in caplog.text

    # Texts after the outage carry on from the database.
    assert texter.text("hospice")[0].startswith(EN.sections["hospice"].sms[0].split(":")[0].upper())
    assert CALLER not in caplog.text and OTHER not in caplog.text


def test_start_during_an_outage_undoes_a_stop_from_before_it(tmp_path: Path, database_url: str) -> None:
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url, DATABASE_RETRY_SECONDS=1))
    phone = Phone(app.test_client())
    assert phone.text("STOP") == []
    outage = Outage(app, admin_url=configured_postgres_url())
    outage.begin()
    assert phone.text("START")[0].startswith("Welcome to CareLine texts")
    assert phone.text("hospice")
    outage.end()
    wait_for_retry(app)
    assert phone.text("hospice"), "the spooled START reached the database"
    assert [r["opted_out"] for r in rows(app, "opt_outs")] == [False]


def test_a_record_the_database_refuses_stays_in_the_spool_and_the_others_go_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(app_config(tmp_path))
    spool = guard(app).spool
    from ivr import spool as spool_module
    from ivr.services import now

    with app.app_context():
        good = spool_module.new_record(spool_module.VOICEMAIL, now(), call_sid="CA1", phone=CALLER, topic="", lang="en")
    broken = dict(good, id="f" * 32, call_sid=None)
    del broken["call_sid"]
    spool.append(broken)
    spool.append(good)
    guard(app).drain()
    assert [record["id"] for record in spool.records()] == ["f" * 32]
    assert len(rows(app, "callback_requests")) == 1
    assert "A spooled voicemail record was refused: KeyError; kept in the spool" in caplog.text


def test_a_half_written_last_line_is_skipped(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path))
    spool = guard(app).spool
    spool.folder.mkdir(parents=True, exist_ok=True)
    spool.path.write_text('{"id": "abc", "kind": "voicemail", "call_')
    assert spool.records() == []
    shutil.rmtree(spool.folder)


def test_the_first_texts_and_calls_of_an_outage_are_answered_and_retries_keep_their_first_answer(
    tmp_path: Path, database_url: str
) -> None:
    """A worker opening its connection just as the database went away still answers as in an outage
    (a text's section, a call's greeting), never with an apology; and a text that changed nothing then
    (one from an opted-out number) keeps its first answer for a retry, in the spool."""
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url, DATABASE_RETRY_SECONDS=1))
    phone = Phone(app.test_client())
    outage = Outage(app, admin_url=configured_postgres_url())
    outage.begin()  # the pooled connections are closed too: the next request opens one, and fails
    assert phone.text("hospice")[0].startswith(EN.sections["hospice"].sms[0].split(":")[0].upper())
    outage.end()
    wait_for_retry(app)
    call = StaffCall(app.test_client())
    outage.begin()
    assert EN.say("greeting") in call.start()

    assert phone.text("STOP") == []  # kept in the spool, and honoured
    assert phone.text("hospice") == []
    ignored = phone.last_sid
    assert phone.text("START")[0].startswith("Welcome to CareLine texts")
    assert phone.text("hospice")
    assert phone.text("hospice", sid=ignored) == [], "the retry gets its first answer, from the spool"
    outage.end()
    wait_for_retry(app)
    assert phone.text("hospice", sid=ignored) == [], "and from the database once the spool moved in"


def test_a_database_read_only_at_start_up_is_used_again_once_writable_without_a_restart(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15, item 2: the guard disposes the pool before trying again, and SQLite refuses to pool a
    read-only connection, so no connection opened during the fault outlives it."""
    before = create_app(app_config(tmp_path, DATABASE_URL=database_url))
    assert Phone(before.test_client(), number=OTHER).text("STOP") == []
    before.extensions["careline"].storage.dispose()

    fault = ReadOnly(database_url, admin_url=configured_postgres_url())
    fault.begin()
    try:
        app = create_app(app_config(tmp_path, DATABASE_URL=database_url, DATABASE_RETRY_SECONDS=1))
        texter = Phone(app.test_client())
        (saved,) = texter.text("call me please")
        assert saved.startswith("Thank you. We saved your request.")
        assert [record["kind"] for record in spooled(app)] == ["text_turn"]
    finally:
        fault.end()

    wait_for_retry(app)
    assert Phone(app.test_client(), number=THIRD).text("hospice"), "the first request after the retry time"
    assert not guard(app).spool.has_records(), "the spool drained"
    assert [(r["channel"], r["kind"]) for r in rows(app, "callback_requests")] == [("sms", "callback")]
    assert Phone(app.test_client(), number=OTHER).text("hospice") == [], "the opt-out is honoured"
    (saved_again,) = texter.text("call me again")
    assert saved_again.startswith("Thank you. We saved your request.")
    assert not guard(app).spool.has_records(), "written straight to the database now"
    assert len(rows(app, "callback_requests")) == 2
    app.extensions["careline"].storage.dispose()
