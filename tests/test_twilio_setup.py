"""`flask --app ivr twilio-setup` against the stand-in for Twilio's REST API, through the real `twilio` client.

The stand-in (ivr/phone/twilio_standin.py) keeps the account's numbers and Messaging Services as Twilio
does; each test reads back what the command left there, not what it printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from ivr import create_app
from ivr.phone import free_port
from ivr.phone.twilio_standin import TwilioStandIn, twilio_standin
from tests.conftest import app_config
from tests.helpers.support import AUTH_TOKEN, LINE_NUMBER, PUBLIC_BASE_URL

pytestmark = pytest.mark.sqlite_only

ACCOUNT_SID = "AC" + "5" * 32
BASE = PUBLIC_BASE_URL
WANTED_ON_THE_NUMBER = {
    "voice_url": f"{BASE}/voice",
    "voice_method": "POST",
    "voice_fallback_url": f"{BASE}/voice/fallback",
    "voice_fallback_method": "POST",
    "status_callback": f"{BASE}/voice/status",
    "status_callback_method": "POST",
    "sms_url": f"{BASE}/sms",
    "sms_method": "POST",
    "sms_fallback_url": f"{BASE}/sms/fallback",
    "sms_fallback_method": "POST",
}


@pytest.fixture
def standin() -> Iterator[TwilioStandIn]:
    with twilio_standin(ACCOUNT_SID, AUTH_TOKEN) as server:
        server.phone_config.add_number(ACCOUNT_SID, "+15550001111")  # another number of the account: untouched
        server.phone_config.add_number(ACCOUNT_SID, LINE_NUMBER)
        yield server


@pytest.fixture(autouse=True)
def migrated_database(tmp_path: Path, sqlite_template: Path) -> None:
    """The line's database where app_config puts it: a copy of the session's migrated SQLite file, as on a
    server after the release step (`flask --app ivr db upgrade`)."""
    shutil.copyfile(sqlite_template, tmp_path / "careline.sqlite3")


def line_app(tmp_path: Path, standin: TwilioStandIn, **overrides: Any) -> Flask:
    settings = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_API_BASE_URL": standin.base_url,
        "LINE_NUMBER": LINE_NUMBER,
        **overrides,
    }
    return create_app(app_config(tmp_path, **settings))


def setup(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["twilio-setup", *args])


def the_number(standin: TwilioStandIn) -> dict[str, Any]:
    return standin.phone_config.number(LINE_NUMBER)


def test_set_up_from_blank_then_check_is_clean(tmp_path: Path, standin: TwilioStandIn) -> None:
    app = line_app(tmp_path, standin)
    first = setup(app)
    assert first.exit_code == 0, first.output
    assert 'Changing: Number +15559870000: "A call comes in" URL: not set -> https://line.example.org/voice' in (
        first.output
    )
    number = the_number(standin)
    assert {name: number[name] for name in WANTED_ON_THE_NUMBER} == WANTED_ON_THE_NUMBER
    assert len(standin.phone_config.changes) == 1  # one update for the number
    other = standin.phone_config.number("+15550001111")
    assert other["voice_url"] == "" and other["sms_url"] == ""

    check = setup(app, "--check")
    assert check.exit_code == 0, check.output
    assert "All 13 settings already point at https://line.example.org" in check.output
    assert len(standin.phone_config.changes) == 1  # --check changed nothing

    again = setup(app)  # running it twice is harmless: nothing to change
    assert again.exit_code == 0 and "nothing to change" in again.output
    assert len(standin.phone_config.changes) == 1


def test_check_names_each_difference_in_plain_words(tmp_path: Path, standin: TwilioStandIn) -> None:
    app = line_app(tmp_path, standin)
    assert setup(app).exit_code == 0
    the_number(standin).update(voice_url="https://old.example.org/voice", sms_method="GET", status_callback="")
    changes_before = len(standin.phone_config.changes)

    check = setup(app, "--check")
    assert check.exit_code == 1
    assert "3 of 13 settings differ" in check.output
    assert (
        'Number +15559870000: "A call comes in" URL is https://old.example.org/voice; the line needs '
        "https://line.example.org/voice" in check.output
    )
    assert '"A message comes in" method is GET; the line needs POST' in check.output
    assert '"Call status changes" URL is not set; the line needs https://line.example.org/voice/status' in check.output
    assert len(standin.phone_config.changes) == changes_before

    assert setup(app).exit_code == 0
    assert setup(app, "--check").exit_code == 0


def test_dry_run_changes_nothing(tmp_path: Path, standin: TwilioStandIn) -> None:
    app = line_app(tmp_path, standin)
    before = dict(the_number(standin))
    result = setup(app, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.count("Would change: ") == 5  # the 5 URLs: a new number's methods are POST already
    assert "Nothing changed (--dry-run)." in result.output
    assert the_number(standin) == before
    assert standin.phone_config.changes == []
    assert all(method == "GET" for method, _ in standin.requests)


def test_a_twiml_app_or_trunk_on_the_number_is_reported_and_removed(tmp_path: Path, standin: TwilioStandIn) -> None:
    the_number(standin).update(voice_application_sid="AP" + "1" * 32, trunk_sid="TK" + "2" * 32)
    app = line_app(tmp_path, standin)
    check = setup(app, "--check")
    assert check.exit_code == 1
    assert f"TwiML app for calls (it would replace the URLs above) is AP{'1' * 32}; the line needs not set" in (
        check.output
    )
    assert setup(app).exit_code == 0
    assert the_number(standin)["voice_application_sid"] == "" and the_number(standin)["trunk_sid"] == ""


def test_fallbacks_can_point_at_a_second_deployment(tmp_path: Path, standin: TwilioStandIn) -> None:
    app = line_app(tmp_path, standin)
    assert setup(app, "--fallback-base-url", "https://backup.example.org/").exit_code == 0
    number = the_number(standin)
    assert number["voice_fallback_url"] == "https://backup.example.org/voice/fallback"
    assert number["sms_fallback_url"] == "https://backup.example.org/sms/fallback"
    assert number["voice_url"] == f"{BASE}/voice"


def test_a_messaging_service_takes_the_texts(tmp_path: Path, standin: TwilioStandIn) -> None:
    service_sid = standin.phone_config.add_service(ACCOUNT_SID, inbound_request_url="https://old.example.org/sms")
    the_number(standin).update(sms_url="https://elsewhere.example.org/sms")
    app = line_app(tmp_path, standin)

    check = setup(app, "--check", "--messaging-service", service_sid)
    assert check.exit_code == 1
    assert (
        f"Messaging Service {service_sid}: incoming messages' request URL is https://old.example.org/sms; "
        "the line needs https://line.example.org/sms" in check.output
    )
    assert f"Messaging Service {service_sid}: the number +15559870000 is not in it; the line adds it" in check.output

    assert setup(app, "--messaging-service", service_sid).exit_code == 0
    service = standin.phone_config.services[service_sid]
    assert service["inbound_request_url"] == f"{BASE}/sms"
    assert service["fallback_url"] == f"{BASE}/sms/fallback"
    assert service["inbound_method"] == service["fallback_method"] == "POST"
    assert service["use_inbound_webhook_on_number"] is False
    assert the_number(standin)["sid"] in standin.phone_config.service_numbers[service_sid]
    # The number's own SMS URL is not the line's to change: the service's settings replace it.
    assert the_number(standin)["sms_url"] == "https://elsewhere.example.org/sms"
    assert the_number(standin)["voice_url"] == f"{BASE}/voice"

    clean = setup(app, "--check", "--messaging-service", service_sid)
    assert clean.exit_code == 0, clean.output
    assert "All 14 settings already point" in clean.output


def test_a_service_deferring_to_the_number_is_reported(tmp_path: Path, standin: TwilioStandIn) -> None:
    number_sid = the_number(standin)["sid"]
    service_sid = standin.phone_config.add_service(ACCOUNT_SID, number_sid, use_inbound_webhook_on_number=True)
    app = line_app(tmp_path, standin)
    assert setup(app, "--messaging-service", service_sid).exit_code == 0
    check = setup(app, "--check", "--messaging-service", service_sid)
    assert check.exit_code == 0, check.output
    assert standin.phone_config.services[service_sid]["use_inbound_webhook_on_number"] is False
    assert standin.phone_config.service_numbers[service_sid] == [number_sid]  # added once only


def test_a_number_whose_texts_a_service_handles_needs_the_option(tmp_path: Path, standin: TwilioStandIn) -> None:
    service_sid = "MG" + "a" * 32
    the_number(standin).update(sms_application_sid=service_sid)
    result = setup(line_app(tmp_path, standin))
    assert result.exit_code == 2
    assert f"run again with --messaging-service {service_sid}" in result.output
    assert standin.phone_config.changes == []


@pytest.mark.parametrize(
    ("overrides", "args", "says"),
    [
        ({"LINE_NUMBER": "+15557654321"}, [], "The number +15557654321 is not one of this Twilio account's numbers"),
        ({"TWILIO_AUTH_TOKEN": "a-wrong-token"}, [], "Twilio refused the account's credentials (HTTP 401)"),
        ({"TWILIO_ACCOUNT_SID": "AC" + "6" * 32}, [], "Twilio refused the account's credentials"),
        ({}, ["--messaging-service", "MG" + "0" * 32], f"Twilio has no Messaging Service MG{'0' * 32} on this"),
        ({}, ["--messaging-service", "MG123"], "'MG123' is not a Messaging Service SID"),
        ({}, ["--number", "555-1234"], "'555-1234' is not an E.164 number"),
        ({"LINE_NUMBER": ""}, [], "Set LINE_NUMBER to the line's Twilio number"),
        ({"TWILIO_ACCOUNT_SID": ""}, [], "Set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
        ({}, ["--fallback-base-url", "ftp://x.example.org"], "ftp://x.example.org is not a base URL"),
    ],
)
def test_problems_are_said_plainly_with_exit_2(
    tmp_path: Path, standin: TwilioStandIn, overrides: dict[str, str], args: list[str], says: str
) -> None:
    result = setup(line_app(tmp_path, standin, **overrides), *args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert AUTH_TOKEN not in result.output and "a-wrong-token" not in result.output
    assert standin.phone_config.changes == []


def test_an_unreachable_api_is_said_plainly(tmp_path: Path, standin: TwilioStandIn) -> None:
    result = setup(line_app(tmp_path, standin, TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}"))
    assert result.exit_code == 2
    assert "Could not reach Twilio's API at 127.0.0.1 for phone number +15559870000 (ConnectionError)." in (
        result.output
    )


def test_a_base_url_twilio_cannot_reach_is_refused(tmp_path: Path) -> None:
    app = create_app(
        app_config(
            tmp_path, TWILIO_ACCOUNT_SID=ACCOUNT_SID, LINE_NUMBER=LINE_NUMBER, PUBLIC_BASE_URL="http://127.0.0.1:5000"
        )
    )
    result = setup(app, "--check")
    assert result.exit_code == 2
    assert "Twilio can only reach the line at a public https address, not http://127.0.0.1:5000." in result.output


@pytest.mark.slow
def test_as_an_operator_runs_it(tmp_path: Path, standin: TwilioStandIn) -> None:
    """`flask --app ivr twilio-setup` in its own process, configured by the environment as on a server."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_BASE_URL": BASE,
        "SECRET_KEY": "operator-secret",
        "LINE_NUMBER": LINE_NUMBER,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'careline.sqlite3'}",
        "TWILIO_API_BASE_URL": standin.base_url,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "flask", "--app", "ivr", "twilio-setup", *args]
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(command, env=environ, cwd=root, capture_output=True, text=True, timeout=120, check=False)

    assert run("--check").returncode == 1
    done = run()
    assert done.returncode == 0, done.stderr
    assert run("--check").returncode == 0
    for output in (done.stdout, done.stderr):
        assert AUTH_TOKEN not in output and "operator-secret" not in output
