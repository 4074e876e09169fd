"""A connection for SQLAlchemy's `sqlite+aiosqlite` dialect that runs SQLite on the event loop.

aiosqlite runs every call of every statement (cursor, execute, fetch, close) in the
connection's own thread: a small request paid a dozen or more thread round trips, which
cost more than the queries themselves (ADR 019). Here a statement on the local file runs
where it is called; only what may wait runs in a worker thread: `BEGIN IMMEDIATE` (the
write lock of another process, up to the busy timeout) and `COMMIT` (the fsync of the
WAL). One unit of work uses a connection at a time, so the calls never overlap.
"""

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self

# statements that may wait on a lock or the disk: never on the event loop
_WAITING_STATEMENTS = ('BEGIN IMMEDIATE', 'BEGIN EXCLUSIVE', 'COMMIT', 'END', 'VACUUM')


def _may_wait(sql: str) -> bool:
    return sql.lstrip()[:16].upper().startswith(_WAITING_STATEMENTS)


class _RunNow:
    """Stands for aiosqlite's request queue, which SQLAlchemy uses to set the isolation level."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # noqa: BLE001 - handed to the awaiting caller
            future.set_exception(error)


class InlineCursor:
    """The awaitable cursor API SQLAlchemy's adapter expects, on a `sqlite3.Cursor`."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:  # noqa: ANN401 - the DB-API's own loose type
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> 'InlineCursor':  # noqa: ANN401
        if _may_wait(sql):
            await asyncio.to_thread(self._cursor.execute, sql, parameters)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> 'InlineCursor':
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:  # noqa: ANN401
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """The parts of `aiosqlite.Connection` that SQLAlchemy's aiosqlite dialect uses."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        # the dialect checks `_connection` before commit and rollback, and queues on `_tx`
        self._connection: sqlite3.Connection | None = connection
        self._tx = _RunNow()

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        await asyncio.to_thread(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


async def connect(path: str, *, busy_timeout_seconds: float) -> InlineConnection:
    """Open the file (in a thread: opening may wait for the disk)."""
    connection = await asyncio.to_thread(
        sqlite3.connect, path, timeout=busy_timeout_seconds, check_same_thread=False
    )
    return InlineConnection(connection)
