"""Files that hold phone numbers and recording links are the line's alone (issue 15, item 10).

Under a usual umask (022) a new file is readable by every user of the machine. The SQLite database
(with its -wal and -shm files), the folder the line creates for it, and the local secret key are
created for the line's own user only: files 0600, the folder 0700. (The spool: tests/test_database_faults.py.)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import ivr
from ivr import create_app
from ivr.storage import Storage
from tests.conftest import app_config

pytestmark = pytest.mark.sqlite_only


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_its_folder_are_the_lines_alone(tmp_path: Path) -> None:
    folder = tmp_path / "new-folder" / "data"
    url = f"sqlite:///{folder / 'careline.sqlite3'}"
    release_step = Storage(url, "test-secret-key")  # `flask --app ivr db upgrade` creates the file
    release_step.migrate()
    release_step.dispose()
    app = create_app(app_config(tmp_path, DATABASE_URL=url))
    storage = app.extensions["careline"].storage
    try:
        storage.open_voice_message("CA1", "+15551230001", "hospice", "en")  # the -wal and -shm files too
        files = sorted(folder.iterdir())
        assert [path.name for path in files][:1] == ["careline.sqlite3"]
        assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
        assert mode(folder) == 0o700
    finally:
        storage.dispose()


def test_the_local_secret_key_is_the_lines_alone(tmp_path: Path) -> None:
    secret = ivr._local_secret(tmp_path)
    assert len(secret) == 64
    assert mode(tmp_path / "secret_key") == 0o600
