"""Storage works the same on SQLite and PostgreSQL, and several processes may start on one database at once."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from ivr.storage import CallbackRequest, Storage, StoredConversation, TextChanges, Use
from ivr.storage.database import MIGRATIONS_DIR
from ivr.storage.driver import driver_transaction
from ivr.storage.schema import callback_requests
from tests.conftest import require_postgres
from tests.helpers.databases import PostgresServer
from tests.helpers.driver_trace import driver_statements

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer | None
) -> Iterator[str]:
    """A database with no tables at all, as on a line's very first start."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.sqlite3'}"
        return
    with require_postgres(postgres_server).fresh_database(migrated=False) as url:
        yield url


MIGRATE = """
import sys, time
from ivr.storage import Storage
storage = Storage(sys.argv[1], "k")
start = float(sys.argv[2])
while time.time() < start:  # all processes migrate at the same moment
    time.sleep(0.001)
storage.migrate()
"""


@pytest.mark.slow
def test_processes_starting_together_migrate_once(empty_database_url: str) -> None:
    start_at = time.time() + 2.0  # enough for every interpreter to import before the moment
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, empty_database_url, str(start_at)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(5)
    ]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [p.returncode for p in processes] == [0] * 5, "\n".join(outputs)

    engine = sa.create_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
            tables = set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert len(versions) == 1
    assert {"callback_requests", "opt_outs", "usage_daily", "sms_sessions"} <= tables


def test_migrating_again_changes_nothing(storage: Storage) -> None:
    storage.open_voice_message("CA1", "+15551230001", "hospice", "en")
    storage.migrate()
    assert len(storage.callback_requests()) == 1


def test_a_voice_message_is_kept_with_its_recording(storage: Storage) -> None:
    storage.open_voice_message("CA1", "+15551230001", "hospice", "es")
    storage.open_voice_message("CA1", "+15551230001", "hospice", "es")  # Twilio retried the request
    assert storage.attach_recording("CA1", "RE1", "https://api.twilio.com/rec/RE1", 14)
    assert storage.attach_recording("CA1", "RE1", "https://api.twilio.com/rec/RE1", 14)  # and its callback
    (request,) = storage.callback_requests()
    assert request["phone"] == "+15551230001"
    assert (request["topic"], request["lang"], request["kind"]) == ("hospice", "es", "voicemail")
    assert (request["recording_sid"], request["recording_seconds"], request["note"]) == ("RE1", 14, "")
    if storage.engine.dialect.name == "postgresql":
        assert request["created_at"].tzinfo is not None  # timestamptz: stored in UTC, read back aware

    # A recording with no request to go to is never dropped: it gets a request of its own.
    assert storage.attach_recording("CA-unknown", "RE2", "https://api.twilio.com/rec/RE2", 3, phone="+15551230002")
    assert {r["recording_sid"] for r in storage.callback_requests()} == {"RE1", "RE2"}


def test_events_are_processed_once(storage: Storage) -> None:
    assert storage.claim_step("SM123") is None
    assert storage.claim_step("SM123") == ""
    storage.settle_step("SM123", "sent")
    assert storage.claim_step("SM123") == "sent"
    assert storage.claim_step("SM124") is None


def test_usage_counts_add_up_per_day_channel_and_section(storage: Storage) -> None:
    today = dt.date(2026, 11, 26)
    for _ in range(3):
        storage.add_uses([Use(today, "voice", "hospice")])
    storage.add_uses([Use(today, "sms", "hospice"), Use(today - dt.timedelta(days=1), "voice", "coping")])
    rows = {(r["day"], r["channel"], r["section"]): r["count"] for r in storage.usage(today - dt.timedelta(days=7))}
    assert rows == {
        (today, "voice", "hospice"): 3,
        (today, "sms", "hospice"): 1,
        (today - dt.timedelta(days=1), "voice", "coping"): 1,
    }


def test_staff_acceptance_is_remembered_per_call(storage: Storage) -> None:
    assert not storage.staff_accepted("CA9")
    storage.accept_staff_call("CA9")
    storage.accept_staff_call("CA9")
    assert storage.staff_accepted("CA9")
    assert not storage.staff_accepted("CA10")


def test_no_number_is_opted_out_until_it_says_stop(storage: Storage) -> None:
    assert not storage.is_opted_out("+15551230001")


def durability_setting(storage: Storage) -> tuple[str, object, object]:
    """The statement that reads whether a commit waits for the disk, and its values when it does and does not."""
    if storage.engine.dialect.name == "sqlite":
        return "PRAGMA synchronous", 2, 1  # 2 = FULL, 1 = NORMAL
    return "SHOW synchronous_commit", "on", "off"


def test_only_durable_transactions_wait_for_the_disk(storage: Storage) -> None:
    setting, durable, relaxed = durability_setting(storage)
    for _ in range(2):  # the same pooled connection, switched each time
        with storage.durable() as connection:
            assert connection.exec_driver_sql(setting).scalar() == durable
        with storage.engine.begin() as connection:
            assert connection.exec_driver_sql(setting).scalar() == relaxed
        with driver_transaction(storage.engine) as driver:  # a text's plain turn (ivr/storage/driver.py)
            assert driver.execute(sa.text(setting), {}).scalar() == relaxed


def conversation_of(storage: Storage, phone: str) -> StoredConversation:
    """What the text line remembers of `phone`."""
    return storage.text_conversation(phone, "")[0]


@pytest.mark.parametrize("with_conversation", [True, False])
def test_a_conversation_move_is_stored_once_per_message(storage: Storage, with_conversation: bool) -> None:
    """MENU, a topic or MORE (one statement on PostgreSQL, one transaction on SQLite): a retry of the
    same MessageSid gets the first answer back and changes nothing, whatever it would change."""
    phone = "+15551230002"
    conversation = StoredConversation(lang="es", section="hospice", next_part=1) if with_conversation else None
    first = TextChanges(conversation=conversation)
    assert storage.record_text_turn("sms:SM-once", phone, "section:es:hospice:0", first) is None
    retry = TextChanges(conversation=StoredConversation(lang="en", section="coping", next_part=2))
    assert storage.record_text_turn("sms:SM-once", phone, "menu:en", retry) == "section:es:hospice:0"
    assert storage.record_text_turn("sms:SM-once", phone, "menu:en", first) == "section:es:hospice:0"
    stored = StoredConversation(lang="es", section="hospice", next_part=1)
    expected = stored if with_conversation else StoredConversation()
    assert conversation_of(storage, phone) == expected
    # A message with no SID (never from Twilio, but possible by hand) is stored every time it comes.
    assert storage.record_text_turn("", phone, "menu:en", first) is None
    assert storage.record_text_turn("", phone, "menu:en", first) is None
    assert conversation_of(storage, phone) == expected


def test_connections_the_server_dropped_are_replaced_without_a_failed_request(
    storage: Storage, database_url: str, postgres_server: PostgresServer | None
) -> None:
    """Pooled connections live on between requests: when the server ends one (a restart, a
    failover), the next request notices, opens a new one and succeeds."""
    phone = "+15551230004"
    session = TextChanges(conversation=StoredConversation(lang="en", section="hospice", next_part=1))
    assert storage.record_text_turn("sms:SM-before", phone, "", session) is None
    assert conversation_of(storage, phone).section == "hospice"
    if postgres_server is not None and database_url.startswith("postgresql"):
        name = make_url(database_url).database
        admin = sa.create_engine(postgres_server.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as connection:
            ended = connection.execute(
                sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :name"),
                {"name": name},
            ).scalar()
        admin.dispose()
        assert ended >= 1, "the pooled connection was open"
    else:
        storage.dispose()  # SQLite's connections cannot be ended from outside: retired instead
    assert conversation_of(storage, phone).section == "hospice"
    assert storage.record_text_turn("sms:SM-after", phone, "", session) is None
    assert storage.record_text_turn("sms:SM-after", phone, "", session) == ""


def test_a_conversation_is_read_with_the_answer_stored_for_its_message(storage: Storage) -> None:
    phone = "+15551230007"
    conversation = StoredConversation(lang="es", section="hospice", next_part=2)
    assert storage.text_conversation(phone, "sms:SM-new") == (StoredConversation(), None)
    storage.record_text_turn("sms:SM-read", phone, "section|es|hospice|1", TextChanges(conversation=conversation))
    storage.record_text_turn("sms:SM-blank", phone, "", TextChanges(conversation=conversation))
    assert storage.text_conversation(phone, "sms:SM-read") == (conversation, "section|es|hospice|1")
    assert storage.text_conversation(phone, "sms:SM-blank") == (conversation, "")  # stored, with no answer
    assert storage.text_conversation(phone, "sms:SM-new") == (conversation, None)
    assert storage.text_conversation(phone, "") == (conversation, None)


def test_a_stored_message_with_no_answer_gives_an_empty_one(storage: Storage) -> None:
    session = TextChanges(conversation=StoredConversation(lang="en", section="hospice", next_part=1))
    assert storage.record_text_turn("sms:SM-quiet", "+15551230003", "", session) is None
    assert storage.record_text_turn("sms:SM-quiet", "+15551230003", "menu:en", session) == ""


def test_a_text_that_leaves_something_waits_for_the_disk(storage: Storage) -> None:
    """MENU, a topic or MORE commit without an fsync; STOP, START and a call-back request always with one.

    Seen in what the driver is sent (a plain turn runs on the pooled driver connection, ivr/storage/
    driver.py, which fires no SQLAlchemy events): a durable transaction is the one that switches its
    commit to wait for the disk; every other commit keeps the setting a pooled connection rests at
    (test_only_durable_transactions_wait_for_the_disk)."""
    switch = (
        "PRAGMA SYNCHRONOUS=FULL" if storage.engine.dialect.name == "sqlite" else "SET LOCAL SYNCHRONOUS_COMMIT TO ON"
    )
    sent: list[str] = []
    used: list[str] = []
    with driver_statements(storage.engine, lambda statement: sent.append(" ".join(statement.upper().split()))):
        phone = "+15551230001"
        conversation = StoredConversation(lang="en", section="hospice", next_part=1)
        for sid, changes in (
            ("SM-move", TextChanges(conversation=conversation)),
            ("SM-stop", TextChanges(opted_out=True)),
            ("SM-start", TextChanges(opted_out=False, conversation=conversation)),
            ("SM-call", TextChanges(callback=CallbackRequest(section="hospice", lang="en", urgent=False))),
        ):
            sent.clear()
            storage.record_text_turn(sid, phone, "", changes)
            assert any(statement.startswith("INSERT INTO PROCESSED_EVENTS") for statement in sent), sent
            used.append("durable" if switch in sent else "relaxed")
            used.append("|")
    turns = [set(turn.split()) for turn in " ".join(used).split("|")[:-1]]
    assert turns == [{"relaxed"}, {"durable"}, {"durable"}, {"durable"}]
    assert conversation_of(storage, phone).section == "hospice"
    assert len(storage.callback_requests()) == 1


@pytest.mark.sqlite_only
def test_the_per_request_reads_leave_no_snapshot_open(storage: Storage, database_url: str) -> None:
    """Pooled connections live on between requests: a read that kept its SQLite snapshot open would
    hold back every WAL checkpoint until that worker's next request (an idle worker: for ever)."""
    import sqlite3

    phone = "+15551230005"
    storage.record_text_turn("sms:SM-ckpt", phone, "", TextChanges(conversation=StoredConversation("en", "hospice", 1)))
    storage.remember_choices(phone, "en", False, "hospice", dt.datetime.now(dt.UTC))
    assert conversation_of(storage, phone).section == "hospice"
    assert storage.recall_choices(phone, dt.datetime.now(dt.UTC), dt.timedelta(days=7)) is not None
    other = sqlite3.connect(database_url.split("///", 1)[1], timeout=0)
    try:
        busy, _frames, _done = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        other.close()
    assert busy == 0, "a reader still holds a snapshot"


@pytest.mark.parametrize("empty_database_url", ["sqlite", "postgresql"], indirect=True)
def test_migration_0005_keeps_one_row_per_recording(empty_database_url: str) -> None:
    """Messages listed twice before migration 0005 are listed once after it (done if either copy was)."""
    storage = Storage(empty_database_url, "k")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with storage.durable() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0004")
        at = dt.datetime(2026, 11, 25, 18, 0, tzinfo=dt.UTC)
        row = {"created_at": at, "channel": "voice", "kind": "voicemail", "topic": "", "lang": "en", "note": ""}
        copies = [
            ("RE1", "open", None),
            ("RE1", "open", None),
            ("RE2", "open", None),
            ("RE2", "done", "nurse.ana"),
            ("RE3", "open", None),
            (None, "open", None),
            (None, "open", None),
        ]
        with storage.durable() as connection:
            for number, (sid, status, by) in enumerate(copies):
                values = {**row, "recording_sid": sid, "status": status, "done_by": by, "dedupe_key": f"k{number}"}
                connection.execute(sa.insert(callback_requests).values(**values, urgent=False))
        storage.migrate()
        with storage.engine.connect() as connection:
            kept = connection.execute(
                sa.select(
                    callback_requests.c.recording_sid, callback_requests.c.status, callback_requests.c.done_by
                ).order_by(callback_requests.c.id)
            ).all()
        assert [tuple(r) for r in kept] == [
            ("RE1", "open", None),
            ("RE2", "done", "nurse.ana"),
            ("RE3", "open", None),
            (None, "open", None),
            (None, "open", None),
        ]
    finally:
        storage.dispose()


def test_the_driver_path_refuses_a_column_left_to_a_python_default(storage: Storage) -> None:
    """ivr/storage/driver.py runs no execution context, so a column SQLAlchemy would fill in from its Python
    default must be given: left out, the statement is refused rather than sent with NULL."""
    from ivr.storage.schema import sms_sessions

    with pytest.raises(ValueError, match="next_part, section"), driver_transaction(storage.engine) as driver:
        driver.execute(sms_sessions.insert(), {"phone_hash": "x", "lang": "en", "updated_at": dt.datetime.now(dt.UTC)})
    with storage.engine.connect() as connection:  # and nothing was written
        assert connection.execute(sa.select(sa.func.count()).select_from(sms_sessions)).scalar() == 0
