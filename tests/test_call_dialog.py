"""The pure dialog layer on its own: (state, event) -> Reply, with no web server in the way."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

from ivr import call_dialog
from ivr.call_dialog import (
    CallState,
    Circumstances,
    Connect,
    HangUp,
    Heard,
    Listen,
    RecordMessage,
    Reply,
)
from ivr.content import Content
from tests.conftest import loaded_content

CONTENT: Content = loaded_content()
OPEN = Circumstances(staff_open=True)
CLOSED = Circumstances(staff_open=False)
KEYS = "0123456789*#"


def step(state: CallState, event: call_dialog.Event, world: Circumstances = CLOSED) -> Reply:
    return call_dialog.step(CONTENT, state, event, world)


def said(reply: Reply) -> str:
    return " ".join(line.text for line in reply.lines)


def listening_state(reply: Reply) -> CallState:
    assert isinstance(reply.next, Listen), reply.next
    return reply.next.state


def test_dialog_imports_neither_flask_nor_twilio() -> None:
    tree = ast.parse(Path(call_dialog.__file__).read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name.split(".")[0] in {"flask", "twilio", "sqlalchemy"}}


@pytest.mark.parametrize(("key", "section"), sorted(CONTENT.topic_keys.items()))
def test_each_topic_key_plays_its_section_and_counts_it(key: str, section: str) -> None:
    reply = step(CallState(), Heard(digits=key))
    state = listening_state(reply)
    assert (state.node, state.section, state.part) == ("section", section, 0)
    assert reply.lines[0].text == CONTENT.language("en").sections[section].voice[0]
    assert call_dialog.CountSectionPlay(section) in reply.effects


@pytest.mark.parametrize(
    ("speech", "section"),
    [
        ("Hospice.", "hospice"),
        ("hospice", "hospice"),
        ("End of life.", "hospice"),
        ("LIVING WILL!", "directives"),
        ("I want a living will, please", "directives"),
        ("Comfort care?", "palliative"),
        ("clinical trials", "treatment"),
        ("Why did it come back", "recurrence"),
        ("support group", "coping"),
    ],
)
def test_speech_reaches_sections_from_any_node(speech: str, section: str) -> None:
    for start in (CallState(), CallState(node="section", section="coping" if section != "coping" else "hospice")):
        state = listening_state(step(start, Heard(speech=speech)))
        assert (state.node, state.section) == ("section", section)


@pytest.mark.parametrize("node_state", [CallState(), CallState(node="section", section="treatment", part=1)])
@pytest.mark.parametrize("how", [Heard(digits="0"), Heard(speech="Talk to someone."), Heard(speech="a person")])
def test_a_person_from_every_menu(node_state: CallState, how: Heard) -> None:
    opened = step(node_state, how, OPEN)
    assert isinstance(opened.next, Connect)
    assert opened.next.section == node_state.section
    closed = step(node_state, how, CLOSED)
    assert listening_state(closed).node == "offer"
    assert "911" in said(closed) and "988" in said(closed)


@pytest.mark.parametrize("how", [Heard(digits="*"), Heard(speech="Repeat."), Heard(speech="say that again")])
def test_star_reads_every_choice_then_replays_the_current_part(how: Heard) -> None:
    """Issue 14: after a part only what matters is read; * gives the rest, and * again the part itself."""
    state = CallState(node="section", section="treatment", part=1)
    choices = step(state, how)
    assert listening_state(choices).node == "choices" and listening_state(choices).part == 1
    heard = said(choices)
    assert CONTENT.language("en").sections["treatment"].voice[1] not in heard
    for prompt in ("section_again", "section_main", "menu_slower", "section_text"):
        assert CONTENT.language("en").say(prompt) in heard, prompt
    assert "Para español, oprima 9." in heard
    again = step(listening_state(choices), how)
    assert again.lines[0].text == CONTENT.language("en").sections["treatment"].voice[1]
    assert listening_state(again).node == "section" and listening_state(again).part == 1


@pytest.mark.parametrize("how", [Heard(digits="#"), Heard(speech="Main menu."), Heard(speech="start over")])
def test_back_to_the_main_menu(how: Heard) -> None:
    reply = step(CallState(node="section", section="hospice"), how)
    assert listening_state(reply).node == "main"
    assert "For hospice and end-of-life care, press 5." in [line.text for line in reply.lines]


def test_more_walks_through_parts_then_says_that_was_all() -> None:
    parts = CONTENT.language("en").sections["treatment"].voice
    state = CallState(node="section", section="treatment")
    for number in range(1, len(parts)):
        reply = step(state, Heard(digits="1"))
        state = listening_state(reply)
        assert reply.lines[0].text == parts[number]
    last = step(state, Heard(digits="1"))
    assert "That is all we have on treatment and clinical trials." in said(last)
    assert "press 1" not in said(last)  # "more" is no longer offered


def test_silence_reprompts_then_warns_then_says_goodbye() -> None:
    state = CallState(node="section", section="hospice")
    first = step(state, Heard())
    assert said(first).startswith("Sorry, we did not hear anything.")
    second = step(listening_state(first), Heard())
    assert "press any key" in said(second)
    third = step(listening_state(second), Heard(), CLOSED)
    assert isinstance(third.next, HangUp)
    assert third.lines[-1].text.endswith("Goodbye.")
    assert "text the word CALL" in said(third)
    third_open = step(listening_state(second), Heard(), OPEN)
    assert isinstance(third_open.next, Connect)


def test_any_key_after_the_warning_buys_more_time() -> None:
    warned = CallState(node="main", silences=2)
    reply = step(warned, Heard(digits="7"))
    assert said(reply).startswith("Okay. Take all the time you need.")
    assert listening_state(reply).silences == 0


def test_three_misses_offer_a_person() -> None:
    state = CallState()
    for miss in range(1, 4):
        reply = step(state, Heard(digits="7") if miss % 2 else Heard(speech="banana"))
        state = listening_state(reply)
        assert state.misses == miss
        assert ("talk with a person, press 0, or say talk to someone" in said(reply)) == (miss >= 3)


def test_a_good_answer_clears_the_misses() -> None:
    reply = step(CallState(misses=2, silences=1), Heard(digits="5"))
    state = listening_state(reply)
    assert (state.misses, state.silences) == (0, 0)


@pytest.mark.parametrize(
    ("status", "accepted", "node"),
    [
        ("completed", True, "main"),
        ("completed", False, "offer"),
        ("busy", False, "offer"),
        ("no-answer", False, "offer"),
        ("failed", False, "offer"),
        ("canceled", False, "offer"),
    ],
)
def test_after_ringing_staff(status: str, accepted: bool, node: str) -> None:
    reply = step(CallState(node="staff"), call_dialog.DialEnded(status, accepted), OPEN)
    assert listening_state(reply).node == node


def test_leaving_a_message_opens_the_request_before_the_beep() -> None:
    reply = step(CallState(node="offer", section="hospice"), Heard(digits="1"))
    assert isinstance(reply.next, RecordMessage)
    assert call_dialog.OpenVoiceMessage(section="hospice", lang="en") in reply.effects
    saved = step(reply.next.state, call_dialog.Recorded(has_audio=True))
    assert "Your message is saved" in said(saved)
    empty = step(reply.next.state, call_dialog.Recorded(has_audio=False))
    assert listening_state(empty).node == "offer"


@pytest.mark.parametrize(
    ("result", "words"),
    [
        ("sent", "We sent this topic"),
        ("failed", "could not send"),
        ("opted_out", "text the word START"),
        ("no_number", "cannot send a text"),
    ],
)
def test_text_me_asks_for_a_text_and_reports_the_outcome(result: str, words: str) -> None:
    state = CallState(node="section", section="hospice")
    asked = step(state, Heard(digits="2"))
    assert isinstance(asked.next, call_dialog.AwaitOutcome)
    assert asked.effects == (call_dialog.SendSectionText("hospice", "en"),)
    told = step(asked.next.state, call_dialog.TextOutcome(result))  # type: ignore[arg-type]
    assert words in said(told)
    assert listening_state(told).section == "hospice"


def test_language_key_switches_and_every_line_follows() -> None:
    reply = step(CallState(), Heard(digits="9"))
    state = listening_state(reply)
    assert state.lang == "es"
    assert {line.lang for line in reply.lines} == {"es"}
    back = step(state, Heard(digits="9"))
    assert listening_state(back).lang == "en"


def test_slower_toggles() -> None:
    slow = step(CallState(), Heard(digits="8"))
    assert slow.slow and listening_state(slow).slow
    normal = step(listening_state(slow), Heard(digits="8"))
    assert not normal.slow


@pytest.mark.parametrize(
    "tampered",
    [
        CallState(node="nowhere", lang="xx", section="../etc", part=99, misses=-4, silences=400),
        CallState(node="section", section=""),
        CallState(node="section", section="hospice", part=-1),
    ],
)
def test_a_tampered_state_is_made_safe(tampered: CallState) -> None:
    reply = step(tampered, Heard(digits="*"))
    state = listening_state(reply)
    assert state.lang in CONTENT.languages
    assert state.node in call_dialog.NODES
    assert state.section in ("", *CONTENT.section_ids)


def test_transfer_in_plays_the_section_after_the_911_line() -> None:
    reply = step(CallState(), call_dialog.TransferredIn("hospice"))
    assert "911" in reply.lines[0].text
    assert reply.lines[1].text == CONTENT.language("en").sections["hospice"].voice[0]
    unknown = step(CallState(), call_dialog.TransferredIn("nope"))
    assert "Welcome to CareLine" in said(unknown)


@pytest.mark.parametrize("world", [OPEN, CLOSED], ids=["staff-open", "staff-closed"])
@pytest.mark.parametrize("lang", sorted(CONTENT.languages))
def test_never_a_dead_end(world: Circumstances, lang: str) -> None:
    """Explore every key, a few phrases and silence from the greeting, three steps deep.

    Every reply says something; the line only hangs up after silences; every listening state
    offers the way to a person.
    """
    start = call_dialog.step(CONTENT, CallState(lang=lang), call_dialog.CallStarted(), world)
    queue: deque[tuple[Reply, int]] = deque([(start, 0)])
    seen: set[CallState] = set()
    events: list[call_dialog.Event] = [Heard(digits=k) for k in KEYS]
    events += [Heard(), Heard(speech="hospice"), Heard(speech="xyzzy"), Heard(speech="more")]
    while queue:
        reply, depth = queue.popleft()
        assert reply.lines, "the line never stays silent"
        nxt = reply.next
        if isinstance(nxt, HangUp):
            assert reply.lines[-1].text == CONTENT.language(reply.lines[-1].lang).say("goodbye")
            continue
        state = nxt.state  # type: ignore[union-attr]
        if depth >= 3 or state in seen:
            continue
        seen.add(state)
        if isinstance(nxt, Connect):
            follow = [call_dialog.DialEnded("no-answer", False)]
        elif isinstance(nxt, RecordMessage):
            follow = [call_dialog.Recorded(True), call_dialog.Recorded(False)]
        else:
            follow = events
        for event in follow:
            answer = call_dialog.step(CONTENT, state, event, world)
            if isinstance(answer.next, call_dialog.AwaitOutcome):
                answer = call_dialog.step(CONTENT, answer.next.state, call_dialog.TextOutcome("failed"), world)
            if isinstance(answer.next, HangUp):
                assert isinstance(event, Heard) and not event.digits and not event.speech
                assert state.silences + 1 >= call_dialog.SILENCES_BEFORE_GOODBYE
            queue.append((answer, depth + 1))
    assert len(seen) > 10
