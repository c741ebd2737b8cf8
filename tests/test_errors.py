"""A failure inside the line never reaches the caller as Twilio's "application error"."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ivr import call_dialog
from ivr.storage import TextChanges
from tests.helpers.support import CALLER, Call


def test_an_unexpected_error_is_answered_with_an_apology_and_the_menu(
    app: Flask, call: Call, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    storage = app.extensions["careline"].storage

    def broken(call_sid: str) -> bool:
        raise RuntimeError(f"database said no for {CALLER}")

    monkeypatch.setattr(storage, "staff_accepted", broken)
    caplog.set_level(logging.INFO)
    call.post("/voice/step?n=staff&l=es", DialCallStatus="completed")
    assert call.heard[0] == "Lo sentimos, tuvimos un problema de nuestro lado."
    assert "Para hablar con alguien, oprima 0." in call.heard  # the menu, a person first
    assert call.last is not None and call.last.find("Gather") is not None
    assert "RuntimeError" in caplog.text
    assert CALLER not in caplog.text and "database said no" not in caplog.text


def test_when_even_the_menu_fails_the_call_goes_to_the_fallback(call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(call_dialog, "step", broken)
    root = call.post("/voice/step?n=main&l=en", Digits="5")
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.text == "/voice/fallback"


def test_the_fallback_url_apologises_and_reads_the_menu(call: Call) -> None:
    call.post("/voice/fallback")
    assert call.heard[0] == "Sorry, something went wrong on our end."
    assert "For hospice and end-of-life care, press 5." in call.heard


def test_http_errors_stay_http_errors(client: FlaskClient) -> None:
    assert client.post("/voice").status_code == 403
    assert client.get("/nowhere").status_code == 404


# -- the text line (ivr/web/texts.py) -------------------------------------------------------------------------


def test_an_unexpected_error_on_a_text_gets_a_short_apology_with_the_staff_number(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.helpers.support import Phone

    storage = app.extensions["careline"].storage

    def broken(*args: str) -> None:
        raise RuntimeError(f"something broke for {args}")

    storage.record_text_turn("sms:SM-stop", "+15551230009", "", TextChanges(opted_out=True))
    monkeypatch.setattr(storage, "text_conversation", broken)
    (apology,) = Phone(app.test_client()).text("hospice")
    assert apology == app.extensions["careline"].content.language("en").text("error_apology", phone="555-987-0000")
    assert "RuntimeError" in caplog.text and "texts.py" in caplog.text
    assert CALLER not in caplog.text and "something broke" not in caplog.text
    (spanish,) = Phone(app.test_client()).text("AYUDA")
    assert spanish.startswith("CareLine: Perdone")
    assert Phone(app.test_client(), number="+15551230009").text("hospice") == [], "no apology after STOP"
    # A STOP that meets the error is still kept (and Twilio confirms it, so no text of ours).
    assert Phone(app.test_client()).text("STOP") == []
    monkeypatch.undo()
    assert storage.is_opted_out(CALLER)


def test_an_error_on_the_staff_members_leg_connects_them_rather_than_playing_the_menu(
    call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> str:
        raise ValueError("boom")

    monkeypatch.setattr(call_dialog, "whisper_text", broken)
    root = call.client_post("/voice/whisper?topic=hospice", CallSid="CA" + "2" * 32, Direction="outbound-dial")
    assert list(root) == [], "an empty answer: Twilio connects the staff member to the caller"
