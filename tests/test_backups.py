"""Backups (issue 17 item 5): `flask --app ivr db backup` takes the database and the spool while the line runs;
`db restore` puts them into a new database, and the restored line shows staff the same queue."""

from __future__ import annotations

import datetime as dt
import json
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ivr import create_app
from ivr.backups import BackupError, libpq_environment, restore
from ivr.resilience import guard
from ivr.spool import Spool, new_record, spool_file_name
from ivr.storage import Storage
from tests.conftest import require_postgres
from tests.helpers.databases import PostgresServer
from tests.helpers.servers import REPO, line_environment
from tests.helpers.staff_support import StaffCall, create_staff, sign_in, staff_config
from tests.helpers.support import Phone, twilio_post

STOPPER = "+15551230077"


@pytest.fixture
def new_database(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, postgres_server: PostgresServer | None
) -> Iterator[str]:
    """A new, empty database of the same kind as `database_url`, to restore into."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'careline.sqlite3'}"
        return
    with require_postgres(postgres_server).fresh_database(migrated=False) as url:
        yield url


def flask_db(url: str, spool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app ivr db ARGS` as an operator runs it (deploy/careline-flask), with the line's settings."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "ivr", "db", *args],
        cwd=REPO,
        env=line_environment(url, SPOOL_DIR=str(spool)),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


ACTIVITY = re.compile(r'<section id="activity".*?</section>', re.S)


def staff_page(client: FlaskClient) -> str:
    """The staff page as a nurse sees it, less its per-request tokens."""
    page = client.get("/staff/")
    assert page.status_code == 200
    return re.sub(r'(name="csrf_token" value|nonce)="[^"]*"', "", page.get_data(as_text=True))


def the_queue(html: str) -> str:
    """The staff page less its staff activity (each sign-in adds to it)."""
    return ACTIVITY.sub("", html)


def sign_ins(html: str) -> int:
    """How many sign-ins the page's staff activity (the audit) lists."""
    found = ACTIVITY.search(html)
    assert found, "no staff activity on the page"
    return found.group(0).count("signed in")


def line_config(folder: Path, url: str, spool: Path) -> dict[str, object]:
    """A line with no staff phones (0 offers a voice message), on `url`, spooling into `spool`."""
    return staff_config(folder, DATABASE_URL=url, SPOOL_DIR=str(spool), STAFF_NUMBERS="")


def a_line_with_callers(app: Flask) -> FlaskClient:
    """Voice messages, a call-back request with words, an urgent text, an opt-out; a signed-in nurse."""
    call = StaffCall(app.test_client())
    call.start()
    call.press("0")
    call.press("1")
    record = call.last.find("Record") if call.last is not None else None
    assert record is not None, call.heard
    call.record_ends(record.attrib["action"], 3, seconds=12)
    texter = Phone(app.test_client())
    assert texter.text("hospice")
    assert texter.text("please call me about hospice")
    assert Phone(app.test_client(), number="+15551230005").text("I want to end my life")
    assert Phone(app.test_client(), number="+15551230006").text("STOP") == []
    create_staff(app)
    nurse = app.test_client()
    assert sign_in(nurse).status_code == 303
    return nurse


@pytest.mark.slow
def test_a_backup_restored_into_a_new_database_shows_the_same_queue(
    tmp_path: Path, database_url: str, new_database: str
) -> None:
    spool, restored_spool = tmp_path / "spool", tmp_path / "restored-spool"
    app = create_app(line_config(tmp_path / "line", database_url, spool))
    try:
        nurse = a_line_with_callers(app)
        page = staff_page(nurse)
        queue = the_queue(page)
        assert "15551230005" in re.sub(r"\D", "", queue)  # the urgent text is there to be restored
        assert sign_ins(page) == 1
        # An opt-out that only the spool knows (the fallback URL never touches the database): the backup
        # command's own start moves it in, so the dump has it.
        stop = Phone(app.test_client(), number=STOPPER).form("STOP", "SM" + "7" * 32)
        assert twilio_post(app.test_client(), "/sms/fallback", stop).status_code == 200
        # A record the database refuses stays in the spool, never lost: the backup keeps it too.
        stuck = new_record("voicemail", dt.datetime.now(dt.UTC))
        guard(app).spool.append(stuck)

        backup_folder = tmp_path / "backups" / "2026-12-07"
        made = flask_db(database_url, spool, "backup", str(backup_folder))
        assert made.returncode == 0, made.stderr
        assert "Moved 1 spooled record(s) into the database" in made.stderr
        assert "and 1 spooled record(s)" in made.stdout
    finally:
        app.extensions["careline"].storage.dispose()
    manifest = json.loads((backup_folder / "manifest.json").read_text())
    assert manifest["spool_records"] == 1 and manifest["schema_revision"]
    # Phone numbers and sealed words: the owner's alone.
    assert stat.S_IMODE(backup_folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(path.stat().st_mode) for path in backup_folder.iterdir()} == {0o600}
    assert "+1555" not in (backup_folder / "manifest.json").read_text()
    assert flask_db(database_url, spool, "backup", str(backup_folder)).returncode != 0, "never over a backup"

    restored = flask_db(new_database, restored_spool, "restore", str(backup_folder))
    assert restored.returncode == 0, restored.stderr
    assert "1 spooled record(s) will move in" in restored.stdout
    again = flask_db(new_database, restored_spool, "restore", str(backup_folder))
    assert again.returncode != 0 and "not empty" in again.stderr, "never over a line's data"

    line = create_app(line_config(tmp_path / "restored-line", new_database, restored_spool))
    try:
        assert [record["id"] for record in guard(line).spool.records()] == [stuck["id"]], "kept, still refused"
        nurse = line.test_client()
        assert sign_in(nurse).status_code == 303, "the staff account came back too"
        page = staff_page(nurse)
        assert the_queue(page) == queue
        assert sign_ins(page) == 2, "the audit came back, and goes on"
        assert Phone(line.test_client(), number="+15551230006").text("hospice") == [], "opted out before"
        assert Phone(line.test_client(), number=STOPPER).text("hospice") == [], "opted out in the spool"
        assert Phone(line.test_client(), number="+15551230008").text("hospice"), "others are answered"
    finally:
        line.extensions["careline"].storage.dispose()


def a_postgresql_backup(tmp_path: Path) -> Path:
    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "database": "postgresql"}))
    return folder


def test_restore_refuses_a_backup_of_another_kind_of_database(tmp_path: Path) -> None:
    """The next test's rule without a new process: `restore` itself refuses, before it touches anything."""
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    storage = Storage(url, "test-secret-key")
    try:
        with pytest.raises(BackupError, match="backup of a postgresql database"):
            restore(storage, url, Spool(tmp_path / "spool", spool_file_name(url)), a_postgresql_backup(tmp_path))
    finally:
        storage.dispose()


@pytest.mark.slow  # a new process (~1 s of start-up)
def test_a_backup_of_another_kind_of_database_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    result = flask_db(url, tmp_path / "spool", "restore", str(a_postgresql_backup(tmp_path)))
    assert result.returncode != 0 and "backup of a postgresql database" in result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://careline:s3cret@db.example.org:5433/careline",
            {"PGHOST": "db.example.org", "PGPORT": "5433", "PGUSER": "careline", "PGPASSWORD": "s3cret",
             "PGDATABASE": "careline"},
        ),
        (  # the environment template's: the local socket, no password
            "postgresql+psycopg://careline@/careline?host=/run/postgresql",
            {"PGHOST": "/run/postgresql", "PGUSER": "careline", "PGDATABASE": "careline"},
        ),
        (
            "postgresql+psycopg://u@h/d?sslmode=verify-full&sslrootcert=/etc/ssl/db.pem",
            {"PGHOST": "h", "PGUSER": "u", "PGDATABASE": "d", "PGSSLMODE": "verify-full",
             "PGSSLROOTCERT": "/etc/ssl/db.pem"},
        ),
    ],
)  # fmt: skip
def test_pg_dump_connects_where_the_line_does_with_the_password_in_the_environment(
    url: str, expected: dict[str, str]
) -> None:
    assert libpq_environment(url) == expected
