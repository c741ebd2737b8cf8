"""Usage counts come in batches (ivr/usage.py): none is lost, none is counted twice, and a request
that plays a section does not wait for the database's busiest rows."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from ivr import create_app
from ivr.storage import Storage
from ivr.usage import UsageCounter
from tests.conftest import app_config
from tests.helpers.support import Call

ROOT = Path(__file__).resolve().parent.parent
TODAY = dt.datetime.now(dt.UTC).date()


def counts(storage: Storage) -> dict[tuple[str, str], int]:
    return {(row["channel"], row["section"]): row["count"] for row in storage.usage(TODAY - dt.timedelta(days=1))}


def test_counts_wait_for_the_batch_then_arrive_added_up(storage: Storage) -> None:
    counter = UsageCounter(storage, flush_seconds=60)
    for _ in range(3):
        counter.add("voice", "hospice")
    counter.add("sms", "hospice")
    counter.add("voice", "coping")
    assert counts(storage) == {} and counter.pending() == 5
    assert counter.flush() == 5
    assert counts(storage) == {("voice", "hospice"): 3, ("sms", "hospice"): 1, ("voice", "coping"): 1}
    counter.add("voice", "hospice")
    counter.flush()
    assert counts(storage)[("voice", "hospice")] == 4
    assert counter.flush() == 0  # nothing waits


def test_a_retried_step_counts_once_even_when_the_retry_reached_another_process(storage: Storage) -> None:
    first_process, second_process = UsageCounter(storage, 60), UsageCounter(storage, 60)
    first_process.add("voice", "hospice", once_key="step:count:abc")
    first_process.add("voice", "hospice", once_key="step:count:abc")  # a retry to the same process
    second_process.add("voice", "hospice", once_key="step:count:abc")  # and one to another
    second_process.add("voice", "hospice", once_key="step:count:def")  # a different step
    first_process.flush()
    second_process.flush()
    assert counts(storage) == {("voice", "hospice"): 2}


def test_a_big_batch_is_written_in_chunks_each_step_counted_once(storage: Storage) -> None:
    """More than a chunk (UsageCounter.CHUNK) at once: every count arrives, and a step retried into a later
    chunk of the same batch still counts once (each chunk claims its keys with its counts)."""
    counter = UsageCounter(storage, 60)
    steps = 2 * UsageCounter.CHUNK + 7
    for number in range(steps):
        counter.add("voice", "hospice", once_key=f"step:count:{number}")
    counter.add("voice", "hospice", once_key="step:count:0")  # a retry of the first, chunks later
    assert counter.flush() == steps + 1  # written (the retry's claim found the key taken)
    assert counts(storage) == {("voice", "hospice"): steps}
    assert counter.pending() == 0


def test_the_timer_adds_the_counts_without_any_request(storage: Storage) -> None:
    counter = UsageCounter(storage, flush_seconds=0.1)  # the line's is USAGE_FLUSH_SECONDS; short, not to wait
    counter.add("voice", "treatment")
    deadline = time.monotonic() + 10
    while counts(storage) != {("voice", "treatment"): 1} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counts(storage) == {("voice", "treatment"): 1}
    assert counter.pending() == 0
    counter.close()


@pytest.mark.sqlite_only
def test_counts_wait_while_the_database_is_away(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    path = Path(database_url.split("///", 1)[1])
    storage = Storage(database_url, "test-secret-key")
    storage.migrate()
    counter = UsageCounter(storage, flush_seconds=60)
    counter.add("voice", "hospice")
    storage.dispose()
    away = path.with_name("away.sqlite3")
    path.rename(away)  # SQLite then opens a new, empty file: no usage table
    try:
        assert counter.flush() == 0
        counter.add("voice", "hospice")
        assert counter.flush() == 0
        assert counter.pending() == 2, "kept, not dropped"
        warnings = [r for r in caplog.records if "usage counts" in r.getMessage()]
        assert len(warnings) == 1, "said once per outage"
    finally:
        storage.dispose()
        path.unlink(missing_ok=True)
        away.rename(path)
    assert counter.flush() == 2
    assert counts(storage) == {("voice", "hospice"): 2}
    storage.dispose()


EXITING = """
import sys
from ivr.storage import Storage
from ivr.usage import UsageCounter
storage = Storage(sys.argv[1], "test-secret-key")
counter = UsageCounter(storage, flush_seconds=60)
for _ in range(7):
    counter.add("sms", "palliative")
sys.exit(0)  # as a gunicorn worker ends: the counts go in on the way out
"""


@pytest.mark.slow
def test_a_process_that_exits_adds_its_counts_on_the_way_out(storage: Storage, database_url: str) -> None:
    subprocess.run([sys.executable, "-c", EXITING, database_url], cwd=ROOT, check=True, timeout=60)
    assert counts(storage) == {("sms", "palliative"): 7}


@pytest.fixture
def batching_app(tmp_path: Path) -> Iterator[Flask]:
    """The line as it runs by default: counts in batches (here every 60 s, so only a flush writes them)."""
    app = create_app(app_config(tmp_path, USAGE_FLUSH_SECONDS=60))
    yield app
    app.extensions["careline"].usage.close()
    app.extensions["careline"].storage.dispose()


def test_playing_a_section_does_not_write_its_count_during_the_request(batching_app: Flask) -> None:
    svc = batching_app.extensions["careline"]
    statements: list[str] = []
    engine = svc.storage.engine

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        call = Call(batching_app.test_client())
        call.start()
        call.press("1")
        call.press("#")
        call.press("5")
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert not any("usage_daily" in statement for statement in statements)
    assert svc.usage.pending() == 2
    svc.usage.flush()
    assert sum(counts(svc.storage).values()) == 2


def test_the_setting_is_checked() -> None:
    from ivr.config import ConfigError, settings_from_environment

    assert settings_from_environment({"USAGE_FLUSH_SECONDS": "5"})["USAGE_FLUSH_SECONDS"] == 5
    with pytest.raises(ConfigError):
        settings_from_environment({"USAGE_FLUSH_SECONDS": "-1"})


@pytest.mark.slow
def test_a_gunicorn_worker_adds_its_counts_when_the_line_stops(tmp_path: Path, database_url: str) -> None:
    """`make serve`'s workers (gunicorn.conf.py): a graceful stop (deploy, reload) loses no count."""
    from tests.helpers.servers import HttpClient, LineServer, line_environment

    server = LineServer(line_environment(database_url, USAGE_FLUSH_SECONDS="60"), tmp_path / "line.log")
    try:
        server.wait_until_ready()
        call = Call(HttpClient([server.port]))  # type: ignore[arg-type]
        call.start()
        call.press("4")
        call.press("#")
        call.press("4")
    finally:
        server.stop()
    storage = Storage(database_url, "test-secret-key")
    try:
        assert sum(counts(storage).values()) == 2, server.log()
    finally:
        storage.dispose()


def test_batches_from_many_processes_at_once_never_deadlock(storage: Storage, database_url: str) -> None:
    """Every worker flushes every second: batches over the same rows, in any order, must all go in."""
    import random
    import threading

    from ivr.storage import Use

    sections = [f"topic{i}" for i in range(20)]
    failures: list[str] = []

    def worker(seed: int) -> None:
        own = Storage(database_url, "test-secret-key")  # a process of its own, as a gunicorn worker
        order = random.Random(seed)
        try:
            for _ in range(10):
                batch = sections[:]
                order.shuffle(batch)
                keys = [f"step:count:{seed}:{order.random()}" for _ in batch]
                try:
                    own.add_uses([Use(TODAY, "voice", s, key) for s, key in zip(batch, keys, strict=True)])
                except sa.exc.SQLAlchemyError as error:
                    failures.append(type(error.orig).__name__ if hasattr(error, "orig") else type(error).__name__)
        finally:
            own.dispose()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert counts(storage) == {("voice", section): 50 for section in sections}


HOLD_WRITERS = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")  # SQLite's one writer's lock, until told to let go
print("held", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
"""


@pytest.mark.sqlite_only
@pytest.mark.slow
def test_a_full_batch_never_keeps_a_caller_waiting(storage: Storage, database_url: str) -> None:
    """Another process holds SQLite's write lock: counting still returns at once; the timer writes later."""
    counter = UsageCounter(storage, flush_seconds=60)
    counter.MAX_PENDING = 2
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITERS, database_url.split("///", 1)[1]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        for _ in range(4):
            counter.add("voice", "hospice")
        assert time.monotonic() - started < 0.5, "a request waited for the database"
    finally:
        holder.communicate("\n", timeout=30)
    # The woken timer tried meanwhile (and waited for the lock, or gave up and kept the counts): none is lost.
    counter.flush()
    assert counts(storage) == {("voice", "hospice"): 4}
    counter.close()


def test_counts_taken_while_the_database_is_away_are_kept(batching_app: Flask) -> None:
    from ivr import resilience

    svc = batching_app.extensions["careline"]
    with batching_app.app_context():
        resilience.guard().failed(sa.exc.OperationalError("SELECT 1", {}, Exception("down")), "a test outage")
    call = Call(batching_app.test_client())
    call.start()
    call.press("5")
    assert svc.usage.pending() == 1, "counted into the batch, not skipped with the database"
    svc.usage.flush()
    assert sum(counts(svc.storage).values()) == 1


@pytest.mark.sqlite_only
def test_a_batch_copies_the_log_into_the_database_file_so_no_request_has_to(storage: Storage) -> None:
    """SQLite: after a batch, its thread checkpoints (ivr/storage/sqlite.py `checkpoint`): the counts are in
    the database file itself, not only in its write-ahead log, and no request's commit had to copy them."""
    assert storage.file_watch is not None
    path = storage.file_watch.path
    counter = UsageCounter(storage, flush_seconds=60)
    counter.add("voice", "hospice")
    assert counter.flush(background=True) == 1  # as the batch thread flushes (a flush in a request does not)
    copy = path.with_name("file-only.sqlite3")
    copy.write_bytes(path.read_bytes())  # the file alone, without its -wal beside it
    alone = sa.create_engine(f"sqlite:///{copy}")
    with alone.connect() as connection:
        assert connection.exec_driver_sql("SELECT section, count FROM usage_daily").all() == [("hospice", 1)]
    alone.dispose()
    with storage.engine.connect() as connection:  # requests' commits checkpoint only as a backstop
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 4000
