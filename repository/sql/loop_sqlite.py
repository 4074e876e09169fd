"""SQLite units of work on a synchronous SQLAlchemy connection, driven from the event loop.

SQLAlchemy's asyncio layer runs every statement through a greenlet and awaits the
driver's coroutines from it: on a local file that bridge costs more than the statement
(ADR 019). A statement on a local SQLite file does not wait for anything that is worth a
thread, except two: `BEGIN IMMEDIATE`, which waits while another process holds the
write lock, and `COMMIT`, whose fsync of the WAL waits for the disk. So a unit of work
here uses a plain (synchronous) `Connection` on the event loop and sends only those two
to a worker thread, and `BEGIN IMMEDIATE` only when the lock is taken: it is first tried
without waiting. A read unit that promised one statement does not even take a SQLAlchemy
connection: its prebuilt `SELECT` runs on a DB-API connection kept for such reads
(`AutocommitReadConnection`).
"""

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import suppress
from typing import Any, TypeVar

from sqlalchemy import Executable, Select
from sqlalchemy.engine import Connection, CursorResult, Dialect, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import PoolProxiedConnection

from repository.sql.errors import unavailable_on_connection_errors
from repository.sql.fallback import SqlAlchemyFallback
from repository.sql.read_plan import ReadPlan, RowShape, WritePlan

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
        self._savepoints = itertools.count(1)

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

    def write(self, statement: Executable, parameters: Mapping[str, Any]) -> int:
        """Run a prebuilt `INSERT`, `UPDATE` or `DELETE`; its row count (ADR 019)."""
        plan = WritePlan.of(statement, self._connection.dialect)
        # outside a transaction (after a commit) the DB-API would commit the statement at
        # once, where SQLAlchemy begins one that the unit's end rolls back
        if plan is None or not self._connection.in_transaction():
            return self._connection.execute(statement, parameters).rowcount
        return self._run(plan.sql, plan.arguments(parameters), fetch=False)[1]

    def execute_sql(self, sql: str) -> None:
        """A statement without parameters or rows (`SAVEPOINT`, ...) on the DB-API cursor."""
        self._run(sql, (), fetch=False)

    def _fetch(self, plan: ReadPlan, parameters: Mapping[str, Any] | None) -> list[Any]:
        return self._run(plan.sql, plan.arguments(parameters), fetch=True)[0]

    def _run(self, sql: str, arguments: Sequence[Any], *, fetch: bool) -> tuple[list[Any], int]:
        """`sql` on the DB-API cursor: its rows (when `fetch`) and its row count."""
        dbapi_connection = self._connection.connection.dbapi_connection
        return _run_on(dbapi_connection, self._connection.dialect, sql, arguments, fetch=fetch)

    async def commit(self) -> None:
        """COMMIT, and its fsync of the WAL, in a thread."""
        await asyncio.get_running_loop().run_in_executor(self._commits, self._connection.commit)

    async def rollback(self) -> None:
        self._connection.rollback()

    def savepoint(self) -> 'Savepoint':
        """SAVEPOINT: a transaction inside the unit's, for a grouped unit of work."""
        return Savepoint(self, f'unit_{next(self._savepoints)}')

    async def close(self) -> None:
        self._connection.close()

    async def invalidate(self) -> None:
        self._connection.invalidate()


def _run_on(
    dbapi_connection: DBAPIConnection | None,
    dialect: Dialect,
    sql: str,
    arguments: Sequence[Any],
    *,
    fetch: bool,
) -> tuple[list[Any], int]:
    """`sql` on a cursor of `dbapi_connection`: its rows (when `fetch`), its row count."""
    if dbapi_connection is None:
        raise RuntimeError('the connection was closed')
    dbapi = dialect.loaded_dbapi
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql, arguments)
        fetched = list(cursor.fetchall()) if fetch else []
        count: int = cursor.rowcount
    except dbapi.Error as error:
        # wrapped as SQLAlchemy would (e.g. OperationalError: database is locked)
        raise DBAPIError.instance(sql, None, error, dbapi.Error) from error
    finally:
        cursor.close()
    return fetched, count


class IdleReadConnections:
    """DB-API connections of `engine`'s pool for one-statement reads, kept checked out
    while idle (at most `keep` of them): taking one is a `pop`, where a unit of work
    otherwise pays for a pool checkout, a SQLAlchemy `Connection` and their return
    (an eighth of a `GET` of a chat's history, ADR 019)."""

    def __init__(self, engine: Engine, *, keep: int) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[PoolProxiedConnection] = []

    def acquire(self) -> PoolProxiedConnection:
        if self._idle:
            return self._idle.pop()
        with unavailable_on_connection_errors():
            return self._engine.raw_connection()

    def release(self, connection: PoolProxiedConnection) -> None:
        if len(self._idle) < self._keep:
            self._idle.append(connection)
        else:
            connection.close()  # back to the pool

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            with suppress(Exception):
                connection.close()


class AutocommitReadConnection(SqlAlchemyFallback):
    """A one-statement read unit's connection: prebuilt `SELECT`s on a DB-API connection
    of `reads`, in the driver's autocommit (the statement is its own transaction);
    anything else on a `LoopConnection` of `open_sqlalchemy`, opened only then."""

    def __init__(
        self,
        reads: IdleReadConnections,
        dialect: Dialect,
        open_sqlalchemy: Callable[[], LoopConnection],
    ) -> None:
        self._reads = reads
        self._dialect = dialect
        self._open_sqlalchemy = open_sqlalchemy
        self._dbapi: PoolProxiedConnection | None = None
        self._sqlalchemy: LoopConnection | None = None
        self._failed = False

    def _fallback(self) -> LoopConnection:
        if self._sqlalchemy is None:
            self._sqlalchemy = self._open_sqlalchemy()
        return self._sqlalchemy

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        return await self._fallback().execute(statement, parameters)

    def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """As `LoopConnection.rows`."""
        plan = ReadPlan.of(statement, self._dialect)
        if plan is None:
            return self._fallback().rows(statement, parameters)
        return plan.mappings(self._fetch(plan, parameters))

    def objects(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None, shape: RowShape[T]
    ) -> list[T]:
        """As `LoopConnection.objects`."""
        plan = ReadPlan.of(statement, self._dialect)
        if plan is None:
            return self._fallback().objects(statement, parameters, shape)
        return plan.objects(self._fetch(plan, parameters), shape)

    def _fetch(self, plan: ReadPlan, parameters: Mapping[str, Any] | None) -> list[Any]:
        arguments = plan.arguments(parameters)
        if self._dbapi is None:
            self._dbapi = self._reads.acquire()
        try:
            return _run_on(
                self._dbapi.dbapi_connection, self._dialect, plan.sql, arguments, fetch=True
            )[0]
        except BaseException:
            self._failed = True  # not given to another unit: dropped when this one ends
            raise

    async def close(self) -> None:
        dbapi, self._dbapi = self._dbapi, None
        try:
            if dbapi is not None:
                if self._failed:
                    dbapi.invalidate()
                else:
                    self._reads.release(dbapi)
        finally:
            await self._close_fallback()

    async def invalidate(self) -> None:
        dbapi, self._dbapi = self._dbapi, None
        if dbapi is not None:
            dbapi.invalidate()
        await self._invalidate_fallback()


class Savepoint:
    """A `SAVEPOINT` run on the DB-API cursor.

    SQLAlchemy's `begin_nested` sends the same statements through its execution path
    and its transaction bookkeeping, which cost about a tenth of a grouped write's CPU
    (ADR 019). SQLAlchemy does not see these savepoints. That is safe here: they are
    always released or rolled back before the unit's `COMMIT` or `ROLLBACK`, and either
    of those ends them anyway.
    """

    def __init__(self, connection: LoopConnection, name: str) -> None:
        self._connection = connection
        self._name = name
        connection.execute_sql(f'SAVEPOINT {name}')

    def commit(self) -> None:
        """`RELEASE`: the savepoint's changes become part of the enclosing transaction."""
        self._connection.execute_sql(f'RELEASE SAVEPOINT {self._name}')

    def rollback(self) -> None:
        """`ROLLBACK TO` and `RELEASE`: the changes are undone and the savepoint is gone."""
        self._connection.execute_sql(f'ROLLBACK TO SAVEPOINT {self._name}')
        self.commit()


async def open_unit(engine: Engine, commits: Executor, *, write: bool) -> LoopConnection:
    """Check out a connection of `engine` (which carries the options) and begin."""
    if not write:
        return open_read_unit(engine, commits)
    with unavailable_on_connection_errors():
        connection = engine.connect()
        try:
            await _begin_write(connection)
        except BaseException:
            with suppress(Exception):
                connection.close()
            raise
    return LoopConnection(connection, commits)


def open_read_unit(engine: Engine, commits: Executor) -> LoopConnection:
    """`open_unit` of a read unit: BEGIN (deferred) takes no lock and never waits, so
    this needs no `await` (or, with the autocommit option, there is no BEGIN at all)."""
    with unavailable_on_connection_errors():
        connection = engine.connect()
        try:
            connection.begin()
        except BaseException:
            with suppress(Exception):
                connection.close()
            raise
    return LoopConnection(connection, commits)


async def _begin_write(connection: Connection) -> None:
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
