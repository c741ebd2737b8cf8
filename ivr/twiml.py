"""Turn dialog Replies into TwiML: the one place that knows voices, languages, speech rate,
Gather defaults, and how a caller's state is written into (and read back from) action URLs.
It also writes the text line's answers (`messages`), so all TwiML comes from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Dial, Gather, Say, VoiceResponse

from ivr.call_dialog import (
    MEMORY_NEW,
    MEMORY_OFF,
    MEMORY_ON,
    MEMORY_TOPIC,
    AwaitOutcome,
    CallState,
    Connect,
    DialCrisisLine,
    HangUp,
    Line,
    Listen,
    RecordMessage,
    Reply,
)
from ivr.content import Content

#: Seconds a caller has to start speaking or pressing a key.
DEFAULT_GATHER_TIMEOUT = 8

#: A three-digit number standing alone (911, 988) is dialled, not counted: said digit by digit in every
#: language ("nine one one", "nueve uno uno"), never "nine hundred eleven" or "novecientos once".
DIALLED_NUMBER = re.compile(r"(?<![\d:.,])(\d{3})(?![\d:])")

#: CallState.memory in a URL: absent means off (so an old or hand-made URL never saves anything).
_MEMORY_TO_QUERY = {MEMORY_NEW: "n", MEMORY_ON: "y", MEMORY_TOPIC: "t"}
_MEMORY_FROM_QUERY = {code: memory for memory, code in _MEMORY_TO_QUERY.items()}


def state_to_query(state: CallState) -> dict[str, Any]:
    """The caller's state as short URL query parameters."""
    query: dict[str, Any] = {"n": state.node, "l": state.lang}
    if state.slow:
        query["sl"] = "1"
    if state.section:
        query["s"] = state.section
        query["p"] = str(state.part)
    if state.misses:
        query["m"] = str(state.misses)
    if state.silences:
        query["q"] = str(state.silences)
    if state.memory in _MEMORY_TO_QUERY:
        query["r"] = _MEMORY_TO_QUERY[state.memory]
    if state.urgent:
        query["u"] = state.urgent
    if state.offer:
        query["o"] = state.offer
    return query


def state_from_query(query: Mapping[str, str]) -> CallState:
    """Read a state back from URL query parameters; anything odd falls back to a safe default."""

    def number(name: str) -> int:
        value = str(query.get(name, "0"))
        return int(value) if value.isdigit() and len(value) <= 2 else 0

    return CallState(
        node=str(query.get("n", "main"))[:16],
        lang=str(query.get("l", "en"))[:8],
        slow=query.get("sl") == "1",
        section=str(query.get("s", ""))[:32],
        part=number("p"),
        misses=number("m"),
        silences=number("q"),
        memory=_MEMORY_FROM_QUERY.get(str(query.get("r", "")), MEMORY_OFF),
        urgent=str(query.get("u", ""))[:16],
        offer=str(query.get("o", ""))[:32],
    )


@dataclass(frozen=True)
class VoiceSettings:
    """How the line sounds and listens."""

    voices: Mapping[str, str]
    speech_rate: str = "90%"
    slow_speech_rate: str = "70%"
    gather_timeout: int = DEFAULT_GATHER_TIMEOUT
    #: Where "connect me now" after crisis or distress words rings (CRISIS_LINE_NUMBER).
    crisis_line: str = "+18002738255"
    #: Seconds the crisis line rings before the caller is back at the offer.
    crisis_ring_seconds: int = 60


@dataclass(frozen=True)
class Links:
    """URLs the TwiML points Twilio to; built by the web layer, which knows the routes."""

    step: Callable[[CallState], str]
    #: The whisper for the staff member who answers: the topic last heard and the caller's state (language,
    #: and whether urgent words were heard).
    whisper: Callable[[str, CallState], str]
    recording_status: Callable[[CallState], str]
    #: Where Twilio posts a voice message's transcript (English messages only: Twilio transcribes no other).
    transcription: Callable[[CallState], str] | None = None


@dataclass(frozen=True)
class StaffDial:
    """Who to ring when a caller asks for a person."""

    numbers: tuple[str, ...]
    caller_id: str
    ring_seconds: int = 20


class Renderer:
    """Renders Replies for one app: voices and rates are fixed when the app starts."""

    def __init__(self, content: Content, settings: VoiceSettings) -> None:
        self.content = content
        self.settings = settings

    def say(self, line: Line, slow: bool) -> Say:
        """One <Say> with an explicit voice and language, slowed down through SSML prosody."""
        locale = self.content.language(line.lang).locale
        voice = self.settings.voices.get(line.lang) or next(iter(self.settings.voices.values()))
        say = Say(voice=voice, language=locale)
        prosody = say.prosody(rate=self.settings.slow_speech_rate if slow else self.settings.speech_rate)
        for index, piece in enumerate(DIALLED_NUMBER.split(line.text)):
            if index % 2:
                prosody.say_as(piece, interpret_as="digits")
            elif piece:
                prosody.append(piece)
        return say

    def _speak(self, target: VoiceResponse | Gather, reply: Reply) -> None:
        for line in reply.lines:
            if line.pause_before:
                target.pause(length=1)
            target.append(self.say(line, reply.slow))

    def voice(self, reply: Reply, links: Links, staff: StaffDial | None = None, max_message_seconds: int = 120) -> str:
        """The TwiML document for `reply`."""
        response = VoiceResponse()
        nxt = reply.next
        if isinstance(nxt, Listen):
            action = links.step(nxt.state)
            gather = Gather(
                input="dtmf speech",
                action=action,
                method="POST",
                num_digits=1,
                finish_on_key="",  # "#" is a menu key here, not "end of input"
                timeout=self.settings.gather_timeout,
                speech_timeout="auto",
                action_on_empty_result=True,
                language=self.content.language(nxt.state.lang).locale,
                hints=", ".join(nxt.hints),
            )
            self._speak(gather, reply)
            response.append(gather)
            # Should Twilio ever fall through the Gather, the same URL hears it as silence.
            response.redirect(action, method="POST")
        elif isinstance(nxt, Connect):
            if not staff or not staff.numbers:
                raise ValueError("a Connect reply needs staff numbers; the web layer checks before rendering")
            self._speak(response, reply)
            dial = Dial(
                action=links.step(nxt.state),
                method="POST",
                timeout=staff.ring_seconds,
                caller_id=staff.caller_id or None,
                hangup_on_star=True,
            )
            whisper_url = links.whisper(nxt.section, nxt.state)
            for number in staff.numbers:
                if number.startswith("sip:"):
                    dial.sip(number, url=whisper_url, method="POST")
                else:
                    dial.number(number, url=whisper_url, method="POST")
            response.append(dial)
        elif isinstance(nxt, DialCrisisLine):
            self._speak(response, reply)
            dial = Dial(
                action=links.step(nxt.state),
                method="POST",
                timeout=self.settings.crisis_ring_seconds,
                caller_id=(staff.caller_id if staff else "") or None,
            )
            dial.number(self.settings.crisis_line)
            response.append(dial)
            # Should the Dial end without its action, the caller still comes back to the offer.
            response.redirect(links.step(nxt.state), method="POST")
        elif isinstance(nxt, RecordMessage):
            self._speak(response, reply)
            # Twilio writes out English voice messages only: others are kept with no transcript.
            transcribe = links.transcription is not None and nxt.state.lang == "en"
            response.record(
                action=links.step(nxt.state),
                method="POST",
                max_length=max_message_seconds,
                play_beep=True,
                finish_on_key="#*",
                timeout=10,
                recording_status_callback=links.recording_status(nxt.state),
                recording_status_callback_method="POST",
                recording_status_callback_event="completed absent",
                transcribe=True if transcribe else None,
                transcribe_callback=links.transcription(nxt.state) if transcribe and links.transcription else None,
            )
            # Twilio skips the action after an empty recording and runs the next verb: send that
            # caller to the same URL too, so silence at the beep is answered, not met with a hang-up.
            response.redirect(links.step(nxt.state), method="POST")
        elif isinstance(nxt, HangUp):
            self._speak(response, reply)
            response.hangup()
        elif isinstance(nxt, AwaitOutcome):  # pragma: no cover - the web layer resolves these first
            raise ValueError("an AwaitOutcome reply must be resolved before rendering")
        return str(response)

    def whisper(self, text: str, action: str) -> str:
        """What a staff member hears on picking up: who is calling, and press 1 to take the call."""
        response = VoiceResponse()
        gather = Gather(input="dtmf", action=action, method="POST", num_digits=1, timeout=10, finish_on_key="")
        line = Line(text, self.content.default_language)
        gather.append(self.say(line, slow=False))
        gather.append(self.say(line, slow=False))
        response.append(gather)
        # No key: hang up the staff leg, so a staff voicemail never takes the patient's call.
        response.hangup()
        return str(response)

    @staticmethod
    def redirect(url: str) -> str:
        """A TwiML document that sends the call (or this leg of it) on to `url`."""
        response = VoiceResponse()
        response.redirect(url, method="POST")
        return str(response)

    @staticmethod
    def hangup() -> str:
        """A TwiML document that ends the call (or this leg of it)."""
        response = VoiceResponse()
        response.hangup()
        return str(response)

    @staticmethod
    def empty() -> str:
        """An empty TwiML document."""
        return str(VoiceResponse())


def messages(bodies: Sequence[str]) -> str:
    """The messaging TwiML that answers a text with `bodies`, one <Message> each; none is an empty <Response/>."""
    response = MessagingResponse()
    for body in bodies:
        response.message(body)
    return str(response)
