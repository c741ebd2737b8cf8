"""No secrets or personal data in the logs, even at DEBUG, even when things go wrong.

A whole conversation through a real HTTP server (werkzeug's, in this process, so every logger is
captured at DEBUG: the line's, werkzeug's access log, SQLAlchemy's, the twilio client's, urllib3's):
a call that hears a section, says something the line does not understand, asks for it by text (the
real twilio client, to a stand-in for Twilio's API) and leaves a voice message; texts with private
words, a call-back request, STOP and START; the database lost and back (spooled records); staff
signing in, listening to the message and marking it done. Then every captured line is searched for
the phone numbers, the words said and texted, the recording, and the secrets.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest

from ivr import create_app
from ivr.phone.twilio_standin import twilio_standin
from tests.conftest import app_config
from tests.helpers.faults import Outage
from tests.helpers.servers import HttpClient, LineServer, line_environment
from tests.helpers.staff_support import (
    ACCOUNT_SID,
    STAFF_PASSWORD,
    StaffCall,
    create_staff,
    csrf_token,
    live_server,
    recording_sid,
    recording_url,
    sign_in,
)
from tests.helpers.support import AUTH_TOKEN, CALLER, TEXTABLE_CALLER, Phone

pytestmark = pytest.mark.slow

SECRET_KEY = "a-secret-key-that-must-never-be-logged"
SPOKEN = "giraffe lantern question"
TEXTED = "zebra umbrella worry about my scan"


def variants(number: str) -> list[str]:
    """A phone number as it might be written: +15551230001, 15551230001, 5551230001, 555-123-0001, (555) 123-0001."""
    digits = number.lstrip("+")
    local = digits[-10:]
    return [number, digits, local, f"{local[:3]}-{local[3:6]}-{local[6:]}", f"({local[:3]}) {local[3:6]}-{local[6:]}"]


def test_a_whole_conversation_logs_nothing_personal_or_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with twilio_standin(ACCOUNT_SID, AUTH_TOKEN) as standin:
        app = create_app(
            app_config(
                tmp_path,
                SECRET_KEY=SECRET_KEY,
                TWILIO_ACCOUNT_SID=ACCOUNT_SID,
                TWILIO_API_BASE_URL=standin.base_url,
                LINE_NUMBER="+15559870000",
                DATABASE_RETRY_SECONDS=1,
            )
        )
        create_staff(app)
        with live_server(app) as base:
            client = HttpClient([int(base.rsplit(":", 1)[1])])
            call = StaffCall(client, caller=TEXTABLE_CALLER)  # type: ignore[arg-type]
            call.start()
            call.press("5")
            call.say(SPOKEN)
            call.press("2")
            assert standin.messages, "the section went out by text"
            call.press("0")
            call.press("1")
            record = call.last.find("Record") if call.last is not None else None
            assert record is not None
            call.record_ends(record.attrib["action"], 3, seconds=20)
            call.recording_status(record.attrib["recordingStatusCallback"], 3, seconds=20)

            phone = Phone(client, number=TEXTABLE_CALLER)  # type: ignore[arg-type]
            for body in ("hospice", TEXTED, "MORE", "please call me", "STOP", TEXTED, "START"):
                phone.text(body)

            outage = Outage(app)
            outage.begin()
            phone.text(f"call me {TEXTED}")
            phone.text("STOP")
            outage.end()
            time.sleep(1.1)
            phone.text("START")  # the spool goes into the database first

            # Staff (through Flask's client: the session cookie is Secure outside local mode, this server is http).
            staff = app.test_client()
            assert sign_in(staff).status_code == 303
            queue = staff.get("/staff").get_data(as_text=True)
            assert TEXTABLE_CALLER[2:5] in queue  # staff see the number; the logs must not
            ids = sorted(set(re.findall(r"/staff/requests/(\d+)/", queue)))
            assert ids
            assert staff.get(f"/staff/requests/{ids[0]}/recording").status_code == 200
            done = staff.post(f"/staff/requests/{ids[0]}/done", data={"csrf_token": csrf_token(queue)})
            assert done.status_code == 303

    records = caplog.records
    logged = "\n".join(
        f"{record.name} {record.levelname} {record.getMessage()} {record.exc_text or ''}" for record in records
    )
    assert "werkzeug" in {record.name for record in records}, "the access log was captured"
    forbidden = [
        *variants(TEXTABLE_CALLER),
        *SPOKEN.split(),
        *TEXTED.split(),
        recording_sid(3),
        recording_url(3),
        AUTH_TOKEN,
        SECRET_KEY,
        STAFF_PASSWORD,
        "please call me",
    ]
    for secret in forbidden:
        assert secret not in logged, f"{secret!r} was logged"


@pytest.mark.sqlite_only
def test_gunicorn_at_debug_logs_nothing_personal_or_secret(tmp_path: Path, database_url: str) -> None:
    """The production server (gunicorn.conf.py) with every logger at DEBUG, the access log included."""
    log_config = tmp_path / "logging.json"
    log_config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
                "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "plain", "level": "DEBUG"}},
                "root": {"level": "DEBUG", "handlers": ["out"]},
                "loggers": {  # gunicorn's own (its defaults name handlers replaced here)
                    "gunicorn.error": {"level": "DEBUG", "handlers": ["out"], "propagate": False},
                    "gunicorn.access": {"level": "DEBUG", "handlers": ["out"], "propagate": False},
                },
            }
        )
    )
    environ = line_environment(
        database_url,
        SECRET_KEY=SECRET_KEY,
        SPOOL_DIR=str(tmp_path / "spool"),
        GUNICORN_CMD_ARGS=f"--log-level debug --log-config-json {log_config}",
    )
    with LineServer(environ, tmp_path / "gunicorn.log") as server:
        server.wait_until_ready()
        client = HttpClient([server.port])
        call = StaffCall(client, caller=TEXTABLE_CALLER)  # type: ignore[arg-type]
        call.start()
        call.press("5")
        call.say(SPOKEN)
        call.press("0")  # staff are out (STAFF_HOURS=closed): the message offer
        call.press("1")
        record = call.last.find("Record") if call.last is not None else None
        assert record is not None
        call.record_ends(record.attrib["action"], 4, seconds=20)
        phone = Phone(client, number=TEXTABLE_CALLER)  # type: ignore[arg-type]
        for body in ("hospice", TEXTED, "please call me", "STOP", "START"):
            phone.text(body)
        logged = server.log()
    assert "POST /voice/step" in logged and "POST /sms" in logged, "the access log was written"
    assert "DEBUG" in logged, "and the server logged at DEBUG"
    for secret in [*variants(CALLER), *SPOKEN.split(), *TEXTED.split(), recording_sid(4), AUTH_TOKEN, SECRET_KEY]:
        assert secret not in logged, f"{secret!r} was logged"
