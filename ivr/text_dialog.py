"""The text line's conversation, as pure functions: (what we know of a number, what they texted) -> answer.

Nothing here imports Flask or Twilio, touches a database or reads a clock. The web layer (ivr/web/texts.py)
reads the number's Conversation from storage, asks `decide` for a Decision (an Outcome and the
effects to store), stores them, and sends what `render` writes for the Outcome. An Outcome is small
and can be written as a token, so a retried MessageSid gets the very same answer again, rendered
from the token stored the first time, without storing anything twice.

The promises kept here:
- STOP and its family (as the whole text, in any language) opt the number out. After that the
  line answers only START, HELP and urgent words; a call-back request is still kept for staff.
- Urgent words (emergency, crisis, distress: ivr/safety.py) are heard before anything but STOP,
  START and HELP as the whole text, and answered first with the kind's own text (911, 988), even
  from a number that opted out: the person just wrote to us, and a reply to a message someone sent
  is what carriers allow; safety comes before the opt-out rule. Staff get an urgent request. (Twilio
  itself refuses messages to a number that opted out, error 21610, unless the account allows them:
  the urgent request and the staff alert are what always reach someone.)
- Everything else gets a section, the next part of one, a call-back confirmation, or the menu:
  never silence, never a dead end.
- A reply is in the language the text was written in: a word that belongs to one language only
  (ESPAÑOL, AYUDA, HOSPICIO, ENGLISH) switches the conversation to that language.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ivr import safety
from ivr.content import Content, Language
from ivr.hours import StaffHours, describe_hours
from ivr.matching import Said, normalize

#: Opt-out words Twilio answers itself (its own confirmation text) when they are the whole message.
#: Our reply to them must be empty; other opt-out words (PARAR, "stop texting me") get ours.
CARRIER_OPT_OUT_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})

#: Twilio delivers at most 1600 characters; anything longer is not a text from a phone.
MAX_TEXT_CHARACTERS = 1600

# Outcome kinds: what the answer is.
SILENT = "silent"  # no message at all (opted out, or Twilio confirms the STOP itself)
STOPPED = "stopped"  # our opt-out confirmation, for opt-out words Twilio does not know
WELCOME = "welcome"  # START: opt-in confirmation, then the menu
HELP = "help"
MENU = "menu"
NOT_UNDERSTOOD = "not_understood"  # the menu, after a kind word
LANGUAGE = "language"  # the menu in the language just chosen
SECTION = "section"  # one part of a section, with "Reply MORE" or the end footer
NO_MORE = "no_more"  # MORE after the last part
CALLBACK = "callback"
URGENT = "urgent"  # Outcome.section holds the urgent kind (emergency, crisis, distress)
THANKS = "thanks"  # "ok", "thanks", "gracias" as the whole text: a kind word, not the menu again
KINDS = frozenset(
    {SILENT, STOPPED, WELCOME, HELP, MENU, NOT_UNDERSTOOD, LANGUAGE, SECTION, NO_MORE, CALLBACK, URGENT, THANKS}
)
#: The only answers an opted-out number may get: to STOP itself, START and HELP.
ANSWERS_AFTER_STOP = frozenset({SILENT, STOPPED, WELCOME, HELP, URGENT})
#: What a retried message may still get, first given before a STOP that came since: not the welcome of an
#: earlier START (the number is opted out now; the retry opts nobody in).
RETRIED_ANSWERS_AFTER_STOP = ANSWERS_AFTER_STOP - {WELCOME}


@dataclass(frozen=True)
class Conversation:
    """What the line knows about one phone number (from storage; keyed by a hash of the number)."""

    lang: str
    section: str = ""
    #: The part of `section` that MORE sends next.
    next_part: int = 0
    opted_out: bool = False
    #: False while the number never chose or used a language (`lang` is then the default): an urgent
    #: answer is then in the language of the words that were heard.
    lang_known: bool = True


@dataclass(frozen=True)
class TextFacts:
    """What replies mention from outside the conversation: the staff phone number and staff hours."""

    #: The number people can call, written for reading.
    staff_phone: str = ""
    #: Staff hours written out, per language.
    staff_hours: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def display_phone(number: str) -> str:
    """A number as people read it: +15559870000 -> 555-987-0000 (North American), others unchanged."""
    if len(number) == 12 and number.startswith("+1") and number[2:].isdigit():
        return f"{number[2:5]}-{number[5:8]}-{number[8:]}"
    return number


def text_facts(content: Content, hours: StaffHours, staff_phone: str) -> TextFacts:
    """The facts replies mention: `staff_phone` as people read it, and staff hours in each language's words."""
    written = {code: describe_hours(hours, language.texting.hours) for code, language in content.languages.items()}
    return TextFacts(staff_phone=display_phone(staff_phone), staff_hours=MappingProxyType(written))


@dataclass(frozen=True)
class Outcome:
    """What the answer is, small enough to store and render again for a retried message."""

    kind: str
    lang: str
    section: str = ""
    part: int = 0

    def token(self) -> str:
        """The outcome as a short string, e.g. 'section|es|hospice|1'."""
        return f"{self.kind}|{self.lang}|{self.section}|{self.part}"

    @classmethod
    def from_token(cls, token: str) -> Outcome | None:
        """Read a token back; None when it is not one `token` wrote."""
        pieces = token.split("|")
        if len(pieces) != 4 or pieces[0] not in KINDS or not pieces[3].isdigit():
            return None
        return cls(pieces[0], pieces[1], pieces[2], int(pieces[3]))


# Effects: what the web layer stores for a decision. The text line only asks.


@dataclass(frozen=True)
class OptOut:
    """Record that the number asked for no more texts."""


@dataclass(frozen=True)
class OptIn:
    """Record that the number asked for texts again."""


@dataclass(frozen=True)
class SaveConversation:
    """Remember the number's language, and the section and part that MORE continues with."""

    lang: str
    section: str
    next_part: int


@dataclass(frozen=True)
class RequestCallback:
    """Keep a call-back request for staff; `urgent` puts it first on their list."""

    section: str
    lang: str
    urgent: bool = False
    #: The urgent kind (emergency, crisis, distress) when `urgent`.
    kind: str = ""


@dataclass(frozen=True)
class CountSectionText:
    """Count one texting of a section, for the staff usage panel."""

    section: str


Effect = OptOut | OptIn | SaveConversation | RequestCallback | CountSectionText


@dataclass(frozen=True)
class Decision:
    """The answer to one text, and what to store for it."""

    outcome: Outcome
    effects: tuple[Effect, ...] = ()


def sanitize(content: Content, conversation: Conversation) -> Conversation:
    """Make any stored conversation one the text line can answer (content may have changed since)."""
    if _is_sane(content, conversation):
        return conversation
    lang = conversation.lang if conversation.lang in content.languages else content.default_language
    section = conversation.section if conversation.section in content.section_ids else ""
    parts = len(content.language(lang).sections[section].sms) if section else 0
    return Conversation(
        lang=lang,
        section=section,
        next_part=min(max(conversation.next_part, 0), parts),
        opted_out=bool(conversation.opted_out),
        lang_known=bool(conversation.lang_known),
    )


def _is_sane(content: Content, conversation: Conversation) -> bool:
    """Whether `sanitize` would give back `conversation` as it is (as it does for nearly every text)."""
    if conversation.lang not in content.languages or type(conversation.opted_out) is not bool:
        return False
    if not conversation.section:
        return conversation.section == "" and conversation.next_part == 0
    if conversation.section not in content.section_ids:
        return False
    parts = len(content.languages[conversation.lang].sections[conversation.section].sms)
    return 0 <= conversation.next_part <= parts


def decide(content: Content, conversation: Conversation, text: str) -> Decision:
    """The answer to `text` from a number whose conversation so far is `conversation`."""
    conv = sanitize(content, conversation)
    raw = text[:MAX_TEXT_CHARACTERS]
    folded = normalize(raw)
    find = _Finder(content, conv.lang, folded)

    whole = find.whole_text()
    if whole is not None:
        family, lang = whole
        if family == "stop":
            carrier_answers = raw.strip().casefold() in CARRIER_OPT_OUT_WORDS
            return Decision(Outcome(SILENT if carrier_answers else STOPPED, lang), (OptOut(),))
        if family == "start":
            return Decision(Outcome(WELCOME, lang), (OptIn(), *_switch(conv, lang)))
        if family == "thanks":
            # Nothing to act on: a kind word back (none after STOP), in the language it was written in.
            return Decision(Outcome(SILENT if conv.opted_out else THANKS, lang))
        return Decision(Outcome(HELP, lang), _switch(conv, lang))

    urgent = find.urgent()
    mentioned = find.section()
    section = mentioned[0] if mentioned else conv.section

    if urgent:
        # Before the opt-out rule: a person in danger gets the answer, even after STOP (see above).
        lang = conv.lang if conv.lang_known else urgent.lang
        ask = RequestCallback(section, lang, urgent=True, kind=urgent.kind)
        return Decision(Outcome(URGENT, lang, urgent.kind), (ask,))

    if conv.opted_out:
        # Only START and HELP get a reply. What someone asks of staff is still kept, never a text.
        asking = find.family("call") or (None if mentioned else find.family("staff"))
        if asking:
            return Decision(Outcome(SILENT, asking), (RequestCallback(section, asking),))
        return Decision(Outcome(SILENT, conv.lang))

    chosen = find.family("language")
    lang = chosen or conv.lang
    if chosen:
        find = _Finder(content, lang, folded)
        mentioned = find.section()

    asking = find.family("call") or (None if mentioned else find.family("staff"))
    if asking:
        return Decision(Outcome(CALLBACK, asking), (RequestCallback(section, asking), *_switch(conv, asking)))

    key = find.topic_key()
    if key:
        return _section(content, conv, key, lang, part=0)
    if mentioned:
        # "hospice en español": the language asked for wins over the language of the topic's word. A question
        # ("what is a clinical trial") goes straight to the message that answers it.
        section_id, topic_lang, part = mentioned
        return _section(content, conv, section_id, chosen or topic_lang, part=part, count=part > 0)

    more = find.family("more")
    if more:
        lang = more if more != conv.lang else lang
        if conv.section and conv.next_part < len(content.language(lang).sections[conv.section].sms):
            return _section(content, conv, conv.section, lang, part=conv.next_part)
        if conv.section:
            return Decision(Outcome(NO_MORE, lang, conv.section), _switch(conv, lang))
        return Decision(Outcome(MENU, lang), _switch(conv, lang))

    for family, kind in (("help", HELP), ("menu", MENU)):
        found = find.family(family)
        if found:
            return Decision(Outcome(LANGUAGE if chosen else kind, found), _switch(conv, found))
    if chosen:
        return Decision(Outcome(LANGUAGE, lang), _switch(conv, lang))
    if not folded:
        return Decision(Outcome(MENU, conv.lang))
    return Decision(Outcome(NOT_UNDERSTOOD, conv.lang))


def _section(
    content: Content, conv: Conversation, section_id: str, lang: str, part: int, count: bool = False
) -> Decision:
    """Send part `part` of a section; a texting is counted at its first part, or wherever a question led."""
    parts = len(content.language(lang).sections[section_id].sms)
    part = min(part, parts - 1)
    effects: list[Effect] = [SaveConversation(lang, section_id, part + 1)]
    if part == 0 or count:
        effects.append(CountSectionText(section_id))
    return Decision(Outcome(SECTION, lang, section_id, part), tuple(effects))


def _switch(conv: Conversation, lang: str) -> tuple[Effect, ...]:
    """Save the conversation's new language, when the text changed it."""
    return () if lang == conv.lang else (SaveConversation(lang, conv.section, conv.next_part),)


class _Finder:
    """Looks for keywords and topics in one text, in the conversation's language first."""

    def __init__(self, content: Content, lang: str, folded: str) -> None:
        self.content = content
        self.folded = folded
        self.said = Said(folded)
        self.order = [lang, *(code for code in content.languages if code != lang)]

    def languages(self) -> Iterator[tuple[str, Language]]:
        for code in self.order:
            yield code, self.content.languages[code]

    def whole_text(self) -> tuple[str, str] | None:
        """(family, language) when the whole text is a STOP, START, HELP or thanks word of any language."""
        for family in ("stop", "start", "help", "thanks"):
            for code, language in self.languages():
                if self.folded in language.texting.keywords[family]:
                    return family, code
        # "ok thank you so much": a text made only of thanks words is thanks too.
        words = set(self.folded.split())
        for code, language in self.languages():
            if words and words <= language.texting.thanks_words:
                return "thanks", code
        return None

    def family(self, family: str) -> str | None:
        """The language whose `family` words appear in the text (whole words, no typos), if any."""
        for code, language in self.languages():
            if language.texting.phrases[family].match(self.said):
                return code
        return None

    def urgent(self) -> safety.Urgent | None:
        """Urgent words in the text (ivr/safety.py, allowing small typos), if any."""
        return safety.classify(self.content, self.said, self.order[0], typos=True)

    def section(self) -> tuple[str, str, int] | None:
        """(section id, language, text message) of a topic or a question in the text: exact words in any
        language before typos; a topic's name starts at its first message, a question at its answer."""
        for fuzzy in (False, True):
            for code, language in self.languages():
                meaning = language.texting.sections.match(self.said, fuzzy=fuzzy)
                if meaning:
                    kind, _, name = meaning.partition(":")
                    if kind == "answer":
                        section_id, _, number = name.partition(":")
                        return section_id, code, language.sections[section_id].answers[int(number)].sms
                    return name, code, 0
        return None

    def topic_key(self) -> str | None:
        """The section whose menu number is the whole text ("5", "5.", "#5")."""
        token = self.folded.replace("#", "").replace("*", "").strip()
        return self.content.topic_keys.get(token) if " " not in token else None


# -- writing the answer -----------------------------------------------------------------------------


def render(content: Content, outcome: Outcome, facts: TextFacts) -> tuple[str, ...]:
    """The messages for `outcome`, each within 2 SMS segments (the content tests check every one)."""
    lang = outcome.lang if outcome.lang in content.languages else content.default_language
    language = content.language(lang)
    hours = facts.staff_hours.get(lang, "")
    kind = outcome.kind
    if kind == SILENT:
        return ()
    if kind == STOPPED:
        return (language.text("stopped"),)
    if kind == WELCOME:
        return (language.text("welcome"), menu(content, lang))
    if kind == HELP:
        return (language.text("help", phone=facts.staff_phone, hours=hours),)
    if kind == CALLBACK:
        return (language.text("callback_saved", hours=hours),)
    if kind == THANKS:
        return (language.text("thanks"),)
    if kind == URGENT:
        words = language.urgent
        urgent_kind = outcome.section if outcome.section in safety.URGENT_KINDS else safety.CRISIS
        if words is None:  # pragma: no cover - loaded content always has urgent words
            return ()
        return (words.kinds[urgent_kind].text.format(hours=hours),)
    if kind in (SECTION, NO_MORE) and outcome.section in content.section_ids:
        section = language.sections[outcome.section]
        if kind == NO_MORE:
            return (language.text("no_more", topic=language.texting.topics[section.id]),)
        return (section_message(content, lang, section.id, outcome.part),)
    heading = {NOT_UNDERSTOOD: "not_understood", LANGUAGE: "language_switched"}.get(kind, "menu_heading")
    return (menu(content, lang, heading),)


def section_message(content: Content, lang: str, section_id: str, part: int) -> str:
    """Part `part` of a section, ending "Reply MORE for the rest" or, after the last part, with the way on."""
    language = content.language(lang)
    messages = language.sections[section_id].sms
    part = min(max(part, 0), len(messages) - 1)
    footer = language.text("more_footer" if part + 1 < len(messages) else "end_footer")
    return f"{messages[part]}\n{footer}"


def menu(content: Content, lang: str, heading: str = "menu_heading") -> str:
    """The menu: a heading, a line per topic with its number and keyword, how to get a call, the other language."""
    language = content.language(lang)
    lines = [language.text(heading)]
    for section_id in content.section_ids:
        section = language.sections[section_id]
        topic = language.texting.topics[section_id]
        lines.append(language.text("menu_option", key=section.key, keyword=section.keyword, topic=topic))
    lines.append(language.text("menu_call"))
    other = content.other_language(lang)
    if other is not None:
        # Like the phone line: the way into the other language, written in that language; a reader
        # who chose another language is offered the way back in their own.
        if lang == content.default_language:
            lines.append(content.language(other).text("language_offer"))
        else:
            lines.append(language.text("language_back"))
    return "\n".join(lines)


def whole_section(content: Content, lang: str, section_id: str) -> tuple[str, ...]:
    """Every message of a section, for sending all at once (a caller who pressed 2); the last one
    ends with the way on (MENU, CALL), so the reader knows they can text back."""
    language = content.language(lang)
    messages = list(language.sections[section_id].sms)
    messages[-1] = f"{messages[-1]}\n{language.text('end_footer')}"
    return tuple(messages)
