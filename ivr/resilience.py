"""Keep the line answering while its database is away, and lose nothing meanwhile.

`DatabaseGuard` sits between the webhooks and storage:

- `read(...)` and `try_write(...)` run a database call unless the database failed a moment ago,
  and give a default instead of an error: menus, sections and text keywords need no database.
- `keep(record, live)` stores what must never be lost (a voice message, a call-back request, an
  opt-out): in the database when it answers, otherwise in the durable spool (ivr/spool.py).
- After a failure the guard stops trying the database for DATABASE_RETRY_SECONDS, so a caller is
  never held past Twilio's 15 s by one slow failure after another; then the next request tries
  again (`recover`, before every request): it checks the schema if start-up could not (ivr/release.py;
  a schema that is not current keeps the line spooling, with an error naming the command to run), and moves
  the spool into the database, each record exactly once. While the database answers, a process
  looks for records other processes spooled once every SPOOL_CHECK_SECONDS, not on every request.

The app starts even when the database is down: start-up failures are logged and retried later.
Errors are logged by type only: a database error's message can quote the row it failed to write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, current_app

from ivr.release import SchemaNotCurrent, schema_problem
from ivr.security import local_mode
from ivr.spool import Spool, spool_file_name
from ivr.storage import Storage
from ivr.storage.sqlite import DatabaseFileReplaced

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often, while the database answers, a process looks in the spool for records it did not put
#: there itself (another worker's, or those of a run that crashed): such a record reaches the database
#: at most this much later, and is never lost meanwhile (the spool is durable, and opt-outs in it are
#: honoured as they wait). What this process spools itself is looked for on the very next request.
SPOOL_CHECK_SECONDS = 1.0

#: Errors that mean "the database cannot be reached or used right now", not "this record is wrong".
UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, sa.exc.DisconnectionError)

#: PostgreSQL's read_only_sql_transaction (a server in recovery, a read-only session): psycopg calls it
#: an InternalError, but the record is fine; the database cannot take it now.
READ_ONLY_SQLSTATE = "25006"


def unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot be used right now (rather than that a record is wrong)."""
    if isinstance(error, UNAVAILABLE):
        return True
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) == READ_ONLY_SQLSTATE


class DatabaseGuard:
    """One per app: knows whether the database answers, and keeps records in the spool when it does not."""

    def __init__(
        self,
        storage: Storage,
        spool: Spool,
        retry_seconds: float,
        upgrade_schema: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        #: Local mode: upgrade the schema rather than refuse it (ivr/release.py).
        self.upgrade_schema = upgrade_schema
        self.spool = spool
        self.retry_seconds = retry_seconds
        #: Seconds that only go forward, read for the retry time and the spool checks: time.monotonic;
        #: a test moves it on instead of waiting (tests/helpers/faults.py `move_clock_on`).
        self.clock = clock
        self.schema_ready = False
        #: Why the schema cannot be used (ivr/release.py), while it cannot; for /readyz.
        self.schema_problem: str | None = None
        self._down_until = 0.0
        self._next_spool_check = 0.0  # monotonic time; 0: look at the spool on the next request
        self._recovering = threading.Lock()
        #: Set by a failure: the pool's connections may be stuck in the fault (opened read-only, to a
        #: server that failed over), so they are closed before the database is tried again.
        self._stale_pool = False

    # -- state ----------------------------------------------------------------------------------

    def is_down(self) -> bool:
        """Whether the database failed within the last DATABASE_RETRY_SECONDS (or has no schema yet)."""
        return not self.schema_ready or self.clock() < self._down_until

    def database_file_replaced(self) -> bool:
        """Whether the SQLite file the line opened was deleted or replaced under it (an alarm): nothing is
        written to the database, nor the spool drained, until a restart. For /healthz and /readyz."""
        return self.storage.file_replaced()

    def failed(self, error: BaseException, doing: str) -> None:
        """Note a database failure: spool and use defaults until the retry time."""
        self._down_until = self.clock() + self.retry_seconds
        self._stale_pool = True
        log.warning(
            "Database unavailable while %s (%s): answering without it, spooling what must be kept, retrying in %g s",
            doing,
            type(error).__name__,
            self.retry_seconds,
        )

    # -- start and recovery ---------------------------------------------------------------------

    def start(self) -> None:
        """At start-up: check the schema and drain the spool; if the database is down, say so and go on.

        Raises SchemaNotCurrent when the database answers with a schema other than this code's newest
        (in local mode the schema is upgraded instead): the line must not start on it.
        """
        self._recover(at_start=True)

    def recover(self) -> None:
        """Before a request: when the database was down (or records wait) and the retry time has come,
        try it again. Cheap otherwise: a clock read, and a stat of the spool file once a SPOOL_CHECK_SECONDS."""
        if self.schema_ready and not self._down_until:
            clock = self.clock()
            if clock < self._next_spool_check:
                return
            self._next_spool_check = clock + SPOOL_CHECK_SECONDS
            if not self.spool.has_records():
                return
        elif self.clock() < self._down_until:
            return
        if not self._recovering.acquire(blocking=False):
            return  # another thread of this process is at it
        try:
            self._recover()
        finally:
            self._recovering.release()

    def _recover(self, at_start: bool = False) -> None:
        if self._stale_pool:
            # Connections opened during the fault may keep it after the database is well (a SQLite
            # file opened read-only stays read-only): every try starts from new connections.
            self._stale_pool = False
            self.storage.dispose()
        try:
            if self.storage.file_replaced():
                # Never into a file no restart will open: the spool keeps every record until then.
                raise sa.exc.OperationalError("checking the database file", None, DatabaseFileReplaced())
            if not self.schema_ready:
                self._check_schema()
                self.schema_ready = True
                self.schema_problem = None
            self.drain()
            if self._down_until:
                log.warning("Database available again")
            self._down_until = 0.0
        except SchemaNotCurrent as problem:
            self.schema_problem = str(problem)
            if at_start:
                raise
            # The database came back after start with a schema this code cannot use (a release step
            # was missed): keep spooling what must be kept, and say what to run.
            log.error("%s", problem)
            self._down_until = self.clock() + self.retry_seconds
        except Exception as error:
            if unavailable(error):
                self.failed(error, "starting up" if not self.schema_ready else "moving the spool")
                return
            # A broken migration, say: still serve the menus.
            log.error("Database set-up failed: %s", type(error).__name__)
            self._down_until = self.clock() + self.retry_seconds
            self._stale_pool = True

    def _check_schema(self) -> None:
        if self.upgrade_schema:
            self.storage.migrate()
            return
        problem = schema_problem(self.storage)
        if problem:
            raise SchemaNotCurrent(problem)

    def drain(self) -> int:
        """Move every spooled record into the database (each exactly once); the number moved.

        A record the database refuses for a reason of its own (not unavailability) stays in the
        spool, logged by kind, and the others go on; unavailability stops the drain until later.
        """
        records = self.spool.snapshot()
        if not records:
            return 0
        done: set[str] = set()
        moved = 0
        try:
            for record in records:
                try:
                    moved += self.storage.apply_spooled(record)
                except (sa.exc.SQLAlchemyError, KeyError, ValueError, TypeError) as error:
                    if unavailable(error):
                        raise
                    kind, name = record["kind"], type(error).__name__
                    log.error("A spooled %s record was refused: %s; kept in the spool", kind, name)
                    continue
                done.add(record["id"])
        finally:
            self.spool.remove(done)
            if done:
                already = len(done) - moved
                log.warning("Moved %d spooled record(s) into the database (%d were there already)", len(done), already)
        return moved

    # -- calls ----------------------------------------------------------------------------------

    def read(self, call: Callable[[], T], default: T, doing: str) -> T:
        """`call()`'s answer, or `default` when the database is down or fails now."""
        if self.is_down():
            return default
        try:
            return call()
        except sa.exc.SQLAlchemyError as error:
            self.failed(error, doing)
            return default

    def try_write(self, call: Callable[[], Any], doing: str) -> bool:
        """Write something the line can do without (remembered choices, a usage count); True if written."""
        if self.is_down():
            return False
        try:
            call()
        except sa.exc.SQLAlchemyError as error:
            self.failed(error, doing)
            return False
        return True

    def keep(self, record: dict[str, Any] | None, live: Callable[[], T] | None, doing: str) -> T | None:
        """Store what must never be lost: `live()` writes it to the database (its answer is returned);
        when the database is down or fails, `record` goes to the spool instead (None is returned).
        With `live` None, straight to the spool (the fallback URLs never touch the database); with
        `record` None there is nothing the line must keep, only what it would like to."""
        if live is not None and not self.is_down():
            try:
                return live()
            except sa.exc.SQLAlchemyError as error:
                self.failed(error, doing)
        if record is not None:
            # An OSError here (disk full, read-only) propagates: the caller hears an apology, never "saved".
            self.spool.append(record)
            self._next_spool_check = 0.0  # move it in on the next request, should the database answer
        return None


def guard(app: Flask | None = None) -> DatabaseGuard:
    """`app`'s database guard; without `app`, the running app's (in a request or app context)."""
    return (current_app if app is None else app).extensions["careline.guard"]


def init_app(app: Flask, storage: Storage) -> DatabaseGuard:
    """Make the app's guard, try the database once (check the schema, drain), and again before requests.

    Raises SchemaNotCurrent (see DatabaseGuard.start), after the guard is in place.
    """
    folder = Path(app.config.get("SPOOL_DIR") or Path(app.instance_path) / "spool")
    spool = Spool(folder, spool_file_name(app.config["DATABASE_URL"]))
    retry_seconds = float(app.config["DATABASE_RETRY_SECONDS"])
    database_guard = DatabaseGuard(storage, spool, retry_seconds, upgrade_schema=local_mode(app.config))
    app.extensions["careline.guard"] = database_guard
    app.before_request(database_guard.recover)
    database_guard.start()
    return database_guard
