"""A caller's remembered choices on the phone line (preferences): language, speed, the last section heard.

A convenience, not something the caller left: written without waiting for the disk. "Forget my
choices" is a person's request about their data, so it waits for the disk.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ivr.storage.database import Database, for_each_database, upsert
from ivr.storage.schema import from_db, preferences

RECALL = sa.select(preferences).where(preferences.c.phone_hash == sa.bindparam("key"))
FORGET_LAST_SECTION = (
    preferences.update()
    .where(preferences.c.phone_hash == sa.bindparam("key"))
    .values(last_section="", last_heard_at=None)
)
FORGET = preferences.delete().where(preferences.c.phone_hash == sa.bindparam("key"))
#: Language and speed; and with a section heard, that section and when.
_CHOICES = ("lang", "slow", "updated_at")
SAVE_CHOICES = for_each_database(lambda insert: upsert(insert(preferences), ["phone_hash"], _CHOICES))
SAVE_CHOICES_AND_SECTION = for_each_database(
    lambda insert: upsert(insert(preferences), ["phone_hash"], (*_CHOICES, "last_section", "last_heard_at"))
)


class Preferences(Database):
    """What the phone line remembers about a caller's number (by its keyed hash)."""

    def recall_choices(
        self, phone: str, now: dt.datetime, keep_last_section_for: dt.timedelta
    ) -> dict[str, Any] | None:
        """What the line saved about `phone` (lang, slow, last_section, last_heard_at), or None.

        A last section older than `keep_last_section_for` is no longer needed, so it is erased here.
        """
        key = self.phone_hash(phone)
        with self.engine.connect() as connection:
            row = connection.execute(RECALL, {"key": key}).first()
        if row is None:
            return None
        saved = dict(row._mapping)
        heard_at = saved["last_heard_at"] = from_db(saved["last_heard_at"])
        if saved["last_section"] and (heard_at is None or now - heard_at > keep_last_section_for):
            with self.engine.begin() as connection:
                connection.execute(FORGET_LAST_SECTION, {"key": key})
            saved.update(last_section="", last_heard_at=None)
        return saved

    def remember_choices(self, phone: str, lang: str, slow: bool, section: str, now: dt.datetime) -> None:
        """Save `phone`'s language and speed; with `section`, also that they heard it at `now`."""
        statements = SAVE_CHOICES_AND_SECTION if section else SAVE_CHOICES
        values = {
            "phone_hash": self.phone_hash(phone),
            "lang": lang,
            "slow": slow,
            "last_section": section,
            "last_heard_at": now if section else None,
            "updated_at": now,
        }
        with self.engine.begin() as connection:
            connection.execute(statements[connection.dialect.name], values)

    def forget_choices(self, phone: str) -> None:
        """Erase everything the line saved about `phone`'s choices."""
        with self.durable() as connection:
            connection.execute(FORGET, {"key": self.phone_hash(phone)})
