"""Moving the spool (ivr/spool.py) into the database: each record exactly once, durably."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ivr.storage import events
from ivr.storage.database import Database
from ivr.storage.queue import attach_recording_in, open_voice_message_in, record_urgent_call_in
from ivr.storage.schema import from_db, utcnow
from ivr.storage.texts import TextChanges, store_text_turn_in


def _spooled_time(record: dict[str, Any]) -> dt.datetime:
    """When a spooled event happened (its record's `at`), so staff see the real time, not the drain's."""
    try:
        return from_db(dt.datetime.fromisoformat(str(record["at"]))) or utcnow()
    except (KeyError, ValueError):
        return utcnow()


class SpoolReplay(Database):
    """Applies records kept in the spool while the database was away."""

    def apply_spooled(self, record: dict[str, Any]) -> bool:
        """Move one spooled record into the database, exactly once; True when this call applied it.

        The record's key goes into processed_events in the same transaction as the record itself, so
        replaying the spool (after a crash mid-drain, or by two processes at once) changes nothing more.
        The commit waits for the disk: the spool forgets the record once this returns.
        """
        at = _spooled_time(record)
        with self.durable() as connection:
            if not events.claim(connection, f"spool:{record['id']}", at):
                return False
            kind = record["kind"]
            if kind == "text_turn":
                store_text_turn_in(
                    connection,
                    str(record.get("event_key", "")),
                    str(record["phone_hash"]),
                    str(record.get("phone", "")),
                    str(record.get("outcome", "")),
                    TextChanges.from_json(record.get("changes") or {}),
                    at,
                )
            elif kind == "voicemail":
                open_voice_message_in(
                    connection,
                    str(record["call_sid"]),
                    str(record.get("phone", "")),
                    str(record.get("topic", "")),
                    str(record.get("lang", "en")),
                    at,
                )
            elif kind == "urgent_call":
                record_urgent_call_in(
                    connection,
                    str(record.get("call_sid", "")),
                    str(record.get("phone", "")),
                    str(record.get("urgent_kind", "")),
                    str(record.get("lang", "en")),
                    at,
                )
            elif kind == "recording":
                attach_recording_in(
                    connection,
                    str(record["call_sid"]),
                    str(record["recording_sid"]),
                    str(record["url"]),
                    int(record["seconds"]),
                    phone=str(record.get("phone", "")),
                    section=str(record.get("topic", "")),
                    lang=str(record.get("lang", "en")),
                    at=at,
                )
            else:
                raise ValueError(f"unknown spool record kind {kind!r}")
        return True
