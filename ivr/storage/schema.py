"""The line's tables, as SQLAlchemy Core sees them (Alembic creates and changes them: ivr/migrations).

Times are stored in UTC: SQLite keeps no time zone, so every time goes in as UTC (`as_utc`) and comes
back aware (`from_db`).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

metadata = sa.MetaData()

opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("phone_hash", sa.String(64), primary_key=True),
    sa.Column("opted_out", sa.Boolean, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

callback_requests = sa.Table(
    "callback_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),  # voice | sms
    sa.Column("kind", sa.String(16), nullable=False),  # voicemail | callback
    sa.Column("phone", sa.String(64), nullable=True),
    sa.Column("topic", sa.String(32), nullable=False, default=""),
    sa.Column("lang", sa.String(8), nullable=False, default="en"),
    sa.Column("urgent", sa.Boolean, nullable=False, default=False),
    sa.Column("recording_sid", sa.String(64), nullable=True),
    sa.Column("recording_url", sa.String(512), nullable=True),
    sa.Column("recording_seconds", sa.Integer, nullable=True),
    sa.Column("note", sa.String(64), nullable=False, default=""),
    sa.Column("status", sa.String(8), nullable=False, default="open"),  # open | done
    sa.Column("done_by", sa.String(64), nullable=True),
    sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("dedupe_key", sa.String(80), nullable=True, unique=True),
    # Migration 0003: the urgent kind (emergency, crisis, distress) and, for texts, the words sealed.
    sa.Column("urgent_kind", sa.String(16), nullable=True),
    sa.Column("words", sa.Text, nullable=True),
    # Migration 0008: following a request through. Claimed by ("I'm calling"), the outcome it was closed
    # with (reached, left_message, no_answer, wrong_number), and the voice message's transcript, sealed,
    # with its state (completed, failed, or none when Twilio writes out no transcript for the language).
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("transcript", sa.Text, nullable=True),
    sa.Column("transcript_state", sa.String(16), nullable=True),
)

#: One voice message per recording (migration 0005): Twilio reports each recording twice, maybe at once.
sa.Index("ix_callback_requests_recording_sid", callback_requests.c.recording_sid, unique=True)

#: Alerts to STAFF_ALERT_NUMBERS waiting to be sent (ivr/alerts.py): written in the same transaction as
#: the urgent request, so no alert is lost to a failing API or a restart. They hold no patient data.
staff_alerts = sa.Table(
    "staff_alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
)

sms_sessions = sa.Table(
    "sms_sessions",
    metadata,
    sa.Column("phone_hash", sa.String(64), primary_key=True),
    sa.Column("lang", sa.String(8), nullable=False),
    sa.Column("section", sa.String(32), nullable=False, default=""),
    sa.Column("next_part", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

preferences = sa.Table(
    "preferences",
    metadata,
    sa.Column("phone_hash", sa.String(64), primary_key=True),
    sa.Column("lang", sa.String(8), nullable=False),
    sa.Column("slow", sa.Boolean, nullable=False, default=False),
    sa.Column("last_section", sa.String(32), nullable=False, default=""),
    sa.Column("last_heard_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

usage_daily = sa.Table(
    "usage_daily",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("channel", sa.String(8), primary_key=True),
    sa.Column("section", sa.String(32), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False, default=0),
)

staff_users = sa.Table(
    "staff_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Migration 0006: one more at every sign-out, which ends the account's open sessions.
    sa.Column("session_generation", sa.Integer, nullable=False, default=0, server_default="0"),
)

login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_hash", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("key", sa.String(96), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # The answer given the first time (migration 0002), so a retried message gets the same one.
    sa.Column("outcome", sa.String(64), nullable=True),
)

staff_acceptances = sa.Table(
    "staff_acceptances",
    metadata,
    sa.Column("call_sid", sa.String(64), primary_key=True),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
)

#: One row per call (migration 0007), for the staff page's picture of the line: the last place in the
#: menu the line answered (updated at every step), and how the call ended (Twilio's status callback).
#: Keyed by a keyed hash of the CallSid; no phone number, nothing said.
call_places = sa.Table(
    "call_places",
    metadata,
    sa.Column("call_key", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("place", sa.String(16), nullable=False, default=""),  # a call_dialog node, "goodbye", "" (none)
    sa.Column("section", sa.String(32), nullable=False, default=""),
    sa.Column("lang", sa.String(8), nullable=False, default=""),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),  # Twilio's final CallStatus: completed, busy, ...
    sa.Column("seconds", sa.Integer, nullable=True),
)


#: What staff did, when, to which request (migration 0008): codes only, never words or phone numbers.
#: `purge` keeps it for AUDIT_RETENTION_DAYS, longer than the requests it names.
staff_audit = sa.Table(
    "staff_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("staff", sa.String(64), nullable=False),
    sa.Column("action", sa.String(24), nullable=False),
    sa.Column("request_id", sa.Integer, nullable=True, index=True),
    sa.Column("detail", sa.String(32), nullable=False, default="", server_default=""),
)

#: A staff member's short notes on a request (migration 0008), sealed: they may hold health information.
request_notes = sa.Table(
    "request_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Integer, nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("staff", sa.String(64), nullable=False),
    sa.Column("words", sa.Text, nullable=False),
)


def utcnow() -> dt.datetime:
    """The current time in UTC, the only time zone the database sees."""
    return dt.datetime.now(dt.UTC)


def as_utc(at: dt.datetime | None) -> dt.datetime:
    """`at` (an aware datetime; now when None) in UTC: SQLite keeps no time zone, so every stored time is UTC."""
    return (at or utcnow()).astimezone(dt.UTC)


def from_db(at: dt.datetime | None) -> dt.datetime | None:
    """A time read back from the database, made aware (SQLite returns naive UTC times)."""
    if at is None:
        return None
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at


#: Texts the line sent today, per counter: a destination number ("to:" and its keyed hash) or a staff
#: member ("staff:" and a keyed hash of the name). The daily caps (ivr/outbound_texts.py) are checked
#: and counted in one statement against this table, so many processes on many machines share them.
texts_sent_daily = sa.Table(
    "texts_sent_daily",
    metadata,
    sa.Column("counter", sa.String(80), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("messages", sa.Integer, nullable=False),
)
