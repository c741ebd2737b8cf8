"""Helpers for the staff tests: a line with a frozen clock, Twilio's Dial and Record callbacks, a stand-in
for Twilio's REST API on 127.0.0.1, a real HTTP server for the app, and signing in to the staff page."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from ivr import create_app
from tests.conftest import app_config
from tests.helpers.support import Call, twilio_post
from tests.helpers.twilio_api_standin import message_resource

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


# -- a stand-in for Twilio's REST API ---------------------------------------------------------------


def silent_mp3(seconds: float = 1.0) -> bytes:
    """A valid MP3 of silence: MPEG-1 Layer III frames, 128 kbit/s, 44.1 kHz, mono, with empty granules."""
    header = bytes([0xFF, 0xFB, 0x90, 0xC4])
    frame = header + bytes(417 - len(header))
    return frame * max(1, round(seconds * 44100 / 1152))


@dataclass
class TwilioStandIn:
    """Twilio's REST API as the line uses it: send a message, fetch a recording's MP3. Checks account auth."""

    account_sid: str
    auth_token: str
    audio: bytes = field(default_factory=silent_mp3)
    messages: list[dict[str, str]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: Recording SIDs Twilio no longer has (deleted): their media is a 404.
    deleted: set[str] = field(default_factory=set)
    base_url: str = ""

    def authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"


def _handler(standin: TwilioStandIn) -> type[BaseHTTPRequestHandler]:
    messages_path = re.compile(r"^/2010-04-01/Accounts/(AC\w+)/Messages\.json$")
    recording_path = re.compile(r"^/2010-04-01/Accounts/(AC\w+)/Recordings/(RE[0-9a-f]{32})\.mp3$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _reply(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            body = json.dumps({"code": 20000 + status, "message": message, "status": status}).encode()
            self._reply(status, body, "application/json")

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            standin.requests.append(("POST", path))
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if not standin.authorized(self.headers.get("Authorization")):
                return self._error(401, "Authenticate")
            match = messages_path.match(path)
            if not match or match.group(1) != standin.account_sid:
                return self._error(404, "Not found")
            sid = f"SM{len(standin.messages) + 1:032x}"
            standin.messages.append(
                {"To": form.get("To", ""), "From": form.get("From", ""), "Body": form.get("Body", "")}
            )
            payload = message_resource(standin.account_sid, sid, form)
            self._reply(201, json.dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            standin.requests.append(("GET", path))
            if not standin.authorized(self.headers.get("Authorization")):
                return self._error(401, "Authenticate")
            match = recording_path.match(path)
            if not match or match.group(1) != standin.account_sid or match.group(2) in standin.deleted:
                return self._error(404, "The requested resource was not found")
            body = standin.audio
            wanted = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
            if wanted:
                start = int(wanted.group(1))
                end = min(int(wanted.group(2) or len(body) - 1), len(body) - 1)
                extra = {"Content-Range": f"bytes {start}-{end}/{len(body)}", "Accept-Ranges": "bytes"}
                return self._reply(206, body[start : end + 1], "audio/mpeg", extra)
            self._reply(200, body, "audio/mpeg", {"Accept-Ranges": "bytes"})

    return Handler


@contextmanager
def twilio_standin(account_sid: str, auth_token: str) -> Iterator[TwilioStandIn]:
    """Serve the stand-in on a free 127.0.0.1 port for the length of the block."""
    standin = TwilioStandIn(account_sid, auth_token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    standin.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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
    """Create an account the way an administrator does: `flask --app ivr create-staff NAME`."""
    result = app.test_cli_runner().invoke(args=["create-staff", username], input=f"{password}\n{password}\n")
    assert result.exit_code == 0, result.output


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
