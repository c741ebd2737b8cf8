"""`make serve`: gunicorn settings from the environment, and a graceful reload that never takes the line down."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from ivr.config import ConfigError, serving_settings
from tests.servers import LineServer, http_post, line_environment
from tests.support import PUBLIC_BASE_URL, parse_twiml, sign, spoken

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
    environ = line_environment(f"sqlite:///{tmp_path / 'line.sqlite3'}", PROMPTS_DIR=str(prompts), WEB_CONCURRENCY="2")
    with LineServer(environ, tmp_path / "line.log") as server:
        server.wait_until_ready()
        assert "Welcome to CareLine." in _greeting(server)

        # An edited prompt is heard after SIGHUP, with no restart.
        voice_file.write_text(original.replace("Welcome to CareLine.", "Hello from CareLine."))
        server.signal(signal.SIGHUP)
        _wait_for(lambda: "Hello from CareLine." in _greeting(server), "the edited greeting", server)

        # A broken prompt file is refused: the error is logged and the line keeps its running words.
        voice_file.write_text(original.replace("greeting:", "greting:"))
        server.signal(signal.SIGHUP)
        refused = "Reload refused, still serving the running ones: ContentError"
        _wait_for(lambda: refused in server.log(), "the refused reload", server)
        assert "Hello from CareLine." in _greeting(server)
        assert server.process.poll() is None
