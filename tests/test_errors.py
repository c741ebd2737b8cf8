"""A failure inside the line never reaches the caller as Twilio's "application error"."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ivr import dialog
from tests.support import CALLER, Call


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
    assert "Estos son los temas." in call.heard
    assert call.last is not None and call.last.find("Gather") is not None
    assert "RuntimeError" in caplog.text
    assert CALLER not in caplog.text and "database said no" not in caplog.text


def test_when_even_the_menu_fails_the_call_goes_to_the_fallback(call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(dialog, "step", broken)
    root = call.post("/voice/step?n=main&l=en", Digits="5")
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.text == "/voice/fallback"


def test_the_fallback_url_apologises_and_reads_the_menu(call: Call) -> None:
    call.post("/voice/fallback")
    assert call.heard[0] == "Sorry, something went wrong on our end."
    assert "For hospice care, press 5." in call.heard


def test_http_errors_stay_http_errors(client: FlaskClient) -> None:
    assert client.post("/voice").status_code == 403
    assert client.get("/nowhere").status_code == 404
