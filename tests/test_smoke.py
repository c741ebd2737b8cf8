"""The line answers a call and reaches a section: the shortest end-to-end path."""

from tests.helpers.support import Call


def test_greeting_then_hospice_by_key(call: Call) -> None:
    heard = call.start()
    assert any("Welcome to CareLine" in line for line in heard)
    assert "For hospice and end-of-life care, press 5." in heard
    call.press("5")
    assert "To get this by text message, press 2." in call.heard
