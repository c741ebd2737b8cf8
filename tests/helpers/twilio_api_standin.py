"""A stand-in for Twilio's Messages API on 127.0.0.1, run as its own process by the tests.

`python tests/twilio_api_standin.py ACCOUNT_SID AUTH_TOKEN [UNREACHABLE_NUMBER ...]` serves on a free
port and prints `PORT <n>`. It checks HTTP basic auth like Twilio, answers POST
/2010-04-01/Accounts/<sid>/Messages.json with a Message resource (201), or with Twilio's error 21610
for the numbers given as unreachable, and lists what it received at GET /_standin/messages
(POST /_standin/reset forgets it). It binds to the loopback address only.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json$")


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


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, account_sid: str, auth_token: str, unreachable: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.account_sid = account_sid
        self.expected_auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.unreachable = unreachable
        self.received: list[dict[str, object]] = []
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, format: str, *args: object) -> None:  # quiet: test output stays readable
        return

    def reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/_standin/messages":
            with self.server.lock:
                self.reply(200, self.server.received)
        else:
            self.reply(404, {"code": 20404, "message": "Not found", "status": 404})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode()
        if self.path == "/_standin/reset":
            with self.server.lock:
                self.server.received.clear()
            self.reply(200, {})
            return
        match = MESSAGES_PATH.match(self.path)
        if not match:
            self.reply(404, {"code": 20404, "message": "Not found", "status": 404})
            return
        if self.headers.get("Authorization") != self.server.expected_auth or match["sid"] != self.server.account_sid:
            self.reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        form = {key: values[0] for key, values in parse_qs(raw, keep_blank_values=True).items()}
        record: dict[str, object] = {
            "path": self.path,
            "form": form,
            "content_type": self.headers.get("Content-Type", ""),
            "user_agent": self.headers.get("User-Agent", ""),
        }
        with self.server.lock:
            self.server.received.append(record)
        if form.get("To") in self.server.unreachable:
            self.reply(400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400})
            return
        self.reply(201, message_resource(self.server.account_sid, "SM" + uuid.uuid4().hex, form))


def main() -> None:
    account_sid, auth_token, *unreachable = sys.argv[1:]
    server = StandIn(account_sid, auth_token, set(unreachable))
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
