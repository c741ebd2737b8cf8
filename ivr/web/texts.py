"""The text line's webhook: thin glue from Twilio's message form to the text line and back as TwiML.

Twilio's console points "A message comes in" to POST /sms. The decisions are in ivr/text_dialog.py
(pure); this module reads what storage knows of the number, stores what the decision changes (all
at once, once per MessageSid), and sends the answer. Phone numbers and message bodies are health
data: nothing here logs them.

With the database away the keywords still answer (from a fresh conversation) and what a text
changes goes to the spool (ivr/resilience.py); an opt-out only the spool knows yet is honoured.
POST /sms/fallback (Twilio's fallback URL for texts) answers the same way without touching the
database at all.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from ivr import alerts, resilience, spool, text_dialog, twiml, usage
from ivr.security import request_is_from_twilio, twilio_only
from ivr.services import Services, now, services
from ivr.storage import TEXTS_RECEIVED, CallbackRequest, StoredConversation, TextChanges
from ivr.web.errors import where

log = logging.getLogger(__name__)

bp = Blueprint("sms", __name__)


def _xml(document: str) -> Response:
    return Response(document, mimetype="text/xml")


def text_facts(svc: Services, line_number: str) -> text_dialog.TextFacts:
    """The staff phone (STAFF_PHONE, else the line's own number) and staff hours in each language's words."""
    return text_dialog.text_facts(svc.content, svc.hours, staff_phone(line_number))


def staff_phone(line_number: str) -> str:
    """The number texts give for staff: STAFF_PHONE, else the line's own number."""
    return current_app.config.get("STAFF_PHONE") or line_number


@bp.post("/sms")
@twilio_only
def incoming_text() -> Response:
    """A text comes in: answer it (or, after STOP, stay silent), storing what it changes exactly once."""
    return _answer_text(use_database=True)


@bp.post("/sms/fallback")
@twilio_only
def fallback_text() -> Response:
    """Twilio's fallback URL for texts: the same answers, without the database (changes go to the spool)."""
    return _answer_text(use_database=False)


def _answer_text(use_database: bool) -> Response:
    svc = services()
    database = resilience.guard()
    form = request.form
    phone = form.get("From", "")
    sid = (form.get("MessageSid") or form.get("SmsSid") or "")[:64]
    event_key = f"sms:{sid}" if sid else ""
    content = svc.content
    pending = database.spool.pending()
    phone_hash = svc.storage.phone_hash(phone)

    # What the database knows of the number (and of this message, if it came before); nothing without it.
    known: tuple[StoredConversation, str | None] = (StoredConversation(), None)
    if use_database:
        read = partial(svc.storage.text_conversation, phone, event_key)
        known = database.read(read, known, "reading a text conversation")
    stored, answered_before = known
    # An opt-out (or opt-in) still waiting in the spool wins over what the database says.
    stored = replace(stored, opted_out=pending.opt_outs.get(phone_hash, stored.opted_out))
    conversation = text_dialog.Conversation(
        lang=stored.lang or content.default_language,
        section=stored.section,
        next_part=stored.next_part,
        opted_out=stored.opted_out,
        lang_known=bool(stored.lang),
    )
    decision = text_dialog.decide(content, conversation, form.get("Body", ""))

    changes = _changes(decision, stored, svc, form.get("Body", ""))
    token = decision.outcome.token()
    # A retry gets the answer given the first time: from the spool, or read with the conversation.
    first = pending.outcomes.get(event_key) if event_key else None
    if first is None:
        first = answered_before
    if first is None:
        # Even a text that changes nothing now (MENU, HELP, after STOP) keeps its MessageSid and answer:
        # answered afresh later, a retry could change something (a retry of a text ignored after STOP,
        # coming after START, would get a section). Twice at once: see Storage.record_text_turn.
        first = _store_turn(svc, event_key, phone, token, changes, use_database)
        if first is None:  # stored now, so counted once per message (ivr/usage.py)
            _count_uses(svc, decision)
            if changes.callback is not None and changes.callback.urgent:
                app = current_app._get_current_object()  # type: ignore[attr-defined]
                alerts.note_line_number(app, form.get("To", ""))
                alerts.send_soon(app)
    outcome = decision.outcome
    if first is not None:
        # Twilio sent this message before: answer as the first time, store nothing again ...
        outcome = text_dialog.Outcome.from_token(first) or text_dialog.Outcome(text_dialog.SILENT, conversation.lang)
        if stored.opted_out and outcome.kind not in text_dialog.RETRIED_ANSWERS_AFTER_STOP:
            # ... unless the number opted out since: then only the answers to STOP and HELP.
            outcome = text_dialog.Outcome(text_dialog.SILENT, outcome.lang)

    return _reply(svc, outcome, form.get("To", ""))


def _reply(svc: Services, outcome: text_dialog.Outcome, line_number: str) -> Response:
    """TwiML with the messages that answer `outcome` (none for a silent one)."""
    return _xml(svc.cache.text_reply(outcome, staff_phone(line_number)))


def _store_turn(
    svc: Services, event_key: str, phone: str, token: str, changes: TextChanges, use_database: bool
) -> str | None:
    """Store one text's changes once per `event_key` (see Storage.record_text_turn): in the database,
    or in the spool while it is away (or always, for the fallback URL)."""
    record = None
    if event_key or changes.opted_out is not None or changes.callback is not None or changes.conversation is not None:
        # Kept even when the text changes nothing, as in the database: a retry then finds its first answer
        # in the spool's view. Only a text without a MessageSid (never from Twilio) that changes nothing
        # needs no record.
        record = spool.new_record(
            spool.TEXT_TURN,
            now(),
            event_key=event_key,
            phone_hash=svc.storage.phone_hash(phone),
            phone=phone if changes.callback else "",  # the number in the clear only where staff need it
            outcome=token,
            changes=changes.to_json(),
        )
    live = partial(svc.storage.record_text_turn, event_key, phone, token, changes) if use_database else None
    return resilience.guard().keep(record, live, "storing a text")


def _changes(
    decision: text_dialog.Decision, stored: StoredConversation, svc: Services | None = None, words: str = ""
) -> TextChanges:
    """The storage changes a decision's effects ask for. A call-back or urgent request keeps the words
    texted (so a nurse can judge it), sealed (encrypted) before they go to the database or the spool."""
    changes = TextChanges()
    for effect in decision.effects:
        if isinstance(effect, text_dialog.OptOut | text_dialog.OptIn):
            changes = replace(changes, opted_out=isinstance(effect, text_dialog.OptOut))
        elif isinstance(effect, text_dialog.SaveConversation):
            changes = replace(changes, conversation=StoredConversation(effect.lang, effect.section, effect.next_part))
        elif isinstance(effect, text_dialog.RequestCallback):
            sealed = svc.storage.seal(words[: text_dialog.MAX_TEXT_CHARACTERS]) if svc is not None and words else ""
            ask = CallbackRequest(
                effect.section, effect.lang, effect.urgent, opted_out=stored.opted_out, kind=effect.kind, words=sealed
            )
            changes = replace(changes, callback=ask)
    return changes


def _count_uses(svc: Services, decision: text_dialog.Decision) -> None:
    """Count the text received (per day in the staff time zone, for the picture of the line) and the section
    a decision texts (for the staff usage panel)."""
    usage.count(svc.usage, resilience.guard(), TEXTS_RECEIVED, "", at=now(), zone=svc.hours.timezone)
    for effect in decision.effects:
        if isinstance(effect, text_dialog.CountSectionText):
            usage.count(svc.usage, resilience.guard(), "sms", effect.section)


@bp.errorhandler(Exception)
def unexpected_error(error: Exception) -> Response | HTTPException:
    """Still valid TwiML when something unexpected fails: a short apology with the staff number, unless
    the number opted out (or this text opts out). Logged by type and place only: an error's message may
    quote a number."""
    if isinstance(error, HTTPException):
        return error  # 403 for a bad signature, 405, ...
    log.error("Unexpected %s while answering a text, at %s", type(error).__name__, where(error))
    try:
        return _xml(twiml.messages(_apology()))
    except Exception as second:
        log.error("The text apology failed too: %s", type(second).__name__)
        return _xml(twiml.messages(()))


def _apology() -> tuple[str, ...]:
    """Sorry and the staff number, in the text's language; nothing for a number that opted out.

    A STOP that reached this point is still kept (in the database, else the spool), and answered
    as the text line would; a number whose opt-out cannot be checked is answered, as in an outage.
    """
    svc = services()
    form = request.form
    if not request_is_from_twilio(request):
        return ()
    phone = form.get("From", "")
    content = svc.content
    database = resilience.guard()
    pending = database.spool.pending().opt_outs.get(svc.storage.phone_hash(phone))
    opted_out = (
        pending
        if pending is not None
        else database.read(partial(svc.storage.is_opted_out, phone), False, "checking an opt-out")
    )
    lang = content.default_language
    try:
        conversation = text_dialog.Conversation(lang, opted_out=opted_out)
        decision = text_dialog.decide(content, conversation, form.get("Body", ""))
    except Exception as error:
        log.error("Could not read the text for the apology: %s", type(error).__name__)
        decision = None
    if decision is not None:
        lang = decision.outcome.lang if decision.outcome.lang in content.languages else lang
        changes = _changes(decision, StoredConversation(opted_out=opted_out))
        if changes.opted_out is not None:
            # STOP or START must be kept even now (once per MessageSid, like any text).
            sid = (form.get("MessageSid") or form.get("SmsSid") or "")[:64]
            only_opt_out = TextChanges(opted_out=changes.opted_out)
            _store_turn(svc, f"sms:{sid}" if sid else "", phone, decision.outcome.token(), only_opt_out, True)
            return text_dialog.render(content, decision.outcome, text_facts(svc, form.get("To", "")))
    if opted_out:
        return ()
    staff = text_facts(svc, form.get("To", "")).staff_phone
    return (content.language(lang).text("error_apology", phone=staff),)
