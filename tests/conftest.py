"""Fixtures: an app on a fresh database, a test client, and a Twilio-like caller.

Test apps share one copy of the prompts, loaded and checked once per session (`loaded_content`), and
start on a copy of a database migrated once per session (tests/helpers/databases.py): a start costs
milliseconds, not the ~70 ms of reading every prompt file and running every migration again. Tests
that give their own PROMPTS_DIR, or a DATABASE_URL of their own, still have the app read or migrate it.

Every test that uses `app` (or `client`, `call`, `database_url`) runs twice: on a new SQLite file and
on a new PostgreSQL database (tests/helpers/databases.py). Without a PostgreSQL server configured the second
run is skipped with the reason shown; under CI it fails instead. Mark a test `sqlite_only` when its
database does not matter, to run it once.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket

from ivr import create_app
from ivr.content import PROMPTS_DIR, Content, load_content
from ivr.phone.twilio_standin import TwilioStandIn, twilio_standin
from ivr.storage import Storage
from tests.helpers.databases import (
    NO_POSTGRES_REASON,
    PostgresServer,
    configured_postgres_url,
    migrated_sqlite_template,
)
from tests.helpers.support import AUTH_TOKEN, PUBLIC_BASE_URL, Call


class SharedTemplates(BytecodeCache):
    """The Jinja templates compiled once per test process, for every test app (in memory).

    Each app builds its own Jinja environment and compiled the staff page's templates again: ~40 ms of
    CPU for each app that shows a page, a few seconds of `make test-fast`. Jinja keys a compiled template
    by its name and checks it against the source's hash, so an app gets exactly what it would compile
    itself (every test app has the same Jinja settings). The line runs one app a process: nothing to share.
    """

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self.compiled.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # ignored if the source changed since

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


@pytest.fixture(scope="session", autouse=True)
def shared_templates() -> Iterator[None]:
    """Every Flask app the tests build uses one SharedTemplates (Flask.jinja_options, for this session)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Flask, "jinja_options", {**Flask.jinja_options, "bytecode_cache": SharedTemplates()})
        yield


@cache
def loaded_content() -> Content:
    """The prompts in prompts/, read and checked once per session (Content is frozen: apps share it)."""
    return load_content(PROMPTS_DIR)


@cache
def sqlite_template_file() -> Path:
    """A SQLite file with the newest schema, migrated once per process, for test databases to copy."""
    folder = Path(tempfile.mkdtemp(prefix="careline-template-"))
    atexit.register(shutil.rmtree, folder, True)
    return migrated_sqlite_template(folder / "careline.sqlite3")


def copy_of_template(path: Path) -> Path:
    """`path`, a new copy of the migrated template, private to its owner as the line makes it (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as copy:
        copy.write(sqlite_template_file().read_bytes())
    return path


def app_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Settings for a test app: signed requests required, its own database file, the session's prompts
    (unless the test gives its own PROMPTS_DIR, which the app then reads). Without a DATABASE_URL the
    app's database is tmp_path/careline.sqlite3, a copy of the migrated template when it is not there
    yet (a migration from nothing costs ~30 ms; tests/test_storage_databases.py runs them)."""
    database = tmp_path / "careline.sqlite3"
    if "DATABASE_URL" not in overrides and not database.exists():
        copy_of_template(database)
    config: dict[str, Any] = {
        "TESTING": True,
        "LOCAL_MODE": 0,  # whatever the shell running the tests says
        "CONTENT": loaded_content(),
        "DATABASE_URL": f"sqlite:///{database}",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "SECRET_KEY": "test-secret-key",
        # Records kept while a database is away wait beside the test's own database.
        "SPOOL_DIR": str(tmp_path / "spool"),
        # Usage counts written at once, so a test sees them right after its request (tests/test_usage.py
        # covers the batches the line writes by default).
        "USAGE_FLUSH_SECONDS": 0,
    }
    config.update(overrides)
    if config.get("PROMPTS_DIR"):
        del config["CONTENT"]
    return config


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url))
    yield app
    app.extensions["careline"].storage.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def call(client: FlaskClient) -> Call:
    return Call(client)


@pytest.fixture
def standin() -> Iterator[TwilioStandIn]:
    """The stand-in for Twilio's REST API (ivr/phone/twilio_standin.py), on 127.0.0.1, for this test."""
    from tests.helpers.staff_support import ACCOUNT_SID  # here: staff_support imports this module

    with twilio_standin(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def staff(app: Flask) -> FlaskClient:
    """A client signed in to the staff page of the test's `app` (which has added a staff member)."""
    from tests.helpers.staff_support import sign_in  # here: staff_support imports this module

    client = app.test_client()
    assert sign_in(client).status_code == 303
    return client


# -- databases: every `database_url` test runs on SQLite and on PostgreSQL --------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every PostgreSQL case `postgresql`, so `make test-fast` (-m "not postgresql") can leave them out."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgresql" in callspec.params.values():
            item.add_marker(pytest.mark.postgresql)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        kinds = ["sqlite"] if metafunc.definition.get_closest_marker("sqlite_only") else ["sqlite", "postgresql"]
        metafunc.parametrize("database_url", kinds, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    """The configured PostgreSQL test server (CARELINE_TEST_POSTGRES_URL), or None."""
    url = configured_postgres_url()
    if not url:
        yield None
        return
    server = PostgresServer(url)
    yield server
    server.close()


@pytest.fixture(scope="session")
def sqlite_template() -> Path:
    """A SQLite file with the newest schema, migrated once per session, for tests to copy."""
    return sqlite_template_file()


@pytest.fixture
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer | None
) -> Iterator[str]:
    """A new, migrated database for this test: a SQLite file or a PostgreSQL database, each a copy of
    a template migrated once per session (the app's own migrate at start-up then finds nothing to do)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield f"sqlite:///{copy_of_template(tmp_path / 'careline.sqlite3')}"
        return
    with require_postgres(postgres_server).fresh_database() as url:
        yield url


def require_postgres(server: PostgresServer | None) -> PostgresServer:
    """The PostgreSQL test server; without one the test is skipped, with the reason (under CI it fails)."""
    if server is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL cases: {NO_POSTGRES_REASON}")
        pytest.skip(NO_POSTGRES_REASON)
    return server


@pytest.fixture
def storage(database_url: str) -> Iterator[Storage]:
    """Storage on this test's new database, migrated (tests that need storage without an app)."""
    store = Storage(database_url, "test-secret-key")
    store.migrate()
    yield store
    store.dispose()
