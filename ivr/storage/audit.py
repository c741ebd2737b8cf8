"""The staff audit (staff_audit): who did what, when, to which request (issue 15 item 7).

Codes only: an action (`ACTIONS`), a request id and a short code (an outcome, a topic id), never the
words a person said or wrote and never a phone number, so the audit can be kept for years without
keeping health data that long. Actions on a request are written in the same transaction as the
change they record (`audit_in`), so the history and the queue never disagree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ivr.storage.database import Database
from ivr.storage.schema import as_utc, from_db, staff_audit

#: What the audit records. Sign-in and sign-out have no request; send has a topic id, not a request.
ACTIONS = frozenset({"sign_in", "sign_out", "play", "claim", "attempt", "note", "done", "reopen", "send"})


def audit_in(
    connection: sa.Connection,
    staff: str,
    action: str,
    at: dt.datetime,
    request_ids: Iterable[int | None] = (None,),
    detail: str = "",
) -> None:
    """Record `action` by `staff` on each of `request_ids` in `connection`'s transaction."""
    if action not in ACTIONS:
        raise ValueError(f"unknown staff action {action!r}")
    rows = [
        {"at": as_utc(at), "staff": staff[:64], "action": action, "request_id": rid, "detail": detail[:32]}
        for rid in request_ids
    ]
    if rows:
        connection.execute(staff_audit.insert(), rows)


class StaffAudit(Database):
    """Reading and writing the staff audit."""

    def record_staff_action(
        self, staff: str, action: str, request_id: int | None = None, detail: str = "", at: dt.datetime | None = None
    ) -> None:
        """Record one staff action (sign-in, sign-out, play, send) that changes nothing else."""
        with self.durable() as connection:
            audit_in(connection, staff, action, as_utc(at), (request_id,), detail)

    def request_history(self, request_ids: Iterable[int]) -> list[dict[str, Any]]:
        """What staff did to any of `request_ids`, oldest first (a card's history)."""
        ids = sorted(set(request_ids))
        if not ids:
            return []
        query = (
            sa.select(staff_audit).where(staff_audit.c.request_id.in_(ids)).order_by(staff_audit.c.at, staff_audit.c.id)
        )
        with self.engine.connect() as connection:
            return [_row(row) for row in connection.execute(query)]

    def recent_staff_actions(self, limit: int = 30) -> list[dict[str, Any]]:
        """The latest staff actions of any kind, newest first (the page's recent activity)."""
        query = sa.select(staff_audit).order_by(staff_audit.c.at.desc(), staff_audit.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [_row(row) for row in connection.execute(query)]


def _row(row: sa.Row[Any]) -> dict[str, Any]:
    values = dict(row._mapping)
    values["at"] = from_db(values["at"])
    return values
