"""A caller's remembered choices on the phone line (preferences): language, speed, the last section heard.

A convenience, not something the caller left: written without waiting for the disk. "Forget my
choices" is a person's request about their data, so it waits for the disk.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ivr.storage.database import Database
from ivr.storage.schema import from_db, preferences


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
            row = connection.execute(sa.select(preferences).where(preferences.c.phone_hash == key)).first()
        if row is None:
            return None
        saved = dict(row._mapping)
        heard_at = saved["last_heard_at"] = from_db(saved["last_heard_at"])
        if saved["last_section"] and (heard_at is None or now - heard_at > keep_last_section_for):
            statement = (
                preferences.update().where(preferences.c.phone_hash == key).values(last_section="", last_heard_at=None)
            )
            with self.engine.begin() as connection:
                connection.execute(statement)
            saved.update(last_section="", last_heard_at=None)
        return saved

    def remember_choices(self, phone: str, lang: str, slow: bool, section: str, now: dt.datetime) -> None:
        """Save `phone`'s language and speed; with `section`, also that they heard it at `now`."""
        changed: dict[str, Any] = {"lang": lang, "slow": slow, "updated_at": now}
        if section:
            changed.update(last_section=section, last_heard_at=now)
        insert = self.insert(preferences).values(
            phone_hash=self.phone_hash(phone),
            lang=lang,
            slow=slow,
            last_section=section,
            last_heard_at=now if section else None,
            updated_at=now,
        )
        with self.engine.begin() as connection:
            connection.execute(insert.on_conflict_do_update(index_elements=["phone_hash"], set_=changed))

    def forget_choices(self, phone: str) -> None:
        """Erase everything the line saved about `phone`'s choices."""
        with self.durable.begin() as connection:
            connection.execute(preferences.delete().where(preferences.c.phone_hash == self.phone_hash(phone)))
