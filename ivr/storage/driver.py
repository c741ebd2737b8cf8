"""The text line's two per-text transactions, run on the pool's own database connection.

Everything else in ivr/storage/ goes through SQLAlchemy's `Connection`. A text runs two small
transactions (read its conversation; store its turn), and there SQLAlchemy's execution layer cost
more than the work itself. Measured 2026-12-07 on the 2-core machine (`bench.cpu`, SQLite, one
process), the conversation read cost 157-168 us through `Connection.execute` against 31-35 us on the
pooled driver connection (`Engine.raw_connection()`), and a whole text about 1,030-1,130 us of CPU, of
which these two transactions were 44% (py-spy). Through this module a text costs ~300 us less, which
is what `make bench` needs for texts to hold their floor (docs/benchmark.md has the before and after).

What stays SQLAlchemy's: the pool (and its events: the SQLite pragmas, the file check, PostgreSQL's
pre-ping), the SQL (each statement is compiled by SQLAlchemy for the connection's dialect, once),
the parameter types (each bind parameter's own processor, e.g. SQLite's datetime format) and the
errors (a driver error becomes the same `sqlalchemy.exc.DBAPIError` subclass `Connection` would
raise, so the database guard sees no difference). What it leaves out: events per statement,
result-type processing (the text line's columns are plain strings and numbers), logging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa


@dataclass(frozen=True)
class _Compiled:
    #: Held, so its id (the cache key) is never another statement's.
    statement: Any
    sql: str
    #: Parameter names in the order the driver takes them (SQLite's "?"), or None for named ones.
    order: tuple[str, ...] | None
    processors: Mapping[str, Callable[[Any], Any]]
    defaults: Mapping[str, Any]


def _compile(statement: Any, dialect: sa.Dialect, keys: tuple[str, ...]) -> _Compiled:
    # An INSERT's columns are the keys given, as `Connection.execute` compiles it. A column left out that
    # SQLAlchemy would fill in from a Python default (its execution context does that, not this module)
    # is refused here, rather than sent as NULL.
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    prefetched = [*getattr(compiled, "insert_prefetch", ()), *getattr(compiled, "update_prefetch", ())]
    if prefetched:
        names = ", ".join(sorted(column.key for column in prefetched))
        raise ValueError(f"give every column on the driver path; left to a Python default: {names}")
    processors = {}
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    # Literal values SQLAlchemy bound itself (coalesce(outcome, '') binds the ''), with no name of ours.
    defaults = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
    order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    return _Compiled(statement, str(compiled), order, processors, defaults)


class Result:
    """What a statement gave: its rows (for a SELECT or RETURNING) and rowcount."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def one(self) -> tuple[Any, ...]:
        """The only row (as `sa.Result.one`)."""
        if len(self.rows) != 1:
            raise sa.exc.NoResultFound("expected one row") if not self.rows else sa.exc.MultipleResultsFound()
        return self.rows[0]

    def scalar(self) -> Any:
        """The first column of the first row, or None (as `sa.Result.scalar`)."""
        return self.rows[0][0] if self.rows else None


class DriverConnection:
    """A pooled driver connection in a transaction, with `execute` and `dialect` as `sa.Connection` has
    them for the statements the text line runs (so `store_text_turn_in` serves both)."""

    #: Each statement compiled once per database kind and set of columns given, at its first use (as
    #: SQLAlchemy's own compiled cache does for `Connection`): a handful of module constants, never data.
    _compiled: ClassVar[dict[tuple[int, type, str, tuple[str, ...]], _Compiled]] = {}

    def __init__(self, driver: Any, dialect: sa.Dialect) -> None:
        self._driver = driver
        self.dialect = dialect

    def execute(self, statement: Any, values: Mapping[str, Any]) -> Result:
        """Run `statement` (a SQLAlchemy Core statement built once, at import) with `values`."""
        keys = tuple(sorted(values))
        key = (id(statement), type(self.dialect), self.dialect.paramstyle, keys)  # the driver's own SQL
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(statement, self.dialect, keys)
        params = {**compiled.defaults, **values}
        for name, process in compiled.processors.items():
            params[name] = process(params[name])
        bound: Any = params if compiled.order is None else tuple(params[name] for name in compiled.order)
        cursor = self._driver.cursor()
        try:
            cursor.execute(compiled.sql, bound)
            rows = cursor.fetchall() if cursor.description is not None else []
            return Result(rows, cursor.rowcount)
        except self.dialect.loaded_dbapi.Error as error:
            raise _as_sqlalchemy_error(error, self.dialect, compiled.sql) from error
        finally:
            cursor.close()


def _as_sqlalchemy_error(error: Exception, dialect: sa.Dialect, statement: str | None = None) -> sa.exc.StatementError:
    """The `sqlalchemy.exc` error `Connection` would raise for the driver's `error` (parameters never shown)."""
    return sa.exc.DBAPIError.instance(
        statement, None, error, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
    )


@contextmanager
def driver_transaction(engine: sa.Engine) -> Iterator[DriverConnection]:
    """A pooled connection for one transaction: committed when the block ends, rolled back on an error,
    given back to the pool either way. Errors reach the caller as SQLAlchemy's, as from `engine.begin()`."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        pooled = engine.raw_connection()
    except dbapi_error as error:  # the pool's events (the SQLite file check) raise the driver's errors
        raise _as_sqlalchemy_error(error, engine.dialect) from error
    try:
        yield DriverConnection(pooled.driver_connection, engine.dialect)
        pooled.commit()
    except BaseException as error:
        with suppress(dbapi_error):
            pooled.rollback()
        original = error.orig if isinstance(error, sa.exc.DBAPIError) else error
        if isinstance(original, dbapi_error) and engine.dialect.is_disconnect(original, pooled.driver_connection, None):
            pooled.invalidate(original)  # never back in the pool
        if isinstance(error, dbapi_error):  # the commit failed
            raise _as_sqlalchemy_error(error, engine.dialect) from error
        raise
    finally:
        pooled.close()
