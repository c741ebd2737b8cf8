"""The phone line's webhooks: thin glue from Twilio's form to the dialog and back as TwiML.

Twilio's console points "A call comes in" to POST /voice; every other URL here is reached by
following the TwiML the line returns. The caller's place in the conversation is in each URL's query.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Hashable, Mapping
from dataclasses import fields

from flask import Blueprint, Response, current_app, request, url_for

from ivr import dialog, texting
from ivr.content import Content
from ivr.dialog import CallState, Circumstances, Event, Reply
from ivr.memo import LruCache
from ivr.security import twilio_only
from ivr.services import now, services
from ivr.twiml import DocumentCache, Links, StaffDial, state_from_query, state_to_query

log = logging.getLogger(__name__)

bp = Blueprint("voice", __name__, url_prefix="/voice")


def twiml(document: str) -> Response:
    """A TwiML HTTP response."""
    return Response(document, mimetype="text/xml")


def links() -> Links:
    """The URLs TwiML documents point Twilio to, built from this app's routes."""
    return Links(
        step=lambda state: url_for("voice.step", **state_to_query(state)),
        whisper=lambda topic: url_for("voice.whisper", topic=topic) if topic else url_for("voice.whisper"),
        recording_status=lambda state: url_for("voice.recording_status", **state_to_query(state)),
    )


def _circumstances() -> Circumstances:
    svc = services()
    staff_open = bool(current_app.config["STAFF_NUMBERS"]) and svc.hours.is_open(now())
    return Circumstances(staff_open=staff_open)


def _answer(state: CallState, event: Event) -> Response:
    """Run one dialog step, carry out what it asks, and render the reply."""
    svc = services()
    world = _circumstances()
    reply = _remembered_step(svc.content, state, event, world)
    reply = _perform(reply, world)
    staff = StaffDial(
        numbers=current_app.config["STAFF_NUMBERS"],
        caller_id=request.form.get("To", ""),
        ring_seconds=current_app.config["STAFF_RING_SECONDS"],
    )
    # The links are this app's routes under this mount point: the same script root, the same URLs.
    document = _documents().voice(
        reply, links(), request.script_root, staff, current_app.config["VOICEMAIL_MAX_SECONDS"]
    )
    return twiml(document)


#: Distinct (state, key, circumstances) answers kept per process.
STEP_CACHE_SIZE = 8192


def _remembered_step(content: Content, state: CallState, event: Event, world: Circumstances) -> Reply:
    """`dialog.step`, remembered: it is pure, so the same place, key and circumstances give the same reply.

    Speech is never remembered: what a caller says stays out of the process's memory.
    """
    key = _step_key(state, event, world)
    if key is not None:
        cache = current_app.extensions.get("careline.steps")
        if cache is None:
            cache = current_app.extensions.setdefault("careline.steps", LruCache(STEP_CACHE_SIZE))
        try:
            return cache.get_or_make(key, lambda: dialog.step(content, state, event, world))
        except TypeError:  # a circumstance that cannot be a key: work this step out afresh
            pass
    return dialog.step(content, state, event, world)


def _step_key(state: CallState, event: Event, world: Circumstances) -> Hashable | None:
    """A key for the step cache, or None when this step must be worked out afresh."""
    if isinstance(event, dialog.Heard) and event.speech:
        return None
    # Every fact, so that one added to Circumstances one day is part of the key too.
    facts = tuple(_hashable(getattr(world, name)) for name in _circumstance_names())
    return (state, event, facts)


@functools.cache
def _circumstance_names() -> tuple[str, ...]:
    return tuple(item.name for item in fields(Circumstances))


def _hashable(value: object) -> object:
    return tuple(sorted(value.items())) if isinstance(value, Mapping) else value


def _documents() -> DocumentCache:
    """This app's cache of rendered documents, made on first use."""
    cache = current_app.extensions.get("careline.documents")
    if cache is None:
        cache = current_app.extensions.setdefault("careline.documents", DocumentCache(services().renderer))
    return cache


def _perform(reply: Reply, world: Circumstances) -> Reply:
    """Carry out the reply's effects; feed an outcome back to the dialog where it waits for one."""
    svc = services()
    call_sid = request.form.get("CallSid", "")
    caller = request.form.get("From", "")
    outcome: Event | None = None
    for effect in reply.effects:
        if isinstance(effect, dialog.CountSectionPlay):
            svc.storage.count_use("voice", effect.section)
        elif isinstance(effect, dialog.OpenVoicemail):
            svc.storage.open_voicemail(call_sid, caller, effect.topic, effect.lang)
        elif isinstance(effect, dialog.SendSectionText):
            result = texting.send_section(
                svc, to=caller, from_=request.form.get("To", ""), section=effect.section, lang=effect.lang
            )
            outcome = dialog.TextOutcome(result)
    if isinstance(reply.next, dialog.AwaitOutcome):
        if outcome is None:  # pragma: no cover - every waiting reply carries the effect that answers it
            outcome = dialog.TextOutcome("failed")
        return _perform(dialog.step(svc.content, reply.next.state, outcome, world), world)
    return reply


@bp.post("")
@twilio_only
def incoming_call() -> Response:
    """A call comes in: greet the caller and read the main menu."""
    state = CallState(lang=services().content.default_language)
    return _answer(state, dialog.CallStarted())


@bp.post("/step")
@twilio_only
def step() -> Response:
    """Every later moment of a call: a key, speech, silence, the end of a staff dial or of a message."""
    # A plain dict: a missing key is then a cheap miss, not a caught BadRequestKeyError.
    state = dialog.sanitize(services().content, state_from_query(request.args.to_dict()))
    form = request.form
    event: Event
    if state.node == dialog.STAFF:
        accepted = services().storage.staff_accepted(form.get("CallSid", ""))
        event = dialog.DialEnded(status=form.get("DialCallStatus", "failed"), accepted=accepted)
    elif state.node == dialog.RECORD:
        event = dialog.Recorded(has_audio=_save_recording())
    else:
        event = dialog.Heard(digits=form.get("Digits", ""), speech=form.get("SpeechResult", ""))
    return _answer(state, event)


@bp.post("/section/<name>")
@twilio_only
def section_entry(name: str) -> Response:
    """A staff member transferred the caller straight to a section."""
    lang = request.args.get("l", services().content.default_language)
    return _answer(CallState(lang=lang), dialog.TransferredIn(name))


@bp.post("/whisper")
@twilio_only
def whisper() -> Response:
    """Heard by the staff member who answers: who is calling, and press 1 to take the call."""
    text = dialog.whisper_text(services().content, request.args.get("topic", ""))
    return twiml(services().renderer.whisper(text, url_for("voice.whisper_answer")))


@bp.post("/whisper/answer")
@twilio_only
def whisper_answer() -> Response:
    """The staff member pressed a key: 1 connects the caller, anything else hangs up this leg."""
    if request.form.get("Digits") == "1":
        services().storage.accept_staff_call(request.form.get("ParentCallSid", ""))
        return twiml(services().renderer.empty())
    return twiml(services().renderer.hangup())


@bp.post("/recording-status")
@twilio_only
def recording_status() -> Response:
    """Twilio's word that a voice message's recording is ready (or absent)."""
    _save_recording()
    return twiml(services().renderer.empty())


def _save_recording() -> bool:
    """Attach the recording in this request to the caller's message; True when it holds sound."""
    form = request.form
    url = form.get("RecordingUrl", "")
    seconds_text = form.get("RecordingDuration", "0")
    seconds = int(seconds_text) if seconds_text.isdigit() else 0
    if url and seconds > 0:
        services().storage.attach_recording(form.get("CallSid", ""), form.get("RecordingSid", ""), url, seconds)
        return True
    return False
