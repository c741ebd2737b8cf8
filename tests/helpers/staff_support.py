"""Helpers for the staff tests: a line with a frozen clock, Twilio's Dial and Record callbacks, a real HTTP
server for the app, and signing in to the staff page (Twilio's REST API: ivr/phone/twilio_standin.py)."""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from ivr import create_app
from ivr.services import services
from ivr.storage import as_utc, callback_requests
from tests.conftest import app_config
from tests.helpers.support import Call, twilio_post

LA = ZoneInfo("America/Los_Angeles")
#: A Wednesday morning, an evening, a Saturday, and Thanksgiving Day (a holiday in the tests).
OPEN_TIME = dt.datetime(2026, 11, 25, 10, 0, tzinfo=LA)
EVENING = dt.datetime(2026, 11, 25, 19, 30, tzinfo=LA)
SATURDAY = dt.datetime(2026, 11, 28, 11, 0, tzinfo=LA)
HOLIDAY = dt.datetime(2026, 11, 26, 10, 0, tzinfo=LA)

STAFF_PHONE = "+15550000001"
STAFF_SIP = "sip:nurse@careline.sip.twilio.com"
ACCOUNT_SID = "AC" + "0" * 31 + "1"
STAFF_PASSWORD = "correct horse battery staple"


def staff_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A test app with staff numbers, weekday hours and a holiday."""
    config = app_config(
        tmp_path,
        STAFF_NUMBERS=f"{STAFF_PHONE},{STAFF_SIP}",
        STAFF_HOURS="Mon-Fri 08:30-17:00",
        STAFF_TIMEZONE="America/Los_Angeles",
        STAFF_HOLIDAYS="2026-11-26",
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        NOW=OPEN_TIME,
    )
    config.update(overrides)
    if config.get("PROMPTS_DIR"):  # as app_config: the app then reads those prompts, not the session's
        config.pop("CONTENT", None)
    return config


def recording_sid(number: int) -> str:
    return f"RE{number:032x}"


def recording_url(number: int) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid(number)}"


@dataclass
class StaffCall(Call):
    """A call that can also play out Twilio's side of a <Dial> and a <Record>."""

    legs: int = 0

    def staff_leg(self) -> str:
        """A new CallSid for a staff member's leg of a <Dial>."""
        self.legs += 1
        return f"CA{self.legs:032x}"

    def whisper(self, leg: str, path: str) -> Any:
        """Twilio asks the <Number url> for what the answering staff member hears."""
        return self.post(path, CallSid=leg, ParentCallSid=self.call_sid, Direction="outbound-dial", To=STAFF_PHONE)

    def staff_presses(self, leg: str, digits: str) -> Any:
        """The staff member presses keys on the whisper's <Gather>."""
        gather = self.last.find("Gather") if self.last is not None else None
        assert gather is not None, "the whisper has no Gather"
        return self.post(
            gather.attrib["action"], CallSid=leg, ParentCallSid=self.call_sid, Direction="outbound-dial", Digits=digits
        )

    def dial_ends(self, action: str, status: str, leg: str = "") -> list[str]:
        """Twilio requests the <Dial action> with the outcome."""
        extra = {"DialCallStatus": status}
        if leg:
            extra["DialCallSid"] = leg
            extra["DialCallDuration"] = "30" if status == "completed" else "0"
        self.post(action, **extra)
        return self.heard

    def record_ends(self, action: str, number: int, seconds: int, digits: str = "#") -> list[str]:
        """Twilio requests the <Record action> after a message with sound."""
        self.post(
            action,
            RecordingUrl=recording_url(number),
            RecordingSid=recording_sid(number),
            RecordingDuration=str(seconds),
            Digits=digits,
        )
        return self.heard

    def recording_status(self, callback: str, number: int, seconds: int, status: str = "completed") -> None:
        """Twilio's recordingStatusCallback, which comes separately from the call (and may come twice)."""
        params = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": self.call_sid,
            "RecordingSid": recording_sid(number),
            "RecordingStatus": status,
            "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
        }
        if status == "completed":
            params.update(RecordingUrl=recording_url(number), RecordingDuration=str(seconds))
        response = twilio_post(self.client, callback, params)
        assert response.status_code == 200, response.data


# -- the line over real HTTP ----------------------------------------------------------------------


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve `app` with a real threaded HTTP server on a free 127.0.0.1 port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- the staff page ---------------------------------------------------------------------------------------


def create_staff(app: Flask, username: str = "nurse.ana", password: str = STAFF_PASSWORD) -> None:
    """Create an account the way an administrator does: `flask --app ivr create-staff NAME`
    (which hashes the password at full strength: ~130 ms of CPU; `add_staff` is the quick way)."""
    result = app.test_cli_runner().invoke(args=["create-staff", username], input=f"{password}\n{password}\n")
    assert result.exit_code == 0, result.output


#: The scrypt cost of the accounts `add_staff` makes: 2^10 rather than werkzeug's 2^15 (what the line
#: stores, `ivr.web.staff.hash_password`), so making the hash and checking it at every sign-in takes
#: ~4 ms instead of ~130 ms (a test signs in up to a dozen times; at full strength the staff tests spent
#: 18 s of `make test-fast`'s CPU in scrypt). The sign-in reads the cost from the stored hash, so it
#: runs the same code; `create_staff` and tests/test_staff_auth.py cover the full-strength hash.
TEST_SCRYPT = "scrypt:1024:8:1"


@functools.cache
def quick_password_hash(password: str) -> str:
    """A scrypt hash of `password` at the cost TEST_SCRYPT, made once per test session."""
    return generate_password_hash(password, method=TEST_SCRYPT)


def add_staff(app: Flask, username: str = "nurse.ana", password: str = STAFF_PASSWORD) -> None:
    """A staff account for a test about what staff do once signed in: stored directly, with a
    quick hash of `password` (see TEST_SCRYPT). `create_staff` makes one as an administrator does."""
    assert services(app).storage.create_staff_user(username, quick_password_hash(password))


def csrf_token(html: str) -> str:
    """The CSRF token in a staff page's forms."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: FlaskClient, username: str = "nurse.ana", password: str = STAFF_PASSWORD) -> Any:
    """Sign in through the login form, token and all."""
    token = csrf_token(client.get("/staff/login").get_data(as_text=True))
    return client.post("/staff/login", data={"username": username, "password": password, "csrf_token": token})


def make_app(tmp_path: Path, **overrides: Any) -> Flask:
    return create_app(staff_config(tmp_path, **overrides))


#: The caller whose requests the staff page tests put in the queue.
PATIENT = "+15551230001"


def add_request(app: Flask, **values: object) -> int:
    """Put a call-back request straight into `app`'s queue (an open voice message from PATIENT about
    hospice at OPEN_TIME unless `values` say otherwise); its id."""
    row: dict[str, object] = {
        "created_at": OPEN_TIME,
        "channel": "voice",
        "kind": "voicemail",
        "phone": PATIENT,
        "topic": "hospice",
        "lang": "en",
        "urgent": False,
        "note": "",
        "status": "open",
    }
    row.update(values)
    row["created_at"] = as_utc(row["created_at"])  # type: ignore[arg-type]  # as Storage keeps every time
    with app.app_context(), services().storage.engine.begin() as connection:
        return int(connection.execute(callback_requests.insert().values(**row)).inserted_primary_key[0])
