"""Everything SQLite needs that PostgreSQL does not, in one place.

- WAL, so several app processes read while one writes.
- busy_timeout: a writer waits up to 5 s for another's turn (SQLite has one writer at a time), then
  fails, and the line answers without the database (ivr/resilience.py) rather than keep a caller
  past Twilio's 15 s.
- the file's identity (device and inode) when the engine opened it: a file deleted or replaced under a
  running line is refused, never written (see `FileWatch`).
- checkpoints (copying the write-ahead log back into the file) off the request path: the usage
  batches' thread runs one after each batch (`checkpoint`); a request's commit starts one only when
  the log has grown past CHECKPOINT_BACKSTOP_PAGES (SQLite's default is 1,000 pages, so a busy line's
  requests took turns paying for one: see `checkpoint`).
- synchronous: NORMAL by default (in WAL mode a commit survives a crash of the process, and only a
  power cut may lose the newest few); FULL for a transaction that keeps something a person left,
  so its commit is on the disk before the caller hears "saved" (see ivr/storage/database.py).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

log = logging.getLogger(__name__)


def database_path(url: str) -> Path | None:
    """The file a SQLite `url` names; None for an in-memory database."""
    parsed = sa.engine.make_url(url)
    path = parsed.database or ""
    if not path or path == ":memory:" or "uri" in parsed.query:  # an operator's own URI: left as given
        return None
    return Path(path)


def prepare_file(url: str) -> None:
    """Create the SQLite file named by `url`, and its folder, for the line's user alone.

    The file holds phone numbers and recording links: created 0600 (SQLite would make it 0644 under
    the usual umask, and gives its -wal and -shm files the database file's mode), and a folder the line
    creates is 0700. An empty file is a valid, empty SQLite database. Existing files are left as they are.
    A -wal or -shm file found beside a file this creates is an old database's, and is removed.
    """
    path = database_path(url)
    if path is None:
        return
    for folder in reversed([path.parent, *path.parent.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    # A new file: a write-ahead log or shared-memory file beside it belongs to a database that was deleted
    # (under a running line, say), and SQLite would read that log into the new file. It goes.
    for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        with suppress(FileNotFoundError):
            leftover.unlink()
            log.warning("Removed %s left beside a database file that was gone", leftover.name.rsplit("-", 1)[-1])


def read_write_url(url: str) -> sa.URL | str:
    """`url` opening its file read-write only (`mode=rw`, after `prepare_file` made it): a connection
    never creates a file of its own, so a database file deleted or moved away is an error the line
    sees (and spools through), never a new empty database the pool quietly fills."""
    path = database_path(url)
    if path is None:
        return url
    parsed = sa.engine.make_url(url)
    return parsed.set(database=f"file:{quote(str(path))}?mode=rw", query={**parsed.query, "uri": "true"})


FileIdentity = tuple[int, int]


def file_identity(path: Path) -> FileIdentity | None:
    """The (device, inode) of the file at `path`; None when there is none (or it cannot be seen)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


class DatabaseFileReplaced(sqlite3.OperationalError):
    """The file at the database's path is not the one the engine opened (deleted, or another put there)."""


class FileWatch:
    """The SQLite file an engine opened, known by its device and inode (issue 15 item 4).

    A SQLite connection keeps the file it opened, whatever later happens at the path: after the file is
    deleted or replaced, pooled connections would go on writing into a file nobody will read again
    (a restart opens the file at the path), and a record moved from the spool into it would be lost.
    So every connection, new or taken from the pool, is checked first (one `stat`): if the path no
    longer holds the file the engine opened, it is refused with `DatabaseFileReplaced`, which the
    line takes for an outage (ivr/resilience.py): it answers, keeps what callers leave in the spool,
    and drains nothing, until a restart opens the file now at the path and moves the spool into it.
    An alarm is logged once (no path, no personal data); `replaced()` tells health checks.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Recorded when the engine is made (after `prepare_file`); when the file could not be made
        #: then, the first file a connection opens is the line's.
        self.opened = file_identity(path)
        self._alarmed = False

    def replaced(self) -> bool:
        """Whether the file at the path is no longer the one the engine opened (deleted or replaced)."""
        return self.opened is not None and file_identity(self.path) != self.opened

    def check(self, *_connection: Any) -> None:
        """Before a connection is used (a pool event): refuse it unless the path holds the engine's file."""
        if self.opened is None:
            self.opened = file_identity(self.path)
            return
        if not self.replaced():
            return
        if not self._alarmed:
            self._alarmed = True
            log.error(
                "ALARM: the SQLite database file was deleted or replaced while the line was running. Nothing "
                "is written to it any more: what callers leave waits in the spool until the line is restarted "
                "(it then opens the file at DATABASE_URL and moves the spool into it)."
            )
        raise DatabaseFileReplaced("the database file was deleted or replaced since the line opened it")

    def watch(self, engine: sa.Engine) -> FileWatch:
        """Check every connection `engine` opens or hands out; returns self."""
        sa.event.listen(engine, "connect", self.check, insert=True)  # before the pragmas write to it
        sa.event.listen(engine, "checkout", self.check)
        return self


def configure(engine: sa.Engine) -> None:
    """Set every new connection of `engine` up for the line: WAL, busy timeout, synchronous NORMAL."""
    sa.event.listen(engine, "connect", _on_connect)


#: Pages of write-ahead log after which a commit checkpoints by itself (4 MB at SQLite's default 4 KB
#: pages): a backstop for when no usage batch has run for a while (USAGE_FLUSH_SECONDS=0, say).
CHECKPOINT_BACKSTOP_PAGES = 4000


def checkpoint(connection: sa.Connection) -> None:
    """Copy what the write-ahead log holds back into the database file, as far as readers allow
    (PASSIVE: never waits for, or blocks, anyone).

    Run by the usage batches' thread (ivr/usage.py), not in a request. Left to SQLite, the commit that
    takes the log past 1,000 pages runs it, with an fsync of the log and of the file: on a busy line that
    is a request every few seconds waiting for the disk, and a caller behind it (bench mix p99 36-41 ms
    with SQLite's default, 26-27 ms with no checkpoint in requests, 2-core machine, 2026-12-07).
    """
    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").close()


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_BACKSTOP_PAGES}")
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


@contextmanager
def waiting_for_disk(connection: sa.Connection) -> Iterator[None]:
    """Make the transaction begun inside this block commit with an fsync (synchronous=FULL).

    SQLite refuses to change this inside a transaction, so it is set before (the driver's BEGIN comes
    with the first write) and set back after, so every pooled connection rests at NORMAL. Like the
    pragmas of a new connection, it goes straight to the driver: a setting, not a statement.
    """
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA synchronous=FULL").close()
    try:
        yield
    finally:
        try:
            driver.execute("PRAGMA synchronous=NORMAL").close()
        except Exception:  # a broken connection: never back in the pool still waiting for the disk
            connection.invalidate()


def begin_writing(connection: sa.Connection) -> None:
    """Begin `connection`'s transaction holding the write lock (BEGIN IMMEDIATE), for `Database.durable`.

    Python's sqlite3 begins a transaction only at the first INSERT, UPDATE or DELETE, deferred. A
    read still running then (a cursor not yet exhausted, as the staff-alert claim's loop had, commit
    001cedf) has pinned a snapshot: if another connection committed meanwhile, the write fails at once
    with "database is locked" (SQLITE_BUSY_SNAPSHOT; busy_timeout cannot help a stale snapshot), and
    the guard took that for an outage. Holding the write lock from the start, a durable transaction
    reads what no one else can change before it commits, and another writer waits its turn
    (busy_timeout) instead. Migrations rely on it too: processes starting together migrate in turn.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")
