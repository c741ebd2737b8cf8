"""Backups: the database and the spool, taken while the line runs, restored into a new, empty database.

    flask --app ivr db backup FOLDER    (deploy/careline-flask db backup /var/backups/careline/2026-12-07)
    flask --app ivr db restore FOLDER

A backup is a new folder (0700; its files 0600: they hold phone numbers) with:

    manifest.json     what it is: when, which database kind, the schema revision, how many spooled records
    database.dump     PostgreSQL: `pg_dump --format=custom` (one consistent snapshot, taken while the line runs)
    database.sqlite3  SQLite: SQLite's online backup API (a consistent copy, taken while the line runs)
    spool.tar         the spool files (SPOOL_DIR), taken under the spool's own lock

Restore refuses a database that already holds anything (PostgreSQL: any table; SQLite: any row): make a
new one. PostgreSQL goes through `pg_restore` (in one transaction), SQLite through the backup API again.
The spooled records are added to the restored database's spool (each once, by its key: a record already
there is not added twice), and move in when the line starts, exactly once as always. Afterwards the schema
is the backup's: `db upgrade` when the code is newer (the line's start check says so).

Not in a backup: the settings and SECRET_KEY. Keep the settings file apart (it holds secrets): without the
same SECRET_KEY the restored line can read neither the words people texted nor whose number an opt-out is.
The `pg_dump` and `pg_restore` programs (Debian's postgresql-client) must be the server's major version or
newer. Passwords go to them in PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
from contextlib import closing
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.engine import make_url

from ivr import resilience
from ivr.spool import Spool, folder_locked, spool_file_name
from ivr.storage import Storage, sqlite

MANIFEST = "manifest.json"
POSTGRES_DUMP = "database.dump"
SQLITE_COPY = "database.sqlite3"
SPOOL_ARCHIVE = "spool.tar"
FORMAT = 1

#: libpq's connection parameters a DATABASE_URL's query may carry, and their environment variables.
LIBPQ_QUERY = {
    "host": "PGHOST",
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
}


class BackupError(click.ClickException):
    """A backup or restore that cannot be done, said in plain words."""


# -- the pieces ---------------------------------------------------------------------------------


def libpq_environment(url: str) -> dict[str, str]:
    """The PG* environment variables that connect pg_dump and pg_restore where `url` connects the line."""
    parsed = make_url(url)
    found = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    for name, value in parsed.query.items():
        if name not in LIBPQ_QUERY:
            raise BackupError(f"DATABASE_URL has ?{name}=, which the backup does not know how to pass to pg_dump")
        found[LIBPQ_QUERY[name]] = value if isinstance(value, str) else value[-1]
    return {name: str(value) for name, value in found.items() if value}


def run_postgres_program(program: str, arguments: list[str], url: str) -> None:
    """Run pg_dump or pg_restore against `url`'s database; its own message when it fails."""
    path = shutil.which(program)
    if path is None:
        raise BackupError(f"{program} is not installed: sudo apt-get install -y postgresql-client")
    environ = {**os.environ, **libpq_environment(url)}
    result = subprocess.run([path, *arguments], env=environ, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{program} failed: {result.stderr.strip()}")


def has_data(storage: Storage) -> bool:
    """Whether the database holds any table (PostgreSQL) or any row (SQLite, whose file is replaced whole)."""
    with storage.engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
        if connection.dialect.name != "sqlite":
            return bool(tables)
        return any(connection.exec_driver_sql(f'SELECT 1 FROM "{table}" LIMIT 1').first() for table in tables)


# -- backup -------------------------------------------------------------------------------------


def backup(storage: Storage, url: str, spool: Path, folder: Path) -> dict[str, Any]:
    """Write a backup of the database at `url` and of the spool folder into the new `folder`; its manifest."""
    if folder.exists() and any(folder.iterdir()):
        raise BackupError(f"{folder} is not empty: a backup goes into a new folder")
    previous = os.umask(0o077)  # phone numbers and sealed words: the owner's alone
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        kind = make_url(url).get_backend_name()
        if kind == "postgresql":
            run_postgres_program("pg_dump", ["--format=custom", "--no-owner", "--no-privileges",
                                             f"--file={folder / POSTGRES_DUMP}"], url)  # fmt: skip
        elif kind == "sqlite":
            path = sqlite.database_path(url)
            assert path is not None
            copy_sqlite(f"file:{path}?mode=ro", folder / SQLITE_COPY)
        else:
            raise BackupError(f"cannot back up a {kind} database")
        records = archive_spool(spool, folder / SPOOL_ARCHIVE)
        manifest = {
            "format": FORMAT,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "database": kind,
            "schema_revision": storage.schema_revision(),
            "spool_records": records,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for written in folder.iterdir():
            fsync(written)
        fsync(folder)
    finally:
        os.umask(previous)
    return manifest


def archive_spool(spool: Path, archive: Path) -> int:
    """Tar every spool file of `spool` into `archive` under the spool's lock; the number of records."""
    records = 0
    with folder_locked(spool), tarfile.open(archive, "w") as tar:
        for path in sorted(spool.glob("*.jsonl")):
            data = path.read_bytes()
            records += sum(1 for line in data.splitlines() if line.strip())
            entry = tarfile.TarInfo(path.name)
            entry.size, entry.mode, entry.mtime = len(data), 0o600, int(path.stat().st_mtime)
            tar.addfile(entry, io.BytesIO(data))
    return records


def copy_sqlite(source_uri: str, target: Path) -> None:
    """Copy a SQLite database with SQLite's online backup API: a consistent copy, even while it is written."""
    with closing(sqlite3.connect(source_uri, uri=True)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)


def fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- restore ------------------------------------------------------------------------------------


def restore(storage: Storage, url: str, spool: Spool, folder: Path) -> dict[str, Any]:
    """Restore the backup in `folder` into the empty database at `url`, and its records into `spool`."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"{folder} holds no backup ({MANIFEST}: {type(error).__name__})") from error
    kind = make_url(url).get_backend_name()
    if manifest.get("format") != FORMAT or manifest.get("database") != kind:
        raise BackupError(f"this is a backup of a {manifest.get('database')} database; DATABASE_URL is {kind}")
    if has_data(storage):
        raise BackupError("the database in DATABASE_URL is not empty: restore into a new database (createdb)")
    storage.dispose()
    if kind == "postgresql":
        database = libpq_environment(url).get("PGDATABASE", "")
        run_postgres_program("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                                            f"--dbname={database}", str(folder / POSTGRES_DUMP)], url)  # fmt: skip
    else:
        path = sqlite.database_path(url)
        assert path is not None
        sqlite.prepare_file(url)
        copy_sqlite(f"file:{folder / SQLITE_COPY}?mode=ro", path)
    manifest["spool_records_added"] = restore_spool(folder / SPOOL_ARCHIVE, spool)
    return manifest


def restore_spool(archive: Path, spool: Spool) -> int:
    """Add each record of the archived spool files to `spool` unless it is there already; how many were added."""
    known = {record["id"] for record in spool.records()}
    added = 0
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is None:
                continue
            for line in extracted.read().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut short by a crash was never confirmed
                    continue
                if isinstance(record, dict) and record.get("id") and record["id"] not in known:
                    spool.append(record)
                    known.add(record["id"])
                    added += 1
    return added


# -- the commands (in the `db` group: ivr/release.py adds them) -------------------------------------


@click.command("backup")
@click.argument("folder", type=click.Path(path_type=Path))
def backup_command(folder: Path) -> None:
    """Back up the database and the spool into FOLDER (new or empty), while the line runs."""
    app = current_app
    guard = resilience.guard()
    manifest = backup(guard.storage, app.config["DATABASE_URL"], guard.spool.folder, folder)
    click.echo(
        f"Backed up the {manifest['database']} database (schema {manifest['schema_revision']}) and "
        f"{manifest['spool_records']} spooled record(s) into {folder}"
    )


@click.command("restore")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
def restore_command(folder: Path) -> None:
    """Restore the backup in FOLDER into the (new, empty) database of DATABASE_URL, with the line stopped."""
    app = current_app
    guard = resilience.guard()
    spool = Spool(guard.spool.folder, spool_file_name(app.config["DATABASE_URL"]))
    manifest = restore(guard.storage, app.config["DATABASE_URL"], spool, folder)
    click.echo(
        f"Restored the backup of {manifest['created_at']} (schema {manifest['schema_revision']}); "
        f"{manifest['spool_records_added']} spooled record(s) will move in when the line starts. "
        "If this release is newer than the backup, run `flask --app ivr db upgrade` next."
    )
