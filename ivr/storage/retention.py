"""Keeping data no longer than needed (`flask --app ivr purge`, ivr/retention.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ivr.storage.database import Database
from ivr.storage.schema import (
    call_places,
    callback_requests,
    login_attempts,
    opt_outs,
    preferences,
    processed_events,
    request_notes,
    sms_sessions,
    staff_acceptances,
    staff_alerts,
    staff_audit,
    texts_sent_daily,
    usage_daily,
)


class Retention(Database):
    """Removes what is older than the retention period."""

    def purge(
        self, cutoff: dt.datetime, dry_run: bool = False, audit_cutoff: dt.datetime | None = None
    ) -> dict[str, int]:
        """Remove what is older than `cutoff` and no longer needed; rows removed per table.

        Call-back requests go once staff marked them done before `cutoff` (with them the reference to
        their recording); open ones stay, whatever their age. Opt-outs stay for good (a STOP is
        honoured for ever); an opt-in (START) older than `cutoff` is forgotten, since it changes
        nothing. Usage counts, daily text counts, handled-message keys, text conversations, remembered choices,
        sign-in failures, staff acceptances and call places (by the call's start) older than `cutoff` go. Staff
        notes go with their request. The staff audit (codes, no health data) has its own, longer period: rows
        before `audit_cutoff` go (none when it is None).
        """
        cutoff = cutoff.astimezone(dt.UTC)
        purged_requests = sa.and_(callback_requests.c.status == "done", callback_requests.c.done_at < cutoff)
        conditions: dict[str, tuple[sa.Table, Any]] = {
            # Notes first: they go with the requests removed next.
            "request_notes": (
                request_notes,
                request_notes.c.request_id.in_(sa.select(callback_requests.c.id).where(purged_requests)),
            ),
            "callback_requests": (callback_requests, purged_requests),
            "usage_daily": (usage_daily, usage_daily.c.day < cutoff.date()),
            "texts_sent_daily": (texts_sent_daily, texts_sent_daily.c.day < cutoff.date()),
            "processed_events": (processed_events, processed_events.c.created_at < cutoff),
            "sms_sessions": (sms_sessions, sms_sessions.c.updated_at < cutoff),
            "preferences": (preferences, preferences.c.updated_at < cutoff),
            "opt_outs": (opt_outs, sa.and_(opt_outs.c.opted_out.is_(False), opt_outs.c.changed_at < cutoff)),
            "login_attempts": (login_attempts, login_attempts.c.at < cutoff),
            "staff_acceptances": (staff_acceptances, staff_acceptances.c.accepted_at < cutoff),
            "staff_alerts": (staff_alerts, staff_alerts.c.sent_at < cutoff),
            "call_places": (call_places, call_places.c.started_at < cutoff),
        }
        if audit_cutoff is not None:
            conditions["staff_audit"] = (staff_audit, staff_audit.c.at < audit_cutoff.astimezone(dt.UTC))
        removed: dict[str, int] = {}
        with self.durable() as connection:
            for name, (table, condition) in conditions.items():
                if dry_run:
                    count = sa.select(sa.func.count()).select_from(table).where(condition)
                    removed[name] = int(connection.execute(count).scalar_one())
                else:
                    removed[name] = int(connection.execute(table.delete().where(condition)).rowcount)
        return removed
