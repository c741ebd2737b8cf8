"""Every text the line can send keeps to its language's limit (English: GSM-7 in 2 SMS segments; Spanish,
with its accents: UCS-2 in 3); broken text content stops start-up."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr import sms_segments
from ivr import text_dialog as tl
from ivr.content import PROMPTS_DIR, SMS_PROMPTS, URGENT_KINDS, ContentError, load_content
from ivr.hours import HourWords, StaffHours, describe_hours
from tests.conftest import loaded_content
from tests.helpers.checks import failures, report

CONTENT = loaded_content()
LANGS = tuple(CONTENT.languages)

#: STAFF_HOURS a clinic might set; the two-rule one is the longest the prompts are written for.
HOURS_SPECS = ("Mon-Fri 08:30-17:00", "Mon-Fri 07:30-19:30; Sat-Sun 10:00-14:00", "Mon-Sun 00:00-24:00", "closed")
#: The longest staff number the prompts are written for (an international E.164 number).
STAFF_PHONES = ("555-987-0000", "+442079460000", "+4915123456789")


def all_facts() -> list[tl.TextFacts]:
    facts = []
    for spec in HOURS_SPECS:
        hours = StaffHours.parse(spec, "America/Los_Angeles")
        described = {code: describe_hours(hours, lang.texting.hours) for code, lang in CONTENT.languages.items()}
        facts += [tl.TextFacts(staff_phone=phone, staff_hours=described) for phone in STAFF_PHONES]
    return facts


def every_message() -> list[tuple[str, str]]:
    """(label, text) for every message the text line or the voice-to-text feature can send."""
    found: dict[str, str] = {}
    for facts_number, facts in enumerate(all_facts()):
        for lang, language in CONTENT.languages.items():
            for kind in sorted(tl.KINDS - {tl.SECTION, tl.NO_MORE}):
                for index, text in enumerate(tl.render(CONTENT, tl.Outcome(kind, lang), facts)):
                    found[f"{lang}:{kind}:{index}:facts{facts_number}"] = text
            for section in language.sections.values():
                no_more = tl.Outcome(tl.NO_MORE, lang, section.id)
                found[f"{lang}:no_more:{section.id}"] = tl.render(CONTENT, no_more, facts)[0]
                for part in range(len(section.sms)):
                    outcome = tl.Outcome(tl.SECTION, lang, section.id, part)
                    found[f"{lang}:{section.id}:{part}"] = tl.render(CONTENT, outcome, facts)[0]
                for part, text in enumerate(tl.whole_section(CONTENT, lang, section.id)):
                    found[f"{lang}:{section.id}:by-call:{part}"] = text
            # Each prompt alone too, with its longest values: also those only a menu in another
            # default language would show (the way into English, when English is not the default).
            longest = {
                "key": "9",
                "keyword": max((s.keyword for s in language.sections.values()), key=len),
                "topic": max(language.texting.topics.values(), key=len),
                "phone": max(STAFF_PHONES, key=len),
                "hours": max(facts.staff_hours.values(), key=len),
                "link": "https://careline.example.org/staff/",  # the staff alert's PUBLIC_BASE_URL
            }
            for urgent_kind in URGENT_KINDS:
                (text,) = tl.render(CONTENT, tl.Outcome(tl.URGENT, lang, urgent_kind), facts)
                found[f"{lang}:urgent:{urgent_kind}:facts{facts_number}"] = text
            for name, fields in SMS_PROMPTS.items():
                found[f"{lang}:prompt:{name}"] = language.text(name, **{f: longest[f] for f in fields})
    return sorted(found.items())


MESSAGES = every_message()


def keeps_to_its_languages_limit(label: str, text: str) -> None:
    limit = CONTENT.language(label.split(":")[0]).text_limit
    assert limit.problem(text) is None, f"{label}: {limit.problem(text)}"
    assert len(text) <= limit.max_characters
    if label.startswith("en:"):
        assert sms_segments.non_gsm7(text) == [], f"{label}: English stays in GSM-7"
        assert sms_segments.segments(text) <= 2


def test_every_message_keeps_to_its_languages_limit() -> None:
    """Every text the line can send, by label ("en:prompt:menu", "es:hospice:2"...): each one that is too long named."""
    found = failures(MESSAGES, keeps_to_its_languages_limit)
    assert not found, report(found)


def test_the_limits_are_data_per_language() -> None:
    """menu.yaml says what each language's texts may use: English GSM-7 in 2 segments, Spanish UCS-2 in 3."""
    english, spanish = CONTENT.language("en").text_limit, CONTENT.language("es").text_limit
    assert (english.alphabet, english.max_segments, english.max_characters) == ("GSM-7", 2, 306)
    assert (spanish.alphabet, spanish.max_segments, spanish.max_characters) == ("UCS-2", 3, 201)
    assert english.problem("Hospice — care") is not None and spanish.problem("Cuidados al final de la vida") is None
    assert spanish.problem("á" * 201) is None and "4 segments" in (spanish.problem("á" * 202) or "")


def test_every_prompt_is_checked() -> None:
    """The list above covers every texted prompt of every language (menu pieces through the menu)."""
    texts = "\n".join(text for _, text in MESSAGES)
    labels = {label for label, _ in MESSAGES}
    for lang, language in CONTENT.languages.items():
        for name, fields in SMS_PROMPTS.items():
            assert f"{lang}:prompt:{name}" in labels
            if not fields and name not in ("language_offer", "language_back"):
                assert language.text(name) in texts.replace(f"{lang}:prompt:", ""), f"{lang}: {name} is never sent"


@pytest.mark.parametrize("lang", LANGS)
def test_every_section_message_leaves_room_for_reply_more(lang: str) -> None:
    language = CONTENT.language(lang)
    for section in language.sections.values():
        for text in section.sms:
            with_footer = f"{text}\n{language.text('more_footer')}"
            assert language.text_limit.problem(with_footer) is None, (section.id, len(with_footer))


#: Spanish words that texts used to write without their accent to stay in GSM-7. Each is a misspelling
#: (or, like "hablara" for "hablará", another word), never right in these texts.
UNACCENTED = (
    "cancer",
    "atencion",
    "informacion",
    "numero",
    "dia",
    "dias",
    "habil",
    "medico",
    "sintomas",
    "clinico",
    "podria",
    "hablara",
    "diran",
    "animo",
    "linea",
    "compañia",
    "cambielas",
    "pongase",
    "consejeria",
    "guias",
    "empezo",
    "regreso",
    "extendio",
    "radiacion",
    "cirugia",
    "opcion",
    "sab",
    "mie",
    "menu",
)


def test_spanish_texts_keep_their_accents() -> None:
    """Correct Spanish wins over the cheaper alphabet: no word loses its accent to stay in GSM-7."""
    spanish = [text for label, text in MESSAGES if label.startswith("es:")]
    assert spanish and any(sms_segments.encoding(text) == "UCS-2" for text in spanish)
    for text in spanish:
        words = set(text.lower().replace("¿", " ").replace("¡", " ").split())
        words = {word.strip(".,:;!?()") for word in words}
        wrong = sorted(words & set(UNACCENTED))
        assert not wrong, f"{wrong} without accents in: {text}"


@pytest.mark.parametrize(
    ("spec", "lang", "expected"),
    [
        ("Mon-Fri 08:30-17:00", "en", "Mon-Fri 8:30am-5pm"),
        ("Mon-Fri 08:30-17:00", "es", "lun a vie 8:30-17:00"),
        ("Mon-Fri 08:30-17:00; Sat 09:00-12:00", "en", "Mon-Fri 8:30am-5pm, Sat 9am-12pm"),
        ("Mon-Fri 08:30-17:00; Sat 09:00-12:00", "es", "lun a vie 8:30-17:00; sáb 9:00-12:00"),
        ("Sat-Mon 00:00-24:00", "en", "Sat-Mon all day"),
        ("Mon-Fri 09:00-17:00; Sat-Sun 00:00-24:00", "es", "lun a vie 9:00-17:00; sáb a dom todo el día"),
        ("Mon-Fri 00:00-12:00", "en", "Mon-Fri 12am-12pm"),
        ("Mon-Sun 00:00-24:00", "en", "any time, day or night"),
        ("Mon-Sun 00:00-24:00", "es", "a toda hora, todos los días"),
        ("closed", "en", "hours vary"),
        ("Tue 12:15-13:45", "en", "Tue 12:15pm-1:45pm"),
    ],
)
def test_staff_hours_written_for_texts(spec: str, lang: str, expected: str) -> None:
    hours = StaffHours.parse(spec, "America/New_York")
    assert describe_hours(hours, CONTENT.language(lang).texting.hours) == expected


def test_staff_hours_are_each_written_their_own_way() -> None:
    """Each STAFF_HOURS in each language's words, asked again and again with new StaffHours objects."""
    expected = {
        ("Mon-Fri 08:30-17:00", "en"): "Mon-Fri 8:30am-5pm",
        ("Mon-Fri 08:30-17:00", "es"): "lun a vie 8:30-17:00",
        ("Tue 12:15-13:45", "en"): "Tue 12:15pm-1:45pm",
        ("closed", "en"): "hours vary",
        ("Mon-Sun 00:00-24:00", "es"): "a toda hora, todos los días",
    }
    for _ in range(40):  # many StaffHours objects, as tests and reloads make them
        for (spec, lang), written in expected.items():
            hours = StaffHours.parse(spec, "America/New_York")
            assert describe_hours(hours, CONTENT.language(lang).texting.hours) == written


def test_hour_words_are_data() -> None:
    words = HourWords(
        days=("L", "M", "X", "J", "V", "S", "D"),
        day_range="{first}..{last}",
        opening="{days}={opens}/{closes}",
        separator=" + ",
        clock="24h",
        am="",
        pm="",
        always="siempre",
        closed="nunca",
        all_day="{days}=todo",
    )
    hours = StaffHours.parse("Mon-Fri 08:00-16:30; Sat 00:00-24:00; Sun 10:00-11:00", "UTC")
    assert describe_hours(hours, words) == "L..V=8:00/16:30 + S=todo + D=10:00/11:00"


# -- broken content stops start-up, naming the file ---------------------------------------------------


def broken_copy(tmp_path: Path, relative: str, old: str, new: str) -> Path:
    root = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, root)
    path = root / relative
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("relative", "old", "new", "problem"),
    [
        ("en/sms.yaml", "Reply MORE for the rest.", "Reply MORE for the rest — thanks.", "outside GSM-7"),
        ("en/sms.yaml", "Reply MORE for the rest.", "Reply MÁS for the rest.", "outside GSM-7"),
        ("es/sms.yaml", "Responda MÁS para el resto.", "Responda MÁS para el resto, si quiere saber más.", "at most 3"),
        ("en/sms.yaml", '  start: [START, UNSTOP, "YES"]', "  start: [START, UNSTOP, YES]", "quote YES"),
        ("en/sms.yaml", "  more: [MORE,", "  more: [HOSPICE, MORE,", "already names the topic"),
        ("en/sms.yaml", "  more: [MORE,", "  more: [HELP, MORE,", "in both"),
        ("en/sms.yaml", "  language: [ENGLISH", "  languages: [ENGLISH", "`keywords` must list"),
        ("en/sms.yaml", '  hospice: "end-of-life care"\n', "", "`topics` must name"),
        ("es/sms.yaml", "  clock: 24h", "  clock: 25h", "clock"),
        ("en/sms.yaml", "callback_saved:", "callback_saving:", "missing prompts"),
        ("en/sms.yaml", "Staff hours: {hours}. If", "Staff hours: {hours} {when}. If", "unknown placeholders"),
        ("en/urgent.yaml", "phrases:", "phrase:", "phrases"),
        (
            "en/sections/hospice.yaml",
            "Talk with your care team to learn if hospice is right for you.",
            "Talk with your care team to learn if hospice is right for you. " + "More words here. " * 10,
            "at most 2 text segments",
        ),
        ("es/sections/hospice.yaml", "de duelo.", "de duelo. Más palabras aquí, muchas más." * 2, "at most 3"),
        ("en/sections/hospice.yaml", 'is right for you."', 'is right for you — or not."', "outside GSM-7"),
    ],
)
def test_broken_text_content_names_the_file(tmp_path: Path, relative: str, old: str, new: str, problem: str) -> None:
    root = broken_copy(tmp_path, relative, old, new)
    with pytest.raises(ContentError) as caught:
        load_content(root)
    message = str(caught.value)
    assert str(root / relative) in message or str(root / relative.rsplit("/", 1)[0]) in message
    assert problem in message
