from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Executable, Select
from sqlalchemy.engine import CursorResult

from repository.common import ReadOnlyUnitOfWorkError
from repository.sql.asyncpg_reads import AsyncpgAutocommitConnection, AsyncpgTransactionConnection
from repository.sql.errors import unavailable_on_connection_errors
from repository.sql.loop_sqlite import AutocommitReadConnection, LoopConnection
from repository.sql.read_plan import RowShape

T = TypeVar('T')


class UnitConnection(Protocol):
    """What a unit of work uses of its connection: SQLAlchemy's `AsyncConnection` or,
    for SQLite, `loop_sqlite.LoopConnection`."""

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def close(self) -> None: ...

    async def invalidate(self) -> None: ...


class SqlSession:
    """The connection of one unit of work as its repositories see it."""

    def __init__(self, dialect_name: str, *, write: bool, one_statement: bool = False) -> None:
        self.dialect_name = dialect_name
        self.write = write
        # a unit that promised one statement may run without a transaction: a second
        # statement would not see the first one's snapshot, so it is refused
        self.one_statement = one_statement
        self._executed = False
        self.connection: UnitConnection | None = None

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        connection = self._next_statement()
        with unavailable_on_connection_errors():
            return await connection.execute(statement, parameters)

    async def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        """The rows of a `SELECT` built once (a module constant) as mappings.

        The statement is compiled once and run on the DB-API connection on SQLite
        (`LoopConnection.rows`, and `AutocommitReadConnection.rows` in its one-statement
        read units) and in PostgreSQL's autocommit read units
        (`AsyncpgAutocommitConnection.rows`); elsewhere this is
        `execute(...).mappings().all()`.
        """
        connection = self._next_statement()
        with unavailable_on_connection_errors():
            if isinstance(connection, LoopConnection | AutocommitReadConnection):
                return connection.rows(statement, parameters)
            if isinstance(connection, AsyncpgAutocommitConnection | AsyncpgTransactionConnection):
                return await connection.rows(statement, parameters)
            result = await connection.execute(statement, parameters)
            return cast('Sequence[Mapping[str, Any]]', result.mappings().all())

    async def objects(
        self, statement: Select[Any], parameters: Mapping[str, Any], shape: RowShape[T]
    ) -> list[T]:
        """`rows(statement, parameters)`, each made an object by `shape`; on the DB-API
        (where `rows` goes there) without a mapping for each row."""
        connection = self._next_statement()
        with unavailable_on_connection_errors():
            if isinstance(connection, LoopConnection | AutocommitReadConnection):
                return connection.objects(statement, parameters, shape)
            if isinstance(connection, AsyncpgAutocommitConnection | AsyncpgTransactionConnection):
                return await connection.objects(statement, parameters, shape)
            result = await connection.execute(statement, parameters)
            return [shape.of_mapping(row) for row in result.mappings()]

    def _next_statement(self) -> UnitConnection:
        if self.connection is None:
            raise RuntimeError('repository used outside its unit of work')
        if self.one_statement:
            if self._executed:
                raise RuntimeError('a one-statement unit of work ran a second statement')
            self._executed = True
        return self.connection

    async def execute_write(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        if not self.write:
            raise ReadOnlyUnitOfWorkError
        return await self.execute(statement, parameters)

    async def execute_prebuilt_write(
        self, statement: Executable, parameters: Mapping[str, Any]
    ) -> int:
        """A write built once (a module constant); its row count.

        On SQLite it is compiled once and run on the DB-API cursor
        (`LoopConnection.write`); elsewhere this is `execute_write(...).rowcount`.
        """
        if not self.write:
            raise ReadOnlyUnitOfWorkError
        connection = self._next_statement()
        with unavailable_on_connection_errors():
            if isinstance(connection, LoopConnection):
                return connection.write(statement, parameters)
            if isinstance(connection, AsyncpgTransactionConnection):
                return await connection.write(statement, parameters)
            result = await connection.execute(statement, parameters)
            return result.rowcount
