"""Safety first (issue 13): emergency, crisis and distress words are heard before anything else, on every
channel, in both languages; the near misses are not; staff are told, and a failed alert is not lost.

The phrase walk goes through the pure dialog and text line (every phrase of every kind, in every place a
caller can speak); the rest goes through signed webhooks, the real database, and the stand-in Twilio REST
API reached by the real `twilio` client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from ivr import alerts, call_dialog, create_app, safety
from ivr import text_dialog as tl
from ivr.content import URGENT_KINDS
from ivr.phone.twilio_standin import TwilioStandIn
from ivr.services import services
from ivr.storage import callback_requests, staff_alerts
from tests.conftest import app_config, loaded_content
from tests.helpers.checks import failures, report
from tests.helpers.staff_support import ACCOUNT_SID, add_staff, sign_in
from tests.helpers.support import CALLER, LINE_NUMBER, Call, Phone, parse_twiml

CONTENT = loaded_content()
LANGS = tuple(CONTENT.languages)
STAFF_OPEN = call_dialog.Circumstances(staff_open=True)


def urgent_words(lang: str):  # type: ignore[no-untyped-def]
    words = CONTENT.language(lang).urgent
    assert words is not None
    return words


def phrase_cases() -> list[tuple[str, str, str]]:
    """(language, kind, phrase) for every phrase of every kind."""
    return [
        (lang, kind.name, phrase)
        for lang in LANGS
        for kind in urgent_words(lang).kinds.values()
        for phrase in kind.phrases
    ]


PHRASES = phrase_cases()


def at_least_as_urgent(found: str, own: str) -> bool:
    """A phrase may also hold a more urgent one ("chest pain" in a crisis sentence): that one wins."""
    return URGENT_KINDS.index(found) <= URGENT_KINDS.index(own)


#: Where a caller can speak, as the dialog state after getting there (each in the call's language).
def places(lang: str) -> dict[str, Callable[[], call_dialog.CallState]]:
    def after_a_miss() -> call_dialog.CallState:
        reply = call_dialog.step(CONTENT, call_dialog.CallState(lang=lang), call_dialog.Heard(speech="blah blah blah"))
        assert isinstance(reply.next, call_dialog.Listen)
        return reply.next.state

    return {
        "main menu": lambda: call_dialog.CallState(lang=lang),
        "in a section": lambda: call_dialog.CallState(node=call_dialog.SECTION, lang=lang, section="hospice", part=1),
        "after a miss": after_a_miss,
        "at the message offer": lambda: call_dialog.CallState(node=call_dialog.OFFER, lang=lang),
        "at an urgent offer": lambda: call_dialog.CallState(node=call_dialog.URGENT, lang=lang, urgent="distress"),
    }


PLACES = ("main menu", "in a section", "after a miss", "at the message offer", "at an urgent offer")


def said_anywhere_gets_its_answer_first(lang: str, kind: str, phrase: str, call_lang: str, place: str) -> None:
    state = places(call_lang)[place]()
    reply = call_dialog.step(CONTENT, state, call_dialog.Heard(speech=f"{phrase}."), STAFF_OPEN)
    assert isinstance(reply.next, call_dialog.Listen)
    heard = reply.next.state
    assert heard.node == call_dialog.URGENT and at_least_as_urgent(heard.urgent, kind), (phrase, heard)
    first = reply.lines[0]
    assert first.text == urgent_words(first.lang).kinds[heard.urgent].say
    assert reply.effects == (call_dialog.FlagUrgent(heard.urgent, heard.lang),)
    said = " ".join(line.text for line in reply.lines)
    assert "did not understand" not in said and "no entendimos" not in said
    assert "911" in said if heard.urgent != safety.DISTRESS else "988" in said


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("call_lang", LANGS)
def test_every_urgent_phrase_said_anywhere_gets_its_answer_first(call_lang: str, place: str) -> None:
    """Every phrase of every kind in every language, said in this place of a call in `call_lang`."""
    cases = [(lang, kind, phrase, call_lang, place) for lang, kind, phrase in PHRASES]
    found = failures(cases, said_anywhere_gets_its_answer_first)
    assert not found, report(found)


def texted_gets_its_answer_first(lang: str, kind: str, phrase: str, conversation_lang: str) -> None:
    for text in (phrase, phrase.upper() + "!!", f"please, {phrase} 😢"):
        conversation = tl.Conversation(conversation_lang, section="coping", next_part=1)
        decision = tl.decide(CONTENT, conversation, text)
        outcome = decision.outcome
        assert outcome.kind == tl.URGENT and at_least_as_urgent(outcome.section, kind), (text, outcome)
        assert outcome.lang == conversation_lang  # the conversation's language
        (message,) = tl.render(CONTENT, outcome, tl.TextFacts(staff_hours={"en": "Mon-Fri", "es": "lun-vie"}))
        assert message == urgent_words(outcome.lang).kinds[outcome.section].text.format(
            hours={"en": "Mon-Fri", "es": "lun-vie"}[outcome.lang]
        )
        (ask,) = decision.effects  # the topic is the one the text names, else the one being read
        assert (ask.lang, ask.urgent, ask.kind) == (conversation_lang, True, outcome.section)  # type: ignore[union-attr]


@pytest.mark.parametrize("conversation_lang", LANGS)
def test_every_urgent_phrase_texted_gets_its_answer_first(conversation_lang: str) -> None:
    """Every phrase of every kind in every language, texted in a conversation in `conversation_lang`."""
    found = failures([(*case, conversation_lang) for case in PHRASES], texted_gets_its_answer_first)
    assert not found, report(found)


def first_text_answered_in_its_language(lang: str, kind: str, phrase: str) -> None:
    decision = tl.decide(CONTENT, tl.Conversation("en", lang_known=False), phrase)
    shared = all(safety.classify(CONTENT, phrase, other) is not None for other in LANGS if other != lang)
    assert decision.outcome.kind == tl.URGENT
    assert decision.outcome.lang == lang or shared


@pytest.mark.parametrize("lang", LANGS)
def test_a_first_text_is_answered_in_the_language_of_its_urgent_words(lang: str) -> None:
    """Every phrase of every kind in `lang`, as the first text from a number."""
    found = failures([case for case in PHRASES if case[0] == lang], first_text_answered_in_its_language)
    assert not found, report(found)


def near_misses() -> list[tuple[str, str]]:
    return [(lang, text) for lang in LANGS for text in urgent_words(lang).near_misses]


@pytest.mark.parametrize(("lang", "text"), near_misses())
def test_near_misses_get_their_usual_answer_never_the_urgent_one(lang: str, text: str) -> None:
    for call_lang in LANGS:
        assert safety.classify(CONTENT, text, call_lang, typos=True) is None
        reply = call_dialog.step(CONTENT, call_dialog.CallState(lang=call_lang), call_dialog.Heard(speech=text))
        assert isinstance(reply.next, call_dialog.Listen) and reply.next.state.node != call_dialog.URGENT
        assert not any(isinstance(effect, call_dialog.FlagUrgent) for effect in reply.effects)
        decision = tl.decide(CONTENT, tl.Conversation(call_lang), text)
        assert decision.outcome.kind != tl.URGENT
        assert not any(getattr(effect, "urgent", False) for effect in decision.effects)


@pytest.mark.parametrize(
    ("lang", "text", "topic"),
    [
        ("en", "what is hospice", "hospice"),
        ("en", "palliative care", "palliative"),
        ("es", "que es el hospicio", "hospice"),
    ],
)
def test_near_misses_that_name_a_topic_get_that_topic(lang: str, text: str, topic: str) -> None:
    reply = call_dialog.step(CONTENT, call_dialog.CallState(lang=lang), call_dialog.Heard(speech=text))
    assert isinstance(reply.next, call_dialog.Listen) and reply.next.state.section == topic
    assert tl.decide(CONTENT, tl.Conversation(lang), text).outcome.section == topic


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("I can't breathe and I want to die", "emergency"),  # emergency before crisis
        ("I feel hopeless and I want to kill myself", "crisis"),  # crisis before distress
        ("sucidal", "crisis"),
        ("i cant breath", "emergency"),
        ("I feel hopless", "distress"),
        ("ya no aguanto más", "distress"),
        ("QUIERO MORIR!!!", "crisis"),
        ("me quiero morir", "crisis"),
        ("no puedo más", "distress"),
        ("I don't want to be here anymore", "crisis"),
        ("this is an emergency", "emergency"),
        ("I fell and can't get up", "emergency"),
        ("bleeding a lot", "emergency"),
    ],
)
def test_the_ways_people_say_it(text: str, kind: str) -> None:
    found = safety.classify(CONTENT, text, "en", typos=True)
    assert found is not None and found.kind == kind


def test_end_of_life_wording_gets_the_crisis_answer_then_the_hospice_offer() -> None:
    reply = call_dialog.step(CONTENT, call_dialog.CallState(), call_dialog.Heard(speech="I want to die at home"))
    lines = [line.text for line in reply.lines]
    english = CONTENT.language("en")
    assert lines[0] == urgent_words("en").kinds["crisis"].say
    assert english.say("urgent_topic", title="hospice and end-of-life care", key="5") in lines
    assert lines.index(english.say("urgent_connect_crisis")) < lines.index(english.say("urgent_message"))
    assert isinstance(reply.next, call_dialog.Listen)
    hospice = call_dialog.step(CONTENT, reply.next.state, call_dialog.Heard(digits="5"))
    assert isinstance(hospice.next, call_dialog.Listen) and hospice.next.state.section == "hospice"


def test_the_urgent_offer_never_hangs_up_whatever_the_caller_does() -> None:
    state = call_dialog.CallState(node=call_dialog.URGENT, urgent="crisis")
    for _ in range(6):
        for event in (call_dialog.Heard(), call_dialog.Heard(digits="7"), call_dialog.Heard(speech="mumble")):
            reply = call_dialog.step(CONTENT, state, event)
            assert isinstance(reply.next, call_dialog.Listen) and reply.next.state.node == call_dialog.URGENT
            assert "988" in " ".join(line.text for line in reply.lines)
            state = reply.next.state


@pytest.mark.parametrize("has_audio", [True, False])
@pytest.mark.parametrize("kind", URGENT_KINDS)
def test_a_message_left_from_the_urgent_offer_comes_back_to_that_offer(kind: str, has_audio: bool) -> None:
    """Leaving a message (or failing to) never drops a caller in crisis to an offer without 988 and a person."""
    words = urgent_words("en").kinds[kind].phrases[0]
    offer = call_dialog.step(CONTENT, call_dialog.CallState(), call_dialog.Heard(speech=words))
    assert isinstance(offer.next, call_dialog.Listen)
    recording = call_dialog.step(CONTENT, offer.next.state, call_dialog.Heard(digits="2"), STAFF_OPEN)
    assert isinstance(recording.next, call_dialog.RecordMessage)
    after = call_dialog.step(CONTENT, recording.next.state, call_dialog.Recorded(has_audio=has_audio), STAFF_OPEN)
    assert isinstance(after.next, call_dialog.Listen)
    assert after.next.state.node == call_dialog.URGENT and after.next.state.urgent == kind
    assert after.lines[0].text == CONTENT.language("en").say("record_saved" if has_audio else "record_empty")
    said = [line.text for line in after.lines]
    expected = call_dialog.step(CONTENT, after.next.state, call_dialog.Heard(digits="*"), STAFF_OPEN)
    assert said[1:] == [line.text for line in expected.lines if line.text in said[1:]] and len(said) > 2


# -- through the webhooks --------------------------------------------------------------------------------


def safety_app(tmp_path: Path, **overrides: object) -> Flask:
    settings: dict[str, object] = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "LINE_NUMBER": LINE_NUMBER,
        "STAFF_ALERT_NUMBERS": "+15550002222,+15550003333",
    }
    config = app_config(tmp_path, **{**settings, **overrides})
    return create_app(config)


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def alerts_received(standin: TwilioStandIn) -> list[dict[str, str]]:
    return [m for m in standin.messages if m.get("To") in ("+15550002222", "+15550003333")]


def requests_rows(app: Flask) -> list[dict[str, object]]:
    with services(app).storage.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(callback_requests))]


def test_a_crisis_call_dials_the_lifeline_and_comes_back_to_the_offer(tmp_path: Path, standin: TwilioStandIn) -> None:
    app = safety_app(tmp_path, TWILIO_API_BASE_URL=standin.base_url)
    call = Call(app.test_client())
    call.start()
    heard = call.say("I want to kill myself")
    assert heard[0] == urgent_words("en").kinds["crisis"].say
    call.press("1")
    assert call.last is not None
    dial = call.last.find("Dial")
    assert dial is not None and [n.text for n in dial.iter("Number")] == ["+18002738255"]
    assert dial.attrib["callerId"] == LINE_NUMBER
    call.post(call.action(), DialCallStatus="no-answer")
    assert call.heard[0] == CONTENT.language("en").say("urgent_back")
    # Kept for staff as urgent: the kind only, never the words said.
    with app.app_context():
        (row,) = requests_rows(app)
    assert (row["channel"], row["urgent"], row["urgent_kind"], row["phone"], row["words"], row["note"]) == (
        "voice",
        True,
        "crisis",
        CALLER,
        None,
        "urgent_call",
    )
    # Staff are alerted at once, with no patient words.
    assert wait_for(lambda: len(alerts_received(standin)) == 2)
    bodies = {m["Body"] for m in alerts_received(standin)}
    assert bodies == {"CareLine: an urgent request is waiting. Open the staff page. https://line.example.org/staff/"}
    # Saying it again in the same call keeps one request.
    call.say("I want to die")
    with app.app_context():
        assert len(requests_rows(app)) == 1


def test_the_crisis_line_number_is_a_setting(tmp_path: Path) -> None:
    app = safety_app(tmp_path, CRISIS_LINE_NUMBER="+15550009988")
    call = Call(app.test_client())
    call.start()
    call.say("quiero morir")
    assert call.heard[0] == urgent_words("es").kinds["crisis"].say
    call.press("1")
    assert call.last is not None
    dial = call.last.find("Dial")
    assert dial is not None and [n.text for n in dial.iter("Number")] == ["+15550009988"]


def test_an_urgent_text_is_answered_kept_with_its_words_sealed_and_alerts_staff(
    tmp_path: Path, standin: TwilioStandIn
) -> None:
    app = safety_app(tmp_path, TWILIO_API_BASE_URL=standin.base_url)
    phone = Phone(app.test_client())
    (answer,) = phone.text("ya no aguanto más, no puedo más")
    assert answer.startswith("Sentimos mucho")  # no conversation yet: the language of the words
    with app.app_context():
        (row,) = requests_rows(app)
        storage = services(app).storage
        assert row["urgent"] and row["urgent_kind"] == "distress" and row["channel"] == "sms"
        assert "aguanto" not in str(row["words"])  # sealed at rest
        assert storage.unseal(str(row["words"])) == "ya no aguanto más, no puedo más"
    assert wait_for(lambda: len(alerts_received(standin)) == 2)
    assert all("aguanto" not in m["Body"] for m in standin.messages)
    # A Twilio retry of the same message: the same answer, nothing kept twice.
    assert phone.text("ya no aguanto más, no puedo más", sid=phone.last_sid) == [answer]
    with app.app_context():
        assert len(requests_rows(app)) == 1


def test_an_opted_out_number_texting_crisis_words_still_gets_the_answer(tmp_path: Path) -> None:
    app = safety_app(tmp_path)
    phone = Phone(app.test_client())
    assert phone.text("STOP") == []
    assert phone.text("hospice") == []
    (answer,) = phone.text("I want to end my life")
    assert answer.startswith(urgent_words("en").kinds["crisis"].text.split("{hours}")[0])
    assert "988" in answer and "911" in answer
    with app.app_context():
        (row,) = requests_rows(app)
    assert row["urgent_kind"] == "crisis" and "texts_opted_out" in row["note"]


def test_a_failed_alert_is_retried_after_a_restart(tmp_path: Path, standin: TwilioStandIn) -> None:
    # Twilio's API cannot be reached: the urgent text is answered and kept, the alert waits.
    down = safety_app(tmp_path, TWILIO_API_BASE_URL="http://127.0.0.1:9")
    Phone(down.test_client()).text("I can't breathe")
    with down.app_context():
        storage = services(down).storage
        assert wait_for(lambda: _attempts(storage) >= 1)
        assert storage.unsent_alerts() == 1
    assert alerts_received(standin) == []
    # A new process (a restart) on the same database, with the API back: the alert goes out at start-up.
    up = safety_app(tmp_path, TWILIO_API_BASE_URL=standin.base_url)
    assert wait_for(lambda: len(alerts_received(standin)) == 2)
    with up.app_context():
        assert wait_for(lambda: services(up).storage.unsent_alerts() == 0)
    # Sent once: another start sends nothing more.
    safety_app(tmp_path, TWILIO_API_BASE_URL=standin.base_url)
    for thread in threading.enumerate():  # every sending any start began has ended (ivr/alerts.py `send_soon`)
        if thread.name == "careline-alerts":
            thread.join(timeout=10)
    assert len(alerts_received(standin)) == 2


def _attempts(storage) -> int:  # type: ignore[no-untyped-def]
    with storage.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.coalesce(sa.func.max(staff_alerts.c.attempts), 0))).scalar())


def test_the_staff_page_puts_urgent_first_with_kind_and_words_and_refreshes(tmp_path: Path) -> None:
    app = safety_app(tmp_path, STAFF_ALERT_NUMBERS="")
    add_staff(app)
    phone = Phone(app.test_client())
    phone.text("CALL me please")
    Phone(app.test_client(), number="+15551239999").text("I feel hopeless, nobody would care")
    call = Call(app.test_client(), caller="+15551238888")
    call.start()
    call.say("chest pain")
    staff = app.test_client()
    assert sign_in(staff).status_code == 303
    html = staff.get("/staff/").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="60">' in html
    assert "<script" not in html
    assert html.index("+15551238888") < html.index("+15551239999") < html.index(CALLER)
    assert "I feel hopeless, nobody would care" in html and "CALL me please" in html
    assert "Emergency words" in html and "Distress words" in html
    assert "chest pain" not in html.lower().replace("like trouble breathing or chest pain", "")


def test_alert_text_has_no_link_without_a_public_address(tmp_path: Path) -> None:
    app = safety_app(tmp_path, LOCAL_MODE="1", PUBLIC_BASE_URL="")  # only local mode may have none
    assert alerts.alert_text(app) == "CareLine: an urgent request is waiting. Open the staff page."


def test_urgent_state_survives_the_url_and_the_twiml_is_valid(tmp_path: Path) -> None:
    app = safety_app(tmp_path)
    call = Call(app.test_client())
    call.start()
    call.say("I fell and can't get up")
    action = call.action()
    assert "n=urgent" in action and "u=emergency" in action
    for _ in range(3):
        call.silence()
        root = call.last
        assert root is not None and root.find("Gather") is not None and root.find("Hangup") is None
        assert "911" in call.text()
    parse_twiml(b"<Response/>")


def test_alerts_are_claimed_once_settled_and_purged_with_the_words(storage) -> None:  # type: ignore[no-untyped-def]
    """On SQLite and PostgreSQL: an urgent request queues one alert; a claim holds it; a failure releases
    it; a success settles it; purge removes the done request (words and all) and the sent alert."""
    import datetime as dt

    from ivr.storage import CallbackRequest, TextChanges

    sealed = storage.seal("I feel hopeless")
    ask = CallbackRequest("coping", "en", urgent=True, kind="distress", words=sealed)
    assert storage.record_text_turn("sms:SM1", CALLER, "", TextChanges(callback=ask)) is None  # stored
    assert storage.record_text_turn("sms:SM1", CALLER, "", TextChanges(callback=ask)) == ""  # a retry: nothing more
    assert storage.unsent_alerts() == 1
    (alert,) = storage.claim_alerts()
    assert storage.claim_alerts() == []  # held by the first claim
    storage.settle_alert(alert, sent=False)
    assert storage.claim_alerts() == [alert]  # released for the next try
    storage.settle_alert(alert, sent=True)
    assert storage.unsent_alerts() == 0 and storage.claim_alerts() == []
    (row,) = storage.callback_requests()
    assert storage.unseal(row["words"]) == "I feel hopeless" and row["urgent_kind"] == "distress"
    assert storage.mark_done(row["id"], "nurse.ana")
    removed = storage.purge(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert removed["callback_requests"] == 1 and removed["staff_alerts"] == 1
    assert storage.callback_requests(status=None) == []
