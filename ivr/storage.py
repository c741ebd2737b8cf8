"""Everything the line keeps, behind one small module: SQLite by default, PostgreSQL by DATABASE_URL.

The schema is created and migrated by Alembic when the app starts (ivr/migrations). Phone numbers
are health-related data: they are stored in the clear only where staff need to call someone back
(a call-back request); everywhere else the line keeps a keyed hash (HMAC-SHA256 with SECRET_KEY).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import sqlite3
import time
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


class Storage:
    """The line's database, opened once per process."""

    def __init__(self, database_url: str, secret_key: str) -> None:
        self.url = database_url
        self._secret = secret_key.encode()
        options: dict[str, Any] = {"future": True}
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

    def _insert_ignoring_duplicates(self, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert a row unless its unique key is already there; True when this call inserted it."""
        # preserve_rowcount: psycopg's cursor is closed (rowcount -1) before SQLAlchemy would read it.
        statement = (
            self._insert(table).values(**values).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

    def first_time(self, key: str) -> bool:
        """True the first time `key` (e.g. a Twilio MessageSid) is seen; False on every retry."""
        return self._insert_ignoring_duplicates(processed_events, {"key": key[:96], "created_at": utcnow()})

    # -- voice messages and call-backs ----------------------------------------------------------

    def open_voicemail(self, call_sid: str, phone: str, topic: str, lang: str) -> None:
        """A caller is about to leave a message: keep a call-back request now, so a hang-up loses nothing."""
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
                "note": "no_recording",
                "status": "open",
                "dedupe_key": f"voicemail:{call_sid}",
            },
        )

    def attach_recording(self, call_sid: str, recording_sid: str, url: str, seconds: int) -> bool:
        """Add the recording to the call's voice message; True when there was a request to add it to."""
        with self.engine.begin() as connection:
            result = connection.execute(
                callback_requests.update()
                .where(callback_requests.c.dedupe_key == f"voicemail:{call_sid}")
                .values(recording_sid=recording_sid, recording_url=url, recording_seconds=seconds, note="")
            )
            return result.rowcount > 0

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

    # -- staff transfers ------------------------------------------------------------------------

    def accept_staff_call(self, call_sid: str) -> None:
        """A staff member pressed 1 to take the caller on call `call_sid`."""
        self._insert_ignoring_duplicates(staff_acceptances, {"call_sid": call_sid, "accepted_at": utcnow()})

    def staff_accepted(self, call_sid: str) -> bool:
        """Whether a staff member took the caller on call `call_sid`."""
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
