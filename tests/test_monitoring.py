"""Health and metrics (issue 17 item 4): /readyz says whether the line can do all its work, /metrics counts
what it did in Prometheus' format (from every gunicorn worker), for this machine or a bearer token only."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ivr import alerts, create_app
from ivr.resilience import guard as app_guard
from ivr.spool import new_record
from ivr.web import monitoring
from tests.conftest import app_config
from tests.helpers.databases import configured_postgres_url
from tests.helpers.faults import Outage, move_clock_on
from tests.helpers.servers import LineServer, line_environment
from tests.helpers.support import CALLER, Call, Phone, sign

TOKEN = "metrics-token-for-the-tests-0123456789"


def readiness(client: FlaskClient) -> tuple[int, dict[str, object]]:
    response = client.get("/readyz")
    assert response.mimetype == "application/json"
    return response.status_code, response.get_json()


def metric_values(text: str, name: str) -> dict[str, float]:
    """Each sample of `name` in a Prometheus text page, by its label string."""
    values = {}
    for line in text.splitlines():
        found = re.fullmatch(rf"{name}(\{{[^}}]*\}})? (\S+)", line)
        if found:
            values[found.group(1) or ""] = float(found.group(2))
    return values


def added(before: str, after: str, name: str) -> dict[str, float]:
    """How much each sample of `name` grew between two pages (samples that did not grow left out)."""
    old = metric_values(before, name)
    grown = {labels: value - old.get(labels, 0.0) for labels, value in metric_values(after, name).items()}
    return {labels: value for labels, value in grown.items() if value}


def wait_for_retry(app: Flask) -> None:
    """DATABASE_RETRY_SECONDS pass for the app's database guard (at once: its clock moves on)."""
    move_clock_on(app, float(app.config["DATABASE_RETRY_SECONDS"]) + 0.1)


# -- /readyz --------------------------------------------------------------------------------------


def test_a_line_with_its_database_is_ready_and_says_so_without_naming_anyone(client: FlaskClient) -> None:
    Call(client).start()
    status, body = readiness(client)
    assert status == 200
    assert body["ready"] is True and body["database"] == "ok"
    assert body["spool"] == {"records": 0, "oldest_age_seconds": 0.0}
    content = body["content"]
    assert isinstance(content, dict) and set(content) == {"approved", "required", "files_not_approved"}
    assert content["required"] is False  # draft words are served (and warned of) unless approval is required
    assert CALLER[2:] not in client.get("/readyz").get_data(as_text=True)


def test_readyz_is_503_while_the_database_is_away_and_counts_what_waits_in_the_spool(
    tmp_path: Path, database_url: str
) -> None:
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url, DATABASE_RETRY_SECONDS=1))
    client = app.test_client()
    outage = Outage(app, admin_url=configured_postgres_url())
    try:
        outage.begin()
        status, body = readiness(client)
        assert status == 503 and body["database"] == "unavailable" and body["ready"] is False

        assert Phone(client).text("call me please")  # kept in the spool meanwhile
        assert Phone(client, number="+15551230009").text("STOP") == []
        status, body = readiness(client)
        assert status == 503
        assert body["spool"]["records"] == 2  # type: ignore[index]

        outage.end()
        wait_for_retry(app)
        status, body = readiness(client)  # the request itself moves the spool in first
        assert (status, body["database"], body["spool"]) == (200, "ok", {"records": 0, "oldest_age_seconds": 0.0})
    finally:
        app.extensions["careline"].storage.dispose()


@pytest.mark.sqlite_only
def test_readyz_is_503_when_a_record_is_stuck_in_the_spool(app: Flask) -> None:
    """A record the database refuses stays in the spool (never lost): the line is not ready, and says so."""
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=monitoring.READY_SPOOL_SECONDS + 30)
    app_guard(app).spool.append(new_record("voicemail", long_ago))  # no call, no number: refused
    status, body = readiness(app.test_client())
    assert status == 503 and body["database"] == "ok"
    assert body["spool"]["records"] == 1  # type: ignore[index]
    assert body["spool"]["oldest_age_seconds"] >= monitoring.READY_SPOOL_SECONDS  # type: ignore[index]


@pytest.mark.sqlite_only
def test_readyz_is_503_when_approval_is_required_and_lapses(app: Flask) -> None:
    app.config["CONTENT_MUST_BE_APPROVED"] = 1  # as when a file's review falls due while the line runs
    status, body = readiness(app.test_client())
    assert status == 503 and body["database"] == "ok"
    assert body["content"]["required"] is True and body["content"]["approved"] is False  # type: ignore[index]


@pytest.mark.sqlite_only
def test_readyz_waits_for_a_database_that_does_not_answer_a_short_time_only(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = app.extensions["careline"].storage
    monkeypatch.setattr(monitoring, "READY_DATABASE_SECONDS", 0.2)
    monkeypatch.setattr(storage, "ping", lambda: time.sleep(2))  # a server that accepts, then says nothing
    started = time.monotonic()
    status, body = readiness(app.test_client())
    assert time.monotonic() - started < 1.5
    assert status == 503 and body["database"] == "unavailable"


# -- /metrics -------------------------------------------------------------------------------------


def test_metrics_count_requests_by_route_and_outcome_and_the_queue(client: FlaskClient) -> None:
    # Counts are the process's (as in one gunicorn worker), and other tests' apps ran in this one.
    before = client.get("/metrics").get_data(as_text=True)
    call = Call(client)
    call.start()
    call.press("1")
    texter = Phone(client)
    assert texter.text("call me please")
    assert client.post("/voice", data={"From": CALLER}).status_code == 403  # unsigned

    page = client.get("/metrics")
    assert page.status_code == 200 and page.mimetype == "text/plain"
    text = page.get_data(as_text=True)
    counts = added(before, text, "careline_request_duration_seconds_count")
    assert counts['{outcome="ok",route="/voice"}'] == 1
    assert counts['{outcome="client_error",route="/voice"}'] == 1
    assert counts['{outcome="ok",route="/sms"}'] == 1
    assert sum(counts.values()) == 4, counts  # and the key press, on its own route
    assert not any("/metrics" in labels or "/readyz" in labels for labels in counts)
    assert added(before, text, "careline_texts_sent_total") == {'{via="reply"}': 1}
    assert metric_values(text, "careline_open_requests") == {"": 1.0}
    assert metric_values(text, "careline_open_urgent_requests") == {"": 0.0}
    assert metric_values(text, "careline_database_up") == {"": 1.0}
    assert metric_values(text, "careline_spool_records") == {"": 0.0}
    assert CALLER[2:] not in text and "please" not in text


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("remote", "headers", "hops", "status"),
    [
        ("127.0.0.1", {}, 0, 200),
        ("::1", {}, 0, 200),
        ("203.0.113.5", {}, 0, 403),
        ("203.0.113.5", {"Authorization": f"Bearer {TOKEN}"}, 0, 200),
        ("203.0.113.5", {"Authorization": "Bearer wrong-token-wrong-token-wrong"}, 0, 403),
        ("203.0.113.5", {"Authorization": TOKEN}, 0, 403),  # not a bearer token
        # A proxy on this machine passes on a request from elsewhere: not "this machine".
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.5"}, 0, 403),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.5"}, 1, 403),
        ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}, 1, 200),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.5", "Authorization": f"Bearer {TOKEN}"}, 1, 200),
        # A client that reaches gunicorn directly cannot name itself this machine.
        ("203.0.113.5", {"X-Forwarded-For": "127.0.0.1"}, 1, 403),
    ],
)
def test_metrics_answer_this_machine_or_the_token_only(
    tmp_path: Path, remote: str, headers: dict[str, str], hops: int, status: int
) -> None:
    app = create_app(app_config(tmp_path, METRICS_TOKEN=TOKEN, TRUSTED_PROXY_HOPS=hops))
    try:
        answer = app.test_client().get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": remote})
        assert answer.status_code == status
    finally:
        app.extensions["careline"].storage.dispose()


@pytest.mark.sqlite_only
def test_without_a_token_only_this_machine_reads_metrics(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path))
    try:
        client = app.test_client()
        empty = {"Authorization": "Bearer "}
        assert client.get("/metrics", headers=empty, environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 403
    finally:
        app.extensions["careline"].storage.dispose()


@pytest.mark.slow
def test_metrics_under_gunicorn_add_up_every_workers_counts(tmp_path: Path, database_url: str) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"left by a run before")  # cleaned at start
    environ = line_environment(database_url, WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(folder))
    requests = 60
    with LineServer(environ, tmp_path / "line.log") as server:
        server.wait_until_ready()
        assert not (folder / "counter_999999.db").exists()

        def call(number: int) -> None:
            form = {"CallSid": f"CA{number:032d}", "From": CALLER, "To": "+15559870000", "AccountSid": "AC" + "0" * 32}
            body = "&".join(f"{key}={value.replace('+', '%2B')}" for key, value in form.items())
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                signature = sign("https://line.example.org/voice", form)
                connection.request(
                    "POST", "/voice", body=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
                )  # fmt: skip
                assert connection.getresponse().status == 200
            finally:
                connection.close()

        threads = [threading.Thread(target=call, args=(number,)) for number in range(requests)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        workers = {name.split("_")[-1] for name in os.listdir(folder) if name.startswith("histogram_")}
        assert len(workers) >= 2, f"every request went to one worker: {sorted(os.listdir(folder))}"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", "/metrics")
        page = connection.getresponse()
        text = page.read().decode()
        connection.close()
        assert page.status == 200
        counts = metric_values(text, "careline_request_duration_seconds_count")
        assert counts['{outcome="ok",route="/voice"}'] == requests, text
        assert json.loads(http_get(server.port, "/readyz"))["ready"] is True


def http_get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return connection.getresponse().read().decode()
    finally:
        connection.close()


@pytest.mark.sqlite_only
def test_a_staff_alert_that_cannot_be_sent_is_counted_and_waits(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path, STAFF_ALERT_NUMBERS="+15550001111"))  # no account SID: cannot send
    try:
        client = app.test_client()
        before = client.get("/metrics").get_data(as_text=True)
        app.extensions["careline"].storage.record_urgent_call("CA1", CALLER, "crisis", "en")
        assert alerts.send_waiting(app) == 0
        text = client.get("/metrics").get_data(as_text=True)
        assert added(before, text, "careline_staff_alerts_failed_total") == {'{reason="not_configured"}': 1}
        assert metric_values(text, "careline_staff_alerts_unsent") == {"": 1.0}
        assert metric_values(text, "careline_open_urgent_requests") == {"": 1.0}
    finally:
        app.extensions["careline"].storage.dispose()
