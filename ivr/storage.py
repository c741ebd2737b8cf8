"""Everything the line keeps, behind one small module: SQLite by default, PostgreSQL by DATABASE_URL.

The schema is created and migrated by Alembic when the app starts (ivr/migrations). Phone numbers
are health-related data: they are stored in the clear only where staff need to call someone back
(a call-back request); everywhere else the line keeps a keyed hash (HMAC-SHA256 with SECRET_KEY).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

metadata = sa.MetaData()

opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("phone_hash", sa.String(64), primary_key=True),
    sa.Column("opted_out", sa.Boolean, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

callback_requests = sa.Table(
    "callback_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),  # voice | sms
    sa.Column("kind", sa.String(16), nullable=False),  # voicemail | callback
    sa.Column("phone", sa.String(64), nullable=True),
    sa.Column("topic", sa.String(32), nullable=False, default=""),
    sa.Column("lang", sa.String(8), nullable=False, default="en"),
    sa.Column("urgent", sa.Boolean, nullable=False, default=False),
    sa.Column("recording_sid", sa.String(64), nullable=True),
    sa.Column("recording_url", sa.String(512), nullable=True),
    sa.Column("recording_seconds", sa.Integer, nullable=True),
    sa.Column("note", sa.String(64), nullable=False, default=""),
    sa.Column("status", sa.String(8), nullable=False, default="open"),  # open | done
    sa.Column("done_by", sa.String(64), nullable=True),
    sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("dedupe_key", sa.String(80), nullable=True, unique=True),
)

sms_sessions = sa.Table(
    "sms_sessions",
    metadata,
    sa.Column("phone_hash", sa.String(64), primary_key=True),
    sa.Column("lang", sa.String(8), nullable=False),
    sa.Column("section", sa.String(32), nullable=False, default=""),
    sa.Column("next_part", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

preferences = sa.Table(
    "preferences",
    metadata,
    sa.Column("phone_hash", sa.String(64), primary_key=True),
    sa.Column("lang", sa.String(8), nullable=False),
    sa.Column("slow", sa.Boolean, nullable=False, default=False),
    sa.Column("last_section", sa.String(32), nullable=False, default=""),
    sa.Column("last_heard_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

usage_daily = sa.Table(
    "usage_daily",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("channel", sa.String(8), primary_key=True),
    sa.Column("section", sa.String(32), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False, default=0),
)

staff_users = sa.Table(
    "staff_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_hash", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("key", sa.String(96), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # The answer given the first time (migration 0002), so a retried message gets the same one.
    sa.Column("outcome", sa.String(64), nullable=True),
)

staff_acceptances = sa.Table(
    "staff_acceptances",
    metadata,
    sa.Column("call_sid", sa.String(64), primary_key=True),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
)


def utcnow() -> dt.datetime:
    """The current time in UTC, the only time zone the database sees."""
    return dt.datetime.now(dt.UTC)


def as_utc(at: dt.datetime | None) -> dt.datetime:
    """`at` (an aware datetime; now when None) in UTC: SQLite keeps no time zone, so every stored time is UTC."""
    return (at or utcnow()).astimezone(dt.UTC)


def from_db(at: dt.datetime | None) -> dt.datetime | None:
    """A time read back from the database, made aware (SQLite returns naive UTC times)."""
    if at is None:
        return None
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets several app processes read while one writes; FULL sync makes an answered write
    # survive a crash of the process or the machine; busy_timeout waits out a short lock.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode, once: the mode is kept in the file itself.

    Switching needs an exclusive lock that SQLite takes without waiting (busy_timeout does not
    apply), so processes opening a brand-new file together retry for a moment.
    """
    for attempt in range(100):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == 99:
                raise
            time.sleep(0.05)


def _sqlite_commit_without_fsync(dbapi_connection: Any, _record: Any) -> None:
    # In WAL mode, NORMAL keeps the database consistent through a crash; only the newest
    # commits may be lost to a power cut, until the next checkpoint or FULL commit syncs them.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@dataclass(frozen=True)
class TextSession:
    """What the text line remembers of one number: its language ("" before the first choice), the
    section and part that MORE continues with, and whether it opted out of texts."""

    lang: str = ""
    section: str = ""
    next_part: int = 0
    opted_out: bool = False


@dataclass(frozen=True)
class CallbackAsk:
    """A call-back request from a text: the topic the person was reading, their language, urgency."""

    topic: str
    lang: str
    urgent: bool = False
    opted_out: bool = False


@dataclass(frozen=True)
class TextChanges:
    """What one incoming text changes: opt-out (True) or opt-in (False), the session, a call-back, a count."""

    opted_out: bool | None = None
    session: TextSession | None = None
    callback: CallbackAsk | None = None
    count_section: str = ""


class SqliteWriterQueue:
    """One writer at a time on a SQLite file, across processes, queued by the kernel.

    SQLite lets one connection write at a time; the others wait in its busy handler, which sleeps
    1, 2, 5, 10, then 25 and more milliseconds between tries. With several workers writing, those
    sleeps became the line's slowest answers. Here a writer first takes an exclusive flock() on a
    file beside the database, which wakes the next writer the moment the last one is done. It is
    taken at a connection's first INSERT, UPDATE or DELETE and let go when the connection goes back
    to its pool (after COMMIT or ROLLBACK). Readers never wait for it (WAL).
    """

    #: Statements that take SQLite's write lock (BEGIN IMMEDIATE: a migration), so the queue comes first.
    _WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN IMMEDIATE")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.RLock()  # threads of one process share the flock: queue them here
        self._depth = 0

    def attach(self, engine: Engine) -> None:
        """Make `engine`'s writes take their turn."""
        sa.event.listen(engine, "before_cursor_execute", self._before_statement)
        sa.event.listen(engine.pool, "checkin", self._connection_returned)

    def _before_statement(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if conn.info.get("sqlite_writer") or not statement.lstrip()[:16].upper().startswith(self._WRITES):
            return
        self._acquire()
        conn.info["sqlite_writer"] = True

    def _connection_returned(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop("sqlite_writer", False):
            self._release()

    def _acquire(self) -> None:
        self._lock.acquire()
        if self._depth == 0:
            if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._depth += 1

    def _release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()


class Storage:
    """The line's database, opened once per process."""

    def __init__(self, database_url: str, secret_key: str) -> None:
        self.url = database_url
        self._secret = secret_key.encode()
        # preserve_rowcount: "was this row inserted?" is read from INSERT ... ON CONFLICT DO NOTHING's
        # rowcount, which psycopg reports as -1 unless SQLAlchemy keeps it before closing the cursor.
        options: dict[str, Any] = {"future": True, "execution_options": {"preserve_rowcount": True}}
        path = ""
        if database_url.startswith("sqlite"):
            path = database_url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        else:
            # A server connection can die (restart, failover): test it when taken from the pool.
            # A SQLite file cannot go away like that, so it skips that extra round trip.
            options.update(pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=3)
        self.engine: Engine = sa.create_engine(database_url, **options)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.counting_engine: Engine = self._make_counting_engine(database_url, options)
        self._counting_upsert: Any = None
        self._statements: dict[str, Any] = {}
        if self.engine.dialect.name == "sqlite" and path and path != ":memory:":
            writers = SqliteWriterQueue(f"{path}-writers")
            writers.attach(self.engine)
            writers.attach(self.counting_engine)

    def _make_counting_engine(self, database_url: str, options: dict[str, Any]) -> Engine:
        """Connections for usage counts only, whose commits do not wait for the disk.

        A count is written on every section heard; waiting for an fsync each time would make the
        disk the line's speed limit. A crash or power cut may lose the last few counts (never
        corrupt them); everything a caller leaves goes through `engine`, which always waits.
        A count is one statement, so it runs in autocommit: one round trip, no BEGIN and COMMIT,
        and no liveness ping (a dead connection costs one count, and is replaced).
        """
        counting = {**options, "isolation_level": "AUTOCOMMIT", "pool_pre_ping": False}
        if database_url.startswith("sqlite"):
            engine = sa.create_engine(database_url, **counting)
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            sa.event.listen(engine, "connect", _sqlite_commit_without_fsync)
            return engine
        counting.update(pool_size=1, max_overflow=4)
        return sa.create_engine(database_url, connect_args={"options": "-c synchronous_commit=off"}, **counting)

    def _count_statement(self) -> Any:
        """The usage upsert, built once: SQLAlchemy then reuses its compiled form without recomputing its key."""
        if self._counting_upsert is None:
            self._counting_upsert = (
                self._insert(usage_daily)
                .values(
                    day=sa.bindparam("use_day"),
                    channel=sa.bindparam("use_channel"),
                    section=sa.bindparam("use_section"),
                    count=1,
                )
                .on_conflict_do_update(
                    index_elements=["day", "channel", "section"], set_={"count": usage_daily.c.count + 1}
                )
            )
        return self._counting_upsert

    # -- schema ---------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            # Several processes may start at once: one migrates, the others wait, then find nothing to do.
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(7212026)"))
            elif connection.dialect.name == "sqlite":
                # SQLite's driver would start the transaction only at the first write, after Alembic
                # has read the schema version; take the write lock before that read instead.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        # The process that migrated may fork workers next (gunicorn's preload): hand none of
        # these connections down to them.
        self.dispose()

    def dispose(self) -> None:
        """Close every pooled connection (they reopen on the next use)."""
        self.engine.dispose()
        self.counting_engine.dispose()

    def after_fork(self) -> None:
        """Call in a freshly forked worker: drop the parent's pooled connections without closing them."""
        self.engine.dispose(close=False)
        self.counting_engine.dispose(close=False)

    # -- privacy --------------------------------------------------------------------------------

    def phone_hash(self, phone: str) -> str:
        """A keyed hash of a phone number: lets the line recognise a number without storing it."""
        canonical = "".join(c for c in phone if c.isdigit() or c == "+")
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    # -- idempotency ----------------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        """An INSERT that knows its database's ON CONFLICT clause (SQLite and PostgreSQL spell it alike)."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _prebuilt(self, name: str, build: Any) -> Any:
        """The statement `build()` makes, built once per Storage and then run with parameters.

        SQLAlchemy works out a cache key for every new statement object; for a statement built on
        every request that costs about as much as running it. A statement built once, with its values
        passed at execution, skips that: the line's per-request queries use this.
        """
        statement = self._statements.get(name)
        if statement is None:
            statement = self._statements.setdefault(name, build())
        return statement

    def _upsert(self, table: sa.Table, key: str, updated: tuple[str, ...]) -> Any:
        """INSERT ... ON CONFLICT (key) DO UPDATE SET each of `updated` to the new row's value, built once."""

        def build() -> Any:
            insert = self._insert(table)
            return insert.on_conflict_do_update(index_elements=[key], set_={c: insert.excluded[c] for c in updated})

        return self._prebuilt(f"upsert:{table.name}:{','.join(updated)}", build)

    def _insert_ignoring_duplicates(self, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert a row unless its unique key is already there; True when this call inserted it."""
        statement = self._prebuilt(f"insert-new:{table.name}", lambda: self._insert(table).on_conflict_do_nothing())
        with self.engine.begin() as connection:
            return connection.execute(statement, values).rowcount == 1

    def first_time(self, key: str) -> bool:
        """True the first time `key` (e.g. a Twilio MessageSid) is seen; False on every retry."""
        return self._insert_ignoring_duplicates(processed_events, {"key": key[:96], "created_at": utcnow()})

    # -- voice messages and call-backs ----------------------------------------------------------

    def open_voicemail(self, call_sid: str, phone: str, topic: str, lang: str, at: dt.datetime | None = None) -> None:
        """A caller is about to leave a message: keep a call-back request now, so a hang-up loses nothing.

        A retry of the same request, or a second try after an empty recording, reuses the call's
        request that has no recording yet; a caller who leaves a second message gets a second request.
        """
        base = f"voicemail:{call_sid}"
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(callback_requests.c.recording_sid).where(_voicemail_keys(call_sid))
            ).all()
        if any(row.recording_sid is None for row in rows):
            return
        self._insert_ignoring_duplicates(
            callback_requests,
            {
                "created_at": as_utc(at),
                "channel": "voice",
                "kind": "voicemail",
                "phone": phone or None,
                "topic": topic,
                "lang": lang,
                "urgent": False,
                "note": "no_recording",
                "status": "open",
                "dedupe_key": base if not rows else f"{base}:{len(rows) + 1}",
            },
        )

    def attach_recording(
        self,
        call_sid: str,
        recording_sid: str,
        url: str,
        seconds: int,
        *,
        phone: str = "",
        topic: str = "",
        lang: str = "en",
    ) -> bool:
        """Add a recording to the call's newest message that has none; True when it is now kept.

        The same recording reported again (Record's action and its status callback, or a retry)
        changes nothing. A recording with no request to go to (which should not happen) gets a
        request of its own, from what is known, rather than being dropped.
        """
        if not recording_sid:
            return False
        values = {"recording_sid": recording_sid, "recording_url": url, "recording_seconds": seconds, "note": ""}
        with self.engine.begin() as connection:
            known = sa.select(callback_requests.c.id).where(callback_requests.c.recording_sid == recording_sid)
            if connection.execute(known).first() is not None:
                return True
            waiting = connection.execute(
                sa.select(callback_requests.c.id)
                .where(_voicemail_keys(call_sid), callback_requests.c.recording_sid.is_(None))
                .order_by(callback_requests.c.id.desc())
            ).first()
            if waiting is not None:
                updated = connection.execute(
                    callback_requests.update()
                    .where(callback_requests.c.id == waiting.id, callback_requests.c.recording_sid.is_(None))
                    .values(**values)
                )
                if updated.rowcount:
                    return True
        self._insert_ignoring_duplicates(
            callback_requests,
            {
                "created_at": utcnow(),
                "channel": "voice",
                "kind": "voicemail",
                "phone": phone or None,
                "topic": topic,
                "lang": lang,
                "urgent": False,
                "status": "open",
                "dedupe_key": f"recording:{recording_sid}",
                **values,
            },
        )
        return True

    def callback_requests(self, status: str | None = "open") -> list[dict[str, Any]]:
        """Call-back requests, urgent first, newest first; all of them when `status` is None."""
        query = sa.select(callback_requests)
        if status:
            query = query.where(callback_requests.c.status == status)
        query = query.order_by(
            callback_requests.c.urgent.desc(), callback_requests.c.created_at.desc(), callback_requests.c.id.desc()
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def callback_request(self, request_id: int) -> dict[str, Any] | None:
        """One call-back request by id, or None."""
        query = sa.select(callback_requests).where(callback_requests.c.id == request_id)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return dict(row._mapping) if row else None

    def done_requests(self, limit: int = 20) -> list[dict[str, Any]]:
        """The call-back requests most recently marked done, newest first."""
        query = (
            sa.select(callback_requests)
            .where(callback_requests.c.status == "done")
            .order_by(callback_requests.c.done_at.desc(), callback_requests.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def mark_done(self, request_id: int, by: str, at: dt.datetime | None = None) -> bool:
        """Staff member `by` dealt with an open request; True when this call changed it."""
        with self.engine.begin() as connection:
            result = connection.execute(
                callback_requests.update()
                .where(callback_requests.c.id == request_id, callback_requests.c.status == "open")
                .values(status="done", done_by=by[:64], done_at=as_utc(at))
            )
            return result.rowcount == 1

    def reopen(self, request_id: int) -> bool:
        """Put a request marked done back in the queue; True when this call changed it."""
        with self.engine.begin() as connection:
            result = connection.execute(
                callback_requests.update()
                .where(callback_requests.c.id == request_id, callback_requests.c.status == "done")
                .values(status="open", done_by=None, done_at=None)
            )
            return result.rowcount == 1

    # -- staff transfers ------------------------------------------------------------------------

    def accept_staff_call(self, call_sid: str) -> None:
        """A staff member pressed 1 to take the caller; `call_sid` is the staff member's leg of the call."""
        if call_sid:
            self._insert_ignoring_duplicates(staff_acceptances, {"call_sid": call_sid, "accepted_at": utcnow()})

    def staff_accepted(self, call_sid: str) -> bool:
        """Whether the staff member on leg `call_sid` pressed 1 to take the caller."""
        if not call_sid:
            return False
        query = sa.select(staff_acceptances.c.call_sid).where(staff_acceptances.c.call_sid == call_sid)
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    # -- opt-outs -------------------------------------------------------------------------------

    def is_opted_out(self, phone: str) -> bool:
        """Whether `phone` asked (STOP) not to get texts, and has not opted back in."""
        query = sa.select(opt_outs.c.opted_out).where(opt_outs.c.phone_hash == self.phone_hash(phone))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return bool(row and row.opted_out)

    # -- usage ----------------------------------------------------------------------------------

    def count_use(self, channel: str, section: str, day: dt.date | None = None) -> None:
        """Add one to the number of times `section` was heard or texted today; no phone number kept."""
        values = {"use_day": day or utcnow().date(), "use_channel": channel, "use_section": section}
        try:
            with self.counting_engine.connect() as connection:
                connection.execute(self._count_statement(), values)
        except sa.exc.SQLAlchemyError as error:
            # Counting is for the staff usage panel; a caller must still hear the section.
            log.warning("Could not count a use: %s", type(error).__name__)

    def usage(self, since: dt.date) -> list[dict[str, Any]]:
        """Uses per day, channel and section from `since` on, newest day first."""
        query = (
            sa.select(usage_daily)
            .where(usage_daily.c.day >= since)
            .order_by(usage_daily.c.day.desc(), usage_daily.c.channel, usage_daily.c.section)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # -- the text line --------------------------------------------------------------------------

    def text_session(self, phone: str) -> TextSession:
        """What the text line remembers of `phone` (an empty session for a number never seen)."""
        key = {"key": self.phone_hash(phone)}
        session_query = self._prebuilt(
            "text-session", lambda: sa.select(sms_sessions).where(sms_sessions.c.phone_hash == sa.bindparam("key"))
        )
        opted_query = self._prebuilt(
            "opted-out", lambda: sa.select(opt_outs.c.opted_out).where(opt_outs.c.phone_hash == sa.bindparam("key"))
        )
        with self.engine.connect() as connection:
            session = connection.execute(session_query, key).first()
            opted = connection.execute(opted_query, key).first()
        return TextSession(
            lang=session.lang if session else "",
            section=session.section if session else "",
            next_part=session.next_part if session else 0,
            opted_out=bool(opted and opted.opted_out),
        )

    def set_opt_out(self, phone: str, opted_out: bool) -> None:
        """Record STOP (`opted_out` True) or START (False) from `phone`; only a hash of the number is kept."""
        with self.engine.begin() as connection:
            self._set_opt_out(connection, phone, opted_out)

    def save_text_session(self, phone: str, lang: str, section: str = "", next_part: int = 0) -> None:
        """Remember the language of `phone` and the section and part MORE continues with."""
        with self.engine.begin() as connection:
            self._save_text_session(connection, phone, lang, section, next_part)

    def request_callback(
        self, phone: str, ask: CallbackAsk, channel: str = "sms", dedupe_key: str | None = None
    ) -> bool:
        """Keep a call-back request for staff, once per `dedupe_key`; True when this call added it."""
        with self.engine.begin() as connection:
            return self._request_callback(connection, phone, ask, channel, dedupe_key)

    def text_outcome(self, event_key: str) -> str | None:
        """The answer token stored for a message already handled ("" if none was stored), or None if new."""
        query = sa.select(processed_events.c.outcome).where(processed_events.c.key == event_key[:96])
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (row.outcome or "")

    def record_text_turn(self, event_key: str, phone: str, outcome: str, changes: TextChanges) -> str | None:
        """Store everything one incoming text changes, all or nothing, once per `event_key` (the MessageSid).

        Returns None when this call stored it. For a message already handled (Twilio retried it, or
        delivered it twice at once) nothing is stored again, and the answer token stored the first
        time is returned ("" if there was none), so the retry gets the same answer.
        """
        with self.engine.begin() as connection:
            if event_key:
                statement = self._prebuilt(
                    "insert-new:processed_events", lambda: self._insert(processed_events).on_conflict_do_nothing()
                )
                values = {"key": event_key[:96], "created_at": utcnow(), "outcome": outcome[:64]}
                if connection.execute(statement, values).rowcount != 1:
                    query = sa.select(processed_events.c.outcome).where(processed_events.c.key == event_key[:96])
                    row = connection.execute(query).first()
                    return (row.outcome or "") if row else ""
            if changes.opted_out is not None:
                self._set_opt_out(connection, phone, changes.opted_out)
            if changes.session is not None:
                session = changes.session
                self._save_text_session(connection, phone, session.lang, session.section, session.next_part)
            if changes.callback is not None:
                self._request_callback(connection, phone, changes.callback, "sms", event_key or None)
        if changes.count_section:
            # Counting is for the staff usage panel only: after the turn is safely stored.
            self.count_use("sms", changes.count_section)
        return None

    def _set_opt_out(self, connection: Any, phone: str, opted_out: bool) -> None:
        values = {"phone_hash": self.phone_hash(phone), "opted_out": opted_out, "changed_at": utcnow()}
        connection.execute(self._upsert(opt_outs, "phone_hash", ("opted_out", "changed_at")), values)

    def _save_text_session(self, connection: Any, phone: str, lang: str, section: str, next_part: int) -> None:
        values = {
            "phone_hash": self.phone_hash(phone),
            "lang": lang,
            "section": section,
            "next_part": next_part,
            "updated_at": utcnow(),
        }
        updated = tuple(k for k in values if k != "phone_hash")
        connection.execute(self._upsert(sms_sessions, "phone_hash", updated), values)

    def _request_callback(
        self, connection: Any, phone: str, ask: CallbackAsk, channel: str, dedupe_key: str | None
    ) -> bool:
        # Notes are codes for the staff page, never the words someone texted.
        notes = [note for note, flag in (("urgent_words", ask.urgent), ("texts_opted_out", ask.opted_out)) if flag]
        values = {
            "created_at": utcnow(),
            "channel": channel,
            "kind": "callback",
            "phone": phone or None,
            "topic": ask.topic,
            "lang": ask.lang,
            "urgent": ask.urgent,
            "note": ",".join(notes),
            "status": "open",
            "dedupe_key": dedupe_key[:80] if dedupe_key else None,
        }
        statement = self._insert(callback_requests).values(**values).on_conflict_do_nothing()
        return connection.execute(statement).rowcount == 1
    # -- remembered choices (phone line) ----------------------------------------------------------

    def recall_choices(
        self, phone: str, now: dt.datetime, keep_last_section_for: dt.timedelta
    ) -> dict[str, Any] | None:
        """What the line saved about `phone` (lang, slow, last_section, last_heard_at), or None.

        A last section older than `keep_last_section_for` is no longer needed, so it is erased here.
        """
        key = self.phone_hash(phone)
        query = self._prebuilt(
            "recall", lambda: sa.select(preferences).where(preferences.c.phone_hash == sa.bindparam("key"))
        )
        with self.engine.connect() as connection:
            row = connection.execute(query, {"key": key}).first()
        if row is None:
            return None
        saved = dict(row._mapping)
        heard_at = _aware(saved["last_heard_at"])
        saved["last_heard_at"] = heard_at
        if saved["last_section"] and (heard_at is None or now - heard_at > keep_last_section_for):
            with self.engine.begin() as connection:
                connection.execute(
                    preferences.update()
                    .where(preferences.c.phone_hash == key)
                    .values(last_section="", last_heard_at=None)
                )
            saved.update(last_section="", last_heard_at=None)
        return saved

    def remember_choices(self, phone: str, lang: str, slow: bool, section: str, now: dt.datetime) -> None:
        """Save `phone`'s language and speed; with `section`, also that they heard it at `now`."""
        values: dict[str, Any] = {"lang": lang, "slow": slow, "updated_at": now}
        if section:
            values.update(last_section=section, last_heard_at=now)
        statement = self._upsert(preferences, "phone_hash", tuple(values))
        with self.engine.begin() as connection:
            connection.execute(statement, {"phone_hash": self.phone_hash(phone), "last_section": "", **values})

    def forget_choices(self, phone: str) -> None:
        """Erase everything the line saved about `phone`'s choices."""
        with self.engine.begin() as connection:
            connection.execute(preferences.delete().where(preferences.c.phone_hash == self.phone_hash(phone)))

    # -- staff accounts -------------------------------------------------------------------------

    def key_hash(self, kind: str, value: str) -> str:
        """A keyed hash of `value` (a user name, an IP address): countable, but not readable."""
        return hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def create_staff_user(self, username: str, password_hash: str) -> bool:
        """Add a staff account; False when the name is taken."""
        values = {"username": username, "password_hash": password_hash, "created_at": utcnow()}
        return self._insert_ignoring_duplicates(staff_users, values)

    def set_staff_password(self, username: str, password_hash: str) -> bool:
        """Change a staff member's password hash; False when there is no such account."""
        with self.engine.begin() as connection:
            result = connection.execute(
                staff_users.update().where(staff_users.c.username == username).values(password_hash=password_hash)
            )
            return result.rowcount == 1

    def staff_user(self, username: str) -> dict[str, Any] | None:
        """The staff account called `username`, or None."""
        query = sa.select(staff_users).where(staff_users.c.username == username)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return dict(row._mapping) if row else None

    def record_login_failure(self, key_hashes: list[str], at: dt.datetime) -> None:
        """Note one failed sign-in against each key (user name, address); forget failures older than a day."""
        at = as_utc(at)
        with self.engine.begin() as connection:
            connection.execute(login_attempts.delete().where(login_attempts.c.at < at - dt.timedelta(days=1)))
            connection.execute(login_attempts.insert(), [{"key_hash": key, "at": at} for key in key_hashes])

    def login_failures(self, key_hash: str, since: dt.datetime) -> int:
        """Failed sign-ins against `key_hash` since `since`."""
        query = (
            sa.select(sa.func.count())
            .select_from(login_attempts)
            .where(login_attempts.c.key_hash == key_hash, login_attempts.c.at >= as_utc(since))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def clear_login_failures(self, key_hash: str) -> None:
        """Forget the failed sign-ins against `key_hash` (after a successful one)."""
        with self.engine.begin() as connection:
            connection.execute(login_attempts.delete().where(login_attempts.c.key_hash == key_hash))


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


def _voicemail_keys(call_sid: str) -> sa.ColumnElement[bool]:
    """Matches the voice-message requests of call `call_sid` (voicemail:<sid>, voicemail:<sid>:2, ...)."""
    base = f"voicemail:{call_sid}"
    return sa.or_(callback_requests.c.dedupe_key == base, callback_requests.c.dedupe_key.startswith(f"{base}:"))
