"""The text line's memory: each number's conversation (sms_sessions), its opt-out (opt_outs), and the
MessageSids already answered (processed_events), all keyed by a hash of the number.

A text is read once (`text_conversation`) and stored once (`record_text_turn`), all or nothing,
under its MessageSid, so a message Twilio delivers again gets the first answer and changes nothing.
A turn that only moves a conversation along commits without waiting for the disk; one that leaves
something (STOP, START, a call-back request) waits for it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ivr.storage import events
from ivr.storage.database import Database, for_each_database, upsert
from ivr.storage.driver import DriverConnection, driver_transaction
from ivr.storage.queue import CallbackRequest, request_callback_in
from ivr.storage.schema import opt_outs, processed_events, sms_sessions, utcnow


@dataclass(frozen=True)
class StoredConversation:
    """What the text line remembers of one number: its language ("" before the first choice), the
    section and part that MORE continues with, and whether it opted out of texts."""

    lang: str = ""
    section: str = ""
    next_part: int = 0
    opted_out: bool = False


@dataclass(frozen=True)
class TextChanges:
    """What one incoming text changes: opt-out (True) or opt-in (False), the conversation, a call-back.
    (Its usage count goes through ivr/usage.py, once the turn is stored.)"""

    opted_out: bool | None = None
    conversation: StoredConversation | None = None
    callback: CallbackRequest | None = None

    @property
    def leaves_something(self) -> bool:
        """Whether a person would miss this turn if it were lost: an opt-out, an opt-in, a call-back."""
        return self.opted_out is not None or self.callback is not None

    def to_json(self) -> dict[str, Any]:
        """The changes as plain JSON values (for the spool, ivr/spool.py)."""
        # "session" is the spool's word for the conversation: records already spooled must still replay.
        return {
            "opted_out": self.opted_out,
            "session": None
            if self.conversation is None
            else [self.conversation.lang, self.conversation.section, self.conversation.next_part],
            "callback": None
            if self.callback is None
            else [
                self.callback.section,
                self.callback.lang,
                self.callback.urgent,
                self.callback.opted_out,
                self.callback.kind,
                self.callback.words,
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextChanges:
        """Changes written by `to_json`."""
        session, callback = data.get("session"), data.get("callback")
        return cls(
            opted_out=data.get("opted_out"),
            conversation=None
            if session is None
            else StoredConversation(str(session[0]), str(session[1]), int(session[2])),
            callback=None
            if callback is None
            else CallbackRequest(
                str(callback[0]),
                str(callback[1]),
                bool(callback[2]),
                bool(callback[3]),
                *(str(value) for value in callback[4:6]),
            ),
        )


def _conversation_query() -> sa.Select[Any]:
    """A number's (bound as `key`) conversation and opt-out, and the answer stored for one message
    (bound as `event`), in one statement: each NULL when its row is missing; a stored message with
    no answer gives "". Subqueries rather than a join, since any of the rows may be missing."""

    def conversation_value(column: sa.Column[Any]) -> Any:
        return sa.select(column).where(sms_sessions.c.phone_hash == sa.bindparam("key")).scalar_subquery()

    opted = sa.select(opt_outs.c.opted_out).where(opt_outs.c.phone_hash == sa.bindparam("key"))
    answered = sa.select(sa.func.coalesce(processed_events.c.outcome, "")).where(
        processed_events.c.key == sa.bindparam("event")
    )
    return sa.select(
        conversation_value(sms_sessions.c.lang).label("lang"),
        conversation_value(sms_sessions.c.section).label("section"),
        conversation_value(sms_sessions.c.next_part).label("next_part"),
        opted.scalar_subquery().label("opted_out"),
        answered.scalar_subquery().label("answered"),
    )


CONVERSATION = _conversation_query()
OPTED_OUT = sa.select(opt_outs.c.opted_out).where(opt_outs.c.phone_hash == sa.bindparam("key"))
SAVE_OPT_OUT = for_each_database(lambda insert: upsert(insert(opt_outs), ["phone_hash"], ("opted_out", "changed_at")))
SAVE_CONVERSATION = for_each_database(
    lambda insert: upsert(insert(sms_sessions), ["phone_hash"], ("lang", "section", "next_part", "updated_at"))
)


def save_conversation_in(
    connection: sa.Connection | DriverConnection, phone_hash: str, conversation: StoredConversation, at: dt.datetime
) -> None:
    """Remember the number's language, and the section and part MORE continues with."""
    c = conversation
    row = {"lang": c.lang, "section": c.section, "next_part": c.next_part, "updated_at": at}
    connection.execute(SAVE_CONVERSATION[connection.dialect.name], {"phone_hash": phone_hash, **row})


def store_text_turn_in(
    connection: sa.Connection | DriverConnection,
    event_key: str,
    phone_hash: str,
    phone: str,
    outcome: str,
    changes: TextChanges,
    at: dt.datetime,
) -> str | None:
    """`TextLine.record_text_turn` inside `connection`'s transaction (also for a record from the
    spool); `phone` is needed only for a call-back request."""
    if event_key and not events.claim(connection, event_key, at, outcome):
        return events.noted_outcome(connection, event_key)
    if changes.opted_out is not None:
        values = {"phone_hash": phone_hash, "opted_out": changes.opted_out, "changed_at": at}
        connection.execute(SAVE_OPT_OUT[connection.dialect.name], values)
    if changes.conversation is not None:
        save_conversation_in(connection, phone_hash, changes.conversation, at)
    if changes.callback is not None:
        assert isinstance(connection, sa.Connection)  # a call-back is kept in a durable transaction
        request_callback_in(connection, phone, changes.callback, "sms", event_key or None, at)
    return None


class TextLine(Database):
    """Conversations, opt-outs and answered messages of the text line."""

    def text_conversation(self, phone: str, event_key: str) -> tuple[StoredConversation, str | None]:
        """What the text line remembers of `phone`, and the answer token stored for the message
        `event_key` if it was handled before ("" if none was stored; None for a new message)."""
        values = {"key": self.phone_hash(phone), "event": event_key[: events.KEY_LENGTH]}
        with driver_transaction(self.engine) as connection:  # every text: see ivr/storage/driver.py
            lang, section, next_part, opted_out, answered = connection.execute(CONVERSATION, values).one()
        conversation = StoredConversation(lang or "", section or "", next_part or 0, opted_out=bool(opted_out))
        return conversation, answered

    def is_opted_out(self, phone: str) -> bool:
        """Whether `phone` asked (STOP) not to get texts, and has not opted back in."""
        with self.engine.connect() as connection:
            return bool(connection.execute(OPTED_OUT, {"key": self.phone_hash(phone)}).scalar())

    def save_text_conversation(self, phone: str, lang: str, section: str = "", next_part: int = 0) -> None:
        """Remember the language of `phone` and the section and part MORE continues with."""
        with self.engine.begin() as connection:
            conversation = StoredConversation(lang, section, next_part)
            save_conversation_in(connection, self.phone_hash(phone), conversation, utcnow())

    def record_text_turn(self, event_key: str, phone: str, outcome: str, changes: TextChanges) -> str | None:
        """Store everything one incoming text changes, all or nothing, once per `event_key` (the MessageSid).

        Returns None when this call stored it. For a message already handled (Twilio retried it, or
        delivered it twice at once) nothing is stored again, and the answer token stored the first
        time is returned ("" if there was none), so the retry gets the same answer.
        """
        # Most texts only move a conversation along: see ivr/storage/driver.py for why they skip `Connection`.
        transaction = self.durable() if changes.leaves_something else driver_transaction(self.engine)
        with transaction as connection:
            return store_text_turn_in(connection, event_key, self.phone_hash(phone), phone, outcome, changes, utcnow())
