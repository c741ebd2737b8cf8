"""Press 2 after a section: the line texts it through the real `twilio` REST client to a stand-in for
Twilio's Messages API, a separate HTTP server process on 127.0.0.1 (ivr/phone/twilio_standin.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from ivr import create_app
from ivr import text_dialog as tl
from ivr.config import ConfigError, parse_settings
from tests.conftest import app_config
from tests.helpers.support import AUTH_TOKEN, LINE_NUMBER, TEXTABLE_CALLER, Call, Phone

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
#: The stand-in refuses texts to this number with Twilio's error 21610 (recipient unsubscribed).
REFUSED_NUMBER = "+12025550199"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def standin_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ivr.phone.twilio_standin", ACCOUNT_SID, AUTH_TOKEN, REFUSED_NUMBER],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    first_line: list[str] = []
    stdout = process.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: first_line.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=30)
    try:
        assert first_line and first_line[0].startswith("PORT "), "the stand-in did not start"
        yield f"http://127.0.0.1:{int(first_line[0].split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def received(standin_url: str) -> Callable[[], list[dict[str, Any]]]:
    """What the stand-in received since this test began."""
    urllib.request.urlopen(urllib.request.Request(standin_url + "/_standin/reset", method="POST"), timeout=10)

    def fetch() -> list[dict[str, Any]]:
        with urllib.request.urlopen(standin_url + "/_standin/messages", timeout=10) as response:
            return json.load(response)

    return fetch


@pytest.fixture
def line(tmp_path: Path, standin_url: str) -> Flask:
    return create_app(app_config(tmp_path, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_API_BASE_URL=standin_url))


def test_pressing_2_texts_the_section_through_the_rest_api(line: Flask, received: Callable[[], list]) -> None:
    call = Call(line.test_client(), caller=TEXTABLE_CALLER)
    call.start()
    call.press("5")
    heard = call.press("2")
    assert heard[0] == "We sent this topic to your phone by text message."
    assert "For other choices, press star." in heard  # back at the section's choices

    content = line.extensions["careline"].content
    expected = tl.whole_section(content, "en", "hospice")
    got = received()
    assert [r["form"]["Body"] for r in got] == list(expected)
    for request in got:
        assert request["form"]["To"] == TEXTABLE_CALLER and request["form"]["From"] == LINE_NUMBER
        assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        assert request["content_type"] == "application/x-www-form-urlencoded"
        assert request["user_agent"].startswith("twilio-python/")  # the real client built these requests
    assert expected[-1].endswith("Reply MENU for other topics, or CALL to have staff call you.")

    # The texted number is now in the conversation: MORE knows everything was sent.
    (reply,) = Phone(line.test_client(), number=TEXTABLE_CALLER).text("more")
    assert reply.startswith("That is all we have on end-of-life care.")


def test_a_spanish_caller_gets_spanish_texts_and_replies(line: Flask, received: Callable[[], list]) -> None:
    call = Call(line.test_client(), caller=TEXTABLE_CALLER)
    call.start()
    call.press("9")
    call.press("4")
    heard = call.press("2")
    assert heard[0] == line.extensions["careline"].content.language("es").say("text_sent")
    bodies = [r["form"]["Body"] for r in received()]
    assert bodies[0].startswith("DIRECTIVAS ANTICIPADAS:")
    (menu,) = Phone(line.test_client(), number=TEXTABLE_CALLER).text("menu")
    assert menu.startswith("Responda un número o un tema:")


def test_nothing_is_sent_to_a_number_that_texted_stop(line: Flask, received: Callable[[], list]) -> None:
    phone = Phone(line.test_client(), number=TEXTABLE_CALLER)
    assert phone.text("STOP") == []
    call = Call(line.test_client(), caller=TEXTABLE_CALLER)
    call.start()
    call.press("3")
    heard = call.press("2")
    assert heard[0].startswith("This phone number asked us not to send texts.")
    assert received() == []

    assert phone.text("START")
    call.press("2")
    assert call.heard[0] == "We sent this topic to your phone by text message."
    assert len(received()) == len(line.extensions["careline"].content.language("en").sections["palliative"].sms)


def test_a_refused_text_is_told_to_the_caller(line: Flask, received: Callable[[], list]) -> None:
    call = Call(line.test_client(), caller=REFUSED_NUMBER)
    call.start()
    call.press("1")
    heard = call.press("2")
    assert heard[0] == "Sorry, we could not send a text message right now. Please try again later."
    assert len(received()) == 1  # the first message was refused; the rest were not tried


def test_an_unreachable_api_is_told_to_the_caller(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(
        app_config(tmp_path, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_API_BASE_URL=f"http://127.0.0.1:{port}")
    )
    call = Call(app.test_client(), caller=TEXTABLE_CALLER)
    call.start()
    call.press("6")
    assert call.press("2")[0] == "Sorry, we could not send a text message right now. Please try again later."


def test_without_an_account_nothing_is_sent(tmp_path: Path, received: Callable[[], list]) -> None:
    call = Call(create_app(app_config(tmp_path)).test_client(), caller=TEXTABLE_CALLER)
    call.start()
    call.press("6")
    assert call.press("2")[0].startswith("Sorry, we could not send a text message right now.")
    assert received() == []


@pytest.mark.parametrize(
    "url",
    [
        "https://api.twilio.com",
        "http://10.0.0.5:80",
        "http://example.org",
        "ftp://127.0.0.1",
        # Issue 15 item 11: names that only look local resolve wherever their owner likes.
        "http://127.evil.example",
        "http://127.0.0.1.nip.io:8099",
        "http://localhost.evil",
        "http://localhost:8099",
        "http://[::2]",
        "http://0x7f000001",
        "http://2130706433",
        "http://127.1",
        "http://user@127.0.0.1:8099",
    ],
)
def test_the_api_base_url_may_only_point_at_this_machine(tmp_path: Path, url: str) -> None:
    """The REST client sends the account's credentials there: a loopback IP literal only."""
    with pytest.raises(ConfigError, match="TWILIO_API_BASE_URL"):
        create_app(app_config(tmp_path, TWILIO_API_BASE_URL=url))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8099", "http://127.5.6.7", "http://[::1]:8099", "https://127.0.0.1"])
def test_loopback_ip_literals_are_accepted_for_the_api_base_url(url: str) -> None:
    assert parse_settings({"TWILIO_API_BASE_URL": url})["TWILIO_API_BASE_URL"] == url
