"""PostgreSQL read units in autocommit whose prebuilt `SELECT`s run on asyncpg directly.

SQLAlchemy's asyncio layer passes every statement through a greenlet and its asyncpg
adapter, and checking a connection out of its pool and back costs a greenlet switch each
way (ADR 019). A read unit in autocommit has no transaction for that adapter to begin,
so its prebuilt statements go to a connection of an asyncpg pool of its own: one
`fetch`, with the statement prepared and cached by asyncpg, the rows mapped as
SQLAlchemy maps them (`read_plan.ReadPlan`). Anything else (a statement built per call)
goes through a SQLAlchemy connection, opened only then.

The pool's connections only ever run single `SELECT`s in autocommit, which change no
session state: giving one back resets nothing (asyncpg's own reset is a round trip,
about 250 µs of CPU), unless it is, against all expectation, in a transaction.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Executable, Select
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from repository.sql.errors import is_unavailable
from repository.sql.read_plan import ReadPlan, RowShape

T = TypeVar('T')


async def reset_read_connection(connection: asyncpg.Connection) -> None:
    """The pool's `reset`: a read connection has nothing to reset but a stray transaction."""
    if connection.is_in_transaction():
        await connection.execute('ROLLBACK')


class AsyncpgAutocommitConnection:
    """One autocommit read unit's connection: prebuilt `SELECT`s on a connection of
    `pool`, anything else on a SQLAlchemy connection of `open_sqlalchemy`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dialect: Dialect,
        open_sqlalchemy: Callable[[], Awaitable[AsyncConnection]],
        *,
        acquire_timeout_seconds: float,
    ) -> None:
        self.dialect = dialect
        self._pool = pool
        self._open_sqlalchemy = open_sqlalchemy
        self._acquire_timeout_seconds = acquire_timeout_seconds
        self._driver: asyncpg.Connection | None = None
        self._sqlalchemy: AsyncConnection | None = None

    async def driver(self) -> asyncpg.Connection:
        """The pool's connection of this unit, acquired on first use."""
        if self._driver is None:
            self._driver = await self._pool.acquire(timeout=self._acquire_timeout_seconds)
        return self._driver

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        if self._sqlalchemy is None:
            self._sqlalchemy = await self._open_sqlalchemy()
        return await self._sqlalchemy.execute(statement, parameters)

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
                await self._pool.expire_connections()
            raise
        return records

    async def commit(self) -> None:
        """Autocommit: every statement has committed (SQLAlchemy's, if any, likewise)."""
        if self._sqlalchemy is not None:
            await self._sqlalchemy.commit()

    async def rollback(self) -> None:
        if self._sqlalchemy is not None:
            await self._sqlalchemy.rollback()

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        sqlalchemy, self._sqlalchemy = self._sqlalchemy, None
        try:
            if driver is not None:
                await self._pool.release(driver)
        finally:
            if sqlalchemy is not None:
                await sqlalchemy.close()

    async def invalidate(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.terminate()
            with suppress(Exception):
                await self._pool.release(driver)
        if self._sqlalchemy is not None:
            await self._sqlalchemy.invalidate()


async def close_pool(pool: asyncpg.Pool, timeout_seconds: float) -> None:
    """Close `pool` once its connections are back, or terminate them after the timeout."""
    try:
        await asyncio.wait_for(pool.close(), timeout_seconds)
    except TimeoutError:
        pool.terminate()
