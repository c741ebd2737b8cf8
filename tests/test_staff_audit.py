"""The staff audit (issue 15 item 7): who did what, when, to which request; never words or numbers.

Every staff action on the page is recorded (sign-in, sign-out, play, claim, attempt, note, close,
reopen, send), shown on the card's history and under Recent staff activity, and kept by `purge`
for its own period (AUDIT_RETENTION_DAYS), past the requests it names.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from ivr.phone.twilio_standin import TwilioStandIn
from ivr.services import services
from ivr.storage import CallbackRequest, as_utc, callback_requests, staff_audit
from ivr.storage.queue import request_callback_in
from tests.helpers.staff_support import (
    OPEN_TIME,
    add_staff,
    csrf_token,
    make_app,
    recording_sid,
    recording_url,
    sign_in,
)
from tests.helpers.support import LINE_NUMBER, TEXTABLE_CALLER

PATIENT = "+15551230001"
WORDS = "I cannot breathe well since the new pills"


@pytest.fixture
def app(tmp_path: Path, standin: TwilioStandIn) -> Flask:
    app = make_app(tmp_path, LINE_NUMBER=LINE_NUMBER, TWILIO_API_BASE_URL=standin.base_url)
    add_staff(app)
    return app


def texted_request(app: Flask) -> int:
    with app.app_context():
        storage = services().storage
        ask = CallbackRequest(section="hospice", lang="en", words=storage.seal(WORDS))
        with storage.durable() as connection:
            request_callback_in(connection, PATIENT, ask, "sms", "SMtest1", as_utc(OPEN_TIME))
        return int(storage.callback_requests("open")[0]["id"])


def audit_rows(app: Flask) -> list[dict[str, object]]:
    with app.app_context(), services().storage.engine.connect() as connection:
        query = sa.select(staff_audit).order_by(staff_audit.c.id)
        return [dict(row._mapping) for row in connection.execute(query)]


def post(client: FlaskClient, path: str, **data: str) -> object:
    token = csrf_token(client.get("/staff/").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data})


def test_every_staff_action_is_audited_with_who_what_when_and_which_request(app: Flask) -> None:
    request_id = texted_request(app)
    with app.app_context(), services().storage.engine.begin() as connection:
        connection.execute(
            callback_requests.update()
            .where(callback_requests.c.id == request_id)
            .values(recording_sid=recording_sid(1), recording_url=recording_url(1))
        )
    staff = app.test_client()
    assert sign_in(staff).status_code == 303
    assert staff.get(f"/staff/requests/{request_id}/recording").status_code == 200
    # A player's later ranges of the same recording are not more plays.
    staff.get(f"/staff/requests/{request_id}/recording", headers={"Range": "bytes=500-"})
    assert post(staff, f"/staff/requests/{request_id}/done", through=str(request_id)).status_code == 303
    assert post(staff, f"/staff/requests/{request_id}/reopen").status_code == 303
    # A number the outbound-text policy lets the line text (PATIENT's 555-123x is no valid US number).
    assert post(staff, "/staff/send", phone=TEXTABLE_CALLER, section="hospice", lang="en").status_code == 303
    assert post(staff, "/staff/logout").status_code == 303

    rows = audit_rows(app)
    assert [(row["staff"], row["action"], row["request_id"]) for row in rows] == [
        ("nurse.ana", "sign_in", None),
        ("nurse.ana", "play", request_id),
        ("nurse.ana", "done", request_id),
        ("nurse.ana", "reopen", request_id),
        ("nurse.ana", "send", None),
        ("nurse.ana", "sign_out", None),
    ]
    assert rows[4]["detail"] == "hospice:sent"
    assert all(row["at"] is not None for row in rows)
    everything = repr(rows)
    assert PATIENT not in everything and "5551230001" not in everything
    assert TEXTABLE_CALLER not in everything and "2025550123" not in everything
    assert "breathe" not in everything


def test_the_card_history_and_recent_activity_show_the_steps(app: Flask) -> None:
    request_id = texted_request(app)
    staff = app.test_client()
    sign_in(staff)
    post(staff, f"/staff/requests/{request_id}/done", through=str(request_id))
    post(staff, f"/staff/requests/{request_id}/reopen")
    html = staff.get("/staff/").get_data(as_text=True)
    history = html[html.index(f'id="card-{request_id}-history"') :]
    history = history[: history.index("</details>")]
    assert "closed it" in history and "put it back in the queue" in history
    assert history.count("nurse.ana") == 2
    activity = html[html.index('id="activity"') :]
    assert "signed in" in activity and f"request {request_id}</a>" in activity
    assert PATIENT not in activity


def test_purge_keeps_the_audit_for_its_own_period(app: Flask) -> None:
    now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    with app.app_context():
        storage = services().storage
        request_id = texted_request(app)
        storage.log_attempt(request_id, "nurse.ana", "no_answer", storage.seal("left no message"), at=now)
        storage.mark_done(request_id, "nurse.ana", now - dt.timedelta(days=100), outcome="reached")
        storage.record_staff_action("nurse.ana", "sign_in", at=now - dt.timedelta(days=3000))
        removed = storage.purge(now - dt.timedelta(days=90), audit_cutoff=now - dt.timedelta(days=2190))
    assert removed["callback_requests"] == 1
    assert removed["request_notes"] == 1, "a staff note goes with its request"
    assert removed["staff_audit"] == 1, "only the audit row past AUDIT_RETENTION_DAYS goes"
    kept = [(row["action"], row["detail"]) for row in audit_rows(app)]
    assert kept == [("attempt", "no_answer"), ("note", ""), ("done", "reached")]


def test_the_purge_command_uses_audit_retention_days(tmp_path: Path, app: Flask) -> None:
    with app.app_context():
        storage = services().storage
        storage.record_staff_action("nurse.ana", "sign_in", at=OPEN_TIME - dt.timedelta(days=400))
        storage.record_staff_action("nurse.ana", "sign_out", at=OPEN_TIME - dt.timedelta(days=100))
    app.config["AUDIT_RETENTION_DAYS"] = 365
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert "staff_audit" in result.output
    # Past RETENTION_DAYS (90) but within AUDIT_RETENTION_DAYS (365): kept.
    assert [row["action"] for row in audit_rows(app)] == ["sign_out"]


def test_migration_0008_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from ivr.storage import Storage
    from ivr.storage.database import MIGRATIONS_DIR

    storage = Storage(f"sqlite:///{tmp_path / 'line.db'}", "test secret")
    storage.migrate()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with storage.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
        tables = set(sa.inspect(connection).get_table_names())
        columns = {column["name"] for column in sa.inspect(connection).get_columns("callback_requests")}
    assert "staff_audit" not in tables and "request_notes" not in tables
    assert not {"claimed_by", "outcome", "transcript"} & columns
    storage.migrate()
    storage.record_staff_action("nurse.ana", "sign_in")
    assert storage.recent_staff_actions()[0]["action"] == "sign_in"
