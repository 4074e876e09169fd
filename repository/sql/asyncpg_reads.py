"""PostgreSQL read units in autocommit whose prebuilt `SELECT`s run on asyncpg directly.

SQLAlchemy's asyncio layer passes every statement through a greenlet and its asyncpg
adapter (ADR 019). A read unit in autocommit has no transaction for that adapter to
begin, so its prebuilt statements can go to the asyncpg connection itself: one
`fetch`, with the statement prepared and cached by asyncpg, the rows mapped as
SQLAlchemy maps them (`read_plan.ReadPlan`). Everything else goes through SQLAlchemy.
"""

from collections.abc import Mapping
from contextlib import suppress
from typing import Any, TypeVar

from sqlalchemy import Executable, Select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection

from repository.sql.read_plan import ReadPlan, RowShape

T = TypeVar('T')


class AsyncpgAutocommitConnection:
    """An `AsyncConnection` in autocommit, with `rows` on its asyncpg connection."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._driver: Any = None

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        return await self._connection.execute(statement, parameters)

    async def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """The rows of a prebuilt `SELECT`, as `execute(...).mappings().all()` gives them."""
        plan = ReadPlan.of(statement, self._connection.dialect)
        if plan is None:
            result = await self._connection.execute(statement, parameters)
            return [dict(row) for row in result.mappings()]
        return plan.mappings(await self._fetch(plan, parameters))

    async def objects(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None, shape: RowShape[T]
    ) -> list[T]:
        """`shape.of_mapping` of each of `rows(statement, parameters)`."""
        plan = ReadPlan.of(statement, self._connection.dialect)
        if plan is None:
            return [shape.of_mapping(row) for row in await self.rows(statement, parameters)]
        return plan.objects(await self._fetch(plan, parameters), shape)

    async def _fetch(self, plan: ReadPlan, parameters: Mapping[str, Any] | None) -> list[Any]:
        try:
            if self._driver is None:
                raw = await self._connection.get_raw_connection()
                self._driver = raw.driver_connection
            records: list[Any] = await self._driver.fetch(plan.sql, *plan.arguments(parameters))
        except BaseException:
            # SQLAlchemy did not see the error, so it cannot tell a lost connection: never
            # give this one back to the pool
            with suppress(Exception):
                await self._connection.invalidate()
            raise
        return records

    async def commit(self) -> None:
        await self._connection.commit()

    async def rollback(self) -> None:
        await self._connection.rollback()

    async def close(self) -> None:
        await self._connection.close()

    async def invalidate(self) -> None:
        await self._connection.invalidate()
