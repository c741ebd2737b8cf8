"""Database faults for tests: take a running app's real database away, and bring it back; and let the
time an app waits before trying its database again pass at once (`move_clock_on`).

SQLite: the file (with its -wal and -shm companions) is moved aside and a folder put in its place,
so opening it fails ("unable to open database file"); the app's pooled connections are closed
first, as a database restart closes them. PostgreSQL: the database stops accepting connections
(ALTER DATABASE ... ALLOW_CONNECTIONS false) and every session on it is terminated on the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import make_url

from ivr.resilience import DatabaseGuard
from ivr.storage import Storage


def move_clock_on(app: Flask, seconds: float) -> None:
    """Let `seconds` pass for `app`'s database guard at once: its clock (ivr/resilience.py) reads that much
    later from now on, so the retry time (DATABASE_RETRY_SECONDS) and the spool checks (SPOOL_CHECK_SECONDS)
    come without a test sleeping through them. Everything else runs on the real clock."""
    guard: DatabaseGuard = app.extensions["careline.guard"]
    earlier = guard.clock
    guard.clock = lambda: earlier() + seconds


def close_pools(storage: Storage) -> None:
    """Close every pooled connection of `storage` (they reopen on the next use)."""
    storage.dispose()


@dataclass
class Outage:
    """Switch an app's database off (`begin`) and on again (`end`)."""

    app: Flask
    admin_url: str = ""  # PostgreSQL: a URL with the right to alter the database
    _moved: list[tuple[Path, Path]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.app.config["DATABASE_URL"]

    def begin(self) -> None:
        """The database is gone: every use from now on fails."""
        storage: Storage = self.app.extensions["careline"].storage
        if self.url.startswith("sqlite"):
            close_pools(storage)
            path = Path(self.url.split("///", 1)[1])
            aside = path.parent / "moved-aside"
            aside.mkdir(exist_ok=True)
            for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if companion.exists():
                    target = aside / companion.name
                    shutil.move(companion, target)
                    self._moved.append((target, companion))
            path.mkdir()
            return
        name = make_url(self.url).database
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            connection.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": name},
            )
        admin.dispose()

    def end(self) -> None:
        """The database is back, with everything it held before."""
        if self.url.startswith("sqlite"):
            path = Path(self.url.split("///", 1)[1])
            path.rmdir()
            for target, original in self._moved:
                shutil.move(target, original)
            self._moved.clear()
            return
        name = make_url(self.url).database
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        admin.dispose()


@dataclass
class ReadOnly:
    """Make a database readable but not writable (`begin`) and writable again (`end`), as a disk
    remounted read-only, a file with the wrong owner or a server in recovery would.

    SQLite: the file is made immutable for root (chattr +i: root ignores file modes), read-only
    (0444) for anyone else; SQLite then opens it read-only without a word. PostgreSQL: new sessions
    start read-only (default_transaction_read_only), every existing one is ended; once writable,
    sessions opened meanwhile stay read-only (as after a failover), only new ones can write.
    """

    url: str
    admin_url: str = ""

    def begin(self) -> None:
        self._set(True)

    def end(self) -> None:
        self._set(False)

    def _set(self, read_only: bool) -> None:
        if self.url.startswith("sqlite"):
            path = Path(make_url(self.url).database or "")
            if os.geteuid() == 0:
                subprocess.run(["chattr", "+i" if read_only else "-i", str(path)], check=True)
            else:
                path.chmod(0o444 if read_only else 0o600)
            return
        name = make_url(self.url).database
        setting = "SET default_transaction_read_only = on" if read_only else "RESET default_transaction_read_only"
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" {setting}')
            if read_only:  # sessions that began read-only stay so: only a new connection is writable
                connection.execute(
                    sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                    {"name": name},
                )
        admin.dispose()
