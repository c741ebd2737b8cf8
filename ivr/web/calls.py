"""The phone line's webhooks: thin glue from Twilio's form to the dialog and back as TwiML.

Twilio's console points "A call comes in" to POST /voice; every other URL here is reached by
following the TwiML the line returns. The caller's place in the conversation is in each URL's query.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from types import MappingProxyType
from typing import Any, Literal

from flask import Blueprint, Response, current_app, request, url_for

from ivr import alerts, call_dialog, outbound_texts, resilience, spool, usage
from ivr.call_dialog import CallState, Circumstances, Event, Reply
from ivr.config import E164
from ivr.security import twilio_only
from ivr.services import now, services, staff_hours_text
from ivr.storage import PlaceNote
from ivr.twiml import Links, StaffDial, state_from_query, state_to_query

log = logging.getLogger(__name__)

bp = Blueprint("voice", __name__, url_prefix="/voice")

#: Withheld caller IDs spelled on a keypad (ANONYMOUS, RESTRICTED, BLOCKED, UNKNOWN, UNAVAILABLE), as
#: carriers and Twilio may send them in From: such a "number" is shared by many people, so never remembered.
_HIDDEN_CALLER_IDS = frozenset({"+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253"})

#: A recording SID as stored (Twilio's are RE and 32 hex digits; anything plain and short is kept, never dropped).
RECORDING_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")


def twiml(document: str) -> Response:
    """A TwiML HTTP response."""
    return Response(document, mimetype="text/xml")


#: The URLs TwiML documents point Twilio to, built from this app's routes when a document is
#: rendered (url_for then runs in that request, under its script root); one object serves every request.
_LINKS = Links(
    step=lambda state: url_for("voice.step", **state_to_query(state)),
    whisper=lambda section, state: _whisper_url(section, state),
    recording_status=lambda state: url_for("voice.recording_status", **state_to_query(state)),
    transcription=lambda state: url_for("voice.transcription"),
)


def _whisper_url(section: str, state: CallState) -> str:
    """The whisper's URL: the topic, the caller's language, and urgent=1 when the caller said urgent
    words on this call (in this state, or earlier: the call's urgent request is in the database)."""
    return url_for(
        "voice.whisper",
        topic=section or None,
        lang=state.lang if state.lang != services().content.default_language else None,
        urgent=1 if state.urgent or _urgent_earlier_on_this_call() else None,
    )


def _urgent_earlier_on_this_call() -> bool:
    """Whether urgent words were heard earlier on this call (its urgent request, kept by CallSid)."""
    call_sid = request.form.get("CallSid", "")
    if not call_sid:
        return False
    storage = services().storage
    return resilience.guard().read(partial(storage.urgent_call_heard, call_sid), False, "checking an urgent call")


def links() -> Links:
    """The URLs TwiML documents point Twilio to, built from this app's routes."""
    return _LINKS


def _circumstances() -> Circumstances:
    """Whether staff can be rung now, and when they are in, in each language (none without staff numbers)."""
    svc = services()
    if not current_app.config["STAFF_NUMBERS"]:
        return Circumstances(staff_open=False)
    staff_hours = {code: staff_hours_text(code) for code in svc.content.languages}
    return Circumstances(staff_open=svc.hours.is_open(now()), staff_hours=MappingProxyType(staff_hours))


def _caller_and_line() -> tuple[str, str]:
    """The caller's number and the line's number for this call.

    A call the line did not receive (one placed through the REST API, or a <Dial> leg moved here
    by a live-call update) has them the other way round.
    """
    form = request.form
    if form.get("Direction", "inbound").startswith("outbound"):
        return form.get("To", ""), form.get("From", "")
    return form.get("From", ""), form.get("To", "")


def _line_number() -> str:
    """The number the line calls and texts from: LINE_NUMBER, else the number the caller reached."""
    _, line = _caller_and_line()
    return current_app.config.get("LINE_NUMBER") or (line if E164.match(line) else "")


def _answer(state: CallState, event: Event) -> Response:
    """Run one dialog step, carry out what it asks, and render the reply."""
    svc, config = services(), current_app.config
    world = _circumstances()
    reply = call_dialog.step(svc.content, state, event, world)
    if reply.effects or isinstance(reply.next, call_dialog.AwaitOutcome):
        reply = _perform(reply, world)
    _note_place(reply)
    # Only the line's own number is in the dial (its caller ID), never the caller's.
    staff = StaffDial(config["STAFF_NUMBERS"], _line_number(), config["STAFF_RING_SECONDS"])
    document = svc.cache.voice_document(reply, _LINKS, staff, config["VOICEMAIL_MAX_SECONDS"], request.script_root)
    return twiml(document)


def _perform(reply: Reply, world: Circumstances) -> Reply:
    """Carry out the reply's effects; feed an outcome back to the dialog where it waits for one."""
    svc = services()
    call_sid = request.form.get("CallSid", "")
    caller, _ = _caller_and_line()
    outcome: Event | None = None
    database = resilience.guard()
    for effect in reply.effects:
        if isinstance(effect, call_dialog.CountSectionPlay):
            once = retry_key("count")
            usage.count(svc.usage, database, "voice", effect.section, once_key=once, at=now())
        elif isinstance(effect, call_dialog.OpenVoiceMessage):
            _keep_voice_message(effect, call_sid, caller)
        elif isinstance(effect, call_dialog.RememberChoices | call_dialog.ForgetChoices):
            _save_choices(effect, caller)
        elif isinstance(effect, call_dialog.SendSectionText):
            outcome = call_dialog.TextOutcome(_send_once(effect, caller))
        elif isinstance(effect, call_dialog.FlagUrgent):
            _keep_urgent(effect, call_sid, caller)
    if isinstance(reply.next, call_dialog.AwaitOutcome):
        if outcome is None:  # pragma: no cover - every waiting reply carries the effect that answers it
            outcome = call_dialog.TextOutcome("failed")
        return _perform(call_dialog.step(svc.content, reply.next.state, outcome, world), world)
    return reply


#: The place of a call the line ended itself (the goodbye after "thank you", or after long silence).
GOODBYE = "goodbye"


def place_after(reply: Reply) -> PlaceNote | None:
    """Where this call is once the line has answered with `reply` (None without a CallSid): its menu
    node, or "goodbye" when the line ends the call, and the section being heard; what the picture of the
    line counts hang-ups by. No phone number."""
    call_sid = request.form.get("CallSid", "")[:64]
    if not call_sid:
        return None
    if isinstance(reply.next, call_dialog.HangUp):
        return PlaceNote(call_sid, GOODBYE, "", "", now())
    state = reply.next.state
    section = state.section if state.node in call_dialog.SECTION_NODES else ""  # elsewhere: the one heard last
    return PlaceNote(call_sid, state.node, section, state.lang, now())


def _note_place(reply: Reply) -> None:
    """Note the call's place for the picture of the line: batched with the usage counts (ivr/usage.py)."""
    note = place_after(reply)
    if note is not None:
        services().usage.note_place(note)


#: Twilio sends this header with every webhook request, the same value again when it retries one.
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"


def retry_key(purpose: str) -> str:
    """This request's identity, the same for Twilio's retry of it ("" when Twilio sent no token), so
    a retried key press texts nothing twice and counts nothing twice. Without the token a repeat
    cannot be told from a caller pressing the same key again, which must work: nothing is deduplicated."""
    token = request.headers.get(IDEMPOTENCY_HEADER, "")
    if not token:
        return ""
    call_sid = request.form.get("CallSid", "")
    return f"step:{purpose}:" + services().storage.key_hash("step", f"{call_sid}\x1f{token}")[:40]


#: A step already answered, by what it came to ("": still sending); a failed one may be tried again.
_ANSWERED: dict[str, call_dialog.TextResult] = {
    "": "sent",
    "sent": "sent",
    "opted_out": "opted_out",
    "no_number": "no_number",
    "already_sent": "already_sent",
    "over_limit": "over_limit",
}


def _send_once(effect: call_dialog.SendSectionText, caller: str) -> call_dialog.TextResult:
    """Text the section as the outbound-text policy allows (ivr/outbound_texts.py: once per call, daily
    caps, textable numbers only), unless this very request was already answered (Twilio retried it):
    then its answer. The idempotency token only finds that earlier answer; whether to send is decided
    on the signed CallSid and section, so a replay with a new token sends nothing."""
    svc = services()
    database = resilience.guard()
    key = retry_key("text")
    earlier = database.read(partial(svc.storage.claim_step, key, now()), None, "noting a call step") if key else None
    if earlier is not None and earlier in _ANSWERED:
        return _ANSWERED[earlier]
    call_sid = request.form.get("CallSid", "")
    sent = outbound_texts.send_section(
        svc, to=caller, from_=_line_number(), section=effect.section, lang=effect.lang, call_sid=call_sid
    )
    result: call_dialog.TextResult = "over_limit" if sent == "staff_over_limit" else sent
    if key:
        database.try_write(partial(svc.storage.settle_step, key, result), "noting a call step")
    return result


def _keep_voice_message(effect: call_dialog.OpenVoiceMessage, call_sid: str, caller: str) -> None:
    """Keep the caller's message request before the beep: in the database, or in the spool while it is away."""
    storage = services().storage
    at = now()
    record = spool.new_record(
        spool.VOICEMAIL, at, call_sid=call_sid, phone=caller, topic=effect.section, lang=effect.lang
    )
    live = partial(storage.open_voice_message, call_sid, caller, effect.section, effect.lang, at)
    resilience.guard().keep(record, live, "keeping a voice message")


def _keep_urgent(effect: call_dialog.FlagUrgent, call_sid: str, caller: str) -> None:
    """Keep the call as urgent for staff (its kind, never the words said) and alert staff; never lost:
    in the database, or in the spool while it is away (its alert is queued when the spool is moved in)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    storage = services().storage
    at = now()
    record = spool.new_record(
        spool.URGENT_CALL, at, call_sid=call_sid, phone=caller, urgent_kind=effect.kind, lang=effect.lang
    )
    live = partial(storage.record_urgent_call, call_sid, caller, effect.kind, effect.lang, at)
    added = resilience.guard().keep(record, live, "keeping an urgent call")
    alerts.note_line_number(app, _line_number())
    if added is not False:  # new, or spooled (its alert is queued when the spool is moved in): send soon
        alerts.send_soon(app)


def can_remember(number: str) -> bool:
    """Whether choices may be remembered for the caller number `number` (a real, shown phone number)."""
    return bool(E164.match(number)) and number not in _HIDDEN_CALLER_IDS


#: The start of a call from a number the line cannot remember, and from one it has saved nothing for.
_HIDDEN_CALLER = call_dialog.CallStarted()
_NEW_CALLER = call_dialog.CallStarted(can_remember=True)


def _recall(caller: str) -> call_dialog.CallStarted:
    """The call's start, with what the line saved about this caller (one read, no write in the usual case)."""
    if not can_remember(caller):
        return _HIDDEN_CALLER
    clock = now()
    # Remembered choices are a convenience: a database hiccup must not cost the caller the call.
    recall = partial(services().storage.recall_choices, caller, clock, call_dialog.OFFER_LAST_SECTION_WITHIN)
    unreadable: dict[str, Any] | Literal[False] | None = False
    saved = resilience.guard().read(recall, unreadable, "reading choices")
    if saved is False:
        return _HIDDEN_CALLER
    if saved is None:
        return _NEW_CALLER
    heard_at = saved["last_heard_at"]
    remembered = call_dialog.Remembered(
        lang=saved["lang"],
        slow=bool(saved["slow"]),
        last_section=saved["last_section"],
        last_heard_ago=clock - heard_at if heard_at else None,
    )
    return call_dialog.CallStarted(can_remember=True, remembered=remembered)


def _save_choices(effect: call_dialog.RememberChoices | call_dialog.ForgetChoices, caller: str) -> None:
    """Save or erase the caller's choices; a failure is logged (without the number) and the call goes on."""
    if not can_remember(caller):
        return
    storage = services().storage
    if isinstance(effect, call_dialog.ForgetChoices):
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
    svc = services()
    state = call_dialog.sanitize(svc.content, state_from_query(request.args))
    form = request.form
    event: Event
    if state.node == call_dialog.STAFF:
        # Acceptance is kept per staff leg (DialCallSid), so a second try in the same call starts afresh.
        # Unknown with the database away: then the caller is offered a message, the safe way on.
        staff_leg = form.get("DialCallSid", "")
        storage = svc.storage
        accepted = resilience.guard().read(partial(storage.staff_accepted, staff_leg), False, "reading a transfer")
        event = call_dialog.DialEnded(status=form.get("DialCallStatus", "failed"), accepted=accepted)
    elif state.node == call_dialog.URGENT_DIAL:
        # The crisis line's (or staff's) call ended, however: the caller is back at the urgent offer.
        event = call_dialog.DialEnded(status=form.get("DialCallStatus", "failed"), accepted=False)
    elif state.node == call_dialog.RECORD:
        event = call_dialog.Recorded(has_audio=_save_recording(state))
    else:
        event = call_dialog.Heard(digits=form.get("Digits", ""), speech=form.get("SpeechResult", ""))
    return _answer(state, event)


@bp.post("/section/<name>")
@twilio_only
def section_entry(name: str) -> Response:
    """A staff member transferred the caller straight to a section (`?l=es` to land in Spanish)."""
    content = services().content
    lang = request.args.get("l", content.default_language)
    return _answer(CallState(lang=lang), call_dialog.TransferredIn(name.strip().lower()))


#: How many times a staff member may press a wrong key on the whisper before the leg is hung up.
WHISPER_RETRIES = 1


@bp.post("/whisper")
@twilio_only
def whisper() -> Response:
    """Heard by the staff member who answers: who is calling, and press 1 to take the call."""
    section, context = request.args.get("topic", "")[:32], _whisper_context()
    tries = _small_number(request.args.get("t", "0"))
    text = call_dialog.whisper_text(services().content, section, **context)
    answer_url = url_for("voice.whisper_answer", topic=section or None, t=tries, **_whisper_query(context))
    return twiml(services().renderer.whisper(text, answer_url))


@bp.post("/whisper/answer")
@twilio_only
def whisper_answer() -> Response:
    """The staff member pressed a key: 1 connects the caller; another key hears the whisper again, once."""
    if request.form.get("Digits") == "1":
        # CallSid here is the staff member's leg: the Dial action reports it back as DialCallSid.
        # Connected either way: a staff member who pressed 1 must reach the caller.
        storage, staff_leg = services().storage, request.form.get("CallSid", "")
        resilience.guard().try_write(partial(storage.accept_staff_call, staff_leg), "noting a transfer")
        return twiml(services().renderer.empty())
    tries = _small_number(request.args.get("t", "0"))
    if tries < WHISPER_RETRIES:
        section = request.args.get("topic", "")[:32]
        again = url_for("voice.whisper", topic=section or None, t=tries + 1, **_whisper_query(_whisper_context()))
        return twiml(services().renderer.redirect(again))
    return twiml(services().renderer.hangup())


def _whisper_context() -> dict[str, Any]:
    """The caller's language and whether they said urgent words, from the whisper URL's query."""
    lang = request.args.get("lang", "")
    return {"lang": lang if lang in services().content.languages else "", "urgent": request.args.get("urgent") == "1"}


def _whisper_query(context: dict[str, Any]) -> dict[str, Any]:
    """`_whisper_context` back as URL query values (None: left out)."""
    return {"lang": context["lang"] or None, "urgent": 1 if context["urgent"] else None}


@bp.post("/transcription")
@twilio_only
def transcription() -> Response:
    """Twilio's transcript of a voice message (English only): kept sealed, for the staff page.

    A failed transcription is kept as such, so the page says "no transcript" rather than waiting.
    """
    form = request.form
    recording_sid = form.get("RecordingSid", "")
    status = form.get("TranscriptionStatus", "")
    if RECORDING_SID.match(recording_sid) and status in ("completed", "failed"):
        storage = services().storage
        text = form.get("TranscriptionText", "").strip()[:4000] if status == "completed" else ""
        sealed = storage.seal(text) if text else ""
        state = "completed" if text else "failed"
        # No spool record: a transcript is a copy of a recording the line keeps anyway.
        kept = resilience.guard().keep(
            None, partial(storage.attach_transcript, recording_sid, sealed, state), "keeping a transcript"
        )
        if kept is False:
            log.warning("A transcript came for a recording with no voice message")
    return twiml(services().renderer.empty())


@bp.post("/recording-status")
@twilio_only
def recording_status() -> Response:
    """Twilio's word that a voice message's recording is ready (or absent)."""
    state = call_dialog.sanitize(services().content, state_from_query(request.args))
    if request.form.get("RecordingStatus", "completed") == "completed":
        _save_recording(state)
    return twiml(services().renderer.empty())


#: A call's final CallStatus values (Twilio's call status callback); the others say it is still going.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


@bp.post("/status")
@twilio_only
def call_status() -> Response:
    """Twilio's call status callback ("Call status changes" in the console): when a call ends, note how
    and how long, beside its last place in the menu. Always answered at once with an empty document
    (Twilio reads nothing from it); a database that is away loses the note, never the answer."""
    form = request.form
    status, call_sid = form.get("CallStatus", ""), form.get("CallSid", "")[:64]
    if status in FINAL_CALL_STATUSES and call_sid:
        svc = services()
        svc.usage.flush()  # this process's places in the menu first (kept for later if the database is away)
        seconds = _whole_seconds(form.get("CallDuration", ""))
        close = partial(svc.storage.close_call, call_sid, status, seconds, now())
        resilience.guard().try_write(close, "noting how a call ended")
    return twiml(services().renderer.empty())


def _whole_seconds(text: str) -> int:
    """Twilio's CallDuration (whole seconds); 0 when missing or odd; at most a day."""
    return min(int(text), 86_400) if text.isdigit() and len(text) <= 6 else 0


def _small_number(text: str) -> int:
    return int(text) if text.isdigit() and len(text) <= 2 else 0


def _save_recording(state: CallState) -> bool:
    """Attach the recording in this request to the caller's message; True when it holds sound."""
    form = request.form
    url = form.get("RecordingUrl", "")
    seconds_text = form.get("RecordingDuration", "0")
    seconds = int(seconds_text) if seconds_text.isdigit() else 0
    if not url or seconds <= 0:
        return False
    # Record's action may not name the recording; its URL always ends with the recording's SID.
    recording_sid = form.get("RecordingSid", "") or url.rstrip("/").rsplit("/", 1)[-1]
    if not RECORDING_SID.match(recording_sid):
        return False
    caller, _ = _caller_and_line()
    call_sid = form.get("CallSid", "")
    # The spool record keeps the database's word for the section ("topic").
    record = spool.new_record(
        spool.RECORDING,
        now(),
        call_sid=call_sid,
        recording_sid=recording_sid,
        url=url,
        seconds=seconds,
        phone=caller,
        topic=state.section,
        lang=state.lang,
    )
    storage = services().storage
    details = {"phone": caller, "section": state.section, "lang": state.lang}
    live = partial(storage.attach_recording, call_sid, recording_sid, url, seconds, **details)
    resilience.guard().keep(record, live, "keeping a recording")
    return True
