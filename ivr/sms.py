"""The text line's webhook: thin glue from Twilio's message form to the text line and back as TwiML.

Twilio's console points "A message comes in" to POST /sms. The decisions are in ivr/textline.py
(pure); this module reads what storage knows of the number, stores what the decision changes (all
at once, once per MessageSid), and sends the answer. Phone numbers and message bodies are health
data: nothing here logs them.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from ivr import gsm, textline, twiml
from ivr.hours import describe_hours
from ivr.security import twilio_only
from ivr.services import Services, services
from ivr.storage import CallbackAsk, TextChanges, TextSession

log = logging.getLogger(__name__)

bp = Blueprint("sms", __name__)


def _xml(document: str) -> Response:
    return Response(document, mimetype="text/xml")


def display_phone(number: str) -> str:
    """A number as people read it: +15559870000 -> 555-987-0000 (North American), others unchanged."""
    if len(number) == 12 and number.startswith("+1") and number[2:].isdigit():
        return f"{number[2:5]}-{number[5:8]}-{number[8:]}"
    return number


def facts(svc: Services, line_number: str) -> textline.Facts:
    """The staff phone (STAFF_PHONE, else the line's own number) and staff hours in each language's words."""
    phone = current_app.config.get("STAFF_PHONE") or line_number
    languages = svc.content.languages.items()
    hours = {code: describe_hours(svc.hours, language.texting.hours) for code, language in languages}
    return textline.Facts(staff_phone=display_phone(phone), staff_hours=hours)


@bp.post("/sms")
@twilio_only
def incoming_text() -> Response:
    """A text comes in: answer it (or, after STOP, stay silent), storing what it changes exactly once."""
    svc = services()
    form = request.form
    phone = form.get("From", "")
    sid = (form.get("MessageSid") or form.get("SmsSid") or "")[:64]
    event_key = f"sms:{sid}" if sid else ""
    content = svc.content

    stored = svc.storage.text_session(phone)
    conversation = textline.Conversation(
        lang=stored.lang or content.default_language,
        section=stored.section,
        next_part=stored.next_part,
        opted_out=stored.opted_out,
    )
    decision = textline.decide(content, conversation, form.get("Body", ""))

    changes = _changes(decision, stored)
    first = svc.storage.record_text_turn(event_key, phone, decision.outcome.token(), changes)
    outcome = decision.outcome
    if first is not None:
        # Twilio sent this message before: answer as the first time, store nothing again ...
        outcome = textline.Outcome.from_token(first) or textline.Outcome(textline.SILENT, conversation.lang)
        if stored.opted_out and outcome.kind not in textline.ANSWERS_AFTER_STOP:
            # ... unless the number opted out since: then only the answers to STOP, START and HELP.
            outcome = textline.Outcome(textline.SILENT, outcome.lang)

    bodies = textline.render(content, outcome, facts(svc, form.get("To", "")))
    for body in bodies:
        if not _fits(body):
            # Only STAFF_HOURS or STAFF_PHONE can make a checked prompt longer; say which kind, not the text.
            log.warning("A %s reply takes %d text segments; shorten STAFF_HOURS", outcome.kind, gsm.segments(body))
    return _xml(_messages(bodies))


# Replies are the line's own words (a text's words are never echoed), from a small set: measuring
# and rendering each once per process spares every text that work.
_fits = functools.lru_cache(maxsize=1024)(gsm.fits)
_messages = functools.lru_cache(maxsize=1024)(twiml.messages)


def _changes(decision: textline.Decision, stored: TextSession) -> TextChanges:
    """The storage changes a decision's effects ask for."""
    changes = TextChanges()
    for effect in decision.effects:
        if isinstance(effect, textline.OptOut | textline.OptIn):
            changes = replace(changes, opted_out=isinstance(effect, textline.OptOut))
        elif isinstance(effect, textline.SaveConversation):
            changes = replace(changes, session=TextSession(effect.lang, effect.section, effect.next_part))
        elif isinstance(effect, textline.RequestCallback):
            ask = CallbackAsk(effect.topic, effect.lang, effect.urgent, opted_out=stored.opted_out)
            changes = replace(changes, callback=ask)
        elif isinstance(effect, textline.CountSectionText):
            changes = replace(changes, count_section=effect.section)
    return changes


@bp.errorhandler(Exception)
def unexpected_error(error: Exception) -> Response | HTTPException:
    """Still valid TwiML when something fails (the database, say): an empty answer, since whether the
    number opted out cannot be known. Logged by type only: an error's message may quote a number."""
    if isinstance(error, HTTPException):
        return error  # 403 for a bad signature, 405, ...
    log.error("Unexpected %s while answering a text", type(error).__name__)
    return _xml(twiml.messages(()))
