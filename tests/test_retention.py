"""`flask --app ivr purge`: what is past the retention period goes, what staff or callers still need stays."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from ivr import create_app
from ivr import storage as tables
from ivr.storage import Storage
from tests.conftest import app_config

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=100)
RECENT = NOW - dt.timedelta(days=10)
TABLES = (
    "callback_requests",
    "usage_daily",
    "processed_events",
    "sms_sessions",
    "preferences",
    "opt_outs",
    "login_attempts",
    "staff_acceptances",
)


def fill(storage: Storage) -> None:
    """Two of everything: one from 100 days ago, one from 10 days ago (and call-backs still open)."""
    rows: dict[sa.Table, list[dict[str, Any]]] = {
        tables.usage_daily: [
            {"day": OLD.date(), "channel": "voice", "section": "hospice", "count": 3},
            {"day": RECENT.date(), "channel": "voice", "section": "hospice", "count": 2},
        ],
        tables.processed_events: [
            {"key": "sms:SMold", "created_at": OLD, "outcome": "menu|en||0"},
            {"key": "sms:SMrecent", "created_at": RECENT, "outcome": "menu|en||0"},
        ],
        tables.sms_sessions: [
            {"phone_hash": "a" * 64, "lang": "en", "section": "", "next_part": 0, "updated_at": OLD},
            {"phone_hash": "b" * 64, "lang": "es", "section": "", "next_part": 0, "updated_at": RECENT},
        ],
        tables.preferences: [
            {"phone_hash": "a" * 64, "lang": "en", "slow": False, "last_section": "", "updated_at": OLD},
            {"phone_hash": "b" * 64, "lang": "es", "slow": True, "last_section": "", "updated_at": RECENT},
        ],
        tables.opt_outs: [
            {"phone_hash": "a" * 64, "opted_out": True, "changed_at": OLD},  # a STOP: kept for good
            {"phone_hash": "b" * 64, "opted_out": False, "changed_at": OLD},  # an old START: forgotten
            {"phone_hash": "c" * 64, "opted_out": False, "changed_at": RECENT},
        ],
        tables.login_attempts: [{"key_hash": "k" * 64, "at": OLD}, {"key_hash": "k" * 64, "at": RECENT}],
        tables.staff_acceptances: [
            {"call_sid": "CAold", "accepted_at": OLD},
            {"call_sid": "CArecent", "accepted_at": RECENT},
        ],
    }
    with storage.engine.begin() as connection:
        for table, values in rows.items():
            connection.execute(table.insert(), values)
    for name, created in (("old-done", OLD), ("recent-done", OLD), ("old-open", OLD)):
        storage.open_voice_message(f"CA{name}", "+15551230001", "hospice", "en", at=created)
    storage.attach_recording("CAold-done", "RE1", "https://api.twilio.com/x/RE1", 30)
    requests = {row["dedupe_key"]: row["id"] for row in storage.callback_requests(status=None)}
    storage.mark_done(requests["voicemail:CAold-done"], "nurse.ana", at=OLD + dt.timedelta(days=1))
    storage.mark_done(requests["voicemail:CArecent-done"], "nurse.ana", at=RECENT)


def counts(storage: Storage) -> dict[str, int]:
    with storage.engine.connect() as connection:
        return {name: int(connection.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar_one()) for name in TABLES}


@pytest.fixture
def line(tmp_path: Path, database_url: str) -> Flask:
    app = create_app(app_config(tmp_path, DATABASE_URL=database_url, NOW=NOW))
    fill(app.extensions["careline"].storage)
    return app


def test_purge_removes_what_is_past_retention_and_says_so(line: Flask) -> None:
    storage: Storage = line.extensions["careline"].storage
    before = counts(storage)
    result = line.test_cli_runner().invoke(args=["purge", "--older-than", "90d"])
    assert result.exit_code == 0, result.output
    assert "Removed data older than 90 days (before 2026-03-03 12:00 UTC):" in result.output
    expected = {name: 1 for name in TABLES}
    assert {name: before[name] - count for name, count in counts(storage).items()} == expected
    for name in TABLES:
        assert f"  {name:<18} {1:>7}" in result.output
    assert "  total                    8" in result.output
    left = {row["dedupe_key"]: row for row in storage.callback_requests(status=None)}
    assert set(left) == {"voicemail:CArecent-done", "voicemail:CAold-open"}, "open requests stay, however old"
    assert all(row["recording_url"] is None for row in left.values())  # the old recording's reference is gone
    with storage.engine.connect() as connection:
        opted = {row.phone_hash[0]: row.opted_out for row in connection.execute(sa.select(tables.opt_outs))}
    assert opted == {"a": True, "c": False}, "a STOP is never forgotten"


def test_purge_defaults_to_retention_days(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path, NOW=NOW, RETENTION_DAYS=120))
    fill(app.extensions["careline"].storage)
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0
    assert "older than 120 days" in result.output and "  total                    0" in result.output
    week = app.test_cli_runner().invoke(args=["purge", "--older-than", "1w"])
    assert "older than 7 days" in week.output and "  total                   16" in week.output


def test_a_dry_run_counts_and_removes_nothing(line: Flask) -> None:
    storage: Storage = line.extensions["careline"].storage
    before = counts(storage)
    result = line.test_cli_runner().invoke(args=["purge", "--dry-run"])
    assert result.exit_code == 0
    assert result.output.startswith("Would remove data older than 90 days")
    assert "  total                    8" in result.output
    assert counts(storage) == before


@pytest.mark.parametrize("period", ["0d", "ninety", "-5d", "90y"])
def test_a_bad_period_is_refused(line: Flask, period: str) -> None:
    result = line.test_cli_runner().invoke(args=["purge", "--older-than", period])
    assert result.exit_code != 0
    assert "period" in result.output or "at least" in result.output


@pytest.mark.parametrize("days", ["0", "3651", "soon"])
def test_retention_days_must_be_sensible(tmp_path: Path, days: str) -> None:
    from ivr.config import ConfigError

    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        create_app(app_config(tmp_path, RETENTION_DAYS=days))
