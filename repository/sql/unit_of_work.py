import asyncio
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repository.sql.errors import unavailable_on_connection_errors
from repository.sql.repositories import (
    SqlChatFileRepository,
    SqlChatRepository,
    SqlIdempotencyKeyRepository,
    SqlSandboxSessionRepository,
    SqlWorkspaceRepository,
)
from repository.sql.session import SqlSession
from usecase.interface import UnitOfWork

# execution option read by the SQLite `begin` hook: BEGIN IMMEDIATE for writers
WRITE_OPTION = 'chat_storage_write'


class SqlUnitOfWork(UnitOfWork):
    """One connection and one transaction, from enter to exit.

    `engine` gives the engine whose connections carry `WRITE_OPTION` set to `write`.
    With `autocommit` (a read unit that promised one statement, on a backend whose
    engine for it runs in autocommit) no transaction is begun: the one statement is its
    own transaction and sees one snapshot, and ending the unit sends nothing.
    """

    def __init__(
        self,
        engine: Callable[[], AsyncEngine],
        dialect_name: str,
        *,
        write: bool,
        writer_lock: asyncio.Lock | None = None,
        one_statement: bool = False,
        autocommit: bool = False,
    ) -> None:
        if autocommit and (write or not one_statement):
            raise ValueError('only a one-statement read unit may run in autocommit')
        self._engine = engine
        self._write = write
        self._autocommit = autocommit
        self._writer_lock = writer_lock if write else None
        self._entered = False
        self._session = SqlSession(dialect_name, write=write, one_statement=one_statement)
        self.workspaces = SqlWorkspaceRepository(self._session)
        self.chats = SqlChatRepository(self._session)
        self.chat_files = SqlChatFileRepository(self._session)
        self.sandbox_sessions = SqlSandboxSessionRepository(self._session)
        self.idempotency_keys = SqlIdempotencyKeyRepository(self._session)

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError('a unit of work can be entered only once')
        self._entered = True
        if self._writer_lock is not None:
            await self._writer_lock.acquire()
        try:
            self._session.connection = await _begin(self._engine, begin=not self._autocommit)
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
                await _discard(connection)
        finally:
            if self._writer_lock is not None:
                self._writer_lock.release()

    async def commit(self) -> None:
        with unavailable_on_connection_errors():
            await self._connection().commit()
        # the next statement begins a new transaction of the same kind (autobegin)

    async def rollback(self) -> None:
        with unavailable_on_connection_errors():
            await self._connection().rollback()

    def _connection(self) -> AsyncConnection:
        if self._session.connection is None:
            raise RuntimeError('unit of work is not active')
        return self._session.connection


async def _begin(engine: Callable[[], AsyncEngine], *, begin: bool) -> AsyncConnection:
    with unavailable_on_connection_errors():
        connection = await engine().connect()
        if not begin:
            return connection
        try:
            # `engine` carries WRITE_OPTION for `write` (SqlMetadataBackend._engine_for)
            await connection.begin()
        except BaseException:
            await _discard(connection)
            raise
        return connection


async def _discard(connection: AsyncConnection) -> None:
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
