"""LOG_FORMAT=json: one JSON object a line from gunicorn, its access log and the line, with nothing personal."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ivr import create_app
from ivr.config import ConfigError, parse_settings
from ivr.logs import JsonFormatter
from tests.conftest import app_config
from tests.helpers.servers import LineServer, http_post, line_environment
from tests.helpers.support import CALLER, LINE_NUMBER, PUBLIC_BASE_URL, sign

ROOT = Path(__file__).resolve().parent.parent


def record(message: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("ivr.test", logging.WARNING, __file__, 10, message, args, exc_info)  # type: ignore[arg-type]


def test_a_record_is_one_line_of_json() -> None:
    line = JsonFormatter().format(record("Spooled %d records", 3))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "Spooled 3 records"
    assert entry["level"] == "WARNING" and entry["logger"] == "ivr.test"
    assert entry["time"].endswith("+00:00")


def test_an_error_gives_its_type_and_place_never_its_text() -> None:
    try:
        raise ValueError(f"bad row for {CALLER}: my scan results")
    except ValueError:
        line = JsonFormatter().format(record("Failed", exc_info=sys.exc_info()))
    entry = json.loads(line)
    assert entry["error"] == "ValueError"
    assert entry["where"][-1].endswith("in test_an_error_gives_its_type_and_place_never_its_text")
    assert CALLER not in line and "scan" not in line


def test_log_format_is_text_or_json() -> None:
    assert parse_settings({"LOG_FORMAT": "JSON"})["LOG_FORMAT"] == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT must be text or json"):
        parse_settings({"LOG_FORMAT": "xml"})


def test_an_app_built_for_a_command_with_no_logging_yet_logs_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """test_a_flask_command_logs_json's rule without a new process: a `flask` command's app (the root logger
    has no handler yet) logs each record as one line of JSON to stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers, root.level
    root.handlers = []  # as in a new `flask` process; pytest's own handlers are put back below
    try:
        app = create_app(app_config(tmp_path, LOG_FORMAT="json"))
        result = app.test_cli_runner().invoke(args=["purge", "--dry-run"])
        assert result.exit_code == 0, result.output
        (added,) = root.handlers
        assert isinstance(added.formatter, JsonFormatter)
    finally:
        root.handlers = handlers
        root.setLevel(level)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines, "the line logs its start (content approval) as a warning"
    assert all(json.loads(line)["level"] for line in lines)


@pytest.mark.slow  # a new process (~1 s of start-up)
def test_a_flask_command_logs_json(tmp_path: Path, sqlite_template: Path) -> None:
    shutil.copyfile(sqlite_template, tmp_path / "line.sqlite3")  # migrated, as after `db upgrade`
    environ = line_environment(f"sqlite:///{tmp_path / 'line.sqlite3'}", LOG_FORMAT="json")
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "ivr", "purge", "--dry-run"],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "the line logs its start (content approval) as a warning"
    assert all(json.loads(line)["level"] for line in lines)


@pytest.mark.slow
def test_gunicorn_logs_json_without_personal_data(tmp_path: Path, sqlite_template: Path) -> None:
    shutil.copyfile(sqlite_template, tmp_path / "line.sqlite3")
    environ = line_environment(f"sqlite:///{tmp_path / 'line.sqlite3'}", LOG_FORMAT="json")
    with LineServer(environ, tmp_path / "line.log") as server:
        server.wait_until_ready()
        form = {"CallSid": "CA" + "d" * 32, "From": CALLER, "To": LINE_NUMBER}
        signature = sign(PUBLIC_BASE_URL + "/voice?turn=1", form)
        answer = http_post(server.port, "/voice?turn=1", form, {"X-Twilio-Signature": signature})
        assert answer.status_code == 200
        text_form = {"MessageSid": "SM" + "d" * 32, "From": CALLER, "To": LINE_NUMBER, "Body": "my scan worries me"}
        signature = sign(PUBLIC_BASE_URL + "/sms", text_form)
        assert http_post(server.port, "/sms", text_form, {"X-Twilio-Signature": signature}).status_code == 200
        log = server.log()
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    loggers = {entry["logger"] for entry in entries}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers
    access = [entry["message"] for entry in entries if entry["logger"] == "gunicorn.access"]
    assert any(message.startswith("POST /voice 200 ") for message in access), access
    assert "turn=1" not in log
    assert CALLER not in log and CALLER.lstrip("+") not in log and "scan" not in log
