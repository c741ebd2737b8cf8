"""The staff alert outbox (staff_alerts): a text to STAFF_ALERT_NUMBERS for each urgent request.

An alert is queued in the same transaction as its urgent request (ivr/storage/queue.py), so none is
lost to a failing API or a restart; ivr/alerts.py claims, sends and settles them. They hold no
patient data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ivr.storage.database import Database
from ivr.storage.schema import as_utc, staff_alerts

#: An alert claimed by a process that died before sending is sent by another after this long.
ALERT_CLAIM_SECONDS = 120


def queue_alert_in(connection: sa.Connection, at: dt.datetime) -> None:
    """Queue one alert in `connection`'s transaction."""
    connection.execute(staff_alerts.insert().values(created_at=at, attempts=0))


class StaffAlerts(Database):
    """Alerts waiting to be sent, claimed by one process at a time."""

    def claim_alerts(self, at: dt.datetime | None = None) -> list[int]:
        """Alerts waiting to be sent, claimed for this process (one that died holding a claim loses it
        after ALERT_CLAIM_SECONDS), so two processes never send the same alert at once."""
        at = as_utc(at)
        stale = at - dt.timedelta(seconds=ALERT_CLAIM_SECONDS)
        waiting = sa.and_(
            staff_alerts.c.sent_at.is_(None),
            sa.or_(staff_alerts.c.claimed_at.is_(None), staff_alerts.c.claimed_at < stale),
        )
        # One UPDATE ... RETURNING, so the transaction starts by writing: on SQLite a read first and a write
        # after another connection's commit fails at once (busy_timeout cannot wait for a stale snapshot),
        # which the guard took for an outage of the whole database.
        claim = staff_alerts.update().where(waiting).values(claimed_at=at).returning(staff_alerts.c.id)
        with self.durable() as connection:
            return sorted(int(row.id) for row in connection.execute(claim))

    def settle_alert(self, alert_id: int, sent: bool, at: dt.datetime | None = None) -> None:
        """Note an alert sent, or failed (released for the next try)."""
        values: dict[str, Any] = {"attempts": staff_alerts.c.attempts + 1, "claimed_at": None}
        if sent:
            values["sent_at"] = as_utc(at)
        with self.durable() as connection:
            connection.execute(staff_alerts.update().where(staff_alerts.c.id == alert_id).values(**values))

    def unsent_alerts(self) -> int:
        """How many alerts wait to be sent."""
        query = sa.select(sa.func.count()).select_from(staff_alerts).where(staff_alerts.c.sent_at.is_(None))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())
