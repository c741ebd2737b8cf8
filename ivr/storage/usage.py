"""Usage counts for the staff page (usage_daily): how often each section was heard or texted, per day.

The line adds them in batches (ivr/usage.py, the one write-behind path): a count is a statistic,
never something a caller left, so a batch commits without waiting for the disk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ivr.storage import events
from ivr.storage.database import Database, for_each_database
from ivr.storage.places import PlaceNote, note_places_in, place_rows
from ivr.storage.schema import as_utc, usage_daily

#: The channels that count sections; usage_daily also counts texts received (ivr/storage/places.py).
SECTION_CHANNELS = ("voice", "sms")


@dataclass(frozen=True)
class Use:
    """One section heard (channel "voice") or texted ("sms") on `day`, for the staff usage panel.
    `once_key` (a call step's key, see ivr/web/calls.py `retry_key`) makes a retried step count once."""

    day: dt.date
    channel: str
    section: str
    once_key: str = ""
    at: dt.datetime | None = None

    @classmethod
    def when(
        cls, channel: str, section: str, once_key: str = "", at: dt.datetime | None = None, zone: dt.tzinfo = dt.UTC
    ) -> Use:
        """A use at `at` (default now), counted on that moment's day in `zone` (default UTC; the line counts
        on the staff's days, STAFF_TIMEZONE)."""
        moment = as_utc(at)
        return cls(moment.astimezone(zone).date(), channel, section, once_key, moment)


def _add_count(insert: Any) -> Any:
    """Add `count` to a day's, channel's and section's row (made when missing)."""
    statement = insert(usage_daily)
    added = usage_daily.c.count + statement.excluded["count"]
    return statement.on_conflict_do_update(index_elements=["day", "channel", "section"], set_={"count": added})


ADD_COUNT = for_each_database(_add_count)


class UsageCounts(Database):
    """The usage_daily table."""

    def add_uses(self, uses: Sequence[Use], places: Sequence[PlaceNote] = ()) -> None:
        """Add a batch of usage counts (and calls' places in the menu, see ivr/storage/places.py) in one
        transaction.

        A use with a step key counts only if the key is new (Twilio retried the step, perhaps to
        another process): the keys are claimed in the same transaction, so each counts once.
        """
        if not uses and not places:
            return
        calls = place_rows(self, places)
        keys = events.claim_rows((use.once_key, as_utc(use.at)) for use in uses if use.once_key)
        # Not waiting for the disk: a batch holds SQLite's one write lock, and an fsync under it kept the
        # texts of both workers waiting (ivr/usage.py says what a crash may cost the counts). Everything
        # above is worked out before the transaction, for the same reason.
        with self.engine.begin() as connection:
            note_places_in(connection, calls)
            claimed = events.claim_many(connection, keys)
            totals: dict[tuple[dt.date, str, str], int] = {}
            for use in uses:
                if use.once_key:
                    key = use.once_key[: events.KEY_LENGTH]
                    if key not in claimed:
                        continue
                    claimed.discard(key)  # a key twice in the batch counts once
                place = (use.day, use.channel, use.section)
                totals[place] = totals.get(place, 0) + 1
            # Rows in one order in every process: two batches locking the same rows in opposite orders
            # would deadlock on PostgreSQL.
            counts = [
                {"day": day, "channel": channel, "section": section, "count": count}
                for (day, channel, section), count in sorted(totals.items())
            ]
            if counts:
                connection.execute(ADD_COUNT[connection.dialect.name], counts)

    def usage(self, since: dt.date) -> list[dict[str, Any]]:
        """Sections heard ("voice") and texted ("sms") per day and section from `since` on, newest day first."""
        query = (
            sa.select(usage_daily)
            .where(usage_daily.c.day >= since, usage_daily.c.channel.in_(SECTION_CHANNELS))
            .order_by(usage_daily.c.day.desc(), usage_daily.c.channel, usage_daily.c.section)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
