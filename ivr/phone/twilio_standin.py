"""A stand-in for Twilio's REST API on 127.0.0.1, reached through the real `twilio` client.

It serves what the line uses: send a message (POST /2010-04-01/Accounts/<sid>/Messages.json, a
Message resource with 201, or Twilio's error 21610 for a number given as unreachable) and fetch a
recording's MP3 (GET .../Recordings/<sid>.mp3, byte ranges too; 404 once deleted). For
`flask --app ivr twilio-setup` it also keeps the account's phone numbers (IncomingPhoneNumbers list,
fetch and update) and Messaging Services (fetch, update, and their PhoneNumbers list and add): see
PhoneConfig. It checks HTTP basic auth like Twilio and binds to the loopback address only.

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
from collections.abc import Callable, Iterable, Iterator
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
    #: Told of each message create ("message", its record and "refused") and recording fetched ("recording",
    #: its "sid"): `make run` prints them (ivr/local_line.py).
    report: Callable[[str, dict[str, Any]], None] | None = None

    def tell(self, kind: str, details: dict[str, Any]) -> None:
        """Pass what was received to `report`, if any."""
        if self.report is not None:
            self.report(kind, details)

    #: The account's phone numbers and Messaging Services (twilio-setup; see PhoneConfig below).
    phone_config: PhoneConfig = field(default_factory=lambda: PhoneConfig())

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


# -- Phone numbers and Messaging Services: what `flask --app ivr twilio-setup` reads and changes ---------------

NUMBERS_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/IncomingPhoneNumbers\.json$")
NUMBER_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/IncomingPhoneNumbers/(?P<number>PN\w+)\.json$")
SERVICE_PATH = re.compile(r"^/v1/Services/(?P<service>MG\w+)$")
SERVICE_NUMBERS_PATH = re.compile(r"^/v1/Services/(?P<service>MG\w+)/PhoneNumbers$")

#: The IncomingPhoneNumber fields an update may change, as Twilio names them (VoiceUrl is voice_url).
NUMBER_FIELDS = (
    "friendly_name",
    "voice_url",
    "voice_method",
    "voice_fallback_url",
    "voice_fallback_method",
    "status_callback",
    "status_callback_method",
    "sms_url",
    "sms_method",
    "sms_fallback_url",
    "sms_fallback_method",
    "voice_application_sid",
    "sms_application_sid",
    "trunk_sid",
)
#: The Messaging Service fields an update may change.
SERVICE_FIELDS = (
    "friendly_name",
    "inbound_request_url",
    "inbound_method",
    "fallback_url",
    "fallback_method",
    "status_callback",
    "use_inbound_webhook_on_number",
)
_METHOD_FIELDS = {"voice_method", "voice_fallback_method", "status_callback_method", "sms_method"}
_METHOD_FIELDS |= {"sms_fallback_method", "inbound_method", "fallback_method"}


def form_name(field_name: str) -> str:
    """Twilio's form parameter for a resource field: voice_fallback_url is VoiceFallbackUrl."""
    return "".join(part.capitalize() for part in field_name.split("_"))


@dataclass
class PhoneConfig:
    """The account's phone numbers and Messaging Services, as Twilio keeps them, and every change asked."""

    #: IncomingPhoneNumber resources by SID (PN...).
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Messaging Service resources by SID (MG...).
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The phone number SIDs in each Messaging Service.
    service_numbers: dict[str, list[str]] = field(default_factory=dict)
    #: Every update or create: (path, form).
    changes: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def add_number(self, account_sid: str, phone_number: str, **fields: Any) -> str:
        """A number on the account as Twilio gives a new one (methods POST, no URLs); its SID."""
        sid = "PN" + uuid.uuid4().hex
        resource: dict[str, Any] = {name: "" for name in NUMBER_FIELDS}
        resource.update({name: "POST" for name in NUMBER_FIELDS if name in _METHOD_FIELDS})
        resource.update(voice_application_sid=None, sms_application_sid=None, trunk_sid=None)
        resource.update(
            sid=sid,
            account_sid=account_sid,
            phone_number=phone_number,
            friendly_name=phone_number,
            api_version="2010-04-01",
            uri=f"/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json",
        )
        resource.update(fields)
        self.numbers[sid] = resource
        return sid

    def add_service(self, account_sid: str, *numbers: str, **fields: Any) -> str:
        """A Messaging Service with the given number SIDs in it (inbound to the numbers' own URLs); its SID."""
        sid = "MG" + uuid.uuid4().hex
        resource: dict[str, Any] = {name: None for name in SERVICE_FIELDS}
        resource.update(inbound_method="POST", fallback_method="POST", use_inbound_webhook_on_number=False)
        resource.update(sid=sid, account_sid=account_sid, friendly_name="CareLine", url=f"/v1/Services/{sid}")
        resource.update(fields)
        self.services[sid] = resource
        self.service_numbers[sid] = list(numbers)
        return sid

    def number(self, phone_number: str) -> dict[str, Any]:
        """The resource of one number, by its E.164 form."""
        return next(resource for resource in self.numbers.values() if resource["phone_number"] == phone_number)


def _changed_fields(names: tuple[str, ...], form: dict[str, str]) -> dict[str, Any] | str:
    """The fields an update form sets, or the reason Twilio would refuse it."""
    changed: dict[str, Any] = {}
    for name in names:
        if form_name(name) not in form:
            continue
        value: Any = form[form_name(name)]
        if name in _METHOD_FIELDS and value not in ("GET", "POST"):
            return f"{form_name(name)} must be GET or POST"
        if name == "use_inbound_webhook_on_number":
            value = value == "true"
        changed[name] = value
    return changed


def phone_config_request(
    standin: TwilioStandIn, method: str, path: str, query: dict[str, str], form: dict[str, str]
) -> tuple[int, object] | None:
    """Twilio's answer (status, JSON) to a phone-number or Messaging Service request; None for other paths."""
    config = standin.phone_config
    not_found = (404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
    if match := NUMBERS_PATH.match(path):
        if method != "GET" or match["sid"] != standin.account_sid:
            return not_found
        with standin.lock:
            found = [dict(r) for r in config.numbers.values() if r["phone_number"] == query.get("PhoneNumber", "")]
        if "PhoneNumber" not in query:
            found = [dict(resource) for resource in config.numbers.values()]
        page = {"page": 0, "page_size": int(query.get("PageSize", 50)), "next_page_uri": None, "uri": path}
        return 200, {"incoming_phone_numbers": found, **page}
    if match := NUMBER_PATH.match(path):
        resource = config.numbers.get(match["number"])
        if match["sid"] != standin.account_sid or resource is None:
            return not_found
        return _update(standin, resource, NUMBER_FIELDS, method, path, form)
    if match := SERVICE_PATH.match(path):
        service = config.services.get(match["service"])
        if service is None or service["account_sid"] != standin.account_sid:
            return not_found
        return _update(standin, service, SERVICE_FIELDS, method, path, form)
    if match := SERVICE_NUMBERS_PATH.match(path):
        service = config.services.get(match["service"])
        if service is None or service["account_sid"] != standin.account_sid:
            return not_found
        members = config.service_numbers[match["service"]]
        if method == "POST":
            number = config.numbers.get(form.get("PhoneNumberSid", ""))
            if number is None:
                return 400, {"code": 21450, "message": "Phone Number not found", "status": 400}
            with standin.lock:
                config.changes.append((path, form))
                members.append(number["sid"])
            return 201, _service_number(service, number)
        listed = [_service_number(service, config.numbers[sid]) for sid in members]
        meta = {"page": 0, "page_size": 50, "key": "phone_numbers", "next_page_url": None, "url": path}
        return 200, {"phone_numbers": listed, "meta": meta}
    return None


def _update(
    standin: TwilioStandIn,
    resource: dict[str, Any],
    names: tuple[str, ...],
    method: str,
    path: str,
    form: dict[str, str],
) -> tuple[int, object]:
    """Fetch (GET) or update (POST) one resource."""
    if method == "POST":
        changed = _changed_fields(names, form)
        if isinstance(changed, str):
            return 400, {"code": 21403, "message": changed, "status": 400}
        with standin.lock:
            standin.phone_config.changes.append((path, form))
            resource.update(changed)
    with standin.lock:
        return 200, dict(resource)


def _service_number(service: dict[str, Any], number: dict[str, Any]) -> dict[str, Any]:
    """A number as a Messaging Service's PhoneNumbers list gives it."""
    return {
        "sid": number["sid"],
        "account_sid": number["account_sid"],
        "service_sid": service["sid"],
        "phone_number": number["phone_number"],
        "country_code": "US",
        "capabilities": ["SMS", "Voice"],
    }


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
        if self._phone_config_reply("POST", raw):
            return
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
        standin.tell("message", {**record, "refused": "21610" if form.get("To") in standin.unreachable else ""})
        if form.get("To") in standin.unreachable:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        self._json(201, message_resource(standin.account_sid, "SM" + uuid.uuid4().hex, form))

    def _phone_config_reply(self, method: str, raw: str) -> bool:
        """Answer a phone-number or Messaging Service request (twilio-setup); False for any other path."""
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        form = {key: values[0] for key, values in parse_qs(raw, keep_blank_values=True).items()}
        answer = phone_config_request(self.server.standin, method, parts.path, query, form)
        if answer is None:
            return False
        status, payload = answer
        self._json(status, payload)
        return True

    def do_GET(self) -> None:
        standin = self.server.standin
        path = urlsplit(self.path).path
        if path == "/_standin/messages":
            with standin.lock:
                return self._json(200, standin.received)
        standin.requests.append(("GET", path))
        if not standin.authorized(self.headers.get("Authorization")):
            return self._error(401, 20003, "Authenticate")
        if self._phone_config_reply("GET", ""):
            return
        match = RECORDING_PATH.match(path)
        if not match or match["sid"] != standin.account_sid or match["recording"] in standin.deleted:
            return self._error(404, 20404, "The requested resource was not found")
        standin.tell("recording", {"sid": match["recording"]})
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
    # shutdown() waits for the serving loop's next poll: 10 ms (the stand-in serves a test at a time; tests
    # start and stop ~60 of them in `make test-fast`, at 50 ms that was ~1.5 s of waiting).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
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
