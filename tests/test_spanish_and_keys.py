"""A Spanish-speaking caller never hears English after choosing Spanish; every key is announced where it
works; the line waits generously for an answer (Section 508 1194.23(d)).

Every document is real TwiML from signed requests; every <Say> and <Gather> is checked for its language.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from flask import Flask

from ivr import create_app
from ivr.config import ConfigError, settings_from_environment
from tests.conftest import app_config, loaded_content
from tests.helpers.support import Call

CONTENT = loaded_content()
EN = CONTENT.language("en")
ES = CONTENT.language("es")
#: Monday 10:00 in Los Angeles (staff in) and Monday 20:00 there (staff out).
STAFF_IN = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.UTC)
STAFF_OUT = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)
STAFF = ("+15550001111",)
#: English sentences a Spanish caller must never hear (those without placeholders, and the section words).
ENGLISH_SENTENCES = {text for text in EN.voice.values() if "{" not in text} | {
    part for section in EN.sections.values() for part in section.voice
}


class SpanishCall(Call):
    """A call that, once `spanish` is set, checks every document it gets is all Spanish."""

    spanish: bool = False
    documents: int = 0

    def post(self, path: str, **extra: str) -> ET.Element:
        root = super().post(path, **extra)
        if self.spanish:
            assert_all_spanish(root, self.client.application)
            type(self).documents += 1
        return root


def assert_all_spanish(root: ET.Element, app: Flask) -> None:
    says = list(root.iter("Say"))
    for say in says:
        text = " ".join("".join(say.itertext()).split())
        assert say.attrib.get("language") == "es-US", f"not Spanish: {text!r}"
        assert say.attrib.get("voice") == app.config["VOICE_ES"], text
        assert text not in ENGLISH_SENTENCES, f"English words in a Spanish call: {text!r}"
    for gather in root.iter("Gather"):
        assert gather.attrib.get("language") == "es-US", "speech must be recognised in Spanish"
    assert says or root.find("Record") is None, "a Spanish caller is told what the beep is for"


def make_app(tmp_path: Path, now: dt.datetime, **overrides) -> Flask:
    return create_app(app_config(tmp_path, NOW=now, **overrides))


def spanish_call(app: Flask, number: int, caller: str = "+15551230001") -> SpanishCall:
    call = SpanishCall(app.test_client(), call_sid=f"CA{number:032d}", caller=caller)
    call.start()
    call.spanish = True
    call.press("9")
    assert call.heard[0] == ES.say("language_switched")
    return call


def test_spanish_call_through_every_node_never_speaks_english(tmp_path: Path) -> None:
    app = make_app(tmp_path, STAFF_OUT)
    call = spanish_call(app, 1)
    call.press("*")
    call.press("#")
    for key, section_id in CONTENT.topic_keys.items():
        call.press("#")
        call.press(key)
        assert ES.sections[section_id].voice[0] in call.heard
        for _ in ES.sections[section_id].voice:
            call.press("1")  # every further part, then "that is all"
        assert ES.say("section_no_more", title=ES.sections[section_id].title) in call.heard
        call.press("2")  # by text: fails here (no Twilio account), said in Spanish
        assert ES.say("text_failed") in call.heard
        call.press("*")
    call.press("#")
    call.say("hospicio")
    assert ES.sections["hospice"].voice[0] in call.heard
    call.press("#")
    for _ in range(3):
        call.say("tralalá")
    assert ES.say("offer_person") in call.heard
    call.press("4")  # a key now clears the misses
    call.press("#")
    call.silence()
    call.silence()
    assert call.heard == [ES.say("no_input_warning")]
    call.say("eh")  # anything at all means "I am here"
    assert call.heard[0] == ES.say("more_time")
    call.press("8")
    call.press("8")
    call.press("0")  # staff are out: their hours, 9 1 1, and a message offer
    assert ES.say("message_offer") in call.heard
    call.press("1")
    assert call.last is not None and call.last.find("Record") is not None
    call.post(call.action(), RecordingUrl="https://api.twilio.com/rec/RE1", RecordingSid="RE1", RecordingDuration="7")
    assert call.heard[0] == ES.say("record_saved")
    call.press("0")
    call.press("1")
    call.post(call.action(), RecordingDuration="0")
    assert call.heard[0] == ES.say("record_empty")
    call.press("#")
    call.press("7")  # this caller's Spanish was saved when they chose it: 7 clears it
    assert call.heard[0] == ES.say("memory_cleared")
    for _ in range(3):
        call.silence()
    assert call.ended() and call.heard[-1] == ES.say("goodbye")

    returning = SpanishCall(app.test_client(), call_sid="CA2", caller="+15551230002")
    returning.start()
    returning.press("9")
    returning.press("5")
    returning.press("*")
    assert ES.say("section_keep_topic") in returning.heard  # in Spanish, under *
    returning.press("3")  # agreed: the topic is kept (issue 14: never without consent)
    comeback = SpanishCall(app.test_client(), call_sid="CA3", caller="+15551230002")
    comeback.spanish = True
    comeback.start()  # greeted in Spanish from the first word, offered the last topic
    assert ES.say("last_topic", title=ES.sections["hospice"].title, key="5") in comeback.heard

    hidden = spanish_call(app, 4, caller="anonymous")
    hidden.press("5")
    hidden.press("2")
    assert ES.say("text_no_number") in hidden.heard

    transferred = SpanishCall(app.test_client(), call_sid="CA5")
    transferred.spanish = True
    transferred.post("/voice/section/palliative?l=es")
    assert ES.sections["palliative"].voice[0] in transferred.heard
    assert SpanishCall.documents > 60


def test_spanish_call_with_staff_in_never_speaks_english(tmp_path: Path) -> None:
    app = make_app(tmp_path, STAFF_IN, STAFF_NUMBERS=STAFF)
    call = spanish_call(app, 1)
    call.press("0")
    assert call.last is not None and call.last.find("Dial") is not None
    assert call.heard == [ES.say("staff_connecting")]
    call.post(call.action(), DialCallStatus="no-answer")
    assert ES.say("staff_unavailable") in call.heard
    call.press("#")
    for _ in range(3):
        call.silence()
    assert call.last.find("Dial") is not None, "silence while staff are in ends with a person"
    assert ES.say("no_input_goodbye") in call.heard


# -- every key announced where it works --------------------------------------------------------

KEY_WORDS = {"en": {"*": "star", "#": "pound"}, "es": {"*": "asterisco", "#": "numeral"}}
PRESS = {"en": "press", "es": "oprima"}


def announced(texts: list[str], lang: str) -> set[str]:
    """Keys a caller was told about: "press 5" / "oprima 5", and the names of star and pound."""
    said = " ".join(texts).lower()
    keys = set(re.findall(r"\b(?:press|oprima) (\d)\b", said))  # 9 is offered in the other language
    keys |= {key for key, word in KEY_WORDS[lang].items() if re.search(rf"\b{word}\b", said)}
    return keys


def working_keys(app: Flask, action: str, lang: str, caller: str) -> set[str]:
    """Keys that do something at the place `action` stands for (the state is in the URL)."""
    language = CONTENT.language(lang)
    refusals = {language.say("invalid_key")}
    no_more = language.say("section_no_more", title="")[:12]
    works = set()
    for key in "0123456789*#":
        probe = Call(app.test_client(), call_sid="CAprobe", caller=caller)
        probe.post(action, Digits=key)
        first = probe.heard[0] if probe.heard else ""
        # "That is all we have on ..." after the last part is a kind no-op, not a choice.
        if first not in refusals and not first.startswith(no_more):
            works.add(key)
    return works


def places(app: Flask, lang: str, caller: str) -> list[tuple[str, list[str], str]]:
    """(name, what is said there, its action URL) for the main menu, every section part and the message offer."""
    call = Call(app.test_client(), call_sid="CAwalk", caller=caller)
    call.start()
    found = [("welcome", list(call.heard), call.action())]
    if lang == "es" and call.heard[0] != ES.say("greeting"):
        call.press("9")
        found = [("welcome after 9", list(call.heard), call.action())]
    call.press("#")
    found.append(("main menu", list(call.heard), call.action()))
    for section_id in CONTENT.section_ids:
        call.press("#")
        call.press(CONTENT.language(lang).sections[section_id].key)
        for number in range(len(CONTENT.language(lang).sections[section_id].voice)):
            found.append((f"{section_id} part {number + 1}", list(call.heard), call.action()))
            call.press("1")
    call.press("0")
    found.append(("message offer", list(call.heard), call.action()))
    return found


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize("returning", [False, True], ids=["new caller", "caller with saved choices"])
def test_every_key_that_works_is_announced_there(tmp_path: Path, lang: str, returning: bool) -> None:
    app = make_app(tmp_path, STAFF_OUT)
    caller = "+15551239999"
    if returning:  # save choices first (Spanish by 9, or English speed by 8 twice), so 7 is live
        setup = Call(app.test_client(), call_sid="CAsetup", caller=caller)
        setup.start()
        setup.press("9" if lang == "es" else "8")
        if lang == "en":
            setup.press("8")
    visited = places(app, lang, caller)
    welcome_said = visited[0][1]
    global_keys = set(CONTENT.global_keys)
    assert global_keys <= announced(welcome_said, lang), "the opening menu announces every global key"
    for name, said, action in visited:
        works = working_keys(app, action, lang, caller)
        missing = works - announced(said, lang) - global_keys
        assert not missing, f"{lang} {name}: keys {sorted(missing)} work but are not announced there"
        unannounced_globals = (works & global_keys) - announced(said, lang) - announced(welcome_said, lang)
        assert not unannounced_globals, f"{lang} {name}: {sorted(unannounced_globals)}"
        if name.startswith(("welcome", "main")):
            saved = returning or name == "welcome after 9" or lang == "es"  # choosing Spanish is saved too
            assert ("7" in works) == saved, f"{lang} {name}: 7 clears saved choices, and only where there are some"


# -- time to respond ----------------------------------------------------------------------------


def test_gather_waits_eight_seconds_by_default_and_is_configurable(tmp_path: Path) -> None:
    default = Call(make_app(tmp_path / "a", STAFF_OUT).test_client())
    default.start()
    assert default.last is not None
    assert {g.attrib["timeout"] for g in default.last.iter("Gather")} == {"8"}

    slow = Call(make_app(tmp_path / "b", STAFF_OUT, GATHER_TIMEOUT="15").test_client())
    slow.start()
    slow.press("5")
    assert slow.last is not None
    assert {g.attrib["timeout"] for g in slow.last.iter("Gather")} == {"15"}
    assert settings_from_environment({"GATHER_TIMEOUT": "12"})["GATHER_TIMEOUT"] == 12


@pytest.mark.parametrize("value", ["5", "0", "abc", "31"])
def test_gather_timeout_below_six_seconds_or_odd_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="GATHER_TIMEOUT"):
        settings_from_environment({"GATHER_TIMEOUT": value})
    with pytest.raises(ConfigError, match="GATHER_TIMEOUT"):
        make_app(tmp_path, STAFF_OUT, GATHER_TIMEOUT=value)


def test_before_giving_up_on_silence_the_line_says_so_and_any_key_gives_more_time(tmp_path: Path) -> None:
    call = Call(make_app(tmp_path, STAFF_OUT).test_client())
    call.start()
    call.silence()
    assert call.heard[0] == EN.say("no_input")
    call.silence()
    assert call.heard == [EN.say("no_input_warning")]
    call.press("7")  # not a menu choice, but any key means "I am here"
    assert call.heard[0] == EN.say("more_time")
    assert not call.ended()


def test_emergency_numbers_are_said_digit_by_digit_in_both_languages(tmp_path: Path) -> None:
    app = make_app(tmp_path, STAFF_OUT)
    for lang in ("en", "es"):
        call = Call(app.test_client(), caller="anonymous")
        call.start()
        if lang == "es":
            call.press("9")
        assert call.last is not None
        say_as = [node for node in call.last.iter("say-as") if node.text == "911"]
        assert say_as and all(node.attrib["interpret-as"] == "digits" for node in say_as), lang
        call.press("0")  # staff out: the crisis line too
        assert any(node.text == "988" for node in call.last.iter("say-as"))
