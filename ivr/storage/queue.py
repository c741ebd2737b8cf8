"""The staff queue: call-back requests and voice messages (callback_requests).

Everything here is something a caller left: each write waits for the disk (`Database.durable`),
and is also what the spool keeps while the database is away (ivr/storage/replay.py moves it in).
Phone numbers are stored in the clear only here, where staff need them to call back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ivr.storage.alerts import queue_alert_in
from ivr.storage.audit import audit_in
from ivr.storage.database import Database, for_each_database
from ivr.storage.schema import as_utc, callback_requests, request_notes, utcnow

#: A new request, unless one with its dedupe_key is there (rowcount 1 when this statement added it).
NEW_REQUEST = for_each_database(lambda insert: insert(callback_requests).on_conflict_do_nothing())


@dataclass(frozen=True)
class CallbackRequest:
    """A call-back request from a text: the section the person was reading, their language, urgency."""

    section: str
    lang: str
    urgent: bool = False
    opted_out: bool = False
    #: The urgent kind (emergency, crisis, distress) when `urgent`.
    kind: str = ""
    #: The words texted, sealed (Storage.seal), so a nurse can judge the request; "" for none.
    words: str = ""


def _voice_message_row(phone: str, section: str, lang: str, at: dt.datetime) -> dict[str, Any]:
    """The columns every voice message's call-back request starts with."""
    return {
        "created_at": at,
        "channel": "voice",
        "kind": "voicemail",
        "phone": phone or None,
        "topic": section,
        "lang": lang,
        "urgent": False,
        "status": "open",
    }


def _voicemail_keys(call_sid: str) -> sa.ColumnElement[bool]:
    """Matches the voice-message requests of call `call_sid` (voicemail:<sid>, voicemail:<sid>:2, ...)."""
    base = f"voicemail:{call_sid}"
    return sa.or_(callback_requests.c.dedupe_key == base, callback_requests.c.dedupe_key.startswith(f"{base}:"))


def open_voice_message_in(
    connection: sa.Connection, call_sid: str, phone: str, section: str, lang: str, at: dt.datetime
) -> None:
    """`CallbackQueue.open_voice_message` inside `connection`'s transaction (also for a record from the spool)."""
    base = f"voicemail:{call_sid}"
    rows = connection.execute(sa.select(callback_requests.c.recording_sid).where(_voicemail_keys(call_sid))).all()
    if any(row.recording_sid is None for row in rows):
        return
    values = _voice_message_row(phone, section, lang, at)
    values.update(note="no_recording", dedupe_key=base if not rows else f"{base}:{len(rows) + 1}")
    connection.execute(NEW_REQUEST[connection.dialect.name], values)


def attach_recording_in(
    connection: sa.Connection,
    call_sid: str,
    recording_sid: str,
    url: str,
    seconds: int,
    *,
    phone: str,
    section: str,
    lang: str,
    at: dt.datetime,
) -> bool:
    """`CallbackQueue.attach_recording` inside `connection`'s transaction (also for a record from the spool).

    Twilio's two callbacks for one recording may run at the same moment on two workers: the unique
    index on recording_sid (migration 0005) makes the second one's write change nothing. Each write
    checks again, in the statement itself, what the reads before it saw: the call's waiting request
    may have been given this recording since, and its insert gives way to a row that has it.
    """
    values = {"recording_sid": recording_sid, "recording_url": url, "recording_seconds": seconds, "note": ""}
    known = sa.select(callback_requests.c.id).where(callback_requests.c.recording_sid == recording_sid)
    if connection.execute(known).first() is not None:
        return True
    waiting = connection.execute(
        sa.select(callback_requests.c.id)
        .where(_voicemail_keys(call_sid), callback_requests.c.recording_sid.is_(None))
        .order_by(callback_requests.c.id.desc())
    ).first()
    if waiting is not None:
        updated = connection.execute(
            callback_requests.update()
            .where(
                callback_requests.c.id == waiting.id,
                callback_requests.c.recording_sid.is_(None),
                ~known.exists(),
            )
            .values(**values)
        )
        if updated.rowcount:
            return True
    row = {**_voice_message_row(phone, section, lang, at), "dedupe_key": f"recording:{recording_sid}", **values}
    # ON CONFLICT DO NOTHING: another callback kept this recording first (its unique key).
    connection.execute(NEW_REQUEST[connection.dialect.name], row)
    return True


def request_callback_in(
    connection: sa.Connection,
    phone: str,
    ask: CallbackRequest,
    channel: str,
    dedupe_key: str | None,
    at: dt.datetime,
) -> bool:
    """Keep a call-back request in `connection`'s transaction, once per `dedupe_key`; True when added."""
    # Notes are codes for the staff page; the words someone texted are only ever kept sealed.
    urgent_note = "urgent_call" if channel == "voice" else "urgent_words"
    notes = [note for note, flag in ((urgent_note, ask.urgent), ("texts_opted_out", ask.opted_out)) if flag]
    values = {
        "created_at": at,
        "channel": channel,
        "kind": "callback",
        "phone": phone or None,
        "topic": ask.section,
        "lang": ask.lang,
        "urgent": ask.urgent,
        "note": ",".join(notes),
        "status": "open",
        "dedupe_key": dedupe_key[:80] if dedupe_key else None,
        "urgent_kind": (ask.kind or None) if ask.urgent else None,
        "words": ask.words or None,
    }
    added = connection.execute(NEW_REQUEST[connection.dialect.name], values).rowcount == 1
    if added and ask.urgent:
        queue_alert_in(connection, at)
    return added


def record_urgent_call_in(
    connection: sa.Connection, call_sid: str, phone: str, kind: str, lang: str, at: dt.datetime
) -> bool:
    """`CallbackQueue.record_urgent_call` inside `connection`'s transaction (also for a record from the spool)."""
    ask = CallbackRequest(section="", lang=lang, urgent=True, kind=kind)
    key = f"urgent:{call_sid}" if call_sid else None
    return request_callback_in(connection, phone, ask, "voice", key, at)


class CallbackQueue(Database):
    """Voice messages and call-back requests, and staff working through them."""

    def open_voice_message(
        self, call_sid: str, phone: str, section: str, lang: str, at: dt.datetime | None = None
    ) -> None:
        """A caller is about to leave a message: keep a call-back request now, so a hang-up loses nothing.

        A retry of the same request, or a second try after an empty recording, reuses the call's
        request that has no recording yet; a caller who leaves a second message gets a second request.
        """
        with self.durable() as connection:
            open_voice_message_in(connection, call_sid, phone, section, lang, as_utc(at))

    def attach_recording(
        self,
        call_sid: str,
        recording_sid: str,
        url: str,
        seconds: int,
        *,
        phone: str = "",
        section: str = "",
        lang: str = "en",
    ) -> bool:
        """Add a recording to the call's newest message that has none; True when it is now kept.

        The same recording reported again (Record's action and its status callback, or a retry)
        changes nothing. A recording with no request to go to (which should not happen) gets a
        request of its own, from what is known, rather than being dropped.
        """
        if not recording_sid:
            return False
        with self.durable() as connection:
            return attach_recording_in(
                connection,
                call_sid,
                recording_sid,
                url,
                seconds,
                phone=phone,
                section=section,
                lang=lang,
                at=utcnow(),
            )

    def record_urgent_call(
        self, call_sid: str, phone: str, kind: str, lang: str, at: dt.datetime | None = None
    ) -> bool:
        """Keep a call where urgent words were heard as an urgent request (the kind only, no words),
        once per call, with a staff alert queued; True when this call added it."""
        with self.durable() as connection:
            return record_urgent_call_in(connection, call_sid, phone, kind, lang, as_utc(at))

    def urgent_call_heard(self, call_sid: str) -> bool:
        """Whether urgent words were heard on call `call_sid` (it left an urgent request)."""
        query = sa.select(callback_requests.c.id).where(callback_requests.c.dedupe_key == f"urgent:{call_sid}"[:80])
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def callback_requests(self, status: str | None = "open") -> list[dict[str, Any]]:
        """Call-back requests, urgent first, newest first; all of them when `status` is None."""
        query = sa.select(callback_requests)
        if status:
            query = query.where(callback_requests.c.status == status)
        query = query.order_by(
            callback_requests.c.urgent.desc(), callback_requests.c.created_at.desc(), callback_requests.c.id.desc()
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def callback_request(self, request_id: int) -> dict[str, Any] | None:
        """One call-back request by id, or None."""
        query = sa.select(callback_requests).where(callback_requests.c.id == request_id)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return dict(row._mapping) if row else None

    def done_requests(self, limit: int = 20) -> list[dict[str, Any]]:
        """The call-back requests most recently marked done, newest first."""
        query = (
            sa.select(callback_requests)
            .where(callback_requests.c.status == "done")
            .order_by(callback_requests.c.done_at.desc(), callback_requests.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def mark_done(self, request_id: int, by: str, at: dt.datetime | None = None, outcome: str = "") -> bool:
        """Staff member `by` dealt with an open request (closed it, with `outcome` if given); True when
        this call changed it. The audit records it in the same transaction."""
        return self.mark_number_done(request_id, request_id, by, at, outcome, whole_number=False) > 0

    def mark_number_done(
        self,
        request_id: int,
        through_id: int,
        by: str,
        at: dt.datetime | None = None,
        outcome: str = "",
        *,
        whole_number: bool = True,
    ) -> int:
        """Staff member `by` dealt with a number's card: mark done request `request_id` and the other open
        requests from its number up to `through_id` (the newest the card showed: one that came in after
        the page was loaded stays open). The number of requests this call changed."""
        at = as_utc(at)
        same_request = callback_requests.c.id == request_id
        if whole_number:
            phone = sa.select(callback_requests.c.phone).where(same_request).scalar_subquery()
            # A request with no number is a card of its own (NULL equals nothing).
            which = sa.or_(same_request, callback_requests.c.phone == phone)
        else:
            which = same_request
        statement = (
            callback_requests.update()
            .where(callback_requests.c.status == "open", callback_requests.c.id <= max(through_id, request_id), which)
            .values(status="done", done_by=by[:64], done_at=at, outcome=outcome or None)
            .returning(callback_requests.c.id)
        )
        with self.durable() as connection:
            changed = sorted(int(row.id) for row in connection.execute(statement))
            audit_in(connection, by, "done", at, changed, outcome)
        return len(changed)

    def reopen(self, request_id: int, by: str = "", at: dt.datetime | None = None) -> bool:
        """Put a request marked done back in the queue (unclaimed); True when this call changed it."""
        statement = (
            callback_requests.update()
            .where(callback_requests.c.id == request_id, callback_requests.c.status == "done")
            .values(status="open", done_by=None, done_at=None, outcome=None, claimed_by=None, claimed_at=None)
        )
        with self.durable() as connection:
            changed = connection.execute(statement).rowcount == 1
            if changed and by:
                audit_in(connection, by, "reopen", as_utc(at), (request_id,))
        return changed

    # -- following a request through --------------------------------------------------------------------

    def claim(self, request_id: int, by: str, at: dt.datetime | None = None) -> bool:
        """Staff member `by` is calling this open request's person ("I'm calling"); True when it was
        open. Claiming again (or over someone else's claim) moves the claim: the history keeps both."""
        at = as_utc(at)
        statement = (
            callback_requests.update()
            .where(callback_requests.c.id == request_id, callback_requests.c.status == "open")
            .values(claimed_by=by[:64], claimed_at=at)
        )
        with self.durable() as connection:
            changed = connection.execute(statement).rowcount == 1
            if changed:
                audit_in(connection, by, "claim", at, (request_id,))
        return changed

    def log_attempt(
        self, request_id: int, by: str, outcome: str, sealed_note: str = "", at: dt.datetime | None = None
    ) -> bool:
        """Staff member `by` tried to call: the outcome (a code), and a note sealed by `seal` if any;
        True when the request exists. An attempt also claims the request when no one has."""
        at = as_utc(at)
        with self.durable() as connection:
            if not _request_exists(connection, request_id):
                return False
            connection.execute(
                callback_requests.update()
                .where(callback_requests.c.id == request_id, callback_requests.c.claimed_by.is_(None))
                .values(claimed_by=by[:64], claimed_at=at)
            )
            audit_in(connection, by, "attempt", at, (request_id,), outcome)
            if sealed_note:
                _note_in(connection, request_id, by, sealed_note, at)
        return True

    def add_note(self, request_id: int, by: str, sealed_note: str, at: dt.datetime | None = None) -> bool:
        """Keep a staff member's note (sealed by `seal`) on a request; True when the request exists."""
        at = as_utc(at)
        with self.durable() as connection:
            if not _request_exists(connection, request_id):
                return False
            _note_in(connection, request_id, by, sealed_note, at)
        return True

    def request_notes(self, request_ids: list[int]) -> list[dict[str, Any]]:
        """Staff notes on any of `request_ids`, oldest first, still sealed."""
        if not request_ids:
            return []
        query = (
            sa.select(request_notes)
            .where(request_notes.c.request_id.in_(sorted(set(request_ids))))
            .order_by(request_notes.c.at, request_notes.c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def attach_transcript(self, recording_sid: str, sealed_transcript: str, state: str) -> bool:
        """Keep Twilio's transcript of a recording (sealed by `seal`; "" for none) and its state
        (completed, failed); True when a voice message has that recording."""
        statement = (
            callback_requests.update()
            .where(callback_requests.c.recording_sid == recording_sid)
            .values(transcript=sealed_transcript or None, transcript_state=state[:16])
        )
        with self.durable() as connection:
            return connection.execute(statement).rowcount > 0


def _request_exists(connection: sa.Connection, request_id: int) -> bool:
    """Whether call-back request `request_id` is still kept (purge or erase may have removed it)."""
    query = sa.select(callback_requests.c.id).where(callback_requests.c.id == request_id)
    return connection.execute(query).first() is not None


def _note_in(connection: sa.Connection, request_id: int, by: str, sealed_note: str, at: dt.datetime) -> None:
    """Keep a sealed staff note on a request, and audit it, in `connection`'s transaction."""
    connection.execute(request_notes.insert().values(request_id=request_id, at=at, staff=by[:64], words=sealed_note))
    audit_in(connection, by, "note", at, (request_id,))
