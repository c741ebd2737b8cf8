"""The phone line's webhooks: thin glue from Twilio's form to the dialog and back as TwiML.

Twilio's console points "A call comes in" to POST /voice; every other URL here is reached by
following the TwiML the line returns. The caller's place in the conversation is in each URL's query.
"""

from __future__ import annotations

import logging
import re
from functools import partial

from flask import Blueprint, Response, current_app, request, url_for

from ivr import dialog, resilience, spool, texting
from ivr.dialog import CallState, Circumstances, Event, Reply
from ivr.security import twilio_only
from ivr.services import now, services
from ivr.twiml import Links, StaffDial, state_from_query, state_to_query

log = logging.getLogger(__name__)

bp = Blueprint("voice", __name__, url_prefix="/voice")

_PHONE_NUMBER = re.compile(r"^\+[1-9]\d{7,14}$")
#: Withheld caller IDs spelled on a keypad (ANONYMOUS, RESTRICTED, BLOCKED, UNKNOWN, UNAVAILABLE), as
#: carriers and Twilio may send them in From: such a "number" is shared by many people, so never remembered.
_HIDDEN_CALLER_IDS = frozenset({"+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253"})


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
    reply = dialog.step(svc.content, state, event, world)
    reply = _perform(reply, world)
    staff = StaffDial(
        numbers=current_app.config["STAFF_NUMBERS"],
        caller_id=request.form.get("To", ""),
        ring_seconds=current_app.config["STAFF_RING_SECONDS"],
    )
    document = svc.renderer.voice(reply, links(), staff, current_app.config["VOICEMAIL_MAX_SECONDS"])
    return twiml(document)


def _perform(reply: Reply, world: Circumstances) -> Reply:
    """Carry out the reply's effects; feed an outcome back to the dialog where it waits for one."""
    svc = services()
    call_sid = request.form.get("CallSid", "")
    caller = request.form.get("From", "")
    outcome: Event | None = None
    database = resilience.guard()
    for effect in reply.effects:
        if isinstance(effect, dialog.CountSectionPlay):
            database.try_write(partial(svc.storage.count_use, "voice", effect.section), "counting a use")
        elif isinstance(effect, dialog.OpenVoicemail):
            _keep_voicemail(effect, call_sid, caller)
        elif isinstance(effect, dialog.RememberChoices | dialog.ForgetChoices):
            _save_choices(effect, caller)
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


def _keep_voicemail(effect: dialog.OpenVoicemail, call_sid: str, caller: str) -> None:
    """Keep the caller's message request before the beep: in the database, or in the spool while it is away."""
    storage = services().storage
    at = now()
    record = spool.new_record(
        spool.VOICEMAIL, at, call_sid=call_sid, phone=caller, topic=effect.topic, lang=effect.lang
    )
    live = partial(storage.open_voicemail, call_sid, caller, effect.topic, effect.lang, at)
    resilience.guard().keep(record, live, "keeping a voice message")


def can_remember(number: str) -> bool:
    """Whether choices may be remembered for the caller number `number` (a real, shown phone number)."""
    return bool(_PHONE_NUMBER.match(number)) and number not in _HIDDEN_CALLER_IDS


def _recall(caller: str) -> dialog.CallStarted:
    """The call's start, with what the line saved about this caller (one read, no write in the usual case)."""
    if not can_remember(caller):
        return dialog.CallStarted()
    clock = now()
    storage = services().storage
    # Remembered choices are a convenience: a database hiccup must not cost the caller the call.
    recall = partial(storage.recall_choices, caller, clock, dialog.OFFER_LAST_SECTION_WITHIN)
    saved = resilience.guard().read(recall, False, "reading choices")
    if saved is False:
        return dialog.CallStarted()
    if saved is None:
        return dialog.CallStarted(can_remember=True)
    heard_at = saved["last_heard_at"]
    remembered = dialog.Remembered(
        lang=saved["lang"],
        slow=bool(saved["slow"]),
        last_section=saved["last_section"],
        last_heard_ago=clock - heard_at if heard_at else None,
    )
    return dialog.CallStarted(can_remember=True, remembered=remembered)


def _save_choices(effect: dialog.RememberChoices | dialog.ForgetChoices, caller: str) -> None:
    """Save or erase the caller's choices; a failure is logged (without the number) and the call goes on."""
    if not can_remember(caller):
        return
    storage = services().storage
    if isinstance(effect, dialog.ForgetChoices):
        resilience.guard().try_write(partial(storage.forget_choices, caller), "forgetting choices")
    else:
        save = partial(storage.remember_choices, caller, effect.lang, effect.slow, effect.section, now())
        resilience.guard().try_write(save, "saving choices")


@bp.post("")
@twilio_only
def incoming_call() -> Response:
    """A call comes in: greet the caller (in their remembered language and speed) and read the main menu."""
    state = CallState(lang=services().content.default_language)
    return _answer(state, _recall(request.form.get("From", "")))


@bp.post("/step")
@twilio_only
def step() -> Response:
    """Every later moment of a call: a key, speech, silence, the end of a staff dial or of a message."""
    state = dialog.sanitize(services().content, state_from_query(request.args))
    form = request.form
    event: Event
    if state.node == dialog.STAFF:
        call_sid = form.get("CallSid", "")
        # Unknown with the database away: then the caller is offered a message, the safe way on.
        storage = services().storage
        accepted = resilience.guard().read(partial(storage.staff_accepted, call_sid), False, "reading a transfer")
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
        storage, parent = services().storage, request.form.get("ParentCallSid", "")
        # Connected either way: a staff member who pressed 1 must reach the caller.
        resilience.guard().try_write(partial(storage.accept_staff_call, parent), "noting a transfer")
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
        storage = services().storage
        call_sid, recording_sid = form.get("CallSid", ""), form.get("RecordingSid", "")
        record = spool.new_record(
            spool.RECORDING, now(), call_sid=call_sid, recording_sid=recording_sid, url=url, seconds=seconds
        )
        live = partial(storage.attach_recording, call_sid, recording_sid, url, seconds)
        resilience.guard().keep(record, live, "keeping a recording")
        return True
    return False
