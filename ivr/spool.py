"""A durable local spool for what must never be lost while the database is away.

When a voice message, a call-back request or an opt-out cannot be written to the database, it is
appended here instead, as one JSON line, and the file is fsync'ed before the caller hears "saved".
Each record carries an idempotency key (`id`); ivr/resilience.py moves the records into the
database once it answers again, and storage marks each key in processed_events in the same
transaction as the record itself, so a record is applied exactly once however often the spool is
replayed (a crash in the middle of a drain, two processes draining at once).

The file is append-only while records wait. Appends, reads and removals take an exclusive lock on
the spool folder (flock), so several processes (gunicorn workers) can share one spool. A drain
reads the records, applies them without holding the lock (appends go on meanwhile), then removes
the applied ones: a new file is written, fsync'ed and renamed over the old one, so a crash at any
moment leaves either the old file or the new one, never a record lost.

Records hold what the database would hold: a phone number in the clear only where a call-back
request needs one, otherwise the keyed hash. The folder and files are readable by their owner only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Record kinds, one per thing storage can apply (ivr/storage/replay.py `apply_spooled`).
VOICEMAIL = "voicemail"
RECORDING = "recording"
TEXT_TURN = "text_turn"
URGENT_CALL = "urgent_call"
KINDS = frozenset({VOICEMAIL, RECORDING, TEXT_TURN, URGENT_CALL})


def new_record(kind: str, at: dt.datetime, **fields: Any) -> dict[str, Any]:
    """A spool record of `kind`, with a fresh idempotency key and the time the event happened."""
    if kind not in KINDS:
        raise ValueError(f"unknown spool record kind {kind!r}")
    return {"id": uuid.uuid4().hex, "kind": kind, "at": at.astimezone(dt.UTC).isoformat(), **fields}


def spool_file_name(database_url: str) -> str:
    """One spool file per database: records wait for the database they belong to.

    Named by a hash of the URL without its password, so a changed password keeps the same spool.
    """
    from sqlalchemy.engine import make_url

    try:
        safe = make_url(database_url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL still gets a stable name
        safe = database_url
    return f"{hashlib.sha256(safe.encode()).hexdigest()[:16]}.jsonl"


@dataclass
class Pending:
    """What the spool holds that the database may not know yet, as far as answers depend on it."""

    #: phone hash -> opted out (True) or back in (False), the newest spooled change.
    opt_outs: dict[str, bool] = field(default_factory=dict)
    #: text event key (sms:<MessageSid>) -> the answer token given.
    outcomes: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def folder_locked(folder: Path) -> Iterator[None]:
    """The spool folder's lock across processes (an flock on the folder; made 0700 when missing): while it is
    held no record is half-written or moved in. Also taken by `flask --app ivr db backup` (ivr/backups.py)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


class Spool:
    """An append-only, fsync'ed JSON-lines file of records waiting for the database."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.path = folder / name
        self._path_name = os.fspath(self.path)  # for os.stat, a little cheaper than Path.stat
        self._thread_lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._pending = Pending()

    # -- the lock -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive use of the spool folder, across threads and processes."""
        with self._thread_lock, folder_locked(self.folder):
            yield

    def _sync_folder(self) -> None:
        descriptor = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    # -- writing --------------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        """Add `record` durably: when this returns, it survives a crash of the process or machine."""
        line = _line(record)
        with self._locked():
            created = not self.path.exists()
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            if created:
                self._sync_folder()
        self._note(record)

    # -- reading --------------------------------------------------------------------------------

    def has_records(self) -> bool:
        """Whether anything waits (one stat call: cheap enough for every request)."""
        try:
            return os.stat(self._path_name).st_size > 0
        except OSError:  # no file (nothing waits), or no usable folder (nothing could be spooled)
            return False

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, oldest first (a line cut short by a crash was never confirmed: skipped)."""
        try:
            raw = self.path.read_bytes()
        except OSError:
            return []
        found = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("Spool line %d is not a whole record (cut short by a crash?): skipped", number)
                continue
            if isinstance(record, dict) and record.get("kind") in KINDS and record.get("id"):
                found.append(record)
        return found

    def pending(self) -> Pending:
        """Opt-outs and answers still only in the spool (re-read only when the file changed)."""
        try:
            stat = os.stat(self._path_name)
            signature: tuple[int, int, int] | None = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except OSError:
            signature = None
        if signature != self._signature:
            fresh = Pending()
            for record in self.records() if signature else []:
                _note_in(fresh, record)
            self._pending, self._signature = fresh, signature
        return self._pending

    def _note(self, record: dict[str, Any]) -> None:
        """Make a record this process just spooled count at once, before the file is read again."""
        _note_in(self._pending, record)

    # -- draining -------------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """The records waiting now, read under the lock (so never half an append)."""
        with self._locked():
            return self.records()

    def remove(self, ids: set[str]) -> None:
        """Drop the records whose keys are in `ids` (they are in the database now), keeping every
        other one, including those appended meanwhile: write a new file, fsync, rename, fsync the folder."""
        if not ids:
            return
        with self._locked():
            kept = [record for record in self.records() if record["id"] not in ids]
            if not kept:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                self._sync_folder()
                return
            temporary = self.path.with_name(self.path.name + ".tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for record in kept:
                    os.write(descriptor, _line(record))
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(temporary, self.path)
            self._sync_folder()


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()


def _note_in(pending: Pending, record: dict[str, Any]) -> None:
    if record.get("kind") != TEXT_TURN:
        return
    changes = record.get("changes") or {}
    if changes.get("opted_out") is not None and record.get("phone_hash"):
        pending.opt_outs[record["phone_hash"]] = bool(changes["opted_out"])
    if record.get("event_key"):
        pending.outcomes[record["event_key"]] = str(record.get("outcome", ""))
