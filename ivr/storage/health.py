"""What monitoring reads from the database (/readyz, /metrics): counts, never a row's contents."""

from __future__ import annotations

import sqlalchemy as sa

from ivr.storage.database import Database
from ivr.storage.schema import callback_requests

PING = sa.select(sa.literal(1))

OPEN_REQUEST_COUNTS = sa.select(sa.func.count(), sa.func.count().filter(callback_requests.c.urgent.is_(True))).where(
    callback_requests.c.status == "open"
)


class LineHealth(Database):
    """Monitoring's questions to the database."""

    def ping(self) -> bool:
        """Ask the database the simplest question: True, or its error when it cannot answer."""
        with self.engine.connect() as connection:
            connection.execute(PING)
        return True

    def open_request_counts(self) -> tuple[int, int]:
        """How many requests (call-backs, voice messages, urgent calls) are open, and how many of them urgent."""
        with self.engine.connect() as connection:
            total, urgent = connection.execute(OPEN_REQUEST_COUNTS).one()
        return int(total), int(urgent)
