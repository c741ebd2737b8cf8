"""The whisper with context (issue 16 item 6): before pressing 1, the staff member hears "urgent" when
the caller said urgent words on this call, the caller's language, and the topic, in the staff's language."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ivr.content import PROMPTS_DIR
from tests.helpers.staff_support import StaffCall, make_app

URGENT_EN = "Urgent. On this call, they said words that may mean it is urgent."
URGENT_ES = "Urgente. En esta llamada dijo palabras que pueden indicar algo urgente."


def whisper_heard(call: StaffCall) -> str:
    """Ring staff from where the call is, and what the staff member who answers hears first."""
    assert call.last is not None
    dial = call.last.find("Dial")
    assert dial is not None, "staff were not rung"
    number = dial.find("Number")
    assert number is not None
    call.whisper(call.staff_leg(), number.attrib["url"])
    return call.heard[0]


def new_call(tmp_path: Path, **settings: Any) -> StaffCall:
    call = StaffCall(make_app(tmp_path, **settings).test_client())
    call.start()
    return call


def test_a_spanish_caller_is_named_as_one(tmp_path: Path) -> None:
    call = new_call(tmp_path)
    call.press("9")  # español
    call.press("5")
    call.press("0")
    assert whisper_heard(call) == (
        "CareLine caller. They speak Spanish. They last heard about hospice and end-of-life care. "
        "Press 1 to take the call."
    )


def test_urgent_words_on_this_call_come_first(tmp_path: Path) -> None:
    call = new_call(tmp_path)
    call.say("I can't breathe")
    call.press("1")  # talk now with staff (an emergency, in hours)
    assert whisper_heard(call) == f"{URGENT_EN} CareLine caller. They speak English. Press 1 to take the call."


def test_urgent_stays_known_after_the_caller_goes_back_to_the_menu(tmp_path: Path) -> None:
    call = new_call(tmp_path)
    call.say("I feel hopeless")
    call.press("#")  # the main menu: the state URL forgets the urgent kind; the call's urgent request does not
    call.press("5")
    call.press("0")
    heard = whisper_heard(call)
    assert heard.startswith(URGENT_EN) and "hospice" in heard


def test_a_call_with_nothing_urgent_is_not_called_urgent(tmp_path: Path) -> None:
    call = new_call(tmp_path)
    call.press("0")
    assert "Urgent" not in whisper_heard(call)


@pytest.fixture
def spanish_staff_prompts(tmp_path: Path) -> Path:
    """The line's prompts with Spanish as its default language: staff hear the whisper in Spanish."""
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, prompts)
    menu = prompts / "menu.yaml"
    menu.write_text(menu.read_text().replace("default_language: en", "default_language: es"))
    return prompts


def test_the_whisper_in_spanish_for_spanish_speaking_staff(tmp_path: Path, spanish_staff_prompts: Path) -> None:
    call = new_call(tmp_path, PROMPTS_DIR=str(spanish_staff_prompts))
    call.say("no puedo respirar")
    call.press("1")
    assert whisper_heard(call) == f"{URGENT_ES} Llamada de CareLine. Habla en español. Oprima 1 para tomar la llamada."
