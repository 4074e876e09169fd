"""SQLite units of work on a synchronous SQLAlchemy connection, driven from the event loop.

SQLAlchemy's asyncio layer runs every statement through a greenlet and awaits the
driver's coroutines from it: on a local file that bridge costs more than the statement
(ADR 019). A statement on a local SQLite file does not wait for anything that is worth a
thread, except two: `BEGIN IMMEDIATE`, which waits while another process holds the
write lock, and `COMMIT`, whose fsync of the WAL waits for the disk. So a unit of work
here uses a plain (synchronous) `Connection` on the event loop and sends only those two
to a worker thread, and `BEGIN IMMEDIATE` only when the lock is taken: it is first tried
without waiting.
"""

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from contextlib import suppress
from typing import Any, TypeVar

from sqlalchemy import Executable, Select
from sqlalchemy.engine import Connection, CursorResult, Engine, NestedTransaction
from sqlalchemy.exc import DBAPIError, OperationalError

from repository.sql.errors import unavailable_on_connection_errors
from repository.sql.read_plan import ReadPlan, RowShape

T = TypeVar('T')

# execution option read by the `begin` hook: run BEGIN IMMEDIATE without waiting for
# another process's lock (busy timeout 0); the unit retries in a thread when it is taken
NOWAIT_OPTION = 'chat_storage_nowait'
# execution option read by the `begin` hook: no BEGIN at all, for a one-statement read
AUTOCOMMIT_OPTION = 'chat_storage_autocommit'


def is_locked(error: OperationalError) -> bool:
    """SQLITE_BUSY: another connection holds the lock this statement needs."""
    return 'database is locked' in str(error.orig)


class LoopConnection:
    """The async face a `SqlUnitOfWork` expects, on a sync connection used from the loop.

    `commits` runs COMMIT: a thread of the backend's own, so that a writer holding the
    write lock never queues behind other requests' file work in the default executor.
    """

    def __init__(self, connection: Connection, commits: Executor) -> None:
        self._connection = connection
        self._commits = commits

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        return self._connection.execute(statement, parameters)

    def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """The rows of a prebuilt `SELECT`, as `execute(...).mappings().all()` would give
        them, run on the DB-API cursor with the statement compiled once (ADR 019)."""
        plan = ReadPlan.of(statement, self._connection.dialect)
        if plan is None:
            result = self._connection.execute(statement, parameters)
            return [dict(row) for row in result.mappings()]
        return plan.mappings(self._fetch(plan, parameters))

    def objects(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None, shape: RowShape[T]
    ) -> list[T]:
        """`shape.of_mapping` of each of `rows(statement, parameters)`."""
        plan = ReadPlan.of(statement, self._connection.dialect)
        if plan is None:
            return [shape.of_mapping(row) for row in self.rows(statement, parameters)]
        return plan.objects(self._fetch(plan, parameters), shape)

    def _fetch(self, plan: ReadPlan, parameters: Mapping[str, Any] | None) -> list[Any]:
        arguments = plan.arguments(parameters)
        dbapi = self._connection.dialect.loaded_dbapi
        cursor = self._connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(plan.sql, arguments)
            fetched = list(cursor.fetchall())
        except dbapi.Error as error:
            # wrapped as SQLAlchemy would (e.g. OperationalError: database is locked)
            raise DBAPIError.instance(plan.sql, None, error, dbapi.Error) from error
        finally:
            cursor.close()
        return fetched

    async def commit(self, first: Callable[[], None] | None = None) -> None:
        """COMMIT, and its fsync of the WAL, in a thread; `first` (blocking) before it, in
        the same thread: one hop of the writer's lock to a thread and back, not two."""
        if first is None:
            commit = self._connection.commit
        else:

            def commit() -> None:
                first()
                self._connection.commit()

        await asyncio.get_running_loop().run_in_executor(self._commits, commit)

    async def rollback(self) -> None:
        self._connection.rollback()

    def savepoint(self) -> NestedTransaction:
        """SAVEPOINT: a transaction inside the unit's, for a grouped unit of work."""
        return self._connection.begin_nested()

    async def close(self) -> None:
        self._connection.close()

    async def invalidate(self) -> None:
        self._connection.invalidate()


async def open_unit(engine: Engine, commits: Executor, *, write: bool) -> LoopConnection:
    """Check out a connection of `engine` (which carries the options) and begin."""
    with unavailable_on_connection_errors():
        connection = engine.connect()
        try:
            await _begin(connection, write=write)
        except BaseException:
            with suppress(Exception):
                connection.close()
            raise
    return LoopConnection(connection, commits)


async def _begin(connection: Connection, *, write: bool) -> None:
    if not write:
        connection.begin()  # BEGIN (deferred) takes no lock and never waits; or none at all
        return
    try:
        connection.execution_options(**{NOWAIT_OPTION: True}).begin()
    except OperationalError as error:
        if not is_locked(error):
            raise
    else:
        return
    finally:
        connection.execution_options(**{NOWAIT_OPTION: False})
    # another process holds the write lock: wait for it (up to the busy timeout), in a thread
    await asyncio.to_thread(connection.begin)
