"""PostgreSQL units of work whose prebuilt statements run on asyncpg directly.

Read units in autocommit (`AsyncpgAutocommitConnection`) are described here; units in a
transaction (`AsyncpgTransactionConnection`, at the end) begin and end it on asyncpg.

SQLAlchemy's asyncio layer passes every statement through a greenlet and its asyncpg
adapter, and checking a connection out of its pool and back costs a greenlet switch each
way (ADR 019). A read unit in autocommit has no transaction for that adapter to begin,
so its prebuilt statements go to an asyncpg connection of its own: one
`fetch`, with the statement prepared and cached by asyncpg, the rows mapped as
SQLAlchemy maps them (`read_plan.ReadPlan`). Anything else (a statement built per call)
goes through a SQLAlchemy connection, opened only then.

The connections only ever run single `SELECT`s in autocommit, which change no session
state: giving one back resets nothing (asyncpg's own reset is a round trip, about 250 µs
of CPU), and one that is, against all expectation, in a transaction is closed instead.
They are kept in `ReadConnections`, not in an asyncpg `Pool`: the pool wraps each
acquire in `wait_for` and each release in `shield` and a timeout, about an eighth of
such a read's CPU; taking an idle connection here is a `pop`.
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Executable, Select
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from repository.sql.errors import is_unavailable
from repository.sql.fallback import SqlAlchemyFallback
from repository.sql.read_plan import ReadPlan, RowShape, WritePlan

T = TypeVar('T')


class ReadConnections:
    """asyncpg connections for autocommit read units: at most `size` open, idle ones on
    a stack (the most recently used first), each opened by `connect` when none is idle.

    `expire()` closes the idle ones and marks those in use to be closed when they come
    back: after a lost server, every connection is replaced on its next use.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        size: int,
        acquire_timeout_seconds: float,
    ) -> None:
        self._connect = connect
        self._acquire_timeout_seconds = acquire_timeout_seconds
        self._idle: list[asyncpg.Connection] = []
        self._in_use: set[asyncpg.Connection] = set()
        self._expired: set[asyncpg.Connection] = set()
        # units holding, or opening, a connection: at most `size`
        self._slots = asyncio.Semaphore(size)
        self._all_back = asyncio.Event()
        self._all_back.set()
        self._closed = False

    @property
    def open_count(self) -> int:
        return len(self._idle) + len(self._in_use)

    async def acquire(self) -> asyncpg.Connection:
        """An idle connection, or a new one; waits (up to the timeout) while `size` are in
        use. Raises `TimeoutError` when none came back in time."""
        if self._closed:
            raise RuntimeError('the read connections are closed')
        if self._slots.locked():
            async with asyncio.timeout(self._acquire_timeout_seconds):
                await self._slots.acquire()
        else:
            await self._slots.acquire()  # a free slot: returns without waiting
        try:
            connection = await self._idle_or_new()
        except BaseException:
            self._slots.release()
            raise
        self._in_use.add(connection)
        self._all_back.clear()
        return connection

    async def _idle_or_new(self) -> asyncpg.Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():
                return connection
        return await self._connect()

    def release(self, connection: asyncpg.Connection) -> None:
        """Give a connection back: kept for the next unit unless it is closed (terminated
        by the unit, or lost), expired or (against all expectation) in a transaction,
        which is closed instead. The unit's slot is free again whatever happens here."""
        try:
            self._in_use.discard(connection)
            expired = connection in self._expired
            self._expired.discard(connection)
            # a closed one (`invalidate` terminated it) has no protocol left to ask
            # whether it is in a transaction: it is only let go
            if not connection.is_closed():
                if self._closed or expired or connection.is_in_transaction():
                    connection.terminate()
                else:
                    self._idle.append(connection)
        finally:
            self._slots.release()
            if not self._in_use:
                self._all_back.set()

    async def probe(self) -> None:
        """Run `SELECT 1` on a connection, as a unit would get one; raises what that
        raises (`TimeoutError` when none came back in time)."""
        connection = await self.acquire()
        try:
            await connection.fetchval('SELECT 1')
        except BaseException as error:
            connection.terminate()
            if is_unavailable(error):
                self.expire()
            raise
        finally:
            self.release(connection)

    def expire(self) -> None:
        """Close every idle connection; those in use are closed when they come back."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.terminate()
        self._expired |= self._in_use

    async def close(self, timeout_seconds: float) -> None:
        """Close the idle connections now, the others once they are back or, after
        `timeout_seconds`, at once."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            with suppress(Exception):
                await connection.close(timeout=timeout_seconds)
        try:
            async with asyncio.timeout(timeout_seconds):
                await self._all_back.wait()
        except TimeoutError:
            for connection in list(self._in_use):
                connection.terminate()


class _AsyncpgPlans(ABC):
    """`rows` and `objects` of a unit whose prebuilt `SELECT`s run on asyncpg
    (`_fetch`), and whose other statements go through SQLAlchemy (`execute`)."""

    dialect: Dialect

    @abstractmethod
    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]: ...

    @abstractmethod
    async def _fetch(self, plan: ReadPlan, parameters: Mapping[str, Any] | None) -> list[Any]:
        """The records of `plan` run on asyncpg."""

    async def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """The rows of a prebuilt `SELECT`, as `execute(...).mappings().all()` gives them."""
        plan = ReadPlan.of(statement, self.dialect)
        if plan is None:
            result = await self.execute(statement, parameters)
            return [dict(row) for row in result.mappings()]
        return plan.mappings(await self._fetch(plan, parameters))

    async def objects(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None, shape: RowShape[T]
    ) -> list[T]:
        """`shape.of_mapping` of each of `rows(statement, parameters)`."""
        plan = ReadPlan.of(statement, self.dialect)
        if plan is None:
            return [shape.of_mapping(row) for row in await self.rows(statement, parameters)]
        return plan.objects(await self._fetch(plan, parameters), shape)


class AsyncpgAutocommitConnection(SqlAlchemyFallback, _AsyncpgPlans):
    """One autocommit read unit's connection: prebuilt `SELECT`s on a connection of
    `pool`, anything else on a SQLAlchemy connection of `open_sqlalchemy`."""

    def __init__(
        self,
        pool: ReadConnections,
        dialect: Dialect,
        open_sqlalchemy: Callable[[], Awaitable[AsyncConnection]],
    ) -> None:
        self.dialect = dialect
        self._pool = pool
        self._open_sqlalchemy = open_sqlalchemy
        self._driver: asyncpg.Connection | None = None
        self._sqlalchemy: AsyncConnection | None = None

    async def driver(self) -> asyncpg.Connection:
        """The pool's connection of this unit, acquired on first use."""
        if self._driver is None:
            self._driver = await self._pool.acquire()
        return self._driver

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        if self._sqlalchemy is None:
            self._sqlalchemy = await self._open_sqlalchemy()
        return await self._sqlalchemy.execute(statement, parameters)

    async def _fetch(self, plan: ReadPlan, parameters: Mapping[str, Any] | None) -> list[Any]:
        arguments = plan.arguments(parameters)
        driver = await self.driver()
        try:
            records: list[Any] = await driver.fetch(plan.sql, *arguments)
        except BaseException as error:
            # a failed or cancelled fetch may leave the connection mid-protocol: it is
            # closed, never given back to another unit
            await self.invalidate()
            if is_unavailable(error):
                # the server went away: its other connections are as dead, and are
                # replaced on their next acquire (as SQLAlchemy invalidates its pool)
                self._pool.expire()
            raise
        return records

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        try:
            if driver is not None:
                self._pool.release(driver)
        finally:
            await self._close_fallback()

    async def invalidate(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.terminate()
            self._pool.release(driver)
        await self._invalidate_fallback()


class AsyncpgTransactionConnection(_AsyncpgPlans):
    """A PostgreSQL unit of work in a transaction that asyncpg itself begins and ends.

    Prebuilt statements run on the asyncpg connection directly: a `SELECT` as in the
    autocommit read units, a write for its row count (`WritePlan`). Anything else goes
    through `sqlalchemy`, a SQLAlchemy connection to the same server connection, opened
    in autocommit so that its adapter begins and ends nothing of its own: its statements
    run inside the transaction begun here. That saves SQLAlchemy's asyncio layer (a
    greenlet and its adapter for every statement), most of a write's CPU (ADR 019).

    `BEGIN` goes with the first statement, as SQLAlchemy's adapter sends it; after a
    commit, the next statement begins a new transaction, which the unit's end rolls
    back; closing rolls back whatever is still open before the connection goes back.
    """

    def __init__(
        self, sqlalchemy: AsyncConnection, driver: asyncpg.Connection, dialect: Dialect
    ) -> None:
        self.dialect = dialect
        self._sqlalchemy = sqlalchemy
        self._driver = driver

    async def _begun(self) -> asyncpg.Connection:
        if not self._driver.is_in_transaction():
            await self._driver.execute('BEGIN')
        return self._driver

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        await self._begun()
        return await self._sqlalchemy.execute(statement, parameters)

    async def _fetch(self, plan: ReadPlan, parameters: Mapping[str, Any] | None) -> list[Any]:
        arguments = plan.arguments(parameters)
        driver = await self._begun()
        records: list[Any] = await driver.fetch(plan.sql, *arguments)
        return records

    async def write(self, statement: Executable, parameters: Mapping[str, Any]) -> int:
        """Run a prebuilt `INSERT`, `UPDATE` or `DELETE`; its row count."""
        plan = WritePlan.of(statement, self.dialect)
        if plan is None:
            return (await self.execute(statement, parameters)).rowcount
        driver = await self._begun()
        status: str = await driver.execute(plan.sql, *plan.arguments(parameters))
        # the command tag: `UPDATE 1`, `DELETE 0`, `INSERT 0 1`
        return int(status.rsplit(' ', 1)[-1])

    async def commit(self) -> None:
        if self._driver.is_in_transaction():
            await self._driver.execute('COMMIT')

    async def rollback(self) -> None:
        if self._driver.is_in_transaction():
            await self._driver.execute('ROLLBACK')

    async def close(self) -> None:
        if self._driver.is_closed():
            # lost (during a COMMIT, say): never back into the pool for the next unit
            try:
                await self._sqlalchemy.invalidate()
            finally:
                await self._sqlalchemy.close()
            return
        try:
            await self.rollback()
        finally:
            await self._sqlalchemy.close()

    async def invalidate(self) -> None:
        await self._sqlalchemy.invalidate()
