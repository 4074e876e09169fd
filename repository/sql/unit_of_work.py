from collections.abc import Awaitable, Callable
from contextlib import suppress
from types import TracebackType
from typing import Protocol, Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.error import CommitOutcomeUnknownError
from repository.common import to_the_end
from repository.sql.errors import commit_in_doubt, unavailable_on_connection_errors
from repository.sql.loop_sqlite import LoopConnection
from repository.sql.repositories import (
    SqlChatFileRepository,
    SqlChatRepository,
    SqlHistorySegmentRepository,
    SqlIdempotencyKeyRepository,
    SqlSandboxSessionRepository,
    SqlStoreInventory,
    SqlWorkspaceRepository,
)
from repository.sql.session import SqlSession, UnitConnection
from usecase.interface import UnitOfWork

# execution option read by the SQLite `begin` hook: BEGIN IMMEDIATE for writers
WRITE_OPTION = 'chat_storage_write'


class WriterLock(Protocol):
    """What serialises this process's write units (SQLite): `asyncio.Lock`'s two calls."""

    async def acquire(self) -> object: ...

    def release(self) -> None: ...


class SqlUnitOfWork(UnitOfWork):
    """One connection and one transaction, from enter to exit.

    `open_connection` checks out a connection and begins its transaction, of the kind
    `write` says (`loop_sqlite.open_unit` for SQLite; PostgreSQL's
    `AsyncpgTransactionConnection` begins with its first statement). A read unit that
    promised one statement may be opened in autocommit: that statement is its own
    transaction and sees one snapshot, and ending the unit sends nothing.
    """

    def __init__(
        self,
        open_connection: Callable[[], Awaitable[UnitConnection]],
        dialect_name: str,
        *,
        write: bool,
        writer_lock: WriterLock | None = None,
        one_statement: bool = False,
    ) -> None:
        self._open_connection = open_connection
        self._write = write
        self._writer_lock = writer_lock if write else None
        self._entered = False
        self._session = SqlSession(dialect_name, write=write, one_statement=one_statement)
        self.workspaces = SqlWorkspaceRepository(self._session)
        self.chats = SqlChatRepository(self._session)
        self.chat_files = SqlChatFileRepository(self._session)
        self.sandbox_sessions = SqlSandboxSessionRepository(self._session)
        self.idempotency_keys = SqlIdempotencyKeyRepository(self._session)
        self.history_segments = SqlHistorySegmentRepository(self._session)
        self.inventory = SqlStoreInventory(self._session)

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError('a unit of work can be entered only once')
        self._entered = True
        if self._writer_lock is not None:
            await self._writer_lock.acquire()
        try:
            self._session.connection = await self._open_connection()
        except BaseException:
            if self._writer_lock is not None:
                self._writer_lock.release()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._session.connection = self._session.connection, None
        try:
            if connection is not None:
                await discard(connection)
        finally:
            if self._writer_lock is not None:
                self._writer_lock.release()

    async def commit(self) -> None:
        connection = self._connection()
        with unavailable_on_connection_errors():
            await to_the_end(_commit(connection))
        # the next statement begins a new transaction of the same kind (autobegin)

    async def rollback(self) -> None:
        with unavailable_on_connection_errors():
            await self._connection().rollback()

    def _connection(self) -> UnitConnection:
        if self._session.connection is None:
            raise RuntimeError('unit of work is not active')
        return self._session.connection


async def _commit(connection: UnitConnection) -> None:
    if isinstance(connection, LoopConnection):
        await connection.commit()
        return
    try:
        await connection.commit()
    except Exception as error:
        # PostgreSQL: the COMMIT may have reached the server, which then committed
        if commit_in_doubt(error):
            raise CommitOutcomeUnknownError from None
        raise


async def open_async_unit(engine: AsyncEngine) -> AsyncConnection:
    """A connection of `engine` (PostgreSQL's, in autocommit), checked out."""
    with unavailable_on_connection_errors():
        return await engine.connect()


async def discard(connection: UnitConnection) -> None:
    """Roll back and return the connection; a broken one is invalidated instead.

    Nothing was committed, so there is nothing to report when this fails.
    """
    try:
        # closing rolls back the transaction, and the pool then skips its own reset
        await connection.close()
    except Exception:  # noqa: BLE001 - the connection is dropped either way
        with suppress(Exception):
            await connection.invalidate()
        with suppress(Exception):
            await connection.close()
