"""Everything SQLite needs that PostgreSQL does not, in one place.

- WAL, so several app processes read while one writes.
- busy_timeout: a writer waits up to 5 s for another's turn (SQLite has one writer at a time), then
  fails, and the line answers without the database (ivr/resilience.py) rather than keep a caller
  past Twilio's 15 s.
- synchronous: NORMAL by default (in WAL mode a commit survives a crash of the process, and only a
  power cut may lose the newest few); FULL for a transaction that keeps something a person left,
  so its commit is on the disk before the caller hears "saved" (see ivr/storage/database.py).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa


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
    """
    path = database_path(url)
    if path is None:
        return
    for folder in reversed([path.parent, *path.parent.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def read_write_url(url: str) -> sa.URL | str:
    """`url` opening its file read-write only (`mode=rw`, after `prepare_file` made it): a connection
    never creates a file of its own, so a database file deleted or moved away is an error the line
    sees (and spools through), never a new empty database the pool quietly fills."""
    path = database_path(url)
    if path is None:
        return url
    parsed = sa.engine.make_url(url)
    return parsed.set(database=f"file:{quote(str(path))}?mode=rw", query={**parsed.query, "uri": "true"})


def configure(engine: sa.Engine) -> None:
    """Set every new connection of `engine` up for the line: WAL, busy timeout, synchronous NORMAL."""
    sa.event.listen(engine, "connect", _on_connect)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
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


def lock_for_migration(connection: sa.Connection) -> None:
    """Take the write lock before Alembic reads the schema version (the driver would begin only at
    the first write): processes starting together migrate one after the other."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")
