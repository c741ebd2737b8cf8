"""A stand-in for Twilio's REST API on 127.0.0.1, reached through the real `twilio` client.

It serves what the line uses: send a message (POST /2010-04-01/Accounts/<sid>/Messages.json, a
Message resource with 201, or Twilio's error 21610 for a number given as unreachable) and fetch a
recording's MP3 (GET .../Recordings/<sid>.mp3, byte ranges too; 404 once deleted). It checks HTTP
basic auth like Twilio and binds to the loopback address only.

Two ways to run it, one server:
- in the test's process: `with twilio_standin(ACCOUNT_SID, AUTH_TOKEN) as standin:` and read
  `standin.messages`, `standin.requests`;
- as its own process, for a line in another process:
  `python -m ivr.phone.twilio_standin ACCOUNT_SID AUTH_TOKEN [UNREACHABLE_NUMBER ...]` prints
  `PORT <n>`; GET /_standin/messages lists what it received, POST /_standin/reset forgets it.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages\.json$")
RECORDING_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Recordings/(?P<recording>RE[0-9a-f]{32})\.mp3$")


def message_resource(account_sid: str, sid: str, form: dict[str, str]) -> dict[str, str | None]:
    """The Message resource Twilio answers a create with (the fields the `twilio` client reads)."""
    return {
        "sid": sid,
        "account_sid": account_sid,
        "to": form.get("To"),
        "from": form.get("From"),
        "body": form.get("Body"),
        "status": "queued",
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
    }


def silent_mp3(seconds: float = 1.0) -> bytes:
    """A valid MP3 of silence: MPEG-1 Layer III frames, 128 kbit/s, 44.1 kHz, mono, with empty granules."""
    header = bytes([0xFF, 0xFB, 0x90, 0xC4])
    frame = header + bytes(417 - len(header))
    return frame * max(1, round(seconds * 44100 / 1152))


@dataclass
class TwilioStandIn:
    """What the stand-in knows and what it was asked: the account it serves and every request it received."""

    account_sid: str
    auth_token: str
    #: Numbers that opted out at the carrier: texts to them are refused with Twilio's error 21610.
    unreachable: frozenset[str] = frozenset()
    audio: bytes = field(default_factory=silent_mp3)
    #: Every API request, as (method, path).
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: Every message create (refused ones too): its path, form, Content-Type and User-Agent.
    received: list[dict[str, Any]] = field(default_factory=list)
    #: Recording SIDs Twilio no longer has (deleted): their media is a 404.
    deleted: set[str] = field(default_factory=set)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The To, From and Body of every message the line asked to send."""
        with self.lock:
            forms = [record["form"] for record in self.received]
        return [{name: form.get(name, "") for name in ("To", "From", "Body")} for form in forms]

    def authorized(self, header: str | None) -> bool:
        """Whether the Authorization header holds this account's SID and auth token."""
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, standin: TwilioStandIn) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.standin = standin


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet: test output stays readable
        return

    def _reply(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._reply(status, json.dumps(payload).encode(), "application/json")

    def _error(self, status: int, code: int, message: str) -> None:
        self._json(status, {"code": code, "message": message, "status": status})

    def do_POST(self) -> None:
        standin = self.server.standin
        path = urlsplit(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        if path == "/_standin/reset":
            with standin.lock:
                standin.received.clear()
                standin.requests.clear()
            return self._json(200, {})
        standin.requests.append(("POST", path))
        if not standin.authorized(self.headers.get("Authorization")):
            return self._error(401, 20003, "Authenticate")
        match = MESSAGES_PATH.match(path)
        if not match or match["sid"] != standin.account_sid:
            return self._error(404, 20404, "Not found")
        form = {key: values[0] for key, values in parse_qs(raw, keep_blank_values=True).items()}
        record = {
            "path": path,
            "form": form,
            "content_type": self.headers.get("Content-Type", ""),
            "user_agent": self.headers.get("User-Agent", ""),
        }
        with standin.lock:
            standin.received.append(record)
        if form.get("To") in standin.unreachable:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        self._json(201, message_resource(standin.account_sid, "SM" + uuid.uuid4().hex, form))

    def do_GET(self) -> None:
        standin = self.server.standin
        path = urlsplit(self.path).path
        if path == "/_standin/messages":
            with standin.lock:
                return self._json(200, standin.received)
        standin.requests.append(("GET", path))
        if not standin.authorized(self.headers.get("Authorization")):
            return self._error(401, 20003, "Authenticate")
        match = RECORDING_PATH.match(path)
        if not match or match["sid"] != standin.account_sid or match["recording"] in standin.deleted:
            return self._error(404, 20404, "The requested resource was not found")
        body = standin.audio
        wanted = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if wanted:
            start = int(wanted.group(1))
            end = min(int(wanted.group(2) or len(body) - 1), len(body) - 1)
            extra = {"Content-Range": f"bytes {start}-{end}/{len(body)}", "Accept-Ranges": "bytes"}
            return self._reply(206, body[start : end + 1], "audio/mpeg", extra)
        self._reply(200, body, "audio/mpeg", {"Accept-Ranges": "bytes"})


@contextmanager
def twilio_standin(account_sid: str, auth_token: str, unreachable: Iterable[str] = ()) -> Iterator[TwilioStandIn]:
    """Serve the stand-in on a free 127.0.0.1 port, in a thread, for the length of the block."""
    standin = TwilioStandIn(account_sid, auth_token, frozenset(unreachable))
    server = _Server(standin)
    standin.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    """Serve until killed, as its own process; print the port first."""
    account_sid, auth_token, *unreachable = sys.argv[1:]
    server = _Server(TwilioStandIn(account_sid, auth_token, frozenset(unreachable)))
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
