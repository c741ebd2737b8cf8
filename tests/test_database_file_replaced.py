"""The SQLite file deleted or replaced under a running line (issue 15 item 4).

A real server (`python -m ivr`, tests/helpers/servers.py) takes call-back requests; then the database
file is deleted, or another file is put in its place. A SQLite connection keeps the file it opened, so
without a check the line would go on writing into a file no restart will open: it said "saved" and
lost 23 of 30. Now the line still answers, says "saved" only for what its spool holds durably, drains
nothing into the ghost file, says so in /healthz, and after a restart every confirmed request is in the
database the line reads.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from ivr.storage import Storage
from tests.helpers.servers import LineServer, local_line
from tests.helpers.support import LINE_NUMBER, PUBLIC_BASE_URL, sign

pytestmark = pytest.mark.slow

TOKEN = "file-test-token"


def text(server: LineServer, number: int, body: str = "CALL") -> str:
    """A signed text from the number +1202555`number`; the line's reply."""
    params = {"From": f"+1202555{number:04d}", "To": LINE_NUMBER, "Body": body, "MessageSid": f"SM{number:032x}"}
    headers = {"X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/sms", params, TOKEN)}
    response = requests.post(server.url + "/sms", data=params, headers=headers, timeout=30)
    assert response.status_code == 200
    return response.text


def healthz(server: LineServer) -> str:
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as response:
        assert response.status == 200  # still answering callers: never taken out of service for this
        return response.read().decode()


def callback_keys(url: str) -> set[str]:
    storage = Storage(url, "phone-test-secret")
    try:
        with storage.engine.connect() as connection:
            return set(connection.execute(sa.text("SELECT dedupe_key FROM callback_requests")).scalars())
    finally:
        storage.dispose()


def spooled(spool: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in spool.glob("*.jsonl"))


@pytest.mark.parametrize("fault", ["deleted", "replaced"])
def test_callbacks_left_after_the_file_is_deleted_or_replaced_are_all_there_after_a_restart(
    tmp_path: Path, fault: str
) -> None:
    spool = tmp_path / "spool"
    settings = {
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "SPOOL_DIR": str(spool),
        "DATABASE_RETRY_SECONDS": "1",  # the line tries the database again, and again, meanwhile
    }
    server = local_line(tmp_path / "line", settings)
    url = server.environ["DATABASE_URL"]
    database_file = Path(url.split("///", 1)[1])
    try:
        saved = text(server, 1)
        before = {f"sms:SM{1:032x}"}
        assert callback_keys(url) == before
        assert healthz(server) == "ok\n"

        if fault == "deleted":
            database_file.unlink()
        else:  # another database put in its place, as a careless restore would
            other = tmp_path / "other.sqlite3"
            shutil.copy(database_file, other)
            with closing(sqlite3.connect(other)) as connection:  # closed: its write-ahead log folded in
                connection.execute("DELETE FROM callback_requests")
                connection.commit()
            os.replace(other, database_file)

        confirmed = set()
        for number in range(2, 32):
            reply = text(server, number)
            assert reply == saved, "the same confirmation as before: the spool holds it durably"
            confirmed.add(f"sms:SM{number:032x}")
            if number % 10 == 0:
                time.sleep(1.1)  # past DATABASE_RETRY_SECONDS: the line tries the database again
        health = healthz(server)
        waiting = spooled(spool)
        log = server.log()
    finally:
        server.stop()

    if fault == "replaced":
        # Nothing confirmed after the replacement went into the file put in its place before the restart.
        # (What the old file's write-ahead log held may show up in it: SQLite reads the -wal file beside
        # whatever file is at the path; swap database files only with the line stopped.)
        replacement = callback_keys(url) & confirmed
    restarted = local_line(tmp_path / "line", settings)  # opens the file at the path, moves the spool in
    try:
        assert callback_keys(url) >= confirmed, "every confirmed request is in the database the line reads"
        assert spooled(spool) == 0
        assert healthz(restarted) == "ok\n"
        assert waiting == len(confirmed), "every confirmed request waited in the spool, none drained into the ghost"
        if fault == "replaced":
            assert not replacement
        assert "alarm: database-file-replaced" in health
        assert log.count("ALARM: the SQLite database file was deleted or replaced") == 1
        assert "+1202555" not in log
    finally:
        restarted.stop()
