"""The phone line's conversation, as pure functions: (where the caller is, what they did) -> Reply.

Nothing here imports Flask or Twilio, touches a database or reads a clock: the web layer turns
Twilio's form into an Event, asks `step` for a Reply, performs the Reply's effects and renders it
as TwiML. Everything about the caller that must survive to the next request is in CallState, which
travels in the TwiML action URLs, so any app process can take the next key press.

The promises kept here: the same keys everywhere (0 a person, * the choices again, # main menu),
speech works wherever keys do, a kind word for every mistake, a person offered after three misses,
and silence answered with a reprompt, then a warning with a way to get more time, then a way out and
a spoken goodbye. Never a silent hang-up, never an endless loop.

A short first turn: the greeting, the other language, 911 and 988, then a person (0) and the topics;
the first topic starts within 15 seconds. After a part only what matters there is read (more, by text,
a person); * reads the rest (SECTION -> CHOICES), and * again replays the part. A question a caller
asks ("should I stop treatment") goes straight to the part that answers it (content `answers`).

Remembered choices: CallStarted carries what was saved about the caller (their language and speed, and
the last section with its age). Language and speed are saved automatically, and a caller is told once
(RememberChoices). The last topic is saved only after the caller agrees (3, under * at a section): a
shared phone never greets anyone with "Last time, you listened to ..." that its caller did not ask for.
7 at the main menu clears everything (ForgetChoices).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from ivr import safety
from ivr.content import URGENT_KINDS, Content, Language, Section
from ivr.matching import normalize

MAIN = "main"
SECTION = "section"
STAFF = "staff"
OFFER = "offer"
RECORD = "record"
#: After an urgent answer (ivr/safety.py): the offer to connect now, leave a message or go on.
URGENT = "urgent"
#: Ringing the crisis line (or staff, for an emergency) from that offer; whatever the outcome, back to it.
URGENT_DIAL = "urgent_dial"
URGENT_NODES = frozenset({URGENT, URGENT_DIAL})
#: Where the urgent kind is kept in the state: at the urgent offer, and while leaving a message from it,
#: so the caller comes back to that offer (with 988 and a person) after the beep.
KEEPS_URGENT = URGENT_NODES | {RECORD}
#: At a section, after * : every choice there (the part again is * once more).
CHOICES = "choices"
SECTION_NODES = frozenset({SECTION, CHOICES})
NODES = frozenset({MAIN, SECTION, CHOICES, STAFF, OFFER, RECORD, URGENT, URGENT_DIAL})

#: Silences in a row: the first gets a reprompt, the second a warning, the third ends the call.
SILENCES_BEFORE_WARNING = 2
SILENCES_BEFORE_GOODBYE = 3
#: Misses in a row after which a person is offered with every retry.
MISSES_BEFORE_OFFERING_PERSON = 3
#: Counters are capped so a state URL never grows and a replayed URL stays valid.
_COUNTER_CAP = 9

#: What the line may remember about a caller on this call (CallState.memory):
#: off: nothing (no usable caller number, or the caller cleared it during this call);
#: new: nothing is saved yet, and the caller has not been told that the line remembers;
#: on: language and speed are saved (or were just saved, with the caller told), and 7 at the main menu clears them;
#: topic: as on, and the caller agreed that the line keeps their last topic and offers it when they call again.
MEMORY_OFF = "off"
MEMORY_NEW = "new"
MEMORY_ON = "on"
MEMORY_TOPIC = "topic"
MEMORY_STATES = frozenset({MEMORY_OFF, MEMORY_NEW, MEMORY_ON, MEMORY_TOPIC})
#: Memory states in which something is saved (so 7 at the main menu clears it).
MEMORY_SAVED = frozenset({MEMORY_ON, MEMORY_TOPIC})
#: A caller who calls back within this time is offered the last section they heard.
OFFER_LAST_SECTION_WITHIN = dt.timedelta(days=7)


@dataclass(frozen=True)
class CallState:
    """Where the caller is. Small, immutable, and safe to put in a URL."""

    node: str = MAIN
    lang: str = "en"
    slow: bool = False
    section: str = ""
    part: int = 0
    misses: int = 0
    silences: int = 0
    memory: str = MEMORY_OFF
    #: At the urgent offer: the kind heard (emergency, crisis, distress) and the section offered ("" none).
    urgent: str = ""
    offer: str = ""


# Events: what the caller (or Twilio on their behalf) just did.


@dataclass(frozen=True)
class Remembered:
    """What the line saved about a caller on earlier calls; `last_heard_ago` is the age of `last_section`."""

    lang: str
    slow: bool = False
    last_section: str = ""
    last_heard_ago: dt.timedelta | None = None


@dataclass(frozen=True)
class CallStarted:
    """A new call reached the line's number.

    `can_remember` is false when the caller's number is hidden or unusable; `remembered` holds what
    was saved about this caller, or None when nothing was.
    """

    can_remember: bool = False
    remembered: Remembered | None = None


@dataclass(frozen=True)
class Heard:
    """The caller pressed keys or spoke; both empty means they were silent until the timeout."""

    digits: str = ""
    speech: str = ""


@dataclass(frozen=True)
class TransferredIn:
    """A staff member sent the caller straight to a section."""

    section: str


@dataclass(frozen=True)
class DialEnded:
    """The attempt to reach staff ended; `accepted` is true when a staff member pressed 1 to take it."""

    status: str
    accepted: bool


@dataclass(frozen=True)
class Recorded:
    """The caller's voice message ended; `has_audio` is false when nothing was said."""

    has_audio: bool


#: What became of a request to text a section (the outbound-text policy's answers a call can get).
TextResult = Literal["sent", "failed", "opted_out", "no_number", "already_sent", "over_limit"]


@dataclass(frozen=True)
class TextOutcome:
    """What became of the caller's request to get the section by text."""

    result: TextResult


Event = CallStarted | Heard | TransferredIn | DialEnded | Recorded | TextOutcome


@dataclass(frozen=True)
class Circumstances:
    """What the dialog needs to know from outside the call, gathered by the web layer."""

    staff_open: bool = False
    #: Spoken description of staff hours, per language ("Monday to Friday, ...").
    staff_hours: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


# Effects: things the web layer must do for a reply (storage, texts). The dialog only asks.


@dataclass(frozen=True)
class SendSectionText:
    """Text `section` to the caller; the outcome comes back as a TextOutcome event."""

    section: str
    lang: str


@dataclass(frozen=True)
class OpenVoiceMessage:
    """Record that the caller is leaving a message, before the beep, so a hang-up loses nothing."""

    section: str
    lang: str


@dataclass(frozen=True)
class CountSectionPlay:
    """Count one hearing of a section, for the staff usage panel."""

    section: str


@dataclass(frozen=True)
class RememberChoices:
    """Save the caller's language and speed (and, when `section` is set, that they just heard it)."""

    lang: str
    slow: bool
    section: str = ""


@dataclass(frozen=True)
class ForgetChoices:
    """Erase everything saved about the caller."""


@dataclass(frozen=True)
class FlagUrgent:
    """Keep this call for staff as urgent, with its kind only (never the words said), and alert them."""

    kind: str
    lang: str


Effect = SendSectionText | OpenVoiceMessage | CountSectionPlay | RememberChoices | ForgetChoices | FlagUrgent


# What the line does next.


@dataclass(frozen=True)
class Line:
    """One thing said, in one language; `pause_before` leaves a beat after long content."""

    text: str
    lang: str
    pause_before: bool = False


@dataclass(frozen=True)
class Listen:
    """Say the lines while listening for a key or speech, then go on in `state`."""

    state: CallState
    hints: tuple[str, ...]


@dataclass(frozen=True)
class Connect:
    """Ring staff; the outcome comes back as DialEnded in `state`; `section` is the one last heard."""

    state: CallState
    section: str


@dataclass(frozen=True)
class DialCrisisLine:
    """Ring the crisis line (CRISIS_LINE_NUMBER); the outcome comes back as DialEnded in `state`."""

    state: CallState


@dataclass(frozen=True)
class RecordMessage:
    """Record a voice message; the outcome comes back as Recorded in `state`."""

    state: CallState


@dataclass(frozen=True)
class HangUp:
    """Say the lines, then end the call."""


@dataclass(frozen=True)
class AwaitOutcome:
    """Perform the effects, then call `step` again in `state` with the outcome as the event."""

    state: CallState


Next = Listen | Connect | DialCrisisLine | RecordMessage | HangUp | AwaitOutcome


@dataclass(frozen=True)
class Reply:
    """What the line says, at which rate, and what happens next."""

    lines: tuple[Line, ...]
    slow: bool
    next: Next
    effects: tuple[Effect, ...] = ()


def step(content: Content, state: CallState, event: Event, world: Circumstances | None = None) -> Reply:
    """The line's answer to `event` from a caller in `state`."""
    world = world or Circumstances()
    state = sanitize(content, state)
    talk = _Talk(content, state, world)
    if isinstance(event, CallStarted):
        return talk.welcome(event)
    if isinstance(event, TransferredIn):
        return talk.transferred_in(event.section)
    if isinstance(event, DialEnded):
        return talk.dial_ended(event)
    if isinstance(event, Recorded):
        return talk.recorded(event)
    if isinstance(event, TextOutcome):
        return talk.text_outcome(event)
    return talk.heard(event)


def recent_section(content: Content, remembered: Remembered | None) -> str:
    """The section a returning caller heard last, if that was recent enough to offer again."""
    if remembered is None or remembered.last_heard_ago is None:
        return ""
    if remembered.last_section not in content.section_ids:
        return ""
    return remembered.last_section if remembered.last_heard_ago <= OFFER_LAST_SECTION_WITHIN else ""


def sanitize(content: Content, state: CallState) -> CallState:
    """Make any state (perhaps from a tampered or stale URL) one the dialog can answer."""
    node = state.node if state.node in NODES else MAIN
    lang = state.lang if state.lang in content.languages else content.default_language
    section = state.section if state.section in content.section_ids else ""
    if node in SECTION_NODES and not section:
        node = MAIN
    parts = len(content.language(lang).sections[section].voice) if section else 1
    part = min(max(state.part, 0), parts - 1)
    urgent = state.urgent if state.urgent in URGENT_KINDS and node in KEEPS_URGENT else ""
    if node in URGENT_NODES and not urgent:
        node = MAIN
    offer = state.offer if urgent and state.offer in content.section_ids else ""
    return CallState(
        node=node,
        lang=lang,
        slow=bool(state.slow),
        section=section,
        part=part,
        misses=min(max(state.misses, 0), _COUNTER_CAP),
        silences=min(max(state.silences, 0), _COUNTER_CAP),
        memory=state.memory if state.memory in MEMORY_STATES else MEMORY_OFF,
        urgent=urgent,
        offer=offer,
    )


def whisper_text(content: Content, section_id: str, lang: str = "", urgent: bool = False) -> str:
    """What a staff member hears before taking a call, in the line's default language: "urgent" first
    when the caller said urgent words on this call, then the caller's language and last topic."""
    staff_language = content.language(content.default_language)
    caller_lang = lang if lang in content.languages else content.default_language
    language = staff_language.voice.get(f"whisper_lang_{caller_lang}", "")
    section = staff_language.sections.get(section_id)
    if section:
        text = staff_language.say("whisper_topic", title=section.title, language=language)
    else:
        text = staff_language.say("whisper_no_topic", language=language)
    return f"{staff_language.say('whisper_urgent')} {text}" if urgent else text


def first_turn(content: Content, lang: str) -> tuple[Line, ...]:
    """Everything a new caller hears in `lang` before the line waits for them (the first menu included)."""
    talk = _Talk(content, sanitize(content, CallState(lang=lang)), Circumstances())
    return talk.welcome(CallStarted(can_remember=True)).lines


def opening(content: Content, lang: str) -> tuple[Line, ...]:
    """The start of a call in `lang` up to its first topic: greeting, the other language's offer, 911 and
    988, and a person (0). It must take at most 15 seconds: the first topic starts right after it."""
    lines = first_turn(content, lang)
    language = content.language(lang)
    first_topic = language.say("menu_option", title=next(iter(language.sections.values())).title, key="1")
    return tuple(itertools.takewhile(lambda line: line.text != first_topic, lines))


class _Talk:
    """The replies for one step; a helper object so each reply reads as a short method."""

    def __init__(self, content: Content, state: CallState, world: Circumstances) -> None:
        self.content = content
        self.state = state
        self.world = world

    # -- small builders -------------------------------------------------------------------------

    @property
    def language(self) -> Language:
        return self.content.language(self.state.lang)

    def line(self, prompt: str, pause_before: bool = False, **values: str) -> Line:
        return Line(self.language.say(prompt, **values), self.state.lang, pause_before)

    def listen(self, lines: list[Line], state: CallState, effects: tuple[Effect, ...] = ()) -> Reply:
        return Reply(tuple(lines), state.slow, Listen(state, self.content.language(state.lang).hints), effects)

    def section(self) -> Section:
        return self.language.sections[self.state.section]

    def menu_lines(self, first_time: bool = False) -> list[Line]:
        """A person first, then the topics, then saying a topic or asking a question, then the rest."""
        lines = [self.line("menu_person")]
        for section in self.language.sections.values():
            lines.append(self.line("menu_option", title=section.title, key=section.key))
        lines.append(self.line("menu_say_topic"))
        if self.state.memory in MEMORY_SAVED:
            lines.append(self.line("menu_forget"))
        if self.state.slow:
            lines.append(self.line("menu_normal_speed"))
        elif first_time:
            lines.append(self.line("menu_slower"))
        if first_time:
            lines += [self.line("text_offer"), self.line("intro")]
        else:  # the greeting has just offered the other language
            lines.extend(self.language_switch_lines())
        return lines

    def language_switch_lines(self) -> list[Line]:
        """How to switch language, said in the language the caller would switch to or is in now."""
        other = self.content.other_language(self.state.lang)
        if other is None:
            return []
        if self.state.lang != self.content.default_language:
            # A caller who chose another language never hears the default language again.
            return [self.line("language_back")]
        return [Line(self.content.language(other).say("language_offer"), other)]

    def section_option_lines(self) -> list[Line]:
        """After a part, what matters there: more, by text, a person; the rest is on * (choice_lines)."""
        section = self.section()
        lines = []
        if self.state.part + 1 < len(section.voice):
            lines.append(self.line("section_more", pause_before=True, title=section.title))
        lines.append(self.line("section_text", pause_before=not lines))
        lines += [self.line("section_person"), self.line("section_choices")]
        return lines

    def choice_lines(self) -> list[Line]:
        """Every choice at a section (after *): the short list, keeping the topic, the part again, the rest."""
        lines = [line for line in self.section_option_lines() if line.text != self.language.say("section_choices")]
        if self.state.memory in (MEMORY_NEW, MEMORY_ON):
            lines.append(self.line("section_keep_topic"))
        lines += [self.line("section_again"), self.line("section_main")]
        lines.append(self.line("menu_normal_speed" if self.state.slow else "menu_slower"))
        lines.extend(self.language_switch_lines())
        return lines

    def options(self) -> list[Line]:
        """The choices at the caller's current place, as heard after a reprompt or a repeat."""
        if self.state.node == SECTION:
            return self.section_option_lines()
        if self.state.node == CHOICES:
            return self.choice_lines()
        if self.state.node in (OFFER, RECORD, STAFF):
            return [self.line("message_offer"), self.line("menu_person")]
        if self.state.node in URGENT_NODES:
            return self.urgent_offer_lines()
        return self.menu_lines()

    def at(self, **changes: object) -> CallState:
        """The current state with `changes`, and the miss and silence counts reset (and, away from the
        urgent offer and its message, what was urgent: the state URL stays as small as before)."""
        state = replace(self.state, misses=0, silences=0, **changes)  # type: ignore[arg-type]
        if state.node not in KEEPS_URGENT:
            state = replace(state, urgent="", offer="")
        return state

    # -- the replies ----------------------------------------------------------------------------

    def remember(self, section: str = "") -> tuple[list[Line], tuple[Effect, ...]]:
        """Save the caller's language and speed unless memory is off, telling them the first time; and
        `section` as their last topic only when they agreed to that (MEMORY_TOPIC)."""
        if self.state.memory == MEMORY_OFF:
            return [], ()
        lines = []
        if self.state.memory == MEMORY_NEW:
            self.state = replace(self.state, memory=MEMORY_ON)
            lines.append(self.line("memory_notice", pause_before=bool(section)))
        kept = section if self.state.memory == MEMORY_TOPIC else ""
        return lines, (RememberChoices(self.state.lang, self.state.slow, kept),)

    def opening_lines(self) -> list[Line]:
        """The greeting as heard: welcome, the other language's offer, and the emergency and crisis lines."""
        return [self.line("greeting"), *self.language_switch_lines(), self.line("greeting_emergency")]

    def recent_section(self, remembered: Remembered | None) -> str:
        """The section a returning caller heard last, if that was recent enough to offer again."""
        return recent_section(self.content, remembered)

    def welcome(self, event: CallStarted | None = None) -> Reply:
        event = event or CallStarted()
        remembered = event.remembered if event.can_remember else None
        memory = MEMORY_OFF
        if event.can_remember:
            memory = MEMORY_NEW
            if remembered:
                # Only a caller who agreed has a last section saved (see `keep_topic`).
                known = remembered.last_section in self.content.section_ids
                memory = MEMORY_TOPIC if known else MEMORY_ON
        self.state = self.at(node=MAIN, section="", part=0, memory=memory)
        if remembered:
            # A returning caller hears their own language and speed from the first word.
            lang = remembered.lang if remembered.lang in self.content.languages else self.state.lang
            self.state = replace(self.state, lang=lang, slow=bool(remembered.slow))
        lines = self.opening_lines()
        last = self.recent_section(remembered)
        if last:
            section = self.language.sections[last]
            # The offer uses the topic's own menu key, so keys mean the same thing everywhere.
            lines.append(self.line("last_topic", title=section.title, key=section.key))
        lines += self.menu_lines(first_time=True)
        return self.listen(lines, self.state)

    def main_menu(
        self, before: list[Line] | None = None, effects: tuple[Effect, ...] = (), first_time: bool = False
    ) -> Reply:
        self.state = self.at(node=MAIN, part=0)
        return self.listen([*(before or []), *self.menu_lines(first_time)], self.state, effects)

    def play_section(
        self,
        section_id: str,
        part: int = 0,
        before: list[Line] | None = None,
        remember: bool = False,
        count: bool = False,
    ) -> Reply:
        """Say one part of a section and its choices; `remember` saves it as the caller's last section (when
        they agreed to that); a play is counted at the first part, or at any part a question led to (`count`)."""
        self.state = self.at(node=SECTION, section=section_id, part=part)
        section = self.section()
        lines = [*(before or []), Line(section.voice[part], self.state.lang)]
        effects: tuple[Effect, ...] = (CountSectionPlay(section_id),) if part == 0 or count else ()
        if remember:
            notice, saving = self.remember(section_id)
            lines += notice
            effects += saving
        lines += self.section_option_lines()
        return self.listen(lines, self.state, effects)

    def transferred_in(self, section_id: str) -> Reply:
        if section_id not in self.content.section_ids:
            return self.welcome()
        title = self.language.sections[section_id].title
        return self.play_section(section_id, 0, [self.line("section_from_transfer", title=title)], remember=True)

    def heard(self, event: Heard) -> Reply:
        digits = event.digits.strip()
        speech = event.speech.strip()
        if not digits and not speech:
            return self.silence()
        if speech:
            # Danger is heard before any other meaning, at every Gather, in every language.
            urgent = safety.classify(self.content, speech, self.state.lang)
            if urgent is not None:
                return self.urgent(urgent)
        meaning = self.meaning_of_key(digits) if digits else self.meaning_of_speech(speech)
        if meaning is None:
            return self.miss(spoken=not digits)
        return self.act(meaning)

    def meaning_of_key(self, digits: str) -> str | None:
        key = digits[0] if len(digits) == 1 else ""
        if key in self.content.global_keys:
            return f"command:{self.content.global_keys[key]}"
        if self.state.node == MAIN and key in self.content.topic_keys:
            return f"section:{self.content.topic_keys[key]}"
        if self.state.node == MAIN and self.state.memory in MEMORY_SAVED and key in self.content.menu_keys:
            return f"command:{self.content.menu_keys[key]}"
        if self.state.node in SECTION_NODES and key in self.content.section_keys:
            command = self.content.section_keys[key]
            can_keep = self.state.node == CHOICES and self.state.memory in (MEMORY_NEW, MEMORY_ON)
            if command == "keep_topic" and not can_keep:
                return None  # offered (under *) only to a caller whose last topic could be kept and is not yet
            return f"command:{command}"
        if self.state.node in (OFFER, RECORD, STAFF) and key in self.content.message_keys:
            return f"command:{self.content.message_keys[key]}"
        if self.state.node in URGENT_NODES:
            if key in self.content.urgent_keys:
                return f"command:{self.content.urgent_keys[key]}"
            if key in self.content.topic_keys:
                return f"section:{self.content.topic_keys[key]}"
        return None

    def meaning_of_speech(self, speech: str) -> str | None:
        # A recogniser may hear a pressed or spoken key as "5.": treat a lone key as that key.
        tokens = normalize(speech).split()
        if len(tokens) == 1 and len(tokens[0]) == 1:
            return self.meaning_of_key(tokens[0])
        return self.language.vocabulary.match(speech)

    def act(self, meaning: str) -> Reply:
        kind, _, name = meaning.partition(":")
        if kind == "section":
            return self.play_section(name, remember=True)
        if kind == "answer":
            # A question asked: straight to the part that answers it, then that part's choices.
            section_id, _, number = name.partition(":")
            answer = self.language.sections[section_id].answers[int(number)]
            return self.play_section(section_id, answer.voice, remember=True, count=True)
        node = self.state.node
        if name == "staff":
            return self.staff()
        if name == "repeat":
            return self.repeat()
        if name == "main_menu":
            return self.main_menu()
        if name == "slower":
            self.state = self.at(slow=not self.state.slow)
            notice, effects = self.remember()
            return self.repeat([self.line("slower_on" if self.state.slow else "slower_off"), *notice], effects)
        if name == "language":
            other = self.content.other_language(self.state.lang)
            if other is None:
                return self.miss(spoken=False)
            self.state = self.at(lang=other)
            notice, effects = self.remember()
            # The emergency line again, now in words the caller understands.
            before = [self.line("language_switched"), self.line("greeting_emergency"), *notice]
            if node == MAIN:
                # Everything said before was in the other language: the way back and every key again.
                before += self.language_switch_lines()
                return self.main_menu(before, effects, first_time=True)
            return self.repeat(before, effects)
        if name == "forget" and node == MAIN and self.state.memory in MEMORY_SAVED:
            self.state = self.at(memory=MEMORY_OFF)
            return self.main_menu([self.line("memory_cleared")], (ForgetChoices(),))
        if name == "more" and node in SECTION_NODES:
            if self.state.part + 1 < len(self.section().voice):
                return self.play_section(self.state.section, self.state.part + 1)
            self.state = self.at(node=SECTION)
            return self.listen(
                [self.line("section_no_more", title=self.section().title), *self.section_option_lines()], self.state
            )
        if name == "keep_topic" and node in SECTION_NODES and self.state.memory in (MEMORY_NEW, MEMORY_ON):
            return self.keep_topic()
        if name == "thanks" and node not in URGENT_NODES:
            # "Okay", "thank you": a kind word, and how to hear the choices again; nothing is read at length.
            self.state = self.at()
            return self.listen([self.line("thanks")], self.state)
        if name == "text_me" and node in SECTION_NODES:
            self.state = self.at(node=SECTION)
            effect = SendSectionText(self.state.section, self.state.lang)
            return Reply((), self.state.slow, AwaitOutcome(self.state), (effect,))
        if name == "leave_message" and node in (OFFER, RECORD, STAFF, *URGENT_NODES):
            return self.record()
        if name == "connect" and node in URGENT_NODES:
            return self.connect_urgent()
        return self.miss(spoken=True)

    def keep_topic(self) -> Reply:
        """The caller agreed: keep this section as their last topic, and offer it when they call again."""
        self.state = self.at(node=SECTION, memory=MEMORY_TOPIC)
        effect = RememberChoices(self.state.lang, self.state.slow, self.state.section)
        return self.listen([self.line("topic_kept"), *self.section_option_lines()], self.state, (effect,))

    def repeat(self, before: list[Line] | None = None, effects: tuple[Effect, ...] = ()) -> Reply:
        if self.state.node == SECTION and not before:
            # * after a part: every choice there, without the part again (* once more replays it).
            self.state = self.at(node=CHOICES)
            return self.listen(self.choice_lines(), self.state, effects)
        self.state = self.at(node=SECTION) if self.state.node == CHOICES else self.at()
        if self.state.node == SECTION:
            reply = self.play_section(self.state.section, self.state.part, before)
            return replace(reply, effects=reply.effects + effects)
        if self.state.node == MAIN:
            return self.main_menu(before, effects)
        return self.listen([*(before or []), *self.options()], self.state, effects)

    def miss(self, spoken: bool) -> Reply:
        if self.state.node in URGENT_NODES:
            # Never "did not understand" after an urgent answer: the numbers again, and the offer.
            self.state = self.at()
            return self.listen([self.urgent_answer(), *self.urgent_offer_lines()], self.state)
        if self.state.silences >= SILENCES_BEFORE_WARNING:
            # After "press any key for more time", any key is the caller saying "I'm here".
            self.state = self.at()
            return self.listen([self.line("more_time"), *self.options()], self.state)
        self.state = replace(self.state, misses=min(self.state.misses + 1, _COUNTER_CAP), silences=0)
        lines = [self.line("not_understood" if spoken else "invalid_key")]
        if self.state.misses >= MISSES_BEFORE_OFFERING_PERSON:
            lines.append(self.line("offer_person"))
        return self.listen([*lines, *self.options()], self.state)

    def silence(self) -> Reply:
        if self.state.node in URGENT_NODES:
            # Never a hang-up after an urgent answer: someone silent may be unable to speak.
            self.state = self.at()
            lines = [self.line("urgent_still_here"), self.urgent_answer(), *self.urgent_offer_lines()]
            return self.listen(lines, self.state)
        silences = min(self.state.silences + 1, _COUNTER_CAP)
        self.state = replace(self.state, silences=silences)
        if silences < SILENCES_BEFORE_WARNING:
            return self.listen([self.line("no_input"), *self.options()], self.state)
        if silences < SILENCES_BEFORE_GOODBYE:
            return self.listen([self.line("no_input_warning")], self.state)
        if self.world.staff_open:
            # A caller who stays silent may be unable to speak: a person is the kindest way out.
            return self.staff(before=[self.line("no_input_goodbye")])
        lines = [self.line("no_input_goodbye"), self.line("way_out")]
        lines += [*self.hours_lines(), self.line("emergency_reminder"), self.line("goodbye")]
        return Reply(tuple(lines), self.state.slow, HangUp())

    def hours_lines(self) -> list[Line]:
        hours = self.world.staff_hours.get(self.state.lang)
        return [self.line("staff_closed", hours=hours)] if hours else []

    def staff(self, before: list[Line] | None = None) -> Reply:
        lines = list(before or [])
        if self.world.staff_open:
            self.state = self.at(node=STAFF)
            lines.append(self.line("staff_connecting"))
            return Reply(tuple(lines), self.state.slow, Connect(self.state, self.state.section))
        self.state = self.at(node=OFFER)
        lines += self.hours_lines() or [self.line("staff_unavailable")]
        lines += [self.line("emergency_reminder"), self.line("message_offer")]
        return self.listen(lines, self.state)

    def dial_ended(self, event: DialEnded) -> Reply:
        if self.state.node in URGENT_NODES:
            # Whatever became of the call to the crisis line or staff, the caller is back at the offer.
            self.state = self.at(node=URGENT)
            return self.listen([self.line("urgent_back"), *self.urgent_offer_lines()], self.state)
        if event.status == "completed" and event.accepted:
            return self.main_menu([self.line("after_staff_call")])
        self.state = self.at(node=OFFER)
        lines = [self.line("staff_unavailable"), self.line("emergency_reminder"), self.line("message_offer")]
        return self.listen(lines, self.state)

    # -- urgent words (ivr/safety.py) -------------------------------------------------------------

    def urgent(self, heard: safety.Urgent) -> Reply:
        """The kind's answer at once (in the language of the words heard), then the offer; kept for staff."""
        offer = heard.offer_section
        self.state = self.at(node=URGENT, lang=heard.lang, urgent=heard.kind, offer=offer)
        lines = [self.urgent_answer(), *self.urgent_offer_lines()]
        return self.listen(lines, self.state, (FlagUrgent(heard.kind, heard.lang),))

    def urgent_answer(self) -> Line:
        words = self.language.urgent
        kind = self.state.urgent or safety.CRISIS
        text = words.kinds[kind].say if words is not None else self.language.say("emergency_reminder")
        return Line(text, self.state.lang)

    def urgent_connect_to_staff(self) -> bool:
        """An emergency is connected to staff (when they are in); a crisis or distress to the crisis line."""
        return self.state.urgent == safety.EMERGENCY

    def urgent_offer_lines(self) -> list[Line]:
        """Connect now, leave a message, the offered topic, the main menu: in that order."""
        lines = []
        if not self.urgent_connect_to_staff():
            lines.append(self.line("urgent_connect_crisis"))
        elif self.world.staff_open:
            lines.append(self.line("urgent_connect_staff"))
        lines.append(self.line("urgent_message"))
        if self.state.offer:
            section = self.language.sections[self.state.offer]
            lines.append(self.line("urgent_topic", title=section.title, key=section.key))
        lines.append(self.line("urgent_menu"))
        return lines

    def connect_urgent(self) -> Reply:
        dialing = self.at(node=URGENT_DIAL)
        if not self.urgent_connect_to_staff():
            self.state = dialing
            return Reply((self.line("urgent_connecting"),), self.state.slow, DialCrisisLine(self.state))
        if self.world.staff_open:
            self.state = dialing
            lines = (self.line("urgent_connecting_staff"),)
            return Reply(lines, self.state.slow, Connect(self.state, self.state.section))
        # An emergency with no staff in: 911 again, and the offer (which then has no "connect").
        self.state = self.at(node=URGENT)
        return self.listen([self.urgent_answer(), *self.urgent_offer_lines()], self.state)

    def record(self) -> Reply:
        self.state = self.at(node=RECORD)
        effect = OpenVoiceMessage(section=self.state.section, lang=self.state.lang)
        return Reply((self.line("record_instructions"),), self.state.slow, RecordMessage(self.state), (effect,))

    def recorded(self, event: Recorded) -> Reply:
        if self.state.urgent:
            # After urgent words, saved or not, the caller is back at the urgent offer: never without 988.
            self.state = self.at(node=URGENT)
            said = self.line("record_saved" if event.has_audio else "record_empty")
            return self.listen([said, *self.urgent_offer_lines()], self.state)
        if event.has_audio:
            return self.main_menu([self.line("record_saved")])
        self.state = self.at(node=OFFER)
        return self.listen([self.line("record_empty"), self.line("message_offer")], self.state)

    def text_outcome(self, event: TextOutcome) -> Reply:
        prompt = {
            "sent": "text_sent",
            "failed": "text_failed",
            "opted_out": "text_opted_out",
            "no_number": "text_no_number",
            "already_sent": "text_already_sent",
            "over_limit": "text_limit_reached",
        }[event.result]
        self.state = self.at(node=SECTION) if self.state.section else self.at(node=MAIN)
        # Over a limit, the prompt says why and that a person can still help; the options say how (0).
        return self.listen([self.line(prompt), *self.options()], self.state)
