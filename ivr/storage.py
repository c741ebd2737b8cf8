"""Everything the line keeps, behind one small module: SQLite by default, PostgreSQL by DATABASE_URL.

The schema is created and migrated by Alembic when the app starts (ivr/migrations). Phone numbers
are health-related data: they are stored in the clear only where staff need to call someone back
(a call-back request); everywhere else the line keeps a keyed hash (HMAC-SHA256 with SECRET_KEY).
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import functools
import hashlib
import hmac
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

T = TypeVar("T")

_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


def process_generation() -> int:
    """A number that changes in every forked child: "am I still the process that opened this?"
    without os.getpid(), a system call each time (glibc no longer caches it)."""
    return _forks


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: What a phone number's hash leaves out (ASCII numbers; see Storage.phone_hash): all but digits and "+".
_NOT_ASCII_PHONE_CHARACTER = re.compile(r"[^0-9+]")

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
    # Migration 0003: the urgent kind (emergency, crisis, distress) and, for texts, the words sealed.
    sa.Column("urgent_kind", sa.String(16), nullable=True),
    sa.Column("words", sa.Text, nullable=True),
)

#: Alerts to STAFF_ALERT_NUMBERS waiting to be sent (ivr/alerts.py): written in the same transaction as
#: the urgent request, so no alert is lost to a failing API or a restart. They hold no patient data.
staff_alerts = sa.Table(
    "staff_alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
)

#: An alert claimed by a process that died before sending is sent by another after this long.
ALERT_CLAIM_SECONDS = 120

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


def _voice_message_row(phone: str, topic: str, lang: str, at: dt.datetime) -> dict[str, Any]:
    """The columns every voice message's call-back request starts with."""
    return {
        "created_at": at,
        "channel": "voice",
        "kind": "voicemail",
        "phone": phone or None,
        "topic": topic,
        "lang": lang,
        "urgent": False,
        "status": "open",
    }


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
    #: The urgent kind (emergency, crisis, distress) when `urgent`.
    kind: str = ""
    #: The words texted, sealed (Storage.seal), so a nurse can judge the request; "" for none.
    words: str = ""


@dataclass(frozen=True)
class Use:
    """One section heard (channel "voice") or texted ("sms") on `day`, for the staff usage panel.
    `once_key` (a call step's key, see ivr/voice.py `retry_key`) makes a retried step count once."""

    day: dt.date
    channel: str
    section: str
    once_key: str = ""
    at: dt.datetime | None = None

    @classmethod
    def when(cls, channel: str, section: str, once_key: str = "", at: dt.datetime | None = None) -> Use:
        """A use at `at` (default now), counted on that moment's day in UTC."""
        moment = as_utc(at)
        return cls(moment.date(), channel, section, once_key, moment)


@dataclass(frozen=True)
class TextChanges:
    """What one incoming text changes: opt-out (True) or opt-in (False), the session, a call-back.
    (Its usage count goes through ivr/usage.py, once the turn is stored.)"""

    opted_out: bool | None = None
    session: TextSession | None = None
    callback: CallbackAsk | None = None

    def to_json(self) -> dict[str, Any]:
        """The changes as plain JSON values (for the spool, ivr/spool.py)."""
        return {
            "opted_out": self.opted_out,
            "session": None
            if self.session is None
            else [self.session.lang, self.session.section, self.session.next_part],
            "callback": None
            if self.callback is None
            else [
                self.callback.topic,
                self.callback.lang,
                self.callback.urgent,
                self.callback.opted_out,
                self.callback.kind,
                self.callback.words,
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextChanges:
        """Changes written by `to_json`."""
        session, callback = data.get("session"), data.get("callback")
        return cls(
            opted_out=data.get("opted_out"),
            session=None if session is None else TextSession(str(session[0]), str(session[1]), int(session[2])),
            callback=None
            if callback is None
            else CallbackAsk(
                str(callback[0]),
                str(callback[1]),
                bool(callback[2]),
                bool(callback[3]),
                *(str(value) for value in callback[4:6]),
            ),
        )


class HotStatement:
    """One statement the line runs on nearly every request, compiled once for one database and sent
    straight to the driver's cursor.

    SQLAlchemy's `Connection.execute` spends 20-50 µs of Python per statement (events, cache keys,
    result objects) around the 5 µs the driver takes; under load that was most of a text's cost.
    These few statements are still written with SQLAlchemy (so each database gets its own SQL, and
    nothing is spelled by hand), compiled once, and their values and results go through the same
    type conversions SQLAlchemy applies (dates as SQLite stores them, booleans as SQLite returns them).
    """

    __slots__ = ("_binds", "_positional", "_results", "sql")

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self._positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if self._positional else list(compiled.binds)
        self._binds: list[tuple[str, Any, bool, Any]] = []
        for name in names:
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self._binds.append((name, process, bool(bind.required), bind.value))
        columns = list(statement.selected_columns) if isinstance(statement, sa.Select) else []
        self._results = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]

    def parameters(self, values: dict[str, Any]) -> Any:
        """`values` by name as the driver takes them: converted, in order (SQLite) or by name (psycopg)."""
        converted = []
        for name, process, required, fixed in self._binds:
            value = values[name] if required else fixed
            converted.append(process(value) if process is not None else value)
        if self._positional:
            return converted
        return {name: value for (name, *_), value in zip(self._binds, converted, strict=True)}

    def fetch_one(self, cursor: Any, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """Run this SELECT on a driver `cursor`: its first row, converted, or None."""
        cursor.execute(self.sql, self.parameters(values))
        # Read to the end, so no statement is left half-read on a long-lived cursor (on SQLite that
        # would keep a read snapshot open and hold back WAL checkpoints; see the storage tests).
        rows = cursor.fetchall()
        return self.row(rows[0] if rows else None)

    def row(self, raw: Any) -> tuple[Any, ...] | None:
        """A fetched row with SQLAlchemy's result conversions applied (None stays None)."""
        if raw is None:
            return None
        pairs = zip(self._results, raw, strict=True)
        return tuple(value if process is None else process(value) for process, value in pairs)


class HotCursor:
    """A driver cursor on a thread's hot connection, running `HotStatement`s (see `Storage._hot_once`)."""

    __slots__ = ("_engine", "_queue", "_trace", "cursor", "wrote")

    def __init__(
        self, cursor: Any, engine: Engine, queue: SqliteWriterQueue | None, trace: Callable[[Engine, str], None] | None
    ) -> None:
        self.cursor = cursor
        self._engine = engine
        self._queue = queue
        self._trace = trace
        self.wrote = False

    def execute(self, statement: HotStatement, values: dict[str, Any], write: bool = False) -> int:
        """Run `statement` with `values`; the number of rows it changed (for a write)."""
        if write and not self.wrote:
            if self._queue is not None:
                self._queue.acquire()  # SQLite: take the writers' turn before the first write
            self.wrote = True
        if self._trace is not None:
            self._trace(self._engine, statement.sql)
        self.cursor.execute(statement.sql, statement.parameters(values))
        return int(self.cursor.rowcount)

    def one(self, statement: HotStatement, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row `statement` selects, converted, or None."""
        if self._trace is not None:
            self._trace(self._engine, statement.sql)
        return statement.fetch_one(self.cursor, values)


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
        self._process = -1
        self._lock = threading.RLock()  # threads of one process share the flock: queue them here
        self._depth = 0

    def attach(self, engine: Engine) -> None:
        """Make `engine`'s writes take their turn."""
        sa.event.listen(engine, "before_cursor_execute", self._before_statement)
        sa.event.listen(engine.pool, "checkin", self._connection_returned)

    def _before_statement(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if conn.info.get("sqlite_writer") or not statement.lstrip()[:16].upper().startswith(self._WRITES):
            return
        self.acquire()
        conn.info["sqlite_writer"] = True

    def _connection_returned(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop("sqlite_writer", False):
            self.release()

    #: The longest a writer waits for its turn. App writers hold it for milliseconds; a turn this late
    #: means the database is held by someone else (a stuck writer, another tool), and the line then
    #: answers without it (ivr/resilience.py) rather than keeping a caller past Twilio's 15 s.
    WAIT_SECONDS = 3.0

    def acquire(self) -> None:
        """Wait for the writers' turn (at most WAIT_SECONDS); `release` gives it back."""
        if not self._lock.acquire(timeout=self.WAIT_SECONDS):
            raise sqlite3.OperationalError("database is locked (waiting for the writer queue)")
        try:
            if self._depth == 0:
                if self._fd is None or self._process != process_generation():  # a forked worker opens its own
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                    self._process = process_generation()
                self._flock_within(self._fd, self.WAIT_SECONDS)
        except BaseException:
            self._lock.release()
            raise
        self._depth += 1

    @staticmethod
    def _flock_within(descriptor: int, seconds: float) -> None:
        """flock(LOCK_EX), giving up after `seconds` (the kernel's wait has no timeout, so: try, then poll)."""
        deadline = time.monotonic() + seconds
        pause = 0.0005
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError("database is locked (waiting for the writer queue)") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.005)

    def release(self) -> None:
        """Give the writers' turn back (once per `acquire`)."""
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()


class Storage:
    """The line's database, opened once per process."""

    def __init__(self, database_url: str, secret_key: str) -> None:
        self.url = database_url
        self._secret = secret_key.encode()
        self._phone_hmac = hmac.new(self._secret, digestmod=hashlib.sha256)
        # preserve_rowcount: "was this row inserted?" is read from INSERT ... ON CONFLICT DO NOTHING's
        # rowcount, which psycopg reports as -1 unless SQLAlchemy keeps it before closing the cursor.
        # hide_parameters: neither log lines nor error messages may quote a phone number.
        options: dict[str, Any] = {
            "future": True,
            "execution_options": {"preserve_rowcount": True},
            "hide_parameters": True,
        }
        path = ""
        if database_url.startswith("sqlite"):
            path = database_url.split("///", 1)[-1]
            if path and path != ":memory:":
                try:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    # The line still starts (menus need no database); storage is retried later.
                    log.error("Cannot create the database folder: %s", type(error).__name__)
        else:
            # A server connection can die (restart, failover): test it when taken from the pool.
            # A SQLite file cannot go away like that, so it skips that extra round trip.
            options.update(pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=3)
            # A database host that does not answer, or a row locked by someone else, must not hold a caller
            # past Twilio's 15 s: after 5 s the line answers without the database (ivr/resilience.py).
            options["connect_args"] = {"connect_timeout": 5, "options": "-c lock_timeout=5000"}
        self.engine: Engine = sa.create_engine(database_url, **options)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.conversation_engine: Engine = self._make_conversation_engine(database_url, options)
        self._statements: dict[str, Any] = {}
        self._hot_statements: dict[str, HotStatement] = {}
        #: Tests may set this to see each hot statement's engine and SQL as it is sent (see `_hot`).
        self.trace: Callable[[Engine, str], None] | None = None
        self._writers: SqliteWriterQueue | None = None
        self._pinned_local = _PinnedConnections()
        self._pinned_generation = 0
        if self.engine.dialect.name == "sqlite" and path and path != ":memory:":
            writers = SqliteWriterQueue(f"{path}-writers")
            writers.attach(self.engine)
            writers.attach(self.conversation_engine)
            self._writers = writers

    def _make_conversation_engine(self, database_url: str, options: dict[str, Any]) -> Engine:
        """The hot connections (see `_pinned`): the line's per-request reads (a text conversation, a
        caller's saved choices) and its writes that leave nothing a person would miss: text turns
        that only move a conversation along (MENU, a topic, MORE) and a caller's remembered language,
        speed and section. One connection per worker for all of them: on PostgreSQL one server
        process per worker, not one per kind of statement.

        Such a turn keeps where the person is in a section and the MessageSid it answered. Its commit
        does not wait for the disk: a crash of the process loses nothing (the write is in the
        operating system already), a power cut may lose the newest few, which costs at most a
        repeated part or a forgotten choice. A turn that leaves something (an opt-out, an opt-in, a
        call-back request) and "forget my choices" always commit through `engine`, which waits for
        the disk. Only hot statements use it (see `_run_hot`, which replaces a dead connection).
        """
        if database_url.startswith("sqlite"):
            engine = sa.create_engine(database_url, **options)
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            sa.event.listen(engine, "connect", _sqlite_commit_without_fsync)
            return engine
        # Autocommit: each write here is one statement (a text's turn is one, see _one_statement_turn),
        # so BEGIN and COMMIT would be two more round trips for nothing.
        relaxed = {**options, "pool_size": 2, "max_overflow": 4, "pool_pre_ping": False}
        relaxed["isolation_level"] = "AUTOCOMMIT"
        connect_args = dict(relaxed.pop("connect_args", {}))
        connect_args["options"] = f"{connect_args.get('options', '')} -c synchronous_commit=off".strip()
        return sa.create_engine(database_url, connect_args=connect_args, **relaxed)

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
        """Close every pooled connection (they reopen on the next use); retire the hot ones too."""
        self._pinned_generation += 1
        _close_pinned(self._pinned_local.connections)  # this thread's; others close theirs at their next use
        self._pinned_local.connections = {}
        self.engine.dispose()
        self.conversation_engine.dispose()

    def after_fork(self) -> None:
        """Call in a freshly forked worker: drop the parent's pooled connections without closing them."""
        self._pinned_local.connections = {}  # the parent's, never closed here (see _pinned: a new pid)
        self.engine.dispose(close=False)
        self.conversation_engine.dispose(close=False)

    # -- privacy --------------------------------------------------------------------------------

    @functools.cached_property
    def _fernet(self) -> Fernet:
        """The key that seals words people texted: derived from SECRET_KEY with HKDF, for this use only."""
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"careline words at rest").derive(
            self._secret
        )
        return Fernet(base64.urlsafe_b64encode(key))

    def seal(self, words: str) -> str:
        """`words` encrypted and authenticated (a Fernet token), for keeping at rest."""
        return self._fernet.encrypt(words.encode()).decode("ascii")

    def unseal(self, token: str | None) -> str:
        """Words sealed by `seal`; "" when there are none or they cannot be read (another SECRET_KEY)."""
        if not token:
            return ""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            return ""

    def phone_hash(self, phone: str) -> str:
        """A keyed hash of a phone number: lets the line recognise a number without storing it."""
        if phone.isascii():  # every number Twilio sends: the same characters kept, without a loop
            canonical = _NOT_ASCII_PHONE_CHARACTER.sub("", phone)
        else:
            canonical = "".join(c for c in phone if c.isdigit() or c == "+")
        keyed = self._phone_hmac.copy()  # the key's padding hashed once per Storage, not per number
        keyed.update(canonical.encode())
        return keyed.hexdigest()

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

    def _hot_statement(self, name: str, build: Callable[[], Any]) -> HotStatement:
        """The statement `build()` makes, compiled once for this database (see HotStatement)."""
        statement = self._hot_statements.get(name)
        if statement is None:
            statement = self._hot_statements.setdefault(name, HotStatement(build(), self.engine.dialect))
        return statement

    def _pinned(self, engine: Engine) -> Any:
        """This thread's own DBAPI connection of `engine` for hot statements, opened on first use.

        Taken from the pool once and detached from it: a pool checkout and checkin (events, a lock,
        a reset) cost a text about as much as its statements. Each thread has its own, so a
        connection is never shared; `dispose` and `after_fork` retire them (see `_hot_once`).
        """
        pinned = self._pinned_local
        if pinned.generation != self._pinned_generation or pinned.process != process_generation():
            if pinned.process == process_generation():  # retired by dispose(): close them here, in their own thread
                _close_pinned(pinned.connections)
            pinned.connections, pinned.generation, pinned.process = {}, self._pinned_generation, process_generation()
        held = pinned.connections.get(engine)
        if held is None:
            dialect = engine.dialect
            try:
                fairy = engine.raw_connection()
            except dialect.loaded_dbapi.Error as error:
                # raw_connection() lets the driver's own error out (engine.connect() would wrap it):
                # wrapped here too, so a database that cannot be reached is an OperationalError that
                # the guard (ivr/resilience.py) handles, not an unexpected error. Not worth a retry.
                raise sa.exc.DBAPIError.instance(
                    None, None, error, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
                ) from error
            fairy.detach()  # ours now: the pool neither counts it nor resets it
            # One cursor for the connection's life: psycopg builds a cursor's adapters each time.
            dbapi_connection: Any = fairy.dbapi_connection
            held = pinned.connections[engine] = (dbapi_connection, dbapi_connection.cursor())
        return held

    def _hot_once(self, engine: Engine, work: Callable[[HotCursor], T]) -> T:
        """`work` on this thread's connection of `engine`, committed; rolled back on any error.

        Errors come out as SQLAlchemy's own (what ivr/resilience.py handles), never with the values
        (they may hold a phone number's hash); a connection found dead is closed and forgotten. On
        SQLite the writers' turn (SqliteWriterQueue) is taken at the first write and given back here.
        """
        dialect = engine.dialect
        connection, cursor = self._pinned(engine)
        hot = HotCursor(cursor, engine, self._writers, self.trace)
        try:
            result = work(hot)
            if _in_transaction(connection):  # in autocommit there is nothing to end: no round trip
                connection.commit()
            return result
        except dialect.loaded_dbapi.Error as error:
            gone = dialect.is_disconnect(error, connection, hot.cursor)
            _rollback_quietly(connection)
            if gone:
                self._pinned_local.connections.pop(engine, None)
                _close_quietly(cursor)
                _close_quietly(connection)
            raise sa.exc.DBAPIError.instance(
                None,
                None,
                error,
                dialect.loaded_dbapi.Error,
                hide_parameters=True,
                dialect=dialect,
                connection_invalidated=gone,
            ) from error
        except BaseException:
            _rollback_quietly(connection)
            raise
        finally:
            if hot.wrote and self._writers is not None:
                self._writers.release()

    def _read_one(self, engine: Engine, statement: HotStatement, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """The row a hot SELECT finds (or None): the leanest path, for the read every greeting and every
        text makes. Any error goes the careful way (`_run_hot`), which rolls back, replaces a dead
        connection and tries again; reading twice changes nothing."""
        if self.trace is None:  # a test watching statements goes the careful way, which reports them
            _connection, cursor = self._pinned(engine)
            try:
                return statement.fetch_one(cursor, values)
            except engine.dialect.loaded_dbapi.Error:
                pass
        return self._run_hot(engine, lambda hot: hot.one(statement, values))

    def _run_hot(self, engine: Engine, work: Callable[[HotCursor], T]) -> T:
        """`work` in one `_hot_once` transaction; tried once more on a fresh connection if the first was dead.

        The hot connections skip any liveness ping (a round trip per request on PostgreSQL); instead
        a connection that died (a server restart, a failover) is noticed by its error and replaced.
        The hot writes are safe to repeat: a text's turn is keyed by its MessageSid, a call step by its
        idempotency key, a caller's choices are set, not added to. (Batched usage counts without a step
        key, ivr/usage.py, could count twice if the first commit arrived: a statistic, never a record.)
        """
        try:
            return self._hot_once(engine, work)
        except sa.exc.DBAPIError as error:
            if not error.connection_invalidated:
                raise
        return self._hot_once(engine, work)

    def _hot_new_event(self) -> HotStatement:
        """INSERT a processed_events key unless it is there (rowcount 1 when this call inserted it)."""

        def build() -> Any:
            return _new_event(self._insert(processed_events)).on_conflict_do_nothing()

        return self._hot_statement("new-event", build)

    def _hot_upsert(
        self, table: sa.Table, key: str, columns: tuple[str, ...], updated: tuple[str, ...] | None = None
    ) -> HotStatement:
        """INSERT a row of `columns` (bound as new_<column>) or, when `key` is taken, SET `updated`
        (default: every column but the key) to the new row's values."""

        def build() -> Any:
            changed = updated if updated is not None else tuple(column for column in columns if column != key)
            insert = self._insert(table).values({column: sa.bindparam(f"new_{column}") for column in columns})
            return insert.on_conflict_do_update(index_elements=[key], set_={c: insert.excluded[c] for c in changed})

        return self._hot_statement(f"upsert:{table.name}:{columns}:{updated}", build)

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

    def _claim(self, connection: Any, key: str, at: dt.datetime) -> bool:
        """Note `key` at `at`; False when it was noted before (a retry)."""
        statement = self._prebuilt(
            "insert-new:processed_events", lambda: self._insert(processed_events).on_conflict_do_nothing()
        )
        return connection.execute(statement, {"key": key[:96], "created_at": at, "outcome": None}).rowcount == 1

    def claim_step(self, key: str, at: dt.datetime | None = None) -> str | None:
        """Claim one step of a call (`key`: from Twilio's idempotency token, see ivr/voice.py `retry_key`):
        None when this request is the first, else the outcome noted for the earlier one ("" if none yet)."""
        with self.engine.begin() as connection:
            if self._claim(connection, key, as_utc(at)):
                return None
            row = connection.execute(
                sa.select(processed_events.c.outcome).where(processed_events.c.key == key[:96])
            ).first()
            return (row.outcome or "") if row else ""

    def settle_step(self, key: str, outcome: str) -> None:
        """Note what a claimed step came to, for a retry of it to give the same answer."""
        with self.engine.begin() as connection:
            connection.execute(
                processed_events.update().where(processed_events.c.key == key[:96]).values(outcome=outcome[:64])
            )

    # -- voice messages and call-backs ----------------------------------------------------------

    def open_voicemail(self, call_sid: str, phone: str, topic: str, lang: str, at: dt.datetime | None = None) -> None:
        """A caller is about to leave a message: keep a call-back request now, so a hang-up loses nothing.

        A retry of the same request, or a second try after an empty recording, reuses the call's
        request that has no recording yet; a caller who leaves a second message gets a second request.
        """
        with self.engine.begin() as connection:
            self._open_voicemail(connection, call_sid, phone, topic, lang, as_utc(at))

    def _open_voicemail(
        self, connection: Any, call_sid: str, phone: str, topic: str, lang: str, at: dt.datetime
    ) -> None:
        """`open_voicemail` inside `connection`'s transaction (also for a record from the spool)."""
        base = f"voicemail:{call_sid}"
        rows = connection.execute(sa.select(callback_requests.c.recording_sid).where(_voicemail_keys(call_sid))).all()
        if any(row.recording_sid is None for row in rows):
            return
        values = _voice_message_row(phone, topic, lang, at)
        values.update(note="no_recording", dedupe_key=base if not rows else f"{base}:{len(rows) + 1}")
        connection.execute(self._insert(callback_requests).values(**values).on_conflict_do_nothing())

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
        with self.engine.begin() as connection:
            return self._attach_recording(
                connection, call_sid, recording_sid, url, seconds, phone=phone, topic=topic, lang=lang, at=utcnow()
            )

    def _attach_recording(
        self,
        connection: Any,
        call_sid: str,
        recording_sid: str,
        url: str,
        seconds: int,
        *,
        phone: str,
        topic: str,
        lang: str,
        at: dt.datetime,
    ) -> bool:
        """`attach_recording` inside `connection`'s transaction (also for a record from the spool)."""
        values = {"recording_sid": recording_sid, "recording_url": url, "recording_seconds": seconds, "note": ""}
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
        row = {**_voice_message_row(phone, topic, lang, at), "dedupe_key": f"recording:{recording_sid}", **values}
        connection.execute(self._insert(callback_requests).values(**row).on_conflict_do_nothing())
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

    def count_use(
        self, channel: str, section: str, day: dt.date | None = None, once_key: str = "", at: dt.datetime | None = None
    ) -> None:
        """Add one use of `section` on `channel` now (on `day`, default today); see `add_uses`.

        The line itself counts through ivr/usage.py, which batches these.
        """
        use = Use.when(channel, section, once_key, at)
        self.add_uses([replace(use, day=day) if day else use])

    def add_uses(self, uses: Sequence[Use]) -> None:
        """Add a batch of usage counts (ivr/usage.py `Use`s) in one transaction that waits for the disk.

        A use with a step key counts only if the key is new (Twilio retried the step, perhaps to
        another process): the keys are claimed in the same transaction, so each counts once.
        """
        if not uses:
            return

        def work(hot: HotCursor) -> None:
            totals: dict[tuple[dt.date, str, str], int] = {}
            for use in sorted(uses, key=lambda use: use.once_key):  # keys, too, claimed in one order
                if use.once_key:
                    claim = {"new_key": use.once_key[:96], "new_created_at": as_utc(use.at), "new_outcome": None}
                    if hot.execute(self._hot_new_event(), claim, write=True) != 1:
                        continue
                place = (use.day, use.channel, use.section)
                totals[place] = totals.get(place, 0) + 1
            statement = self._hot_statement("add-uses", self._add_uses_statement)
            # Rows in one order in every process: two batches locking the same rows in opposite orders
            # would deadlock on PostgreSQL.
            for (day, channel, section), count in sorted(totals.items()):
                values = {"use_day": day, "use_channel": channel, "use_section": section, "use_count": count}
                hot.execute(statement, values, write=True)

        self._run_hot(self.engine, work)

    def _add_uses_statement(self) -> Any:
        insert = self._insert(usage_daily).values(
            day=sa.bindparam("use_day"),
            channel=sa.bindparam("use_channel"),
            section=sa.bindparam("use_section"),
            count=sa.bindparam("use_count"),
        )
        return insert.on_conflict_do_update(
            index_elements=["day", "channel", "section"], set_={"count": usage_daily.c.count + insert.excluded.count}
        )

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
        return self.text_conversation(phone, "")[0]

    def text_conversation(self, phone: str, event_key: str) -> tuple[TextSession, str | None]:
        """What the text line remembers of `phone`, and the answer token stored for the message
        `event_key` if it was handled before ("" if none was stored; None for a new message).

        One round trip: each value is its own subquery (a NULL when there is no row) rather than a
        join, since any row may be missing. Read in autocommit: one statement, no transaction to
        begin and end.
        """
        values = {"key": self.phone_hash(phone), "event": event_key[:96]}
        query = self._hot_statement("text-conversation", _text_conversation_query)
        row = self._read_one(self.conversation_engine, query, values)
        lang, section, next_part, opted_out, answered = row or (None, None, None, None, None)
        session = TextSession(lang or "", section or "", next_part or 0, opted_out=bool(opted_out))
        return session, answered

    def set_opt_out(self, phone: str, opted_out: bool) -> None:
        """Record STOP (`opted_out` True) or START (False) from `phone`; only a hash of the number is kept."""
        with self.engine.begin() as connection:
            self._set_opt_out(connection, self.phone_hash(phone), opted_out, utcnow())

    def save_text_session(self, phone: str, lang: str, section: str = "", next_part: int = 0) -> None:
        """Remember the language of `phone` and the section and part MORE continues with."""
        with self.engine.begin() as connection:
            self._save_text_session(connection, self.phone_hash(phone), lang, section, next_part, utcnow())

    def request_callback(
        self, phone: str, ask: CallbackAsk, channel: str = "sms", dedupe_key: str | None = None
    ) -> bool:
        """Keep a call-back request for staff, once per `dedupe_key`; True when this call added it."""
        with self.engine.begin() as connection:
            return self._request_callback(connection, phone, ask, channel, dedupe_key, utcnow())

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
        phone_hash, at = self.phone_hash(phone), utcnow()
        if changes.opted_out is None and changes.callback is None:
            # MENU, a topic, MORE: the turn only moves a conversation along (see conversation_engine).
            turn = partial(self._moving_turn, event_key=event_key, phone_hash=phone_hash, outcome=outcome, at=at)
            return self._run_hot(self.conversation_engine, partial(turn, changes=changes))
        with self.engine.begin() as connection:
            return self._text_turn(connection, event_key, phone_hash, phone, outcome, changes, at)

    def _moving_turn(
        self, hot: HotCursor, event_key: str, phone_hash: str, outcome: str, changes: TextChanges, at: dt.datetime
    ) -> str | None:
        """A turn that leaves nothing a person would miss, in one transaction of hot statements:
        the MessageSid (a retry gets the first answer) and the conversation's place."""
        key = event_key[:96]
        session = changes.session
        values = _turn_values(event_key, phone_hash, outcome, session, at)
        if key and self.engine.dialect.name == "postgresql":
            # One round trip instead of four (BEGIN, two statements, COMMIT): see _one_statement_turn.
            turn = self._hot_statement(f"turn:{session is not None}", partial(_one_statement_turn, session is not None))
            fresh, earlier = hot.one(turn, values) or (0, None)
            if fresh:
                return None
            if earlier is not None:
                return str(earlier)
            # Delivered twice at once: the other copy's row was not yet committed when this one began.
            return self._stored_outcome(hot, key)
        if key and hot.execute(self._hot_new_event(), values, write=True) != 1:
            return self._stored_outcome(hot, key)
        if session is not None:
            hot.execute(self._hot_upsert(sms_sessions, "phone_hash", _SESSION_COLUMNS), values, write=True)
        return None

    def _stored_outcome(self, hot: HotCursor, key: str) -> str:
        """The answer stored for the message `key` handled before ("" if none was stored)."""
        row = hot.one(self._hot_statement("event-outcome", _event_outcome_query), {"key": key})
        return (row[0] or "") if row else ""

    def _text_turn(
        self,
        connection: Any,
        event_key: str,
        phone_hash: str,
        phone: str,
        outcome: str,
        changes: TextChanges,
        at: dt.datetime,
    ) -> str | None:
        """`record_text_turn` inside `connection`'s transaction; `phone` is needed only for a call-back."""
        if event_key:
            statement = self._prebuilt(
                "insert-new:processed_events", lambda: self._insert(processed_events).on_conflict_do_nothing()
            )
            values = {"key": event_key[:96], "created_at": at, "outcome": outcome[:64]}
            if connection.execute(statement, values).rowcount != 1:
                query = sa.select(processed_events.c.outcome).where(processed_events.c.key == event_key[:96])
                row = connection.execute(query).first()
                return (row.outcome or "") if row else ""
        if changes.opted_out is not None:
            self._set_opt_out(connection, phone_hash, changes.opted_out, at)
        if changes.session is not None:
            session = changes.session
            self._save_text_session(connection, phone_hash, session.lang, session.section, session.next_part, at)
        if changes.callback is not None:
            self._request_callback(connection, phone, changes.callback, "sms", event_key or None, at)
        return None

    def _set_opt_out(self, connection: Any, phone_hash: str, opted_out: bool, at: dt.datetime) -> None:
        values = {"phone_hash": phone_hash, "opted_out": opted_out, "changed_at": at}
        connection.execute(self._upsert(opt_outs, "phone_hash", ("opted_out", "changed_at")), values)

    def _save_text_session(
        self, connection: Any, phone_hash: str, lang: str, section: str, next_part: int, at: dt.datetime
    ) -> None:
        values = {
            "phone_hash": phone_hash,
            "lang": lang,
            "section": section,
            "next_part": next_part,
            "updated_at": at,
        }
        updated = tuple(k for k in values if k != "phone_hash")
        connection.execute(self._upsert(sms_sessions, "phone_hash", updated), values)

    def _request_callback(
        self, connection: Any, phone: str, ask: CallbackAsk, channel: str, dedupe_key: str | None, at: dt.datetime
    ) -> bool:
        # Notes are codes for the staff page; the words someone texted are only ever kept sealed.
        urgent_note = "urgent_call" if channel == "voice" else "urgent_words"
        notes = [note for note, flag in ((urgent_note, ask.urgent), ("texts_opted_out", ask.opted_out)) if flag]
        values = {
            "created_at": at,
            "channel": channel,
            "kind": "callback",
            "phone": phone or None,
            "topic": ask.topic,
            "lang": ask.lang,
            "urgent": ask.urgent,
            "note": ",".join(notes),
            "status": "open",
            "dedupe_key": dedupe_key[:80] if dedupe_key else None,
            "urgent_kind": ask.kind or None if ask.urgent else None,
            "words": ask.words or None,
        }
        statement = self._insert(callback_requests).values(**values).on_conflict_do_nothing()
        added = connection.execute(statement).rowcount == 1
        if added and ask.urgent:
            self._queue_alert(connection, at)
        return added

    # -- urgent calls and staff alerts (ivr/safety.py, ivr/alerts.py) ------------------------------

    def record_urgent_call(
        self, call_sid: str, phone: str, kind: str, lang: str, at: dt.datetime | None = None
    ) -> bool:
        """Keep a call where urgent words were heard as an urgent request (the kind only, no words),
        once per call, with a staff alert queued; True when this call added it."""
        with self.engine.begin() as connection:
            return self._record_urgent_call(connection, call_sid, phone, kind, lang, as_utc(at))

    def _record_urgent_call(
        self, connection: Any, call_sid: str, phone: str, kind: str, lang: str, at: dt.datetime
    ) -> bool:
        ask = CallbackAsk(topic="", lang=lang, urgent=True, kind=kind)
        key = f"urgent:{call_sid}" if call_sid else None
        return self._request_callback(connection, phone, ask, "voice", key, at)

    def _queue_alert(self, connection: Any, at: dt.datetime) -> None:
        connection.execute(staff_alerts.insert().values(created_at=at, attempts=0))

    def claim_alerts(self, at: dt.datetime | None = None) -> list[int]:
        """Alerts waiting to be sent, claimed for this process (one that died holding a claim loses it
        after ALERT_CLAIM_SECONDS), so two processes never send the same alert at once."""
        at = as_utc(at)
        stale = at - dt.timedelta(seconds=ALERT_CLAIM_SECONDS)
        waiting = sa.and_(
            staff_alerts.c.sent_at.is_(None),
            sa.or_(staff_alerts.c.claimed_at.is_(None), staff_alerts.c.claimed_at < stale),
        )
        claimed = []
        with self.engine.begin() as connection:
            for row in connection.execute(sa.select(staff_alerts.c.id).where(waiting).order_by(staff_alerts.c.id)):
                update = staff_alerts.update().where(staff_alerts.c.id == row.id, waiting).values(claimed_at=at)
                if connection.execute(update.execution_options(preserve_rowcount=True)).rowcount == 1:
                    claimed.append(int(row.id))
        return claimed

    def settle_alert(self, alert_id: int, sent: bool, at: dt.datetime | None = None) -> None:
        """Note an alert sent, or failed (released for the next try)."""
        values: dict[str, Any] = {"attempts": staff_alerts.c.attempts + 1, "claimed_at": None}
        if sent:
            values["sent_at"] = as_utc(at)
        with self.engine.begin() as connection:
            connection.execute(staff_alerts.update().where(staff_alerts.c.id == alert_id).values(**values))

    def unsent_alerts(self) -> int:
        """How many alerts wait to be sent."""
        query = sa.select(sa.func.count()).select_from(staff_alerts).where(staff_alerts.c.sent_at.is_(None))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    # -- remembered choices (phone line) ----------------------------------------------------------

    def recall_choices(
        self, phone: str, now: dt.datetime, keep_last_section_for: dt.timedelta
    ) -> dict[str, Any] | None:
        """What the line saved about `phone` (lang, slow, last_section, last_heard_at), or None.

        A last section older than `keep_last_section_for` is no longer needed, so it is erased here.
        """
        key = self.phone_hash(phone)
        query = self._hot_statement(
            "recall", lambda: sa.select(preferences).where(preferences.c.phone_hash == sa.bindparam("key"))
        )
        row = self._read_one(self.conversation_engine, query, {"key": key})
        if row is None:
            return None
        saved = dict(zip(preferences.c.keys(), row, strict=True))
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
        updated = ("lang", "slow", "updated_at", *(("last_section", "last_heard_at") if section else ()))
        values = {
            "new_phone_hash": self.phone_hash(phone),
            "new_lang": lang,
            "new_slow": slow,
            "new_last_section": section,
            "new_last_heard_at": now if section else None,
            "new_updated_at": now,
        }
        # A convenience, not something the caller left: committed without waiting for the disk.
        statement = self._hot_upsert(preferences, "phone_hash", _CHOICE_COLUMNS, updated)
        self._run_hot(self.conversation_engine, lambda hot: hot.execute(statement, values, write=True))

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

    # -- the spool (ivr/spool.py): records kept on disk while the database was away --------------

    def apply_spooled(self, record: dict[str, Any]) -> bool:
        """Move one spooled record into the database, exactly once; True when this call applied it.

        The record's key goes into processed_events in the same transaction as the record itself, so
        replaying the spool (after a crash mid-drain, or by two processes at once) changes nothing more.
        """
        at = _spooled_time(record)
        marker = (
            self._insert(processed_events)
            .values(key=f"spool:{record['id']}"[:96], created_at=at)
            .on_conflict_do_nothing()
            .execution_options(preserve_rowcount=True)  # psycopg closes the cursor before rowcount is read
        )
        with self.engine.begin() as connection:
            if connection.execute(marker).rowcount != 1:
                return False
            kind = record["kind"]
            if kind == "text_turn":
                self._text_turn(
                    connection,
                    str(record.get("event_key", "")),
                    str(record["phone_hash"]),
                    str(record.get("phone", "")),
                    str(record.get("outcome", "")),
                    TextChanges.from_json(record.get("changes") or {}),
                    at,
                )
            elif kind == "voicemail":
                self._open_voicemail(
                    connection,
                    str(record["call_sid"]),
                    str(record.get("phone", "")),
                    str(record.get("topic", "")),
                    str(record.get("lang", "en")),
                    at,
                )
            elif kind == "urgent_call":
                self._record_urgent_call(
                    connection,
                    str(record.get("call_sid", "")),
                    str(record.get("phone", "")),
                    str(record.get("urgent_kind", "")),
                    str(record.get("lang", "en")),
                    at,
                )
            elif kind == "recording":
                self._attach_recording(
                    connection,
                    str(record["call_sid"]),
                    str(record["recording_sid"]),
                    str(record["url"]),
                    int(record["seconds"]),
                    phone=str(record.get("phone", "")),
                    topic=str(record.get("topic", "")),
                    lang=str(record.get("lang", "en")),
                    at=at,
                )
            else:
                raise ValueError(f"unknown spool record kind {kind!r}")
        return True

    # -- retention (`flask --app ivr purge`, ivr/retention.py) ------------------------------------

    def purge(self, cutoff: dt.datetime, dry_run: bool = False) -> dict[str, int]:
        """Remove what is older than `cutoff` and no longer needed; rows removed per table.

        Call-back requests go once staff marked them done before `cutoff` (with them the reference to
        their recording); open ones stay, whatever their age. Opt-outs stay for good (a STOP is
        honoured for ever); an opt-in (START) older than `cutoff` is forgotten, since it changes
        nothing. Usage counts, handled-message keys, text sessions, remembered choices, sign-in
        failures and staff acceptances older than `cutoff` go.
        """
        cutoff = cutoff.astimezone(dt.UTC)
        conditions: dict[str, tuple[sa.Table, Any]] = {
            "callback_requests": (
                callback_requests,
                sa.and_(callback_requests.c.status == "done", callback_requests.c.done_at < cutoff),
            ),
            "usage_daily": (usage_daily, usage_daily.c.day < cutoff.date()),
            "processed_events": (processed_events, processed_events.c.created_at < cutoff),
            "sms_sessions": (sms_sessions, sms_sessions.c.updated_at < cutoff),
            "preferences": (preferences, preferences.c.updated_at < cutoff),
            "opt_outs": (opt_outs, sa.and_(opt_outs.c.opted_out.is_(False), opt_outs.c.changed_at < cutoff)),
            "login_attempts": (login_attempts, login_attempts.c.at < cutoff),
            "staff_acceptances": (staff_acceptances, staff_acceptances.c.accepted_at < cutoff),
            "staff_alerts": (staff_alerts, staff_alerts.c.sent_at < cutoff),
        }
        removed: dict[str, int] = {}
        with self.engine.begin() as connection:
            for name, (table, condition) in conditions.items():
                if dry_run:
                    count = sa.select(sa.func.count()).select_from(table).where(condition)
                    removed[name] = int(connection.execute(count).scalar_one())
                else:
                    statement = table.delete().where(condition).execution_options(preserve_rowcount=True)
                    removed[name] = int(connection.execute(statement).rowcount)
        return removed


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


def _voicemail_keys(call_sid: str) -> sa.ColumnElement[bool]:
    """Matches the voice-message requests of call `call_sid` (voicemail:<sid>, voicemail:<sid>:2, ...)."""
    base = f"voicemail:{call_sid}"
    return sa.or_(callback_requests.c.dedupe_key == base, callback_requests.c.dedupe_key.startswith(f"{base}:"))


def _spooled_time(record: dict[str, Any]) -> dt.datetime:
    """When a spooled event happened (its record's `at`), so staff see the real time, not the drain's."""
    try:
        return _aware(dt.datetime.fromisoformat(str(record["at"]))) or utcnow()
    except (KeyError, ValueError):
        return utcnow()


#: The columns a text conversation's and a caller's choices' upserts set (see Storage._hot_upsert).
_SESSION_COLUMNS = ("phone_hash", "lang", "section", "next_part", "updated_at")
_CHOICE_COLUMNS = ("phone_hash", "lang", "slow", "last_section", "last_heard_at", "updated_at")


#: The columns a text's MessageSid record sets (bound as new_<column>).
_EVENT_COLUMNS = ("key", "created_at", "outcome")


def _turn_values(
    event_key: str, phone_hash: str, outcome: str, session: TextSession | None, at: dt.datetime
) -> dict[str, Any]:
    """The bound values of a text turn's hot statements (new_<column>)."""
    values: dict[str, Any] = {
        "new_key": event_key[:96],
        "new_created_at": at,
        "new_outcome": outcome[:64],
        "new_phone_hash": phone_hash,
    }
    if session is not None:
        values.update(
            new_lang=session.lang, new_section=session.section, new_next_part=session.next_part, new_updated_at=at
        )
    return values


def _new_event(insert: Any) -> Any:
    """`insert` (a processed_events INSERT of either database) with the MessageSid row new_key,
    new_created_at, new_outcome."""
    return insert.values({name: sa.bindparam(f"new_{name}") for name in _EVENT_COLUMNS})


def _one_statement_turn(with_session: bool) -> sa.Select[Any]:
    """PostgreSQL: a text turn that only moves a conversation along, as ONE statement (atomic in autocommit).

    WITH new_event AS (INSERT the MessageSid ON CONFLICT DO NOTHING RETURNING it), then the session
    upsert only WHERE EXISTS (SELECT FROM new_event): a retried message changes nothing. It selects
    `fresh` (1 when this statement stored the message) and `earlier` (the answer stored the first
    time, from the snapshot before this statement). Every round trip to the server costs both
    processes CPU; this turn was four of them. SQLite cannot put an INSERT in a WITH clause, so
    there the same writes are two statements in one transaction.
    """
    insert = _new_event(postgresql.insert(processed_events))
    event = insert.on_conflict_do_nothing().returning(processed_events.c.key).cte("new_event")
    fresh = sa.select(sa.func.count()).select_from(event)
    query = sa.select(fresh.scalar_subquery().label("fresh"))
    query = query.add_columns(_event_outcome_query("new_key").scalar_subquery().label("earlier"))
    if not with_session:
        return query
    rows = sa.select(*(sa.bindparam(f"new_{name}", type_=sms_sessions.c[name].type) for name in _SESSION_COLUMNS))
    session = postgresql.insert(sms_sessions).from_select(
        list(_SESSION_COLUMNS), rows.where(sa.exists(sa.select(event.c.key)))
    )
    session = session.on_conflict_do_update(
        index_elements=["phone_hash"], set_={name: session.excluded[name] for name in _SESSION_COLUMNS[1:]}
    )
    # A data-modifying WITH part runs to completion whether or not the main query reads it.
    return query.add_cte(session.returning(sms_sessions.c.phone_hash).cte("saved_session"))


def _event_outcome_query(key: str = "key") -> sa.Select[Any]:
    """The answer stored for a handled message (processed_events.outcome), by its key bound as `key`."""
    return sa.select(processed_events.c.outcome).where(processed_events.c.key == sa.bindparam(key))


def _text_conversation_query() -> sa.Select[Any]:
    """A number's text conversation and opt-out, and the answer stored for one message, in one
    statement (each NULL when its row is missing; a stored message with no answer gives "")."""

    def session_value(column: sa.Column[Any]) -> Any:
        return sa.select(column).where(sms_sessions.c.phone_hash == sa.bindparam("key")).scalar_subquery()

    opted = sa.select(opt_outs.c.opted_out).where(opt_outs.c.phone_hash == sa.bindparam("key")).scalar_subquery()
    answered = sa.select(sa.func.coalesce(processed_events.c.outcome, "")).where(
        processed_events.c.key == sa.bindparam("event")
    )
    return sa.select(
        session_value(sms_sessions.c.lang).label("lang"),
        session_value(sms_sessions.c.section).label("section"),
        session_value(sms_sessions.c.next_part).label("next_part"),
        opted.label("opted_out"),
        answered.scalar_subquery().label("answered"),
    )


class _PinnedConnections(threading.local):
    """One thread's hot connections and their cursors (Storage._pinned), and the generation and
    process they belong to."""

    def __init__(self) -> None:
        self.connections: dict[Engine, tuple[Any, Any]] = {}
        self.generation = -1
        self.process = -1


def _in_transaction(connection: Any) -> bool:
    """Whether a DBAPI connection (sqlite3 or psycopg) has a transaction open."""
    open_now = getattr(connection, "in_transaction", None)  # sqlite3
    if open_now is not None:
        return bool(open_now)
    return bool(connection.info.transaction_status != 0)  # psycopg: 0 is IDLE


def _close_pinned(connections: dict[Engine, tuple[Any, Any]]) -> None:
    """Close one thread's hot connections and their cursors (Storage._pinned)."""
    for connection, cursor in connections.values():
        _close_quietly(cursor)
        _close_quietly(connection)


def _close_quietly(resource: Any) -> None:
    """Close a cursor or connection that may already be broken."""
    with suppress(Exception):  # a broken connection cannot be closed more than it is
        resource.close()


def _rollback_quietly(connection: Any) -> None:
    """End whatever a failed hot transaction left open (the next use starts clean)."""
    with suppress(Exception):  # a dead connection has nothing left to roll back
        connection.rollback()
