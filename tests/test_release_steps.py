"""Release steps (issue 17 item 3): the schema is upgraded and rolled back by `flask --app ivr db ...`, and the
line refuses to start on a schema other than its newest, except in local mode, which upgrades itself."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ivr import create_app
from ivr.release import SchemaNotCurrent
from ivr.resilience import guard as app_guard
from ivr.storage import CallbackRequest, Storage, TextChanges
from ivr.storage.database import migration_scripts
from tests.conftest import app_config, require_postgres
from tests.helpers.databases import PostgresServer
from tests.helpers.servers import REPO, LineServer, line_environment

HEAD = migration_scripts().get_current_head()
#: Whichever migration is the newest, the one before it: what `db downgrade` (one step) goes back to.
BEFORE_HEAD = migration_scripts().get_revision(HEAD).down_revision


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer | None) -> Iterator[str]:
    """A database with no tables at all, as a new deployment has."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.sqlite3'}"
        return
    with require_postgres(postgres_server).fresh_database(migrated=False) as url:
        yield url


def flask_db(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app ivr db ARGS` as an operator runs it, with the line's production settings."""
    return flask_command(url, "db", *args)


def flask_command(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "ivr", *args],
        cwd=REPO,
        env=line_environment(url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def revision_of(url: str) -> str | None:
    storage = Storage(url, "k")
    try:
        return storage.schema_revision()
    finally:
        storage.dispose()


def leave_a_line_with_data(url: str) -> None:
    """What callers leave: a voice message, a call-back request, an opt-out."""
    storage = Storage(url, "test-secret-key")
    try:
        storage.open_voice_message("CA1", "+15551230001", "hospice", "en")
        assert storage.attach_recording("CA1", "RE1", "https://api.twilio.com/rec/RE1", 14)
        ask = CallbackRequest("treatment", "es", words=storage.seal("please call me"))
        storage.record_text_turn("SM1", "+15551230002", "callback", TextChanges(callback=ask))
        storage.record_text_turn("SM2", "+15551230003", "", TextChanges(opted_out=True))
    finally:
        storage.dispose()


def the_queue(url: str) -> list[tuple[str | None, str, str, str]]:
    storage = Storage(url, "test-secret-key")
    try:
        return sorted((r["phone"], r["kind"], r["topic"], r["lang"]) for r in storage.callback_requests())
    finally:
        storage.dispose()


@pytest.mark.slow
def test_db_upgrade_builds_the_schema_on_an_empty_database_then_the_line_starts(empty_url: str) -> None:
    refused = flask_command(empty_url, "purge")  # any other command waits for the release step
    assert refused.returncode != 0 and "flask --app ivr db upgrade" in refused.stderr, refused.stderr
    assert revision_of(empty_url) is None

    upgraded = flask_db(empty_url, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert revision_of(empty_url) == HEAD
    current = flask_db(empty_url, "current")
    assert f"schema at {HEAD}" in current.stdout, current.stderr

    app = create_app(app_config(Path("/nonexistent"), DATABASE_URL=empty_url))
    try:
        assert app_guard(app).schema_ready
    finally:
        app.extensions["careline"].storage.dispose()


@pytest.mark.slow
def test_the_newest_migration_rolls_back_and_forward_and_what_callers_left_stays(empty_url: str) -> None:
    assert flask_db(empty_url, "upgrade").returncode == 0
    leave_a_line_with_data(empty_url)
    queue = the_queue(empty_url)
    assert len(queue) == 2

    down = flask_db(empty_url, "downgrade")  # one step: the newest migration, whichever it is
    assert down.returncode == 0, down.stderr
    assert revision_of(empty_url) == BEFORE_HEAD
    assert f"schema at {BEFORE_HEAD}" in down.stdout

    up = flask_db(empty_url, "upgrade")
    assert up.returncode == 0, up.stderr
    assert revision_of(empty_url) == HEAD
    assert the_queue(empty_url) == queue
    storage = Storage(empty_url, "test-secret-key")
    try:
        assert storage.is_opted_out("+15551230003")
    finally:
        storage.dispose()


def test_every_migration_downgrades_to_an_empty_database_and_upgrades_again(empty_url: str) -> None:
    """Every migration's downgrade() works, one at a time from the newest, with data in the tables."""
    storage = Storage(empty_url, "test-secret-key")
    try:
        storage.migrate()
        leave_a_line_with_data(empty_url)
        revisions = [script.revision for script in migration_scripts().walk_revisions()]  # newest first
        for revision in revisions:
            assert storage.schema_revision() == revision
            storage.downgrade("-1")
        assert storage.schema_revision() is None
        with storage.engine.connect() as connection:
            assert set(sa.inspect(connection).get_table_names()) <= {"alembic_version"}
        storage.migrate()
        assert storage.schema_revision() == HEAD
    finally:
        storage.dispose()


def test_db_downgrade_names_an_unknown_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'line.sqlite3'}"
    Storage(url, "k").migrate()
    app = create_app(app_config(tmp_path, DATABASE_URL=url))
    try:
        result = app.test_cli_runner().invoke(args=["db", "downgrade", "no-such-revision"])
        assert result.exit_code != 0
        assert "no-such-revision" in result.output
        assert revision_of(url) == HEAD
    finally:
        app.extensions["careline"].storage.dispose()


@pytest.mark.parametrize("schema", ["empty", "older", "newer"])
def test_the_line_refuses_to_start_on_a_schema_that_is_not_its_newest(
    tmp_path: Path, database_url: str, schema: str
) -> None:
    storage = Storage(database_url, "k")
    try:
        if schema == "newer":
            with storage.engine.begin() as connection:
                connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        else:
            storage.downgrade("base" if schema == "empty" else "-1")
    finally:
        storage.dispose()

    with pytest.raises(SchemaNotCurrent) as refused:
        create_app(app_config(tmp_path, DATABASE_URL=database_url))
    message = str(refused.value)
    if schema == "newer":
        assert "9999" in message and "newer" in message and f"flask --app ivr db downgrade {HEAD}" in message
    else:
        assert "flask --app ivr db upgrade" in message
        assert (BEFORE_HEAD in message) == (schema == "older")


def test_local_mode_upgrades_its_own_database(tmp_path: Path, empty_url: str) -> None:
    app = create_app(app_config(tmp_path, DATABASE_URL=empty_url, LOCAL_MODE=1))
    try:
        assert app_guard(app).schema_ready
        assert revision_of(empty_url) == HEAD
    finally:
        app.extensions["careline"].storage.dispose()


def test_a_database_back_after_start_with_an_old_schema_keeps_the_line_spooling(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The database was away at start; when it answers, its schema is checked before anything is written."""
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url, DATABASE_RETRY_SECONDS=1))
    guard = app_guard(app)
    storage = app.extensions["careline"].storage
    try:
        storage.downgrade("-1")  # as if a release step was missed
        guard.schema_ready = False  # as if the database had been away at start
        guard._down_until = 0.0
        with caplog.at_level(logging.ERROR, logger="ivr.resilience"):
            guard.recover()
        assert guard.is_down()
        assert "flask --app ivr db upgrade" in caplog.text
        assert guard.keep({"kind": "opt_out"}, lambda: pytest.fail("written to an old schema"), "testing") is None
    finally:
        storage.dispose()


@pytest.mark.slow
def test_gunicorn_refuses_to_start_on_an_old_schema_and_says_what_to_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'line.sqlite3'}"
    storage = Storage(url, "k")
    storage.migrate(BEFORE_HEAD or "base")
    storage.dispose()
    server = LineServer(line_environment(url), tmp_path / "line.log")
    try:
        assert server.process.wait(timeout=120) != 0
        assert "flask --app ivr db upgrade" in server.log()
    finally:
        server.stop()
