"""Everything the line keeps: SQLite by default, PostgreSQL by DATABASE_URL, through SQLAlchemy Core.

The schema is created and upgraded by Alembic (ivr/migrations) in a release step, `flask --app ivr db upgrade`
(ivr/release.py); the app checks it at start. Phone numbers
are health-related data: they are stored in the clear only where staff need to call someone back
(a call-back request); everywhere else the line keeps a keyed hash (HMAC-SHA256 with SECRET_KEY).

One module per concern, each a part of `Storage`:

    schema.py       the tables, and how times are stored (UTC)
    database.py     the engine (SQLAlchemy's pool and statement cache), durable and relaxed commits,
                    migrations, the keyed hashes; sqlite.py: what only SQLite needs (WAL, busy timeout)
    events.py       handled events: a retried request changes nothing twice; a call's steps
    queue.py        voice messages, call-back requests and urgent calls, and staff working through them
    alerts.py       the staff alert outbox (one text to staff per urgent request)
    outbound.py     daily text counts per number and staff member, and each call's texted sections
    texts.py        the text line's conversations, opt-outs and answered messages
    preferences.py  a caller's remembered choices (language, speed, last section)
    usage.py        usage counts for the staff page (batched by ivr/usage.py)
    places.py       where each call was when it ended, and the numbers of the picture of the line
    staff.py        staff accounts, failed sign-ins, transfers staff took
    audit.py        the staff audit: who did what, when, to which request (codes, never words)
    replay.py       records from the spool (ivr/spool.py), applied exactly once
    retention.py    the purge of data older than the retention period
    health.py       what monitoring asks (/readyz, /metrics): does it answer, how many requests are open
"""

from __future__ import annotations

from ivr.storage.alerts import ALERT_CLAIM_SECONDS, StaffAlerts
from ivr.storage.audit import ACTIONS, StaffAudit
from ivr.storage.events import CallSteps
from ivr.storage.health import LineHealth
from ivr.storage.outbound import DailyCounter, OutboundTexts
from ivr.storage.places import TEXTS_RECEIVED, CallPlaces, PlaceNote, RequestFact
from ivr.storage.preferences import Preferences
from ivr.storage.queue import CallbackQueue, CallbackRequest
from ivr.storage.replay import SpoolReplay
from ivr.storage.retention import Retention
from ivr.storage.schema import (
    as_utc,
    call_places,
    callback_requests,
    from_db,
    login_attempts,
    metadata,
    opt_outs,
    preferences,
    processed_events,
    request_notes,
    sms_sessions,
    staff_acceptances,
    staff_alerts,
    staff_audit,
    staff_users,
    texts_sent_daily,
    usage_daily,
    utcnow,
)
from ivr.storage.staff import StaffRecords
from ivr.storage.texts import StoredConversation, TextChanges, TextLine
from ivr.storage.usage import UsageCounts, Use

__all__ = [
    "ACTIONS",
    "ALERT_CLAIM_SECONDS",
    "TEXTS_RECEIVED",
    "CallPlaces",
    "CallbackRequest",
    "DailyCounter",
    "PlaceNote",
    "RequestFact",
    "Storage",
    "StoredConversation",
    "TextChanges",
    "Use",
    "as_utc",
    "call_places",
    "callback_requests",
    "from_db",
    "login_attempts",
    "metadata",
    "opt_outs",
    "preferences",
    "processed_events",
    "request_notes",
    "sms_sessions",
    "staff_acceptances",
    "staff_alerts",
    "staff_audit",
    "staff_users",
    "texts_sent_daily",
    "usage_daily",
    "utcnow",
]


class Storage(
    CallbackQueue,
    StaffAlerts,
    OutboundTexts,
    TextLine,
    Preferences,
    UsageCounts,
    CallSteps,
    StaffRecords,
    StaffAudit,
    SpoolReplay,
    Retention,
    CallPlaces,
    LineHealth,
):
    """The line's database, opened once per process: one engine, and each concern's methods
    (see the modules above; they share `Database`'s engine and hashes)."""
