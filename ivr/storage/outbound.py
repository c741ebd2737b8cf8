"""What the outbound-text policy (ivr/outbound_texts.py) keeps: daily counts per number and per staff
member (texts_sent_daily), and which section each call already got (a key in processed_events).

Every check is a write that checks: one INSERT ... ON CONFLICT DO UPDATE ... WHERE the new count stays
within the limit, RETURNING the count (no row back: over the limit). No read comes before the
transaction's first write, so SQLite never fails it for a snapshot another connection moved on
(BUSY_SNAPSHOT), and PostgreSQL's row lock orders two processes counting the same number at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from ivr.storage import events
from ivr.storage.database import Database, for_each_database
from ivr.storage.schema import processed_events, texts_sent_daily


@dataclass(frozen=True)
class DailyCounter:
    """One daily cap: a counter key ("to:<hash>", "staff:<hash>") and the most messages a day it allows."""

    key: str
    limit: int


def _count_within_limit(insert: Any) -> Any:
    """Add `messages` to a counter's day, only where the sum stays within `limit`; returns the new count."""
    table = texts_sent_daily
    added = table.c.messages + insert.excluded.messages
    return insert.on_conflict_do_update(
        index_elements=["counter", "day"],
        set_={"messages": added},
        where=added <= sa.bindparam("limit"),
    ).returning(table.c.messages)


COUNT_WITHIN_LIMIT = for_each_database(lambda insert: _count_within_limit(insert(texts_sent_daily)))
remaining = texts_sent_daily.c.messages - sa.bindparam("unsent")
UNCOUNT = (
    texts_sent_daily.update()
    .where(texts_sent_daily.c.counter == sa.bindparam("key"), texts_sent_daily.c.day == sa.bindparam("on_day"))
    .values(messages=sa.case((remaining > 0, remaining), else_=0))
)
FORGET_CLAIM = processed_events.delete().where(processed_events.c.key == sa.bindparam("event_key"))


class _OverLimit(Exception):
    """Raised inside the transaction to roll back the counts it already added."""

    def __init__(self, counter: DailyCounter) -> None:
        super().__init__(counter.key[:8])
        self.counter = counter


class OutboundTexts(Database):
    """Daily text counts and once-per-call sections (see the module docstring)."""

    def reserve_texts(
        self, counters: Sequence[DailyCounter], day: dt.date, messages: int, once_key: str, at: dt.datetime
    ) -> Literal["reserved", "already_sent"] | DailyCounter:
        """Count `messages` texts on `day` against every counter, all or none; and claim `once_key`
        (a call and section) unless it is "". "already_sent": the key was claimed before; a counter:
        it would pass its limit (then nothing is counted or claimed)."""
        for counter in counters:
            if messages > counter.limit:
                return counter
        try:
            with self.durable() as connection:
                if once_key and not events.claim(connection, once_key, at, "text"):
                    return "already_sent"
                statement = COUNT_WITHIN_LIMIT[connection.dialect.name]
                for counter in counters:
                    values = {"counter": counter.key, "day": day, "messages": messages, "limit": counter.limit}
                    if connection.execute(statement, values).first() is None:
                        raise _OverLimit(counter)
        except _OverLimit as over:
            return over.counter
        return "reserved"

    def release_texts(
        self, counters: Sequence[DailyCounter], day: dt.date, unsent: int, once_key: str, sent_none: bool
    ) -> None:
        """Give back `unsent` reserved texts (the API refused them); when none was sent, the call's
        section may be asked for again, so `once_key` is let go too."""
        with self.durable() as connection:
            if unsent > 0:
                for counter in counters:
                    connection.execute(UNCOUNT, {"key": counter.key, "on_day": day, "unsent": unsent})
            if sent_none and once_key:
                connection.execute(FORGET_CLAIM, {"event_key": once_key[: events.KEY_LENGTH]})
