"""Every transaction that writes can read first (issue 15 item 5: SQLite's BUSY_SNAPSHOT).

On SQLite a deferred transaction that has read, and then writes after another connection committed,
fails at once with "database is locked" (BUSY_SNAPSHOT: busy_timeout cannot help, its snapshot is
stale), and the guard took that for an outage of the whole database. The staff-alert claim did this
(commit 001cedf). Now every durable transaction on SQLite begins with BEGIN IMMEDIATE: it holds the
write lock from its first statement, so what it read is what it writes over, and another writer waits
its turn (busy_timeout) instead of making it fail.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from ivr.storage import Storage, staff_alerts, utcnow


def test_a_durable_transaction_may_read_then_write_while_another_connection_writes(storage: Storage) -> None:
    with storage.durable() as connection:
        connection.execute(staff_alerts.insert(), [{"created_at": utcnow(), "attempts": 0} for _ in range(3)])
    other_wrote = threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            storage.remember_choices("+12025550123", "en", False, "", utcnow())
            other_wrote.set()
        except BaseException as error:
            errors.append(error)

    with storage.durable() as connection:
        rows = connection.execute(sa.select(staff_alerts.c.id).order_by(staff_alerts.c.id))
        first = rows.fetchone()  # the read is still open, as a claim loop's would be
        assert first is not None
        writer = threading.Thread(target=other_writer)
        writer.start()
        time.sleep(0.3)  # before: the other writer commits now, and the update below fails at once
        connection.execute(staff_alerts.update().where(staff_alerts.c.id == first.id).values(attempts=1))
        rows.close()
    writer.join(timeout=30)
    assert errors == [] and other_wrote.is_set()
    with storage.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.sum(staff_alerts.c.attempts))).scalar_one() == 1
