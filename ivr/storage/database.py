"""The database connection every part of storage shares: one SQLAlchemy engine and its pool.

SQLite by default, PostgreSQL by DATABASE_URL; SQLAlchemy Core builds each database's SQL, caches
compiled statements and pools connections. Two kinds of transaction, on the same engine:

- `engine.begin()`: commits without waiting for the disk. For what a person would not miss if a
  power cut lost the last second of it: a text that only moves a conversation along, remembered
  choices, usage counts. (A crash of the process itself loses none of it.)
- `durable()`: the commit waits for the disk. For what a caller leaves (a voice message, a
  call-back request, an opt-out), records moved in from the spool, staff accounts, the schema.
  On SQLite it begins with BEGIN IMMEDIATE, so it may read before it writes (see `sqlite.begin_writing`).

Every `engine.begin()` transaction that writes starts with its write (an upsert, an insert unless
there, an UPDATE ... RETURNING): on SQLite a transaction that read first and writes after another
connection's commit would fail at once (issue 15 item 5).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ivr.storage import sqlite

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

T = TypeVar("T")


def alembic_config() -> Config:
    """Alembic's configuration for the line's migrations (ivr/migrations; no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migration_scripts() -> ScriptDirectory:
    """The migrations this code knows (ivr/migrations/versions)."""
    return ScriptDirectory.from_config(alembic_config())


#: Each database's INSERT, which knows its ON CONFLICT clauses (SQLite and PostgreSQL spell them alike).
INSERTS: dict[str, Callable[[sa.Table], Any]] = {"sqlite": sqlite_dialect.insert, "postgresql": postgresql.insert}


def for_each_database(build: Callable[[Callable[[sa.Table], Any]], T]) -> dict[str, T]:
    """`build(insert)` for each database's INSERT, by dialect name: an upsert (or insert-unless-there)
    built once, at import, and run with its values as parameters (`STATEMENT[connection.dialect.name]`).

    Why once: building a statement on every call costs SQLAlchemy more than running it (its clauses
    coerced, its cache key worked out): measured on the 2-core machine under load, 520 us per call
    for a text conversation's upsert built each time against 175 us built once (a SELECT: 270 against
    120 us). The other statements are module constants for the same reason.
    """
    return {name: build(insert) for name, insert in INSERTS.items()}


def upsert(insert: Any, key: Sequence[str], updated: Sequence[str]) -> Any:
    """`insert` ON CONFLICT (`key`) DO UPDATE SET each of `updated` to the new row's value."""
    return insert.on_conflict_do_update(index_elements=list(key), set_={c: insert.excluded[c] for c in updated})


def make_engine(url: str) -> sa.Engine:
    """The line's engine for `url`, set up for its database (see the module docstring)."""
    # preserve_rowcount: "was this row inserted?" is read from INSERT ... ON CONFLICT DO NOTHING's
    # rowcount, which psycopg reports as -1 unless SQLAlchemy keeps it before closing the cursor.
    # hide_parameters: neither log lines nor error messages may quote a phone number.
    options: dict[str, Any] = {"execution_options": {"preserve_rowcount": True}, "hide_parameters": True}
    if url.startswith("sqlite"):
        try:
            sqlite.prepare_file(url)
        except OSError as error:
            # The line still starts (menus need no database); storage is retried later.
            log.error("Cannot create the database folder: %s", type(error).__name__)
        engine = sa.create_engine(sqlite.read_write_url(url), **options)
        sqlite.configure(engine)
    else:
        # A server connection can die (restart, failover): tested when taken from the pool. A host
        # that does not answer, or a row locked by someone else, must not hold a caller past Twilio's
        # 15 s: after 5 s the line answers without the database (ivr/resilience.py). Commits do not
        # wait for the disk unless the transaction asks (`durable`).
        options.update(pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=3)
        server_options = "-c lock_timeout=5000 -c synchronous_commit=off"
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5, "options": server_options}, **options)
    return engine


@functools.cache
def newest_migration() -> str | None:
    """The revision id of the newest migration in ivr/migrations/versions (read once per process:
    the files do not change under a running line)."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


class Database:
    """The engine and the keyed hashes every part of storage uses (see ivr/storage/__init__.py)."""

    def __init__(self, database_url: str, secret_key: str) -> None:
        self._secret = secret_key.encode()
        self.engine: sa.Engine = make_engine(database_url)
        path = sqlite.database_path(database_url) if database_url.startswith("sqlite") else None
        #: The SQLite file this engine opened, checked before each connection is used (None: PostgreSQL).
        self.file_watch = sqlite.FileWatch(path).watch(self.engine) if path is not None else None
        # The key that seals words people texted: derived from SECRET_KEY with HKDF, for this use only.
        words_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"careline words at rest")
        self._fernet = Fernet(base64.urlsafe_b64encode(words_key.derive(self._secret)))

    @contextmanager
    def durable(self) -> Iterator[sa.Connection]:
        """A transaction (on the same engine and pool) whose commit waits for the disk."""
        with self.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                with sqlite.waiting_for_disk(connection), connection.begin():
                    sqlite.begin_writing(connection)
                    yield connection
                return
            with connection.begin():
                # Straight to the driver, like a new connection's settings: the driver begins the
                # transaction with it, and it holds until the commit.
                driver = connection.connection.driver_connection
                assert driver is not None
                with driver.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO on")
                yield connection

    # -- schema and connections -----------------------------------------------------------------

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to `revision` (the newest by default), creating it on an empty database.

        A release step (`flask --app ivr db upgrade`, ivr/release.py); only local mode runs it at start."""
        self._run_migrations(command.upgrade, revision)

    def downgrade(self, revision: str) -> None:
        """Downgrade the schema to `revision` ("-1": one step; "base": no tables), with this code's migrations."""
        self._run_migrations(command.downgrade, revision)

    def schema_revision(self) -> str | None:
        """The schema's revision as Alembic recorded it in the database; None when it has none (empty)."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def _run_migrations(self, step: Callable[[Config, str], None], revision: str) -> None:
        config = alembic_config()
        with self.durable() as connection:
            # Several processes may start at once: one migrates, the others wait, then find nothing to do.
            # SQLite: `durable` took the write lock already (BEGIN IMMEDIATE).
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(7212026)"))
            # Alembic's upgrade finds "nothing to do" too, but only after reading and running every
            # migration file: a start on a current SQLite file took 8.5 ms of CPU that way, 4.5 this way.
            current = MigrationContext.configure(connection).get_current_revision()
            if not (step is command.upgrade and revision == "head" and current == newest_migration()):
                config.attributes["connection"] = connection
                step(config, revision)
        # The process that migrated may fork workers next (gunicorn's preload): hand none of
        # these connections down to them.
        self.dispose()

    def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database file, off the request path (see
        `sqlite.checkpoint`); PostgreSQL checkpoints by itself."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                sqlite.checkpoint(connection)

    def dispose(self) -> None:
        """Close every pooled connection (they reopen on the next use)."""
        self.engine.dispose()

    def file_replaced(self) -> bool:
        """Whether the SQLite file this engine opened was deleted or replaced since (always False on
        PostgreSQL): then nothing is written until a restart (see `sqlite.FileWatch`)."""
        return self.file_watch is not None and self.file_watch.replaced()

    def after_fork(self) -> None:
        """Call in a freshly forked worker: drop the parent's pooled connections without closing them."""
        self.engine.dispose(close=False)

    # -- privacy --------------------------------------------------------------------------------

    def phone_hash(self, phone: str) -> str:
        """A keyed hash of a phone number (HMAC-SHA256 with SECRET_KEY) over its digits and "+":
        lets the line recognise a number without storing it."""
        canonical = "".join(character for character in phone if character.isdigit() or character == "+")
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

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

    def key_hash(self, kind: str, value: str) -> str:
        """A keyed hash of `value` (a user name, an IP address): countable, but not readable."""
        return hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
