"""Load every word the line says or texts from ``prompts/`` and check it before the line starts.

The content is data (YAML files edited by people who are not programmers), so it is validated once,
when the app starts: a broken file stops start-up with a message naming the file and the problem,
instead of a caller meeting a dead end later. The result is a tree of frozen dataclasses that the
rest of the line reads but never changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from ivr import sms_segments
from ivr.hours import (
    HOURS_CLOCKS,
    HOURS_DAY_LISTS,
    HOURS_JOINERS,
    HOURS_TEMPLATES,
    HoursError,
    HoursWords,
    HourWords,
    minutes_of,
)
from ivr.matching import Vocabulary, normalize

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

#: Spoken at 150 words a minute, a part of this many words takes at most 60 seconds.
MAX_WORDS_PER_SPOKEN_PART = 150
MAX_TOPICS = 6

#: Commands the dialog understands, by the name used in menu.yaml and in voice.yaml's `commands`.
GLOBAL_COMMANDS = frozenset({"staff", "repeat", "main_menu", "slower", "language"})
SECTION_COMMANDS = frozenset({"more", "text_me", "keep_topic"})
MESSAGE_COMMANDS = frozenset({"leave_message"})
#: Commands that work only at the main menu, besides its topics.
MENU_COMMANDS = frozenset({"forget"})
#: Commands of the offer after an urgent answer (connect now; leave_message is shared with the message offer).
URGENT_COMMANDS = frozenset({"connect"})
#: Said, never keyed: "okay", "thank you" get a short kind answer instead of "did not understand".
SPEECH_COMMANDS = frozenset({"thanks"})
ALL_COMMANDS = GLOBAL_COMMANDS | SECTION_COMMANDS | MESSAGE_COMMANDS | MENU_COMMANDS | URGENT_COMMANDS | SPEECH_COMMANDS

#: The kinds of urgent words (prompts/<lang>/urgent.yaml), the first one first when several match.
URGENT_KINDS = ("emergency", "crisis", "distress")

#: Every spoken prompt the line uses, with the placeholders it may contain.
VOICE_PROMPTS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "greeting": frozenset(),
        "text_offer": frozenset(),
        "intro": frozenset(),
        "menu_option": frozenset({"title", "key"}),
        "menu_say_topic": frozenset(),
        "menu_person": frozenset(),
        "menu_slower": frozenset(),
        "menu_normal_speed": frozenset(),
        "language_offer": frozenset(),
        "language_back": frozenset(),
        "section_more": frozenset({"title"}),
        "section_text": frozenset(),
        "section_again": frozenset(),
        "section_main": frozenset(),
        "section_person": frozenset(),
        "section_no_more": frozenset({"title"}),
        # After a part, * for every other choice; 3 there to keep the topic for the next call (when asked).
        "section_choices": frozenset(),
        "section_keep_topic": frozenset(),
        "topic_kept": frozenset(),
        # The answer to "okay" or "thank you".
        "thanks": frozenset(),
        "section_from_transfer": frozenset({"title"}),
        "text_sent": frozenset(),
        "text_failed": frozenset(),
        "text_opted_out": frozenset(),
        "text_no_number": frozenset(),
        "text_already_sent": frozenset(),
        "text_limit_reached": frozenset(),
        "no_input": frozenset(),
        "no_input_warning": frozenset(),
        "more_time": frozenset(),
        "no_input_goodbye": frozenset(),
        "way_out": frozenset(),
        "goodbye": frozenset(),
        "invalid_key": frozenset(),
        "not_understood": frozenset(),
        "offer_person": frozenset(),
        "slower_on": frozenset(),
        "slower_off": frozenset(),
        "language_switched": frozenset(),
        "staff_connecting": frozenset(),
        "staff_closed": frozenset({"hours"}),
        "staff_unavailable": frozenset(),
        "emergency_reminder": frozenset(),
        "message_offer": frozenset(),
        "record_instructions": frozenset(),
        "record_saved": frozenset(),
        "record_empty": frozenset(),
        "after_staff_call": frozenset(),
        "error_apology": frozenset(),
        "whisper_topic": frozenset({"title", "language"}),
        "whisper_no_topic": frozenset({"language"}),
        "whisper_urgent": frozenset(),
        # The caller's language, said in this language (the whisper's {language}).
        "whisper_lang_en": frozenset(),
        "whisper_lang_es": frozenset(),
        # Remembered choices (language, speed, last topic) and how to clear them.
        "greeting_emergency": frozenset(),
        "memory_notice": frozenset(),
        "menu_forget": frozenset(),
        "memory_cleared": frozenset(),
        "last_topic": frozenset({"title", "key"}),
        # The offer after an urgent answer (ivr/safety.py; the answers themselves are in urgent.yaml).
        "urgent_connect_crisis": frozenset(),
        "urgent_connect_staff": frozenset(),
        "urgent_message": frozenset(),
        "urgent_topic": frozenset({"title", "key"}),
        "urgent_menu": frozenset(),
        "urgent_connecting": frozenset(),
        "urgent_connecting_staff": frozenset(),
        "urgent_back": frozenset(),
        "urgent_still_here": frozenset(),
    }
)

#: Every texted prompt the line uses, with its placeholders (prompts/<lang>/sms.yaml).
SMS_PROMPTS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "menu_heading": frozenset(),
        "menu_option": frozenset({"key", "keyword", "topic"}),
        "menu_call": frozenset(),
        "language_offer": frozenset(),
        "language_back": frozenset(),
        "not_understood": frozenset(),
        "language_switched": frozenset(),
        "welcome": frozenset(),
        "help": frozenset({"phone", "hours"}),
        "stopped": frozenset(),
        "more_footer": frozenset(),
        "end_footer": frozenset(),
        "no_more": frozenset({"topic"}),
        # The answer to a text that is only "ok", "thanks", "gracias" and the like (keywords `thanks`).
        "thanks": frozenset(),
        "callback_saved": frozenset({"hours"}),
        "staff_alert": frozenset({"link"}),
        "error_apology": frozenset({"phone"}),
    }
)

#: The kinds of words people text (sms.yaml `keywords`). stop, start, help and thanks count only as the
#: whole text; the others anywhere in it. stop, start and help work from every language.
SMS_KEYWORD_FAMILIES = frozenset({"stop", "start", "help", "menu", "call", "staff", "more", "language", "thanks"})
WHOLE_TEXT_FAMILIES = frozenset({"stop", "start", "help", "thanks"})
#: The words of sms.yaml `hours`, which write STAFF_HOURS in a text.
_HOUR_WORDS = ("days", "day_range", "opening", "separator", "clock", "am", "pm", "always", "closed", "all_day")

_KEY_PATTERN = re.compile(r"^[0-9*#]$")
_KEYWORD_PATTERN = re.compile(r"^[A-Z]{2,20}$")
_SECTION_ID_PATTERN = re.compile(r"^[a-z][a-z_]{1,30}$")


class ContentError(ValueError):
    """A prompt file is missing, malformed or inconsistent; the message names the file."""


#: What a prompt file's review `status` may be: only a clinician's sign-off makes a file `approved`.
REVIEW_STATUSES = frozenset({"draft", "approved"})
#: The review entries every prompt file carries at its top (see docs/content.md).
REVIEW_FIELDS = ("status", "reviewed_by", "reviewed_on", "next_review", "sources")


@dataclass(frozen=True)
class Source:
    """Where a file's words come from, and the date of that source (a year, or a day)."""

    title: str
    date: str


@dataclass(frozen=True)
class Review:
    """A prompt file's review data: who signed it off, when, when it is due again, and its sources."""

    path: Path
    status: str
    reviewed_by: str
    reviewed_on: dt.date
    next_review: dt.date
    sources: tuple[Source, ...]
    #: SHA-256 of the file as it was read: what prompts/approvals.yaml must match for the file to count as approved.
    sha256: str = ""

    def sources_text(self) -> str:
        """The sources on one line: "Title (date); Title (date)"."""
        return "; ".join(f"{source.title} ({source.date})" for source in self.sources)


@dataclass(frozen=True)
class Answer:
    """Questions one part of a section answers: asking one goes straight to its spoken part `voice`
    and its text message `sms` (both counted from 0)."""

    questions: tuple[str, ...]
    voice: int
    sms: int


@dataclass(frozen=True)
class TextLimit:
    """What a language's texts may use: an alphabet (GSM-7 only, or UCS-2 allowed) and a number of segments."""

    alphabet: sms_segments.Encoding
    max_segments: int

    @property
    def max_characters(self) -> int:
        """How many characters always fit (UCS-2 counted at its smaller size when allowed)."""
        part = sms_segments.PART_GSM7 if self.alphabet == "GSM-7" else sms_segments.PART_UCS2
        return part * self.max_segments

    def problem(self, text: str) -> str | None:
        """Why `text` may not be sent in this language, or None when it may."""
        odd = sms_segments.non_gsm7(text)
        if self.alphabet == "GSM-7" and odd:
            return f"has characters outside GSM-7 {odd}, which would make it UCS-2"
        length = sms_segments.measure(text)
        if length.segments > self.max_segments:
            return (
                f"is {length.units} characters ({length.encoding}), {length.segments} segments; "
                f"at most {self.max_segments} text segments are allowed"
            )
        return None


@dataclass(frozen=True)
class Approval:
    """A clinician's sign-off of one prompt file, as `flask content-approve` wrote it in prompts/approvals.yaml."""

    sha256: str
    reviewer: str
    approved_on: dt.date


APPROVALS_FILE = "approvals.yaml"


#: The texts of a language that names no `texts:` in menu.yaml: GSM-7 in 2 segments (306 characters).
DEFAULT_TEXT_LIMIT = TextLimit("GSM-7", 2)


@dataclass(frozen=True)
class Section:
    """One topic of the line, in one language."""

    id: str
    key: str
    title: str
    keyword: str
    synonyms: tuple[str, ...]
    voice: tuple[str, ...]
    sms: tuple[str, ...]
    review: Review
    path: Path
    #: The questions each part answers (see Answer).
    answers: tuple[Answer, ...] = ()

    @property
    def reviewed_by(self) -> str:
        return self.review.reviewed_by

    @property
    def reviewed_on(self) -> dt.date:
        return self.review.reviewed_on

    @property
    def source(self) -> str:
        return self.review.sources_text()


@dataclass(frozen=True)
class TextWords:
    """What the text line needs in one language besides its prompts."""

    #: Topic names for the menu, GSM-7 only, by section id.
    topics: Mapping[str, str]
    #: Normalized phrases of each keyword family (see SMS_KEYWORD_FAMILIES).
    keywords: Mapping[str, frozenset[str]]
    #: Each family as a vocabulary whose meaning is the family name, to find it inside a text.
    phrases: Mapping[str, Vocabulary]
    #: Topic titles, keywords, synonyms and texted names; meaning 'section:<id>'.
    sections: Vocabulary
    #: Every urgent phrase of urgent.yaml; meaning the kind ('emergency', 'crisis', 'distress').
    urgent: Vocabulary
    #: How staff hours are written.
    hours: HourWords
    #: Every word of the `thanks` keywords: a text made only of these ("ok thank you so much") is thanks.
    thanks_words: frozenset[str] = frozenset()


@dataclass(frozen=True)
class UrgentKind:
    """One kind of urgent words (emergency, crisis, distress) in one language, and its answers."""

    name: str
    #: Said first on a call; texted first (with {hours}).
    say: str
    text: str
    phrases: tuple[str, ...]
    vocabulary: Vocabulary
    #: The section offered after the answer ("" for none).
    offer_section: str = ""


@dataclass(frozen=True)
class UrgentWords:
    """prompts/<lang>/urgent.yaml: the kinds in priority order, end-of-life wording, and near misses."""

    kinds: Mapping[str, UrgentKind]
    end_of_life: Vocabulary
    end_of_life_phrases: tuple[str, ...]
    end_of_life_section: str
    near_misses: tuple[str, ...]
    reviewed_by: str
    reviewed_on: dt.date
    source: str
    path: Path


@dataclass(frozen=True)
class Language:
    """Everything the line says or texts in one language."""

    code: str
    locale: str
    voice: Mapping[str, str]
    sms: Mapping[str, str]
    commands: Mapping[str, tuple[str, ...]]
    sections: Mapping[str, Section]
    #: Spoken phrases and their meaning, 'command:<name>' or 'section:<id>'.
    vocabulary: Vocabulary
    #: Phrases worth telling the speech recogniser about: commands and topic names.
    hints: tuple[str, ...]
    #: Keywords, topic names, urgent phrases and hour words of the text line.
    texting: TextWords
    #: Words for saying staff hours (prompts/<lang>/hours.yaml).
    hours: HoursWords | None = None
    #: Urgent words and their answers (prompts/<lang>/urgent.yaml); None only in hand-built test content.
    urgent: UrgentWords | None = None
    #: The alphabet and segments this language's texts may use (menu.yaml `texts`).
    text_limit: TextLimit = DEFAULT_TEXT_LIMIT

    def say(self, prompt: str, **values: str) -> str:
        """The spoken prompt `prompt`, with its placeholders filled in."""
        return self.voice[prompt].format_map(values)

    def text(self, prompt: str, **values: str) -> str:
        """The texted prompt `prompt`, with its placeholders filled in."""
        return self.sms[prompt].format_map(values)


@dataclass(frozen=True)
class Content:
    """The whole line: its languages, its topics in menu order, and its keys."""

    default_language: str
    languages: Mapping[str, Language]
    section_ids: tuple[str, ...]
    topic_keys: Mapping[str, str]
    global_keys: Mapping[str, str]
    section_keys: Mapping[str, str]
    message_keys: Mapping[str, str]
    #: Keys that work only at the main menu, besides the topic keys (e.g. 7: forget).
    menu_keys: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Keys of the offer after an urgent answer (1: connect now, 2: leave a message).
    urgent_keys: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Every prompt file's review data, by its path under prompts/ ("en/sections/hospice.yaml").
    reviews: Mapping[str, Review] = field(default_factory=lambda: MappingProxyType({}))
    #: The folder the content was read from.
    root: Path = PROMPTS_DIR
    #: Sign-offs recorded in prompts/approvals.yaml, by file path under prompts/.
    approvals: Mapping[str, Approval] = field(default_factory=lambda: MappingProxyType({}))

    def language(self, code: str) -> Language:
        """The language `code`, or the default one when `code` is not offered."""
        return self.languages.get(code) or self.languages[self.default_language]

    def other_language(self, code: str) -> str | None:
        """The language the language key switches to from `code`, or None with only one language."""
        codes = list(self.languages)
        if len(codes) < 2:
            return None
        return codes[(codes.index(code) + 1) % len(codes)] if code in codes else codes[0]


def load_content(prompts_dir: Path | str = PROMPTS_DIR) -> Content:
    """Read and validate every prompt file under `prompts_dir`; raise ContentError naming the file."""
    root = Path(prompts_dir)
    menu_path = root / "menu.yaml"
    reviews: dict[str, Review] = {}
    menu = _read_prompt_file(menu_path, root, reviews)
    languages_spec = _require(menu, "languages", dict, menu_path)
    default_language = _require(menu, "default_language", str, menu_path)
    if default_language not in languages_spec:
        _fail(menu_path, f"default_language {default_language!r} is not one of the languages")

    section_entries = _require(menu, "sections", list, menu_path)
    if not 1 <= len(section_entries) <= MAX_TOPICS:
        _fail(menu_path, f"the main menu must have 1 to {MAX_TOPICS} topics, not {len(section_entries)}")
    global_keys = _key_map(menu, "global_keys", GLOBAL_COMMANDS, menu_path)
    section_keys = _key_map(menu, "section_keys", SECTION_COMMANDS, menu_path)
    message_keys = _key_map(menu, "message_keys", MESSAGE_COMMANDS, menu_path)
    menu_keys = _key_map(menu, "menu_keys", MENU_COMMANDS, menu_path) if "menu_keys" in menu else {}
    urgent_keys = _key_map(menu, "urgent_keys", URGENT_COMMANDS | MESSAGE_COMMANDS, menu_path)
    if set(urgent_keys.values()) != URGENT_COMMANDS | MESSAGE_COMMANDS:
        _fail(menu_path, f"urgent_keys must give a key to each of {sorted(URGENT_COMMANDS | MESSAGE_COMMANDS)}")
    if set(global_keys.values()) != GLOBAL_COMMANDS:
        _fail(menu_path, f"global_keys must give a key to each of {sorted(GLOBAL_COMMANDS)}")

    topic_keys: dict[str, str] = {}
    for index, entry in enumerate(section_entries):
        if not isinstance(entry, dict):
            _fail(menu_path, f"sections[{index}] must be a mapping with id and key")
        section_id = str(entry.get("id", ""))
        key = str(entry.get("key", ""))
        if not _SECTION_ID_PATTERN.match(section_id):
            _fail(menu_path, f"sections[{index}] has a bad id {section_id!r}")
        if section_id in topic_keys.values():
            _fail(menu_path, f"section {section_id!r} is listed twice")
        if not _KEY_PATTERN.match(key):
            _fail(menu_path, f"section {section_id!r} has a bad key {key!r}")
        if key in topic_keys or key in global_keys:
            _fail(menu_path, f"key {key!r} of section {section_id!r} is already used")
        topic_keys[key] = section_id
    clash = set(menu_keys) & (set(topic_keys) | set(global_keys))
    if clash:
        _fail(menu_path, f"menu_keys reuse topic or global keys {sorted(clash)}")
    for name, keys in (("section_keys", section_keys), ("message_keys", message_keys), ("urgent_keys", urgent_keys)):
        clash = set(keys) & set(global_keys)
        if clash:
            _fail(menu_path, f"{name} reuse global keys {sorted(clash)}")
    section_ids = tuple(topic_keys.values())
    key_of = {section_id: key for key, section_id in topic_keys.items()}

    languages: dict[str, Language] = {}
    for code, spec in languages_spec.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("locale"), str):
            _fail(menu_path, f"language {code!r} needs a locale such as en-US")
        limit = _text_limit(spec.get("texts"), code, menu_path)
        languages[code] = _load_language(root, code, spec["locale"], section_ids, key_of, limit, reviews)
    _check_languages_alike(root, languages, default_language)
    for path in prompt_files(root):  # files no loader above reads (coverage.yaml) still carry review data
        if path.relative_to(root).as_posix() not in reviews:
            _read_prompt_file(path, root, reviews)

    return Content(
        default_language=default_language,
        languages=MappingProxyType(languages),
        section_ids=section_ids,
        topic_keys=MappingProxyType(topic_keys),
        global_keys=MappingProxyType(global_keys),
        section_keys=MappingProxyType(section_keys),
        message_keys=MappingProxyType(message_keys),
        menu_keys=MappingProxyType(menu_keys),
        urgent_keys=MappingProxyType(urgent_keys),
        reviews=MappingProxyType(dict(sorted(reviews.items()))),
        root=root,
        approvals=MappingProxyType(read_approvals(root)),
    )


def read_approvals(root: Path | str) -> dict[str, Approval]:
    """The sign-offs in `root`/approvals.yaml (none when the file does not exist yet)."""
    path = Path(root) / APPROVALS_FILE
    if not path.exists():
        return {}
    raw = _read_yaml(path)
    entries = raw.get("approvals") or {}
    if not isinstance(entries, dict):
        _fail(path, "approvals must map file paths to {sha256, reviewer, approved_on}")
    approvals = {}
    for name, entry in entries.items():
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        reviewer = entry.get("reviewer") if isinstance(entry, dict) else None
        approved_on = entry.get("approved_on") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not isinstance(reviewer, str) or not isinstance(approved_on, dt.date):
            _fail(path, f"approval of {name!r} needs sha256, reviewer and approved_on")
        approvals[str(name)] = Approval(digest, reviewer, approved_on)
    return approvals


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _text_limit(raw: Any, code: str, path: Path) -> TextLimit:
    """A language's `texts:` entry in menu.yaml: its alphabet (GSM-7 or UCS-2) and most segments."""
    if raw is None:
        return DEFAULT_TEXT_LIMIT
    alphabet = raw.get("alphabet") if isinstance(raw, dict) else None
    segments = raw.get("max_segments") if isinstance(raw, dict) else None
    if alphabet not in ("GSM-7", "UCS-2") or not isinstance(segments, int) or not 1 <= segments <= 4:
        _fail(path, f"language {code!r}: texts needs alphabet (GSM-7 or UCS-2) and max_segments (1 to 4)")
    return TextLimit(alphabet, segments)


def prompt_files(root: Path | str = PROMPTS_DIR) -> list[Path]:
    """Every file under `root` that carries review data: all YAML files but approvals.yaml, sorted."""
    base = Path(root)
    return sorted(p for p in base.rglob("*.yaml") if p.name != "approvals.yaml")


def read_review(raw: dict[str, Any], path: Path) -> Review:
    """Take the review entries (REVIEW_FIELDS) out of a prompt file's mapping `raw`, checked."""
    missing = [name for name in REVIEW_FIELDS if name not in raw]
    if missing:
        _fail(path, f"needs review entries {missing} at its top (see docs/content.md)")
    status = raw.pop("status")
    if status not in REVIEW_STATUSES:
        _fail(path, f"status must be one of {sorted(REVIEW_STATUSES)}, not {status!r}")
    reviewed_by = raw.pop("reviewed_by")
    if not isinstance(reviewed_by, str) or not reviewed_by.strip():
        _fail(path, "reviewed_by must name who reviewed the file")
    dates = {}
    for name in ("reviewed_on", "next_review"):
        value = raw.pop(name)
        if not isinstance(value, dt.date):
            _fail(path, f"{name} must be a date such as 2026-11-26")
        dates[name] = value
    if dates["next_review"] <= dates["reviewed_on"]:
        _fail(path, "next_review must come after reviewed_on")
    sources_raw = raw.pop("sources")
    sources = []
    if not isinstance(sources_raw, list) or not sources_raw:
        _fail(path, "sources must list where the words come from, each with a title and a date")
    for entry in sources_raw:
        title = entry.get("title") if isinstance(entry, dict) else None
        date = entry.get("date") if isinstance(entry, dict) else None
        if not isinstance(title, str) or not title.strip() or not isinstance(date, int | dt.date):
            _fail(path, "each source needs a title and a date (a year such as 2018, or a day)")
        sources.append(Source(title.strip(), str(date)))
    return Review(path, status, reviewed_by.strip(), dates["reviewed_on"], dates["next_review"], tuple(sources))


def _read_prompt_file(path: Path, root: Path, reviews: dict[str, Review]) -> dict[str, Any]:
    """Read a prompt file, keeping its review data in `reviews` by its path under `root`."""
    raw = _read_yaml(path)
    review = read_review(raw, path)
    reviews[path.relative_to(root).as_posix()] = replace(review, sha256=file_sha256(path))
    return raw


def _load_language(
    root: Path,
    code: str,
    locale: str,
    section_ids: tuple[str, ...],
    key_of: Mapping[str, str],
    text_limit: TextLimit,
    reviews: dict[str, Review],
) -> Language:
    folder = root / code
    voice_path = folder / "voice.yaml"
    voice_raw = _read_prompt_file(voice_path, root, reviews)
    commands_raw = voice_raw.pop("commands", None)
    voice = _prompt_map(voice_raw, VOICE_PROMPTS, voice_path)
    commands = _commands(commands_raw, voice_path)

    sms_path = folder / "sms.yaml"
    sms_raw = _read_prompt_file(sms_path, root, reviews)
    topics_raw = sms_raw.pop("topics", None)
    keywords_raw = sms_raw.pop("keywords", None)
    hours_raw = sms_raw.pop("hours", None)
    sms = _prompt_map(sms_raw, SMS_PROMPTS, sms_path)

    sections_dir = folder / "sections"
    present = {p.stem for p in sections_dir.glob("*.yaml")} if sections_dir.is_dir() else set()
    orphans = present - set(section_ids)
    if orphans:
        _fail(sections_dir, f"files {sorted(orphans)} are not topics in menu.yaml, so no caller can reach them")
    sections = {
        sid: _load_section(sections_dir / f"{sid}.yaml", sid, key_of[sid], root, reviews) for sid in section_ids
    }

    # A phrase that names two things would make speech and texts ambiguous.
    owner: dict[str, str] = {}
    for command, phrases in commands.items():
        for phrase in phrases:
            owner.setdefault(normalize(phrase), f"command {command}")
    for section in sections.values():
        for phrase, meaning in section_meanings(section):
            folded = normalize(phrase)
            if folded in owner and owner[folded] != meaning:
                _fail(section.path, f"{phrase!r} already belongs to {owner[folded]}")
            owner[folded] = meaning

    meanings: list[tuple[str, str]] = []
    for command, phrases in commands.items():
        meanings.extend((phrase, f"command:{command}") for phrase in phrases)
    for section in sections.values():
        meanings.extend(section_meanings(section))
    hints = tuple(dict.fromkeys(phrase.lower() for phrase, _ in meanings))

    urgent = _load_urgent(folder / "urgent.yaml", sections, root, reviews)
    texting = _text_words(sms_path, topics_raw, keywords_raw, hours_raw, urgent, sections)
    _check_texts(sms_path, sms, texting, sections, text_limit)
    _check_urgent_texts(urgent, text_limit)

    return Language(
        code=code,
        locale=locale,
        voice=MappingProxyType(voice),
        sms=MappingProxyType(sms),
        commands=MappingProxyType(commands),
        sections=MappingProxyType(sections),
        vocabulary=Vocabulary.build(meanings),
        hints=hints,
        texting=texting,
        hours=_load_hours(folder / "hours.yaml", root, reviews),
        urgent=urgent,
        text_limit=text_limit,
    )


def section_meanings(section: Section) -> list[tuple[str, str]]:
    """A section's phrases and what each means: its names 'section:<id>', and the questions its parts
    answer 'answer:<id>:<n>' (n counts the section's answers from 0)."""
    meanings = [(phrase, f"section:{section.id}") for phrase in (section.title, section.keyword, *section.synonyms)]
    for number, answer in enumerate(section.answers):
        meanings.extend((question, f"answer:{section.id}:{number}") for question in answer.questions)
    return meanings


def _text_words(
    path: Path, topics_raw: Any, keywords_raw: Any, hours_raw: Any, urgent: UrgentWords, sections: Mapping[str, Section]
) -> TextWords:
    """Read sms.yaml's topics, keywords and hours, and urgent.yaml's phrases."""
    if not isinstance(topics_raw, dict) or set(topics_raw) != set(sections):
        _fail(path, f"`topics` must name each of the topics {sorted(sections)} once")
    topics: dict[str, str] = {}
    for section_id, name in topics_raw.items():
        if not isinstance(name, str) or not name.strip():
            _fail(path, f"topic name for {section_id!r} must be non-empty text")
        topics[section_id] = " ".join(name.split())

    if not isinstance(keywords_raw, dict) or set(keywords_raw) != SMS_KEYWORD_FAMILIES:
        _fail(path, f"`keywords` must list words for each of {sorted(SMS_KEYWORD_FAMILIES)}")
    section_names: dict[str, str] = {}
    section_pairs: list[tuple[str, str]] = []
    for section in sections.values():
        for phrase, meaning in [(topics[section.id], f"section:{section.id}"), *section_meanings(section)]:
            section_names[normalize(phrase)] = section.id
            section_pairs.append((phrase, meaning))
    keywords: dict[str, frozenset[str]] = {}
    owner: dict[str, str] = {}
    for family, phrases in keywords_raw.items():
        words_ok = isinstance(phrases, list) and all(isinstance(p, str) and normalize(p) for p in phrases)
        if not phrases or not words_ok:
            _fail(path, f"keywords {family!r} must be a list of words or phrases (quote YES, NO, ON and OFF)")
        folded = frozenset(normalize(p) for p in phrases)
        for phrase in folded:
            if owner.get(phrase, family) != family:
                _fail(path, f"keyword {phrase!r} is in both {owner[phrase]!r} and {family!r}")
            if phrase in section_names:
                _fail(path, f"keyword {phrase!r} ({family}) already names the topic {section_names[phrase]!r}")
            owner[phrase] = family
        keywords[family] = folded

    if not isinstance(hours_raw, dict) or not all(isinstance(hours_raw.get(k), str | list) for k in _HOUR_WORDS):
        _fail(path, f"`hours` must give {list(_HOUR_WORDS)}")
    days = hours_raw["days"]
    if not isinstance(days, list) or len(days) != 7 or not all(isinstance(d, str) and d.strip() for d in days):
        _fail(path, "hours `days` must be the seven day names from Monday")
    if hours_raw["clock"] not in ("12h", "24h"):
        _fail(path, "hours `clock` must be 12h or 24h")
    templates = {"day_range": {"first", "last"}, "opening": {"days", "opens", "closes"}, "all_day": {"days"}}
    for name, fields in templates.items():
        used = {f for _, f, _, _ in string.Formatter().parse(hours_raw[name]) if f is not None}
        if used != fields:
            _fail(path, f"hours `{name}` must use exactly the placeholders {sorted(fields)}")
    hours = HourWords(
        days=tuple(str(d).strip() for d in days),
        **{k: str(hours_raw[k]) for k in _HOUR_WORDS if k != "days"},
    )

    return TextWords(
        topics=MappingProxyType(topics),
        keywords=MappingProxyType(keywords),
        phrases=MappingProxyType(
            {family: Vocabulary.build((p, family) for p in keywords_raw[family]) for family in keywords_raw}
        ),
        sections=Vocabulary.build(section_pairs),
        urgent=Vocabulary.build((phrase, kind.name) for kind in urgent.kinds.values() for phrase in kind.phrases),
        hours=hours,
        thanks_words=frozenset(word for phrase in keywords["thanks"] for word in phrase.split()),
    )


#: What {hours} may take in an urgent text when the content is checked (two rules of STAFF_HOURS).
_SAMPLE_HOURS = "x" * 45


def _load_urgent(path: Path, sections: Mapping[str, Section], root: Path, reviews: dict[str, Review]) -> UrgentWords:
    """Read prompts/<lang>/urgent.yaml: the three kinds with their answers and phrases, end-of-life wording,
    near misses and review metadata; no near miss may be heard as urgent, no phrase may be in two kinds."""
    raw = _read_prompt_file(path, root, reviews)
    review = reviews[path.relative_to(root).as_posix()]
    kinds_raw = _require(raw, "kinds", dict, path)
    if set(kinds_raw) != set(URGENT_KINDS):
        _fail(path, f"`kinds` must be exactly {list(URGENT_KINDS)}")
    kinds: dict[str, UrgentKind] = {}
    owner: dict[str, str] = {}
    for name in URGENT_KINDS:
        spec = kinds_raw[name]
        if not isinstance(spec, dict):
            _fail(path, f"kind {name!r} must be a mapping with say, text and phrases")
        answers = _prompt_map(
            {key: spec.get(key) for key in ("say", "text")}, {"say": frozenset(), "text": frozenset({"hours"})}, path
        )
        phrases = _string_list(spec, "phrases", path)
        for phrase in phrases:
            folded = normalize(phrase)
            if owner.get(folded, name) != name:
                _fail(path, f"phrase {phrase!r} is in both {owner[folded]!r} and {name!r}")
            owner[folded] = name
        offer = str(spec.get("offer_section", ""))
        if offer and offer not in sections:
            _fail(path, f"kind {name!r}: offer_section {offer!r} is not a topic")
        kinds[name] = UrgentKind(
            name, answers["say"], answers["text"], phrases, Vocabulary.build((p, name) for p in phrases), offer
        )
    end_raw = _require(raw, "end_of_life", dict, path)
    end_phrases = _string_list(end_raw, "phrases", path)
    end_section = _require(end_raw, "offer_section", str, path)
    if end_section not in sections:
        _fail(path, f"end_of_life offer_section {end_section!r} is not a topic")
    near_misses = _string_list(raw, "near_misses", path)
    for text in near_misses:
        for kind in kinds.values():
            if kind.vocabulary.match(text, fuzzy=True):
                _fail(path, f"near miss {text!r} is heard as {kind.name}: change the phrase or the near miss")
    return UrgentWords(
        kinds=MappingProxyType(kinds),
        end_of_life=Vocabulary.build((p, "end_of_life") for p in end_phrases),
        end_of_life_phrases=end_phrases,
        end_of_life_section=end_section,
        near_misses=near_misses,
        reviewed_by=review.reviewed_by,
        reviewed_on=review.reviewed_on,
        source=review.sources_text(),
        path=path,
    )


def _check_urgent_texts(urgent: UrgentWords, limit: TextLimit) -> None:
    """Each kind's texted answer keeps to the language's limit with staff hours filled in."""
    for kind in urgent.kinds.values():
        # The longest hours, written in the language's alphabet (Spanish "sáb" makes a text UCS-2).
        hours = _SAMPLE_HOURS if limit.alphabet == "GSM-7" else "á" + _SAMPLE_HOURS[1:]
        problem = limit.problem(kind.text.format(hours=hours))
        if problem:
            _fail(urgent.path, f"{kind.name} text with {{hours}} filled in {problem}")


def _check_texts(
    path: Path, sms: Mapping[str, str], texting: TextWords, sections: Mapping[str, Section], limit: TextLimit
) -> None:
    """Every text must keep to the language's limit (menu.yaml `texts`), each section message with its footer."""
    words = [*sms.values(), *texting.topics.values(), *texting.hours.days]
    words += [getattr(texting.hours, name) for name in _HOUR_WORDS if name != "days"]
    if limit.alphabet == "GSM-7":
        for text in words:
            odd = sms_segments.non_gsm7(text)
            if odd:
                _fail(path, f"{text!r} has characters outside GSM-7 {odd}, which would make the text UCS-2")
    for section in sections.values():
        for number, message in enumerate(section.sms, start=1):
            footer = sms["more_footer"] if number < len(section.sms) else sms["end_footer"]
            problem = limit.problem(f"{message}\n{footer}")
            if problem:
                _fail(section.path, f"sms message {number} with its footer {problem}")


def _load_section(path: Path, section_id: str, key: str, root: Path, reviews: dict[str, Review]) -> Section:
    if not path.exists():
        _fail(path, f"missing: every language needs a file for topic {section_id!r}")
    raw = _read_prompt_file(path, root, reviews)
    title = _require(raw, "title", str, path).strip()
    keyword = _require(raw, "keyword", str, path).strip()
    if not _KEYWORD_PATTERN.match(keyword):
        _fail(path, f"keyword {keyword!r} must be 2 to 20 capital letters A-Z")
    voice = _string_list(raw, "voice", path)
    for number, part in enumerate(voice, start=1):
        words = len(part.split())
        if words > MAX_WORDS_PER_SPOKEN_PART:
            _fail(path, f"voice part {number} has {words} words; at most {MAX_WORDS_PER_SPOKEN_PART} fit in 60 seconds")
    sms = _string_list(raw, "sms", path)
    return Section(
        id=section_id,
        key=key,
        title=title,
        keyword=keyword,
        synonyms=tuple(s.strip().lower() for s in _string_list(raw, "synonyms", path)),
        voice=voice,
        sms=sms,
        review=reviews[path.relative_to(root).as_posix()],
        path=path,
        answers=_answers(raw.get("answers", []), len(voice), len(sms), path),
    )


def _answers(raw: Any, voice_parts: int, sms_parts: int, path: Path) -> tuple[Answer, ...]:
    """A section's `answers`: each lists questions and the spoken part and text message (from 1) answering them."""
    if not isinstance(raw, list):
        _fail(path, "answers must be a list of {voice, sms, questions}")
    answers = []
    for number, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict):
            _fail(path, f"answers[{number}] must be a mapping with voice, sms and questions")
        voice, sms = entry.get("voice"), entry.get("sms")
        if not isinstance(voice, int) or not 1 <= voice <= voice_parts:
            _fail(path, f"answers[{number}]: voice must be a spoken part number from 1 to {voice_parts}")
        if not isinstance(sms, int) or not 1 <= sms <= sms_parts:
            _fail(path, f"answers[{number}]: sms must be a text message number from 1 to {sms_parts}")
        questions = _string_list(entry, "questions", path)
        answers.append(Answer(tuple(q.lower() for q in questions), voice - 1, sms - 1))
    return tuple(answers)


def _load_hours(path: Path, root: Path, reviews: dict[str, Review]) -> HoursWords:
    """Read prompts/<lang>/hours.yaml: the pieces staff hours are said with."""
    raw = _read_prompt_file(path, root, reviews)
    templates = _prompt_map(
        {name: value for name, value in raw.items() if name in HOURS_TEMPLATES}, HOURS_TEMPLATES, path
    )
    unknown = set(raw) - set(HOURS_TEMPLATES) - set(HOURS_DAY_LISTS) - set(HOURS_CLOCKS) - set(HOURS_JOINERS)
    if unknown:
        _fail(path, f"unknown entries {sorted(unknown)}")
    day_lists = {}
    for name in HOURS_DAY_LISTS:
        days = _string_list(raw, name, path)
        if len(days) != 7:
            _fail(path, f"{name} must name the 7 days, Monday first")
        day_lists[name] = days
    clocks = {}
    for name in HOURS_CLOCKS:
        value = raw.get(name)
        try:
            clocks[name] = minutes_of(str(value))
        except HoursError:
            _fail(path, f"{name} must be a time like 17:00, not {value!r}")
    if not 0 < clocks["afternoon_from"] <= clocks["evening_from"] <= 24 * 60:
        _fail(path, "afternoon_from must come before evening_from")
    joiners = {}
    for name in HOURS_JOINERS:
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            _fail(path, f"{name} must be text such as ', '")
        joiners[name] = value
    return HoursWords(
        days=day_lists["days"],
        days_plural=day_lists["days_plural"],
        templates=MappingProxyType(templates),
        afternoon_from=clocks["afternoon_from"],
        evening_from=clocks["evening_from"],
        list_separator=joiners["list_separator"],
        list_and=joiners["list_and"],
    )


def _check_languages_alike(root: Path, languages: Mapping[str, Language], default: str) -> None:
    """Every language must offer what the default one offers, with the same placeholders."""
    base = languages[default]
    for code, language in languages.items():
        if code == default:
            continue
        for kind in ("voice", "sms"):
            mine, theirs = getattr(language, kind), getattr(base, kind)
            missing = set(theirs) - set(mine)
            if missing:
                _fail(root / code / f"{kind}.yaml", f"missing prompts {sorted(missing)} that {default} has")
        for section in language.sections.values():
            if not section.voice or not section.sms:
                _fail(section.path, "needs at least one voice part and one sms message")


#: PyYAML's libyaml parser where the wheel has it: the same safe loading and the same data as
#: yaml.SafeLoader, and every prompts/ file read in 34 ms instead of 536 ms (measured 2026-12-07 on the
#: 2-core machine, under load), which every start of the line and every test app pays.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_SAFE_LOADER)
    except FileNotFoundError:
        _fail(path, "missing")
    except yaml.YAMLError as error:
        _fail(path, f"is not valid YAML: {error}")
    except UnicodeDecodeError:
        _fail(path, "is not UTF-8 text")
    if not isinstance(data, dict):
        _fail(path, "must be a YAML mapping of names to values")
    return data


def _prompt_map(raw: dict[str, Any], expected: Mapping[str, frozenset[str]], path: Path) -> dict[str, str]:
    missing = set(expected) - set(raw)
    if missing:
        _fail(path, f"missing prompts {sorted(missing)}")
    prompts: dict[str, str] = {}
    for name, text in raw.items():
        if not isinstance(text, str) or not text.strip():
            _fail(path, f"prompt {name!r} must be non-empty text")
        allowed = expected.get(name, frozenset())
        used = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
        if any(not field.isidentifier() for field in used):
            _fail(path, f"prompt {name!r} has a malformed placeholder")
        unknown = used - allowed
        if unknown:
            _fail(path, f"prompt {name!r} uses unknown placeholders {sorted(unknown)}")
        prompts[name] = " ".join(text.split())
    return prompts


def _commands(raw: Any, path: Path) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        _fail(path, "needs a `commands` mapping of command names to spoken phrases")
    unknown = set(raw) - ALL_COMMANDS
    if unknown:
        _fail(path, f"unknown commands {sorted(unknown)}")
    missing = ALL_COMMANDS - set(raw)
    if missing:
        _fail(path, f"commands {sorted(missing)} need spoken phrases")
    commands: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for name, phrases in raw.items():
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
            _fail(path, f"command {name!r} needs a list of phrases")
        for phrase in phrases:
            folded = normalize(phrase)
            if folded in seen and seen[folded] != name:
                _fail(path, f"phrase {phrase!r} is given to both {seen[folded]!r} and {name!r}")
            seen[folded] = name
        commands[name] = tuple(p.strip().lower() for p in phrases)
    return commands


def _key_map(menu: dict[str, Any], name: str, commands: frozenset[str], path: Path) -> dict[str, str]:
    raw = _require(menu, name, dict, path)
    result: dict[str, str] = {}
    for key, command in raw.items():
        key = str(key)
        if not _KEY_PATTERN.match(key):
            _fail(path, f"{name} has a bad key {key!r}")
        if command not in commands:
            _fail(path, f"{name}: {command!r} is not one of {sorted(commands)}")
        if command in result.values():
            _fail(path, f"{name}: {command!r} has two keys")
        result[key] = command
    return result


def _string_list(raw: dict[str, Any], name: str, path: Path) -> tuple[str, ...]:
    value = raw.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        _fail(path, f"{name} must be a non-empty list of texts")
    return tuple(" ".join(v.split()) for v in value)


def _require(raw: dict[str, Any], name: str, kind: type, path: Path) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind):
        _fail(path, f"needs {name!r} ({kind.__name__})")
    return value


def _fail(path: Path, problem: str) -> NoReturn:
    raise ContentError(f"{path}: {problem}")
