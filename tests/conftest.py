"""Fixtures: an app on a fresh SQLite file, a test client, and a Twilio-like caller."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ivr import create_app
from tests.support import AUTH_TOKEN, PUBLIC_BASE_URL, Call


def app_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Settings for a test app: signed requests required, its own database file."""
    config: dict[str, Any] = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'careline.sqlite3'}",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "SECRET_KEY": "test-secret-key",
        # Records kept while a database is away wait beside the test's own database.
        "SPOOL_DIR": str(tmp_path / "spool"),
    }
    config.update(overrides)
    return config


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    yield create_app(app_config(tmp_path))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def call(client: FlaskClient) -> Call:
    return Call(client)
