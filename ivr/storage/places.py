"""Where calls end (call_places), and the numbers behind the staff page's picture of the line.

Each answered step of a call notes the call's last place in the menu (`note_place`); Twilio's call
status callback closes the row with how the call ended (`close_call`). A row is keyed by a keyed hash
of the CallSid and holds no phone number and nothing said: a place, a section, a language, times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ivr.storage.database import Database, for_each_database, upsert
from ivr.storage.schema import as_utc, call_places, callback_requests, from_db, usage_daily

#: The usage_daily channel that counts texts received (section ""), per day in the staff time zone.
TEXTS_RECEIVED = "text-in"


def _place_upsert(insert: Any) -> Any:
    """A call's newest place: the call's start stays the first note's, and a note older than the row's
    (a batch from another process, written late) changes nothing."""
    statement = insert(call_places)
    newer = call_places.c.updated_at <= statement.excluded.updated_at
    changed = {name: statement.excluded[name] for name in ("updated_at", "place", "section", "lang")}
    return statement.on_conflict_do_update(index_elements=["call_key"], set_=changed, where=newer)


_NOTE_PLACE = for_each_database(_place_upsert)
#: How a call ended: a call the line never answered a step of gets a row of its own (place "").
_CLOSE_CALL = for_each_database(
    lambda insert: upsert(insert(call_places), ["call_key"], ("ended_at", "outcome", "seconds"))
)


@dataclass(frozen=True)
class PlaceNote:
    """A call's place in the menu after a step the line answered (see ivr/usage.py, which batches them)."""

    call_sid: str
    place: str
    section: str
    lang: str
    at: dt.datetime


def call_key(database: Database, call_sid: str) -> str:
    """A call's row key: a keyed hash of its CallSid."""
    return database.key_hash("call", call_sid)


def place_rows(database: Database, notes: Sequence[PlaceNote]) -> list[dict[str, Any]]:
    """The rows `note_places_in` writes for `notes`, in one order (rows locked alike everywhere). Made
    before the transaction begins: hashing and shaping them is most of a batch's Python work."""
    rows = [
        {
            "call_key": call_key(database, note.call_sid),
            "started_at": as_utc(note.at),
            "updated_at": as_utc(note.at),
            "place": note.place[:16],
            "section": note.section[:32],
            "lang": note.lang[:8],
        }
        for note in notes
    ]
    return sorted(rows, key=lambda row: str(row["call_key"]))


def note_places_in(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Note each call's place (`place_rows`) in `connection`'s transaction."""
    if rows:
        # One executemany for the batch, not a statement a row: a batch holds a second of new calls, and
        # row by row it held SQLite's write lock long enough to lift the bench's mix p99 from 26 to 63-69 ms.
        connection.execute(_NOTE_PLACE[connection.dialect.name], rows)


@dataclass(frozen=True)
class RequestFact:
    """One call-back request as the picture counts it: when, which section, urgent or not."""

    created_at: dt.datetime
    section: str
    urgent: bool


class CallPlaces(Database):
    """The call_places table, and the reads behind the picture of the line."""

    def close_call(self, call_sid: str, outcome: str, seconds: int, at: dt.datetime | None = None) -> None:
        """Note how a call ended (Twilio's final CallStatus) and how long it lasted."""
        moment = as_utc(at)
        values = {
            "call_key": call_key(self, call_sid),
            "started_at": moment - dt.timedelta(seconds=seconds),
            # As old as the call: a place noted during it, written late by a batch, still counts.
            "updated_at": moment - dt.timedelta(seconds=seconds),
            "place": "",
            "section": "",
            "lang": "",
            "ended_at": moment,
            "outcome": outcome[:16],
            "seconds": seconds,
        }
        with self.engine.begin() as connection:
            connection.execute(_CLOSE_CALL[connection.dialect.name], values)

    def call_starts(self, since: dt.datetime) -> list[dt.datetime]:
        """When each call since `since` started (UTC, aware)."""
        query = sa.select(call_places.c.started_at).where(call_places.c.started_at >= as_utc(since))
        with self.engine.connect() as connection:
            return [from_db(at) for (at,) in connection.execute(query) if at is not None]  # type: ignore[misc]

    def call_endings(self, since: dt.datetime) -> dict[str, int]:
        """Calls that started since `since` and ended, counted by their last place."""
        query = (
            sa.select(call_places.c.place, sa.func.count())
            .where(call_places.c.started_at >= as_utc(since), call_places.c.ended_at.is_not(None))
            .group_by(call_places.c.place)
        )
        with self.engine.connect() as connection:
            return {place: int(count) for place, count in connection.execute(query)}

    def calls_without_end(self, since: dt.datetime, before: dt.datetime) -> int:
        """Calls started since `since` whose last step was before `before` with no end reported: the sign that
        Twilio's call status callback is not set up."""
        query = (
            sa.select(sa.func.count())
            .select_from(call_places)
            .where(
                call_places.c.started_at >= as_utc(since),
                call_places.c.updated_at < as_utc(before),
                call_places.c.ended_at.is_(None),
            )
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def request_facts(self, since: dt.datetime) -> list[RequestFact]:
        """Every call-back request made since `since` (open or done): when, section, urgent."""
        columns = (callback_requests.c.created_at, callback_requests.c.topic, callback_requests.c.urgent)
        query = sa.select(*columns).where(callback_requests.c.created_at >= as_utc(since))
        with self.engine.connect() as connection:
            return [
                RequestFact(from_db(at), topic or "", bool(urgent))  # type: ignore[arg-type]
                for at, topic, urgent in connection.execute(query)
            ]

    def texts_received(self, since: dt.date) -> dict[dt.date, int]:
        """Texts received per day (staff time zone) from `since` on."""
        query = sa.select(usage_daily.c.day, usage_daily.c.count).where(
            usage_daily.c.channel == TEXTS_RECEIVED, usage_daily.c.day >= since
        )
        with self.engine.connect() as connection:
            return {day: int(count) for day, count in connection.execute(query)}
