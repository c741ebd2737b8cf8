"""What the database driver is sent, whichever way a statement goes: SQLAlchemy's `Connection`, or the
text line's transactions on the pooled driver connection (ivr/storage/driver.py), which fire no
SQLAlchemy execution events. Traced where the driver takes them: SQLite's trace callback, a psycopg
cursor class that notes each statement."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import sqlalchemy as sa


@contextmanager
def driver_statements(engine: sa.Engine, note: Callable[[str], None]) -> Iterator[None]:
    """Call `note` with each statement (transaction control too) sent on a connection taken from
    `engine`'s pool inside this block."""

    def on_checkout(driver: Any, *_args: object) -> None:
        if engine.dialect.name == "sqlite":
            driver.set_trace_callback(note)
        else:
            driver.cursor_factory = _tracing_cursor(driver.cursor_factory, note)

    def on_checkin(driver: Any, *_args: object) -> None:
        if driver is None:
            return
        if engine.dialect.name == "sqlite":
            driver.set_trace_callback(None)
        else:
            driver.cursor_factory = getattr(driver.cursor_factory, "traced", driver.cursor_factory)

    sa.event.listen(engine, "checkout", on_checkout)
    sa.event.listen(engine, "checkin", on_checkin)
    try:
        yield
    finally:
        # A pool the engine made anew inside the block (engine.dispose()) carries copies of the listeners,
        # which SQLAlchemy cannot remove by name; they go with the engine.
        with suppress(sa.exc.InvalidRequestError):
            sa.event.remove(engine, "checkin", on_checkin)
            sa.event.remove(engine, "checkout", on_checkout)


def _tracing_cursor(cursor_class: Any, note: Callable[[str], None]) -> Any:
    """A psycopg cursor class that notes each statement before sending it."""
    if hasattr(cursor_class, "traced"):
        return cursor_class

    class Tracing(cursor_class):  # type: ignore[misc,valid-type]
        traced = cursor_class

        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            note(query if isinstance(query, str) else query.as_string(self))
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            note(query if isinstance(query, str) else query.as_string(self))
            return super().executemany(query, *args, **kwargs)

    return Tracing
