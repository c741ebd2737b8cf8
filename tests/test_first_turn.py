"""Issue 14: a shorter first turn, measured in words; the rest of the choices on *; the last topic kept only
with the caller's consent (a shared phone never greets anyone with someone else's topic)."""

from __future__ import annotations

import datetime as dt

import pytest

from ivr import call_dialog, readability, report
from ivr.call_dialog import CallStarted, CallState, Heard, RememberChoices, Remembered
from tests.conftest import loaded_content

CONTENT = loaded_content()
LANGS = tuple(CONTENT.languages)
#: The first turn before issue 14: about 140 words (58 s in espeak-ng) before a caller could act.
OLD_FIRST_TURN_WORDS = 140


def texts(reply: call_dialog.Reply) -> list[str]:
    return [line.text for line in reply.lines]


def state_of(reply: call_dialog.Reply) -> CallState:
    return reply.next.state  # type: ignore[union-attr]


@pytest.mark.parametrize("lang", LANGS)
def test_the_first_topic_starts_within_fifteen_seconds_and_a_person_is_in_the_first_three_lines(lang: str) -> None:
    language = CONTENT.language(lang)
    lines = [line.text for line in call_dialog.first_turn(CONTENT, lang)]
    first_topic = language.say("menu_option", title=language.sections["recurrence"].title, key="1")
    before = " ".join(lines[: lines.index(first_topic)])
    assert readability.spoken_seconds(before) <= 15.0, before
    assert before == report.opening_text(CONTENT, lang)
    menu = lines[lines.index(language.say("greeting_emergency")) + 1 :]
    assert language.say("menu_person") in menu[:3]
    assert "911" in before and "988" in before


@pytest.mark.parametrize("lang", LANGS)
def test_the_first_turn_is_measured_in_words_and_is_shorter(lang: str) -> None:
    words = readability.word_count(report.first_turn_text(CONTENT, lang))
    assert words <= report.MAX_FIRST_TURN_WORDS < OLD_FIRST_TURN_WORDS, words
    # Every topic is still read, and the ways to act: a person, speech, slower, the text line, star.
    turn = report.first_turn_text(CONTENT, lang)
    language = CONTENT.language(lang)
    for section in language.sections.values():
        assert language.say("menu_option", title=section.title, key=section.key) in turn
    for prompt in ("menu_say_topic", "menu_slower", "text_offer", "intro"):
        assert language.say(prompt) in turn, prompt


@pytest.mark.parametrize("lang", LANGS)
def test_after_a_part_only_what_matters_is_read_and_star_gives_the_rest(lang: str) -> None:
    language = CONTENT.language(lang)
    state = CallState(lang=lang, memory=call_dialog.MEMORY_ON)
    part = call_dialog.step(CONTENT, state, Heard(digits="5"))
    options = texts(part)[1:]
    assert len(options) <= 4, options  # was five after every part
    assert language.say("section_choices") in options and language.say("section_person") in options
    choices = call_dialog.step(CONTENT, state_of(part), Heard(digits="*"))
    every = texts(choices)
    for prompt in ("section_again", "section_main", "section_keep_topic", "menu_slower"):
        assert language.say(prompt) in every, prompt
    assert language.sections["hospice"].voice[0] not in every


@pytest.mark.parametrize("lang", LANGS)
def test_language_and_speed_are_remembered_at_once_the_topic_only_if_the_caller_agrees(lang: str) -> None:
    language = CONTENT.language(lang)
    start = call_dialog.step(CONTENT, CallState(), CallStarted(can_remember=True))
    said = []
    if lang != CONTENT.default_language:
        start = call_dialog.step(CONTENT, state_of(start), Heard(digits="9"))  # choosing Spanish saves it at once
        said += texts(start)
    heard = call_dialog.step(CONTENT, state_of(start), Heard(digits="5"))
    said += texts(heard)
    assert RememberChoices(lang, False, "") in heard.effects  # language and speed: automatic, no topic
    notice = language.say("memory_notice")
    assert said.count(notice) == 1 and "7" not in notice  # never "press 7 at the main menu" before section keys
    # Under *, the offer to keep the topic; 3 keeps it.
    choices = call_dialog.step(CONTENT, state_of(heard), Heard(digits="*"))
    assert language.say("section_keep_topic") in texts(choices)
    kept = call_dialog.step(CONTENT, state_of(choices), Heard(digits="3"))
    assert RememberChoices(lang, False, "hospice") in kept.effects
    assert texts(kept)[0] == language.say("topic_kept") and state_of(kept).memory == call_dialog.MEMORY_TOPIC
    # From then on the topic heard is kept, and the offer is not made again.
    other = call_dialog.step(CONTENT, call_dialog.replace(state_of(kept), node="main"), Heard(digits="6"))
    assert RememberChoices(lang, False, "coping") in other.effects
    again = call_dialog.step(CONTENT, state_of(other), Heard(digits="*"))
    assert language.say("section_keep_topic") not in texts(again)


def test_a_caller_who_did_not_agree_never_has_a_topic_saved_or_said() -> None:
    state = state_of(call_dialog.step(CONTENT, CallState(), CallStarted(can_remember=True)))
    for key in "123456":
        reply = call_dialog.step(CONTENT, call_dialog.replace(state, node="main"), Heard(digits=key))
        saved = [e for e in reply.effects if isinstance(e, RememberChoices)]
        assert saved and all(effect.section == "" for effect in saved)
        state = state_of(reply)
    # 3 without the offer (no memory on this call) is just a wrong key.
    anonymous = call_dialog.step(CONTENT, CallState(node="section", section="hospice"), Heard(digits="3"))
    assert not anonymous.effects and CONTENT.language("en").say("invalid_key") in texts(anonymous)
    # Calling back with only language and speed saved: no "Last time, you listened to ..." for anyone.
    back = call_dialog.step(CONTENT, CallState(), CallStarted(True, Remembered("en", slow=False)))
    assert not any(line.startswith("Last time") for line in texts(back))
    assert state_of(back).memory == call_dialog.MEMORY_ON


def test_a_caller_who_agreed_is_offered_their_last_topic_and_can_clear_it() -> None:
    saved = Remembered("en", last_section="hospice", last_heard_ago=dt.timedelta(days=1))
    back = call_dialog.step(CONTENT, CallState(), CallStarted(True, saved))
    offer = CONTENT.language("en").say("last_topic", title="hospice and end-of-life care", key="5")
    assert offer in texts(back) and state_of(back).memory == call_dialog.MEMORY_TOPIC
    assert CONTENT.language("en").say("menu_forget") in texts(back)
    cleared = call_dialog.step(CONTENT, state_of(back), Heard(digits="7"))
    assert call_dialog.ForgetChoices() in cleared.effects and state_of(cleared).memory == call_dialog.MEMORY_OFF


@pytest.mark.parametrize(
    ("lang", "speech"),
    [
        ("en", "okay"),
        ("en", "Thank you."),
        ("en", "ok thanks"),
        ("es", "gracias"),
        ("es", "Muchas gracias."),
        ("es", "está bien"),
    ],
)
def test_ok_and_thanks_get_a_short_kind_answer_by_voice(lang: str, speech: str) -> None:
    for node in (CallState(lang=lang), CallState(lang=lang, node="section", section="hospice")):
        reply = call_dialog.step(CONTENT, node, Heard(speech=speech))
        assert texts(reply) == [CONTENT.language(lang).say("thanks")]
        assert state_of(reply).node == node.node and not reply.effects


def test_last_topics_saved_before_consent_are_erased_by_the_migration(tmp_path: object) -> None:
    """Migration 0004: topics kept before callers were asked are erased; language and speed stay."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from ivr.storage.database import MIGRATIONS_DIR

    engine = sa.create_engine(f"sqlite:///{tmp_path}/old.sqlite3")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        connection.execute(
            sa.text(
                "INSERT INTO preferences (phone_hash, lang, slow, last_section, last_heard_at, updated_at)"
                " VALUES ('h', 'es', 1, 'hospice', '2026-12-01 10:00:00', '2026-12-01 10:00:00')"
            )
        )
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        row = connection.execute(sa.text("SELECT lang, slow, last_section, last_heard_at FROM preferences")).one()
    engine.dispose()
    assert tuple(row) == ("es", 1, "", None)
