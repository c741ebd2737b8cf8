"""Databases for tests: a new SQLite file, or a new database on a real PostgreSQL server.

Each SQLite test database is a copy of a file migrated once per session (`migrated_sqlite_template`).

The PostgreSQL server is named by CARELINE_TEST_POSTGRES_URL (an admin URL such as
postgresql+psycopg://postgres:secret@127.0.0.1:5432/postgres); `.ci/with-postgres` starts a
throwaway one and sets it. Each test gets its own database, copied from a template that was
migrated once per test session, so a test starts from the schema in a few milliseconds.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from ivr.storage import Storage

POSTGRES_URL_VARIABLE = "CARELINE_TEST_POSTGRES_URL"

NO_POSTGRES_REASON = (
    f"PostgreSQL cases need a server: set {POSTGRES_URL_VARIABLE}, or run `make test-pg` to start a throwaway one"
)


def configured_postgres_url() -> str:
    """The admin URL of the test PostgreSQL server, or '' when none is configured."""
    return os.environ.get(POSTGRES_URL_VARIABLE, "").strip()


def migrated_sqlite_template(path: Path) -> Path:
    """Create and migrate the SQLite file at `path` for tests to copy; the file alone holds it all."""
    storage = Storage(f"sqlite:///{path}", "template")
    storage.migrate()
    storage.dispose()
    # A copy of the file alone must be the whole database: no write-ahead log left beside it.
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(("-wal", "-journal")) and p.stat().st_size]
    assert not leftovers, f"the template database left {leftovers}"
    return path


def upgraded(url: str) -> str:
    """`url`, its schema upgraded to the newest migration: the release step (`flask --app ivr db upgrade`,
    run here in-process) that must come before a line starts on a new database. Returns `url`."""
    storage = Storage(url, "release step")
    storage.migrate()
    storage.dispose()
    return url


class PostgresServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url: URL = make_url(admin_url)
        self._admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        self._prefix = f"careline_test_{os.getpid()}"
        self._template: str | None = None

    def url_of(self, database: str) -> str:
        """The URL of `database` on this server, password included."""
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def _execute(self, statement: str) -> None:
        with self._admin.connect() as connection:
            connection.exec_driver_sql(statement)

    def _migrated_template(self) -> str:
        """A database with the newest schema, made once per session, that new databases copy."""
        if self._template is None:
            name = f"{self._prefix}_template"
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._execute(f'CREATE DATABASE "{name}"')
            storage = Storage(self.url_of(name), "template")
            storage.migrate()
            storage.dispose()
            self._template = name
        return self._template

    @contextmanager
    def fresh_database(self, migrated: bool = True) -> Iterator[str]:
        """A new database for one test (with the schema unless `migrated` is False), dropped afterwards."""
        name = f"{self._prefix}_{uuid.uuid4().hex[:12]}"
        template = self._migrated_template() if migrated else "template0"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield self.url_of(name)
        finally:
            # FORCE ends connections the test left open (an app's pool, a killed server process).
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop the template and let go of the server."""
        if self._template:
            self._execute(f'DROP DATABASE IF EXISTS "{self._template}" WITH (FORCE)')
        self._admin.dispose()
