"""`make serve`: gunicorn settings from the environment, and a graceful reload that never takes the line down."""

from __future__ import annotations

import shutil
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from ivr.config import ConfigError, serving_settings
from tests.helpers.databases import upgraded
from tests.helpers.servers import LineServer, http_post, line_environment
from tests.helpers.support import PUBLIC_BASE_URL, parse_twiml, sign, spoken

ROOT = Path(__file__).resolve().parent.parent


def test_serving_defaults_follow_the_cpu_count() -> None:
    assert serving_settings({}, cpu_count=2) == {"host": "127.0.0.1", "port": 5000, "workers": 5}
    assert serving_settings({}, cpu_count=8)["workers"] == 17


def test_serving_settings_come_from_the_environment() -> None:
    settings = serving_settings({"HOST": "0.0.0.0", "PORT": "8080", "WEB_CONCURRENCY": "3"}, cpu_count=2)
    assert settings == {"host": "0.0.0.0", "port": 8080, "workers": 3}


@pytest.mark.parametrize(
    ("name", "value"), [("PORT", "http"), ("PORT", "70000"), ("WEB_CONCURRENCY", "0"), ("WEB_CONCURRENCY", "many")]
)
def test_a_bad_serving_setting_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        serving_settings({name: value})


def _greeting(server: LineServer) -> str:
    form = {"CallSid": "CA0000000000000000000000000000000F", "From": "+15551230001", "To": "+15559870000"}
    answer = http_post(server.port, "/voice", form, {"X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/voice", form)})
    assert answer.status_code == 200
    return " ".join(spoken(parse_twiml(answer.data)))


def _wait_for(condition, what: str, server: LineServer, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s:\n{server.log()}")


@pytest.mark.slow
def test_sighup_reloads_edited_prompts_and_survives_a_broken_one(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    voice_file = prompts / "en" / "voice.yaml"
    original = voice_file.read_text()
    database = upgraded(f"sqlite:///{tmp_path / 'line.sqlite3'}")
    environ = line_environment(database, PROMPTS_DIR=str(prompts), WEB_CONCURRENCY="2")
    with LineServer(environ, tmp_path / "line.log") as server:
        server.wait_until_ready()
        assert "Welcome to CareLine," in _greeting(server)

        # An edited prompt is heard after SIGHUP, with no restart.
        voice_file.write_text(original.replace("Welcome to CareLine,", "Hello from CareLine."))
        server.signal(signal.SIGHUP)
        _wait_for(lambda: "Hello from CareLine." in _greeting(server), "the edited greeting", server)

        # A broken prompt file is refused: the error is logged and the line keeps its running words.
        voice_file.write_text(original.replace("greeting:", "greting:"))
        server.signal(signal.SIGHUP)
        refused = "Reload refused, still serving the running ones: ContentError"
        _wait_for(lambda: refused in server.log(), "the refused reload", server)
        assert "Hello from CareLine." in _greeting(server)
        assert server.process.poll() is None


def _raw_post(port: int, path: str, head: list[str], body: bytes) -> tuple[int, bytes]:
    """Send a hand-made HTTP request (to control Content-Length and chunking) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *head, "", ""])).encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


@pytest.mark.slow
def test_gunicorn_bodies_are_read_exactly_chunked_or_not(tmp_path: Path) -> None:
    """The line reads a webhook's form straight from gunicorn's reader, Content-Length bytes of it; a
    chunked body (no length) still goes through werkzeug's limited stream; too much is refused."""
    form = {"CallSid": "CA" + "1" * 32, "From": "+15551230000", "To": "+15559870000", "CallStatus": "ringing"}
    body = urlencode(form).encode()
    signature = sign(PUBLIC_BASE_URL + "/voice", form)
    common = [
        "Content-Type: application/x-www-form-urlencoded",
        f"X-Twilio-Signature: {signature}",
        "Connection: close",
    ]
    database = upgraded(f"sqlite:///{tmp_path / 'line.sqlite3'}")
    with LineServer(line_environment(database), tmp_path / "line.log") as server:
        server.wait_until_ready()
        status, answer = _raw_post(server.port, "/voice", [*common, f"Content-Length: {len(body)}"], body)
        assert status == 200 and b"<Gather" in answer
        chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        status, answer = _raw_post(server.port, "/voice", [*common, "Transfer-Encoding: chunked"], chunked)
        assert status == 200 and b"<Gather" in answer
        # A tampered body of the announced length is read as sent, and refused.
        tampered = body.replace(b"ringing", b"ringinG")
        status, _ = _raw_post(server.port, "/voice", [*common, f"Content-Length: {len(tampered)}"], tampered)
        assert status == 403
        big = body + b"&Padding=" + b"x" * (70 * 1024)
        status, _ = _raw_post(server.port, "/voice", [*common, f"Content-Length: {len(big)}"], big)
        assert status == 413
        # Chunked, nothing says the size up front: werkzeug's stream stops at the limit, and the form
        # cut there cannot match its signature.
        big_chunked = f"{len(big):x}\r\n".encode() + big + b"\r\n0\r\n\r\n"
        status, _ = _raw_post(server.port, "/voice", [*common, "Transfer-Encoding: chunked"], big_chunked)
        assert status == 403
