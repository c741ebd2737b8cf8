"""The one TwiML interpreter: a call leg run verb by verb the way Twilio runs it.

`parse_twiml` and `check_attributes` also serve the messaging side (ivr/phone/texting.py), and
`parse_document` and `spoken_text` the tests' own step-by-step callers (tests/helpers/support.py), so
every reader of TwiML in the tree accepts, rejects and hears a document the same way.
"""

from __future__ import annotations

import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Literal, TextIO

from ivr.phone.script import Action, Caller, Moment, ScriptedCaller, ScriptError
from ivr.phone.speech import Speaker
from ivr.phone.transcript import EntryKind, Transcript
from ivr.phone.transport import API_VERSION, Answer, PhoneSetup, Requester, new_sid, short_url

#: What Twilio says when an answer is not usable TwiML; then it hangs up.
TWILIO_APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
#: Requests in a row without the caller doing anything before the phone calls it a loop.
MAX_REQUESTS_WITHOUT_INPUT = 25
#: How long a simulated conversation with staff lasts, in seconds.
STAFF_CONVERSATION_SECONDS = 90
#: Words a minute of a typed voice message, to estimate the recording's length.
SPEAKING_WORDS_PER_MINUTE = 150

#: Attributes Twilio knows, per verb or noun; anything else earns a schema warning (Twilio 12200).
ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "Say": frozenset({"voice", "language", "loop"}),
    "Play": frozenset({"loop", "digits"}),
    "Pause": frozenset({"length"}),
    "Gather": frozenset(
        {
            "action", "method", "timeout", "numDigits", "finishOnKey", "input", "speechTimeout", "maxSpeechTime",
            "language", "hints", "profanityFilter", "speechModel", "enhanced", "partialResultCallback",
            "partialResultCallbackMethod", "actionOnEmptyResult", "bargeIn", "debug",
        }
    ),
    "Redirect": frozenset({"method"}),
    "Hangup": frozenset(),
    "Reject": frozenset({"reason"}),
    "Dial": frozenset(
        {
            "action", "method", "timeout", "hangupOnStar", "timeLimit", "callerId", "record", "trim",
            "recordingStatusCallback", "recordingStatusCallbackMethod", "recordingStatusCallbackEvent",
            "recordingTrack", "answerOnBridge", "ringTone", "sequential", "referUrl", "referMethod", "events",
        }
    ),
    "Number": frozenset(
        {
            "sendDigits", "url", "method", "statusCallback", "statusCallbackEvent", "statusCallbackMethod", "byoc",
            "machineDetection", "machineDetectionTimeout", "machineDetectionSpeechThreshold",
            "machineDetectionSpeechEndThreshold", "machineDetectionSilenceTimeout", "amdStatusCallback",
            "amdStatusCallbackMethod",
        }
    ),
    "Sip": frozenset(
        {
            "username", "password", "url", "method", "statusCallback", "statusCallbackEvent",
            "statusCallbackMethod", "machineDetection", "machineDetectionTimeout", "amdStatusCallback",
            "amdStatusCallbackMethod",
        }
    ),
    "Client": frozenset({"url", "method", "statusCallback", "statusCallbackEvent", "statusCallbackMethod"}),
    "Record": frozenset(
        {
            "action", "method", "timeout", "finishOnKey", "maxLength", "playBeep", "trim", "recordingStatusCallback",
            "recordingStatusCallbackMethod", "recordingStatusCallbackEvent", "storageUrl", "storageUrlMethod",
            "transcribe", "transcribeCallback", "recordingChannels",
        }
    ),
    "Message": frozenset({"to", "from", "action", "method", "statusCallback"}),
}  # fmt: skip
#: Real TwiML voice verbs this phone does not act out: shown as errors so nobody mistakes silence for success.
UNSUPPORTED_VOICE_VERBS = frozenset(
    {"Connect", "Enqueue", "Leave", "Pay", "Prompt", "Queue", "Refer", "Start", "Stop", "Stream", "Sms", "Message"}
)
#: Messages Twilio itself answers on a long-code number (default opt-out handling).


def spoken_text(element: ET.Element) -> str:
    """The words of a <Say> (or <Message>), SSML tags stripped and whitespace folded."""
    return " ".join("".join(element.itertext()).split())


CallEnd = Literal["hangup", "end-of-document", "you-hung-up", "script-ended", "rejected", "error"]


@dataclass
class CallResult:
    """How a call went: its transcript, how it ended, and any errors and warnings."""

    transcript: Transcript
    ended: CallEnd = "error"
    call_sid: str = ""
    requests: int = 0
    leftover: list[Action] = field(default_factory=list)
    audio: list[tuple[Path, float]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Every error shown during the call."""
        return self.transcript.of("error")

    @property
    def warnings(self) -> list[str]:
        """Every warning shown during the call."""
        return self.transcript.of("warning")

    @property
    def said(self) -> list[str]:
        """Every sentence the line said to the caller."""
        return self.transcript.said()

    @property
    def ok(self) -> bool:
        """No error, and a script (if any) used up."""
        return not self.errors and not self.leftover

    def turns(self) -> list[list[str]]:
        """What the line said to the caller before their first action, then after each one."""
        turns: list[list[str]] = [[]]
        for entry in self.transcript.entries:
            if entry.kind == "you":
                turns.append([])
            elif entry.kind == "say" and entry.who == "LINE":
                turns[-1].append(entry.text)
        return turns


class TwimlError(Exception):
    """The line's answer is not TwiML Twilio could run; the message says why (with Twilio's error code)."""


@dataclass(frozen=True)
class _Goto:
    url: str
    method: str
    extra: Mapping[str, str]


@dataclass(frozen=True)
class _Ended:
    how: CallEnd


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default


class Leg:
    """One call leg run like Twilio runs it: fetch TwiML, carry out its verbs, follow its URLs.

    The caller's leg and a staff member's leg (for the whisper a staff member hears before taking
    a call) are both Legs; `staff` marks the second, so the transcript tells them apart.
    """

    def __init__(
        self,
        requester: Requester,
        transcript: Transcript,
        caller: Caller,
        params: dict[str, str],
        staff: bool = False,
        speaker: Speaker | None = None,
    ) -> None:
        self.requester = requester
        self.transcript = transcript
        self.caller = caller
        self.params = params
        self.listener = "STAFF HEARS" if staff else "LINE"
        self.line_label = "LINE -> STAFF" if staff else "LINE"
        self.actor: EntryKind = "staff" if staff else "you"
        self._pending_callback: tuple[str, ET.Element, str, str, str, int] | None = None
        #: A transcript to post to <Record transcribeCallback> (Twilio sends it a while after the recording).
        self._pending_transcript: dict[str, str] | None = None
        self.speaker = speaker
        self.requests = 0
        self._quiet_requests = 0

    # -- fetching -------------------------------------------------------------------------------

    def fetch(self, url: str, method: str, extra: Mapping[str, str]) -> tuple[str, ET.Element]:
        """Request TwiML: `extra` fields on top of the call's own; raise TwimlError when unusable."""
        self.requests += 1
        self._quiet_requests += 1
        if self._quiet_requests > MAX_REQUESTS_WITHOUT_INPUT:
            raise TwimlError(f"{MAX_REQUESTS_WITHOUT_INPUT} requests without waiting for the caller: a redirect loop?")
        form = {**self.params, **extra}
        answer = self._send(method, url, form)
        self.params["CallStatus"] = "in-progress"
        return url, parse_twiml(answer, url, "voice")

    def _send(self, method: str, url: str, form: Mapping[str, str]) -> Answer:
        try:
            sent_url, answer = self.requester.request(method, url, form)
        except OSError as error:
            raise TwimlError(f"Twilio 11200 HTTP retrieval failure: cannot reach {url} ({error})") from None
        shown = {k: v for k, v in form.items() if k not in self.params or self.params[k] != v}
        fields = " ".join(f"{k}={v}" for k, v in shown.items())
        answered = f"{answer.status} {answer.content_type}"
        self.transcript.add("request", f"{method} {short_url(sent_url)} {fields} -> {answered}")
        if answer.status == 403:
            hint = (
                "the line refused the signature: does --token match its TWILIO_AUTH_TOKEN, and PUBLIC_BASE_URL?"
                if self.requester.signer.token
                else "the line wants signed requests (or local requests only): pass --token / TWILIO_AUTH_TOKEN"
            )
            raise TwimlError(f"Twilio 11200: {method} {short_url(url)} answered 403 Forbidden; {hint}")
        if answer.status != 200:
            raise TwimlError(f"Twilio 11200 HTTP retrieval failure: {method} {short_url(url)} answered {answer.status}")
        return answer

    # -- running --------------------------------------------------------------------------------

    def run(self, url: str, method: str = "POST", extra: Mapping[str, str] | None = None) -> CallEnd:
        """Run the leg from `url` until it ends; errors end it too, after being shown."""
        step: _Goto | _Ended = _Goto(url, method, extra or {})
        try:
            while isinstance(step, _Goto):
                document_url, root = self.fetch(step.url, step.method, step.extra)
                self.flush_callbacks()
                step = self.execute(document_url, root)
        except TwimlError as error:
            self.transcript.add("error", str(error))
            self.transcript.add("note", f'(Twilio would say "{TWILIO_APPLICATION_ERROR}" and hang up)')
            step = _Ended("error")
        except ScriptError as error:
            self.transcript.add("error", f"script: {error}")
            step = _Ended("error")
        if self.speaker:
            self.speaker.end_turn()
        return step.how

    def execute(self, document_url: str, root: ET.Element) -> _Goto | _Ended:
        """Carry out one TwiML document, verb by verb."""
        for verb in root:
            check_attributes(verb, self.transcript)
            tag = verb.tag
            if tag == "Say":
                self.say(verb)
            elif tag == "Play":
                self.play(verb)
            elif tag == "Pause":
                self.pause(verb)
            elif tag == "Gather":
                step = self.gather(verb, document_url)
                if step:
                    return step
            elif tag == "Redirect":
                target = (verb.text or "").strip()
                if not target:
                    raise TwimlError("Twilio 12200 schema validation: <Redirect> needs a URL")
                return _Goto(self.requester.absolute(target, document_url), verb.get("method", "POST"), {})
            elif tag == "Dial":
                step = self.dial(verb, document_url)
                if step:
                    return step
            elif tag == "Record":
                step = self.record(verb, document_url)
                if step:
                    return step
            elif tag == "Hangup":
                self.transcript.add("line", "(hangs up)", who=self.line_label)
                return _Ended("hangup")
            elif tag == "Reject":
                self.transcript.add(
                    "line", f"(rejects the call: {verb.get('reason', 'rejected')})", who=self.line_label
                )
                return _Ended("rejected")
            elif tag in UNSUPPORTED_VOICE_VERBS:
                raise TwimlError(f"<{tag}> is TwiML, but this phone cannot act it out")
            else:
                raise TwimlError(f"Twilio 12200 schema validation: <{tag}> is not a TwiML voice verb")
        return _Ended("end-of-document")

    # -- verbs ----------------------------------------------------------------------------------

    def say(self, verb: ET.Element) -> None:
        text = spoken_text(verb)
        language = verb.get("language", "en-US")
        loops = int(_number(verb.get("loop"), 1))
        repeat = f" (said {loops} times)" if loops > 1 else " (repeated until the caller acts)" if loops == 0 else ""
        self.transcript.add("say", text + repeat, language, self.listener)
        if self.speaker:
            self.speaker.say(verb, text, language)

    def play(self, verb: ET.Element) -> None:
        if verb.get("digits"):
            self.transcript.add("line", f"(plays the tones {verb.get('digits')})", who=self.line_label)
        else:
            self.transcript.add(
                "line", f"(plays {(verb.text or '').strip() or 'nothing: <Play> has no URL'})", who=self.line_label
            )

    def pause(self, verb: ET.Element) -> None:
        seconds = _number(verb.get("length"), 1)
        self.transcript.add("line", f"(pause {seconds:g} s)", who=self.line_label)
        if self.speaker:
            self.speaker.pause(seconds)

    def gather(self, verb: ET.Element, document_url: str) -> _Goto | None:
        """Play the nested verbs, then take keys or speech; None when Twilio falls through to the next verb."""
        for child in verb:
            check_attributes(child, self.transcript)
            if child.tag == "Say":
                self.say(child)
            elif child.tag == "Play":
                self.play(child)
            elif child.tag == "Pause":
                self.pause(child)
            else:
                raise TwimlError(f"Twilio 12200 schema validation: <{child.tag}> cannot be nested in <Gather>")
        if self.speaker:
            self.speaker.end_turn()
        inputs = set((verb.get("input") or "dtmf").split())
        num_digits = int(_number(verb.get("numDigits"), 0))
        finish_on_key = verb.get("finishOnKey", "#")
        timeout = _number(verb.get("timeout"), 5)
        language = verb.get("language", "en-US")
        wants = []
        if "dtmf" in inputs:
            wants.append(f"{num_digits} key{'s' if num_digits != 1 else ''}" if num_digits else "keys")
            if finish_on_key:
                wants.append(f"ending with {finish_on_key}")
        if "speech" in inputs:
            wants.append(f"speech in {language}")
        hint = f"listening for {', '.join(wants)}; {timeout:g} s timeout"
        self.transcript.add("note", f"({hint})")
        action = self.caller.next("gather", hint)
        if action is None:
            raise _ScriptEnded()
        self._quiet_requests = 0
        self.transcript.add(self.actor, action.describe())
        if action.kind == "hangup":
            raise _HungUp()
        result: dict[str, str] = {}
        if action.kind == "keys" and "dtmf" in inputs:
            result = self._collect(action.value, num_digits, finish_on_key, timeout)
        elif action.kind == "speech" and "speech" in inputs:
            result = {"SpeechResult": action.value, "Confidence": "0.92"}
        elif action.kind != "silence":
            self.transcript.add(
                "warning",
                f"this <Gather> does not listen for {action.kind} "
                f"(input={verb.get('input') or 'dtmf'}): Twilio hears nothing",
            )
        if not result.get("Digits") and not result.get("SpeechResult"):
            if action.kind == "silence":
                self.transcript.add("note", f"(no input for {timeout:g} s)")
            if not _bool(verb.get("actionOnEmptyResult")):
                self.transcript.add("note", "(no input, no actionOnEmptyResult: Twilio goes on to the next verb)")
                return None
        target = self.requester.absolute(verb.get("action") or document_url, document_url)
        return _Goto(target, verb.get("method", "POST"), result)

    def _collect(self, keys: str, num_digits: int, finish_on_key: str, timeout: float) -> dict[str, str]:
        digits, finished_on, used = "", "", 0
        for used, key in enumerate(keys, start=1):  # noqa: B007 - `used` counts the keys Twilio took
            if finish_on_key and key in finish_on_key:
                finished_on = key
                break
            digits += key
            if num_digits and len(digits) >= num_digits:
                break
        if keys[used:]:
            self.transcript.add("note", f"(the <Gather> was done before these keys: {keys[used:]})")
        if digits and not finished_on and (not num_digits or len(digits) < num_digits):
            self.transcript.add("note", f"(after {timeout:g} s without another key, Twilio sends the keys so far)")
        result = {"Digits": digits} if digits else {}
        if finished_on:
            result["FinishedOnKey"] = finished_on
        return result

    def dial(self, verb: ET.Element, document_url: str) -> _Goto | None:
        """Ring staff: the caller decides what the staff phones do; the whisper runs on a staff leg."""
        targets = [child for child in verb if child.tag in ("Number", "Sip", "Client")]
        for child in verb:
            check_attributes(child, self.transcript)
            if child.tag not in ("Number", "Sip", "Client"):
                raise TwimlError(f"<Dial><{child.tag}> is not something this phone can ring")
        numbers = [(child.text or "").strip() for child in targets] or [(verb.text or "").strip()]
        if not any(numbers):
            raise TwimlError("Twilio 12200 schema validation: <Dial> has no number to ring")
        ring = _number(verb.get("timeout"), 30)
        self.transcript.add("line", f"(rings {', '.join(numbers)} for up to {ring:g} s)", who=self.line_label)
        if self.speaker:
            self.speaker.end_turn()
        action = self.caller.next("dial", "who answers the staff phones?")
        if action is None:
            raise _ScriptEnded()
        self._quiet_requests = 0
        if action.kind == "hangup":
            self.transcript.add(self.actor, "hang up")
            raise _HungUp()
        self.transcript.add(self.actor, "(hold on while it rings)")
        child_sid = new_sid("CA")
        outcome = action.value
        extra = {"DialCallSid": child_sid}
        if outcome in ("busy", "no-answer", "failed"):
            extra["DialCallStatus"] = outcome
            unreached = {
                "busy": "(every staff line is busy)",
                "no-answer": f"(no one answers within {ring:g} s)",
                "failed": "(the call to staff fails)",
            }
            self.transcript.add("staff", unreached[outcome])
        else:
            answered = targets[0] if targets else None
            number = numbers[0]
            bridged = True
            if answered is not None and answered.get("url"):
                bridged = self._whisper(answered, number, verb.get("callerId"), child_sid, outcome, document_url)
            else:
                self.transcript.add("staff", f"{number} answers (no whisper URL)")
                bridged = outcome == "accept"
            extra["DialCallStatus"] = "completed"
            if bridged:
                extra["DialCallDuration"] = str(STAFF_CONVERSATION_SECONDS)
                self.transcript.add(
                    "staff", f"(you talk with staff; they hang up after {STAFF_CONVERSATION_SECONDS} s)"
                )
            else:
                # Twilio reports an answered leg as "completed" even when its whisper hung up before
                # connecting: only the line's own record of the key press tells a real acceptance.
                extra["DialCallDuration"] = "0"
                self.transcript.add("staff", "(the staff phone hangs up without connecting you)")
        if not verb.get("action"):
            self.transcript.add("note", "(the <Dial> has no action: Twilio goes on to the next verb)")
            return None
        return _Goto(self.requester.absolute(verb.get("action", ""), document_url), verb.get("method", "POST"), extra)

    def _whisper(
        self, noun: ET.Element, number: str, caller_id: str | None, child_sid: str, outcome: str, document_url: str
    ) -> bool:
        """Run the staff leg's whisper TwiML; True when it ends letting the call through (not with <Hangup>)."""
        self.transcript.add("staff", f"{number} answers and hears the whisper")
        staff_press = {"accept": [Action("keys", "1")], "decline": [Action("keys", "2")], "no-key": [Action("silence")]}
        from_number = caller_id or self.params.get("From", "")
        params = {
            "CallSid": child_sid,
            "ParentCallSid": self.params["CallSid"],
            "AccountSid": self.params["AccountSid"],
            "From": from_number,
            "Caller": from_number,
            "To": number,
            "Called": number,
            "CallStatus": "in-progress",
            "Direction": "outbound-dial",
            "ApiVersion": API_VERSION,
        }
        staff_leg = Leg(self.requester, self.transcript, _StaffPhone(staff_press[outcome]), params, staff=True)
        url = self.requester.absolute(noun.get("url", ""), document_url)
        ended = staff_leg.run(url, noun.get("method", "POST"))
        self.requests += staff_leg.requests
        if ended == "error":
            raise TwimlError("the whisper a staff member hears failed (see above)")
        return ended == "end-of-document"

    def record(self, verb: ET.Element, document_url: str) -> _Goto | None:
        """Take a typed message as a recording; report it to the action and the recording status callback."""
        max_length = _number(verb.get("maxLength"), 3600)
        finish_on_key = verb.get("finishOnKey", "1234567890*#")
        beep = "a beep, then " if verb.get("playBeep", "true").lower() != "false" else ""
        hint = f"{beep}recording up to {max_length:g} s" + (
            f", ends with a key from {finish_on_key}" if finish_on_key else ""
        )
        self.transcript.add("line", f"({hint})", who=self.line_label)
        if self.speaker:
            self.speaker.end_turn()
        action = self.caller.next("record", hint)
        if action is None:
            raise _ScriptEnded()
        self._quiet_requests = 0
        message = action.value if action.kind == "record" else ""
        ended_by = "hangup" if action.kind == "hangup" else ""
        if action.kind == "keys":
            ended_by = action.value[0]
        said = action.describe()
        if message:
            follow = self.caller.follow_up(finish_on_key)
            if follow is not None:
                ended_by = "hangup" if follow.kind == "hangup" else follow.value
            elif finish_on_key:
                ended_by = "#" if "#" in finish_on_key else finish_on_key[0]
            if ended_by:
                said += ", then " + ("hang up" if ended_by == "hangup" else f"press {ended_by}")
            else:
                said += f", then silence ends the recording after {verb.get('timeout', '5')} s"
        self.transcript.add(self.actor, said)
        seconds = 0
        if message:
            words = len(message.split())
            seconds = max(1, math.ceil(words * 60 / SPEAKING_WORDS_PER_MINUTE))
            if seconds > max_length:
                seconds = int(max_length)
                self.transcript.add("note", f"(the recording stops at maxLength, {max_length:g} s)")
        recording_sid = new_sid("RE")
        account = self.params["AccountSid"]
        recording_url = f"https://api.twilio.com/{API_VERSION}/Accounts/{account}/Recordings/{recording_sid}"
        callback = verb.get("recordingStatusCallback")
        events = set((verb.get("recordingStatusCallbackEvent") or "completed").split())
        if seconds == 0:
            # An empty recording: Twilio skips the action URL and goes on with the next verb.
            self.transcript.add("note", "(nothing was recorded: Twilio skips the action and goes on to the next verb)")
            if callback and "absent" in events:
                self._recording_status(callback, verb, document_url, recording_sid, "", 0, "absent")
            if ended_by == "hangup":
                raise _HungUp()
            return None
        extra = {"RecordingUrl": recording_url, "RecordingSid": recording_sid, "RecordingDuration": str(seconds)}
        if ended_by:
            extra["Digits"] = ended_by
        target = self.requester.absolute(verb.get("action") or document_url, document_url)
        transcribe_to = verb.get("transcribeCallback")
        if transcribe_to and verb.get("transcribe", "false").lower() == "true":
            # The typed message stands for what Twilio's transcription would write out.
            self._pending_transcript = {
                "url": self.requester.absolute(transcribe_to, document_url),
                "RecordingSid": recording_sid,
                "RecordingUrl": recording_url,
                "TranscriptionText": message,
            }
        if ended_by == "hangup":
            # The caller is gone: Twilio still requests the action (its TwiML is ignored).
            self._send(verb.get("method", "POST").upper(), target, {**self.params, "CallStatus": "completed", **extra})
            if callback and "completed" in events:
                self._recording_status(callback, verb, document_url, recording_sid, recording_url, seconds, "completed")
            self.flush_callbacks()
            raise _HungUp()
        goto = _Goto(target, verb.get("method", "POST"), extra)
        if callback and "completed" in events:
            self._pending_callback = (callback, verb, document_url, recording_sid, recording_url, seconds)
        return goto

    def _recording_status(
        self, callback: str, verb: ET.Element, document_url: str, sid: str, url: str, seconds: int, status: str
    ) -> None:
        """POST Twilio's recording status callback (its answer is not TwiML and is ignored)."""
        form = {
            "AccountSid": self.params["AccountSid"],
            "CallSid": self.params["CallSid"],
            "RecordingSid": sid,
            "RecordingUrl": url,
            "RecordingStatus": status,
            "RecordingDuration": str(seconds),
            "RecordingChannels": "1",
            "RecordingStartTime": formatdate(usegmt=True),
            "RecordingSource": "RecordVerb",
        }
        target = self.requester.absolute(callback, document_url)
        method = verb.get("recordingStatusCallbackMethod", "POST").upper()
        self.transcript.add("note", f"(Twilio reports the recording as {status} to {short_url(target)})")
        self._send(method, target, form)

    def flush_callbacks(self) -> None:
        """Send a recording status callback left waiting (Twilio sends it a moment after the action)."""
        if self._pending_callback:
            callback, verb, document_url, sid, url, seconds = self._pending_callback
            self._pending_callback = None
            self._recording_status(callback, verb, document_url, sid, url, seconds, "completed")
        if self._pending_transcript:
            pending, self._pending_transcript = self._pending_transcript, None
            self._transcription(pending)

    def _transcription(self, pending: dict[str, str]) -> None:
        """POST Twilio's transcribeCallback: the message written out (its answer is ignored)."""
        target = pending.pop("url")
        form = {
            **self.params,
            **pending,
            "TranscriptionSid": new_sid("TR"),
            "TranscriptionStatus": "completed",
            "TranscriptionType": "fast",
        }
        self.transcript.add("note", f"(Twilio posts the message's transcript to {short_url(target)})")
        self._send("POST", target, form)


class _HungUp(Exception):
    """The caller hung up."""


class _ScriptEnded(Exception):
    """The caller has nothing more to do (script used up, end of input): they hang up."""


class _StaffPhone:
    """The staff member's keypad during the whisper: one scripted press (or none), then nothing."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = list(actions)

    def next(self, moment: Moment, hint: str) -> Action | None:
        return self.actions.pop(0) if self.actions else Action("silence")

    def follow_up(self, finish_keys: str) -> Action | None:
        return None


def parse_twiml(answer: Answer, url: str, kind: Literal["voice", "messaging"]) -> ET.Element:
    """The <Response> element of an answer; raise TwimlError (with Twilio's error code) when it is not TwiML."""
    if answer.content_type not in ("text/xml", "application/xml"):
        snippet = " ".join(answer.body.split())[:80]
        raise TwimlError(
            f"Twilio 12300 invalid Content-Type: {short_url(url)} answered {answer.content_type or 'no type'}, "
            f"not TwiML (text/xml): {snippet!r}"
        )
    return parse_document(answer.body, url)


def parse_document(body: str | bytes, url: str = "") -> ET.Element:
    """The <Response> element of a TwiML document; raise TwimlError (Twilio 12100) when it is not one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as error:
        raise TwimlError(f"Twilio 12100 document parse failure: {short_url(url)}: {error}") from None
    if root.tag != "Response":
        raise TwimlError(f"Twilio 12100 document parse failure: the root element is <{root.tag}>, not <Response>")
    return root


def check_attributes(element: ET.Element, transcript: Transcript) -> None:
    """Warn (as Twilio's debugger would) about attributes the verb does not have."""
    known = ATTRIBUTES.get(element.tag)
    if known is None:
        return
    for name in element.attrib:
        if name not in known:
            transcript.add("warning", f"Twilio 12200 schema validation: <{element.tag}> has no attribute {name!r}")


def _report_call_end(
    requester: Requester, path: str, params: Mapping[str, str], transcript: Transcript, seconds: float
) -> None:
    """Twilio's call status callback once the call is over (CallStatus completed, its length), as a number
    whose "Call status changes" is set sends it; its answer is only noted (Twilio reads nothing from it)."""
    form = {**params, "CallStatus": "completed", "CallDuration": str(int(seconds))}
    url = requester.absolute(path)
    try:
        sent_url, answer = requester.request("POST", url, form)
    except OSError as error:
        transcript.add("request", f"POST {short_url(url)} (call status) failed: {type(error).__name__}")
        return
    transcript.add("request", f"POST {short_url(sent_url)} CallStatus=completed -> {answer.status} (call status)")


def place_call(
    setup: PhoneSetup,
    caller: Caller,
    path: str = "/voice",
    out: TextIO | None = None,
    verbose: bool = False,
    speaker_folder: Path | None = None,
    speak: bool = False,
    width: int | None = None,
) -> CallResult:
    """Call the line at `path` and follow its TwiML until the call ends; return what happened."""
    transcript = Transcript(out, verbose, width)
    speaker = Speaker(transcript, speaker_folder) if (speak or speaker_folder) else None
    call_sid = new_sid("CA")
    params = {
        "CallSid": call_sid,
        "AccountSid": setup.account_sid,
        "From": setup.caller_number,
        "To": setup.line_number,
        "Caller": setup.caller_number,
        "Called": setup.line_number,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": API_VERSION,
    }
    requester = Requester(setup.transport, setup.signer)
    url = requester.absolute(path)
    signing = f"signed for {setup.signer.url_to_sign(url)}" if setup.signer.token else "unsigned: local mode"
    transcript.add("note", f"Calling {url} from {setup.caller_number} ({signing})")
    leg = Leg(requester, transcript, caller, params, speaker=speaker)
    result = CallResult(transcript, call_sid=call_sid)
    started = time.monotonic()
    try:
        result.ended = leg.run(url)
    except _HungUp:
        result.ended = "you-hung-up"
    except _ScriptEnded:
        # Out of script, or end of input at the terminal (Ctrl-D): either way the caller hangs up.
        result.ended = "script-ended" if isinstance(caller, ScriptedCaller) else "you-hung-up"
    if setup.status_callback and result.ended not in ("rejected", "error"):
        _report_call_end(requester, setup.status_callback, params, transcript, time.monotonic() - started)
    if speaker:
        speaker.end_turn()
        result.audio = list(speaker.files)
    result.requests = leg.requests
    if isinstance(caller, ScriptedCaller):
        result.leftover = list(caller.actions)
    endings = {
        "hangup": "the line hung up",
        "end-of-document": "the TwiML ran out, so Twilio hung up",
        "you-hung-up": "you hung up",
        "script-ended": "the script ran out, so you hung up",
        "rejected": "the line rejected the call",
        "error": "an error ended it",
    }
    transcript.add("end", f"call ended: {endings[result.ended]} ({result.requests} requests)")
    if result.leftover:
        unused = ", ".join(action.describe() for action in result.leftover)
        transcript.add("error", f"the call ended before the script did; unused: {unused}")
    return result
