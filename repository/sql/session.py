from collections.abc import Mapping
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection

from repository.common import ReadOnlyUnitOfWorkError
from repository.sql.errors import unavailable_on_connection_errors


class SqlSession:
    """The connection of one unit of work as its repositories see it."""

    def __init__(self, dialect_name: str, *, write: bool, one_statement: bool = False) -> None:
        self.dialect_name = dialect_name
        self.write = write
        # a unit that promised one statement may run without a transaction: a second
        # statement would not see the first one's snapshot, so it is refused
        self.one_statement = one_statement
        self._executed = False
        self.connection: AsyncConnection | None = None

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        if self.connection is None:
            raise RuntimeError('repository used outside its unit of work')
        if self.one_statement:
            if self._executed:
                raise RuntimeError('a one-statement unit of work ran a second statement')
            self._executed = True
        with unavailable_on_connection_errors():
            return await self.connection.execute(statement, parameters)

    async def execute_write(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        if not self.write:
            raise ReadOnlyUnitOfWorkError
        return await self.execute(statement, parameters)
