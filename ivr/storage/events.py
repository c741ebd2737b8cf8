"""Handled events (processed_events): what makes a request Twilio retried change nothing twice.

A key per event (a text's MessageSid, a call step's idempotency token, a spooled record's id) is
claimed in the same transaction as what the event changes; a retry finds its key taken, and gets
the answer (`outcome`) noted the first time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ivr.storage.database import Database, for_each_database
from ivr.storage.driver import DriverConnection
from ivr.storage.schema import as_utc, processed_events

#: How long a key may be (the column's width), and an answer.
KEY_LENGTH = 96
OUTCOME_LENGTH = 64

#: The key unless it is there (rowcount 1 when this statement added it).
CLAIM = for_each_database(lambda insert: insert(processed_events).on_conflict_do_nothing())
NOTED_OUTCOME = sa.select(processed_events.c.outcome).where(processed_events.c.key == sa.bindparam("key"))
SETTLE = (
    processed_events.update()
    .where(processed_events.c.key == sa.bindparam("event_key"))
    .values(outcome=sa.bindparam("new_outcome"))
)


def claim(connection: sa.Connection | DriverConnection, key: str, at: dt.datetime, outcome: str | None = None) -> bool:
    """Note `key` at `at` (with the answer `outcome`) in `connection`'s transaction; False when it
    was noted before (a retry). On PostgreSQL a copy delivered twice at once waits here for the other."""
    values = {
        "key": key[:KEY_LENGTH],
        "created_at": at,
        "outcome": None if outcome is None else outcome[:OUTCOME_LENGTH],
    }
    return connection.execute(CLAIM[connection.dialect.name], values).rowcount == 1


#: Many keys at once: the rows inserted give back their keys (a key noted before gives nothing).
CLAIM_MANY = for_each_database(
    lambda insert: insert(processed_events).on_conflict_do_nothing().returning(processed_events.c.key)
)


def claim_rows(keys: Iterable[tuple[str, dt.datetime]]) -> list[dict[str, Any]]:
    """The rows `claim_many` inserts for (key, at) pairs: each key once, in one order."""
    rows = {key[:KEY_LENGTH]: at for key, at in keys}  # a key twice in a batch is one claim
    return [{"key": key, "created_at": at, "outcome": None} for key, at in sorted(rows.items())]


def claim_many(connection: sa.Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Note each of `claim_rows` in `connection`'s transaction, in one statement per batch (SQLAlchemy's
    "insertmanyvalues"); the keys this call noted, the others having been noted before.

    For the usage batch (ivr/storage/usage.py): claimed one statement at a time, a second of a busy
    line's steps (~300) took 15-57 ms holding SQLite's write lock, the texts waiting behind it
    (bench mix p99 42-56 ms).
    """
    if not rows:
        return set()
    return set(connection.execute(CLAIM_MANY[connection.dialect.name], rows).scalars())


def noted_outcome(connection: sa.Connection | DriverConnection, key: str) -> str:
    """The answer noted for the handled event `key` ("" if none was noted)."""
    return connection.execute(NOTED_OUTCOME, {"key": key[:KEY_LENGTH]}).scalar() or ""


class CallSteps(Database):
    """A call's steps: each answered once however often Twilio retries it (ivr/web/calls.py `retry_key`).
    Their keys wait for the disk: a step (texting a section) must not be done twice."""

    def claim_step(self, key: str, at: dt.datetime | None = None) -> str | None:
        """Claim one step of a call (`key`: from Twilio's idempotency token): None when this request is
        the first, else the outcome noted for the earlier one ("" if none yet)."""
        with self.durable() as connection:
            if claim(connection, key, as_utc(at)):
                return None
            return noted_outcome(connection, key)

    def settle_step(self, key: str, outcome: str) -> None:
        """Note what a claimed step came to, for a retry of it to give the same answer."""
        with self.durable() as connection:
            connection.execute(SETTLE, {"event_key": key[:KEY_LENGTH], "new_outcome": outcome[:OUTCOME_LENGTH]})
