"""The PostgreSQL metadata backend, through asyncpg."""

import asyncio
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from domain.error import ServiceUnavailableError
from repository.sql.asyncpg_reads import (
    AsyncpgAutocommitConnection,
    AsyncpgTransactionConnection,
    ReadConnections,
)
from repository.sql.dsn import parse_postgres_dsn
from repository.sql.metadata_backend import SqlMetadataBackend, upgrade_to_head
from repository.sql.session import UnitConnection
from repository.sql.unit_of_work import discard, open_async_unit

# pg_advisory_xact_lock key that serialises migrations of every process ('chat-sto')
MIGRATION_LOCK_ID = 0x63686174_2D73746F


class PostgresMetadataBackend(SqlMetadataBackend):
    """Metadata in PostgreSQL through asyncpg; the DSN is never logged or raised.

    Units of work check out a connection of SQLAlchemy's pool and run their transaction
    and their prebuilt statements on its asyncpg connection
    (`asyncpg_reads.AsyncpgTransactionConnection`). One-statement reads run their
    prebuilt `SELECT` on asyncpg connections of their own (`asyncpg_reads.ReadConnections`).
    Up to `pool_size` connections each.
    """

    backend_name = 'postgres'
    # a single SELECT in autocommit is its own transaction with its own snapshot: the
    # same view a transaction would give, without the BEGIN and ROLLBACK round trips
    _autocommit_one_statement_reads = True

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        connect_timeout_seconds: float = 5.0,
        statement_timeout_seconds: float = 30.0,
        idle_in_transaction_timeout_seconds: float = 10.0,
    ) -> None:
        target = parse_postgres_dsn(dsn)
        # the DSN's own connect_timeout, as libpq, wins over the setting
        connect_timeout_seconds = target.connect_timeout_seconds or connect_timeout_seconds
        super().__init__(health_timeout_seconds=connect_timeout_seconds)
        self._target = target
        self._url = target.url
        self._pool_size = pool_size
        self._connect_timeout_seconds = connect_timeout_seconds
        self._statement_timeout_seconds = statement_timeout_seconds
        self._idle_in_transaction_timeout_seconds = idle_in_transaction_timeout_seconds
        # the asyncpg connections of autocommit read units (`_read_connections`)
        self._reads: ReadConnections | None = None
        self._autocommit_engine: AsyncEngine | None = None

    def __repr__(self) -> str:
        return f'{type(self).__name__}(pool_size={self._pool_size})'

    @property
    def dialect_name(self) -> str:
        return 'postgresql'

    @property
    def address(self) -> str:
        """`host:port` of the server, for messages (no user, password or option)."""
        return self._target.address

    def _connect_args(self) -> dict[str, Any]:
        statement_timeout_ms = int(self._statement_timeout_seconds * 1000)
        args: dict[str, Any] = {
            'timeout': self._connect_timeout_seconds,
            # client-side guard for a server that stopped answering
            'command_timeout': self._statement_timeout_seconds + self._connect_timeout_seconds,
            'server_settings': {
                'statement_timeout': str(statement_timeout_ms),
                # a session that vanished mid-transaction (a stopped or cut-off replica)
                # loses its transaction, and its row locks, after this long (ADR 027)
                'idle_in_transaction_session_timeout': str(
                    int(self._idle_in_transaction_timeout_seconds * 1000)
                ),
                'application_name': self._target.application_name or 'chat-storage',
            },
        }
        if self._target.ssl is not None:
            args['ssl'] = self._target.ssl
        return args

    def _create_engine(self) -> AsyncEngine:
        return create_async_engine(
            self._url,
            pool_size=self._pool_size,
            max_overflow=0,
            pool_timeout=self._statement_timeout_seconds,
            # no ping (with asyncpg it is BEGIN, `;`, ROLLBACK: three round trips per
            # unit): a unit on a dropped connection fails with 503, the disconnect
            # invalidates the pool, and the retry gets a fresh connection
            pool_pre_ping=False,
            hide_parameters=True,
            connect_args=self._connect_args(),
        )

    def _autocommit(self) -> AsyncEngine:
        """The engine in autocommit: SQLAlchemy's adapter begins no transaction of its own
        (a unit's is asyncpg's, `AsyncpgTransactionConnection`)."""
        if self._autocommit_engine is None:
            self._autocommit_engine = self.engine().execution_options(isolation_level='AUTOCOMMIT')
        return self._autocommit_engine

    async def _open_unit(
        self,
        *,
        write: bool,  # noqa: ARG002 - a write unit begins as a read unit; its statements lock
        autocommit: bool,
    ) -> UnitConnection:
        if not autocommit:
            # the transaction is asyncpg's own, and so are its prebuilt statements
            return await self._transaction_connection()
        # its prebuilt SELECTs go to asyncpg itself (ADR 019)
        return AsyncpgAutocommitConnection(
            self._read_connections(),
            self.engine().dialect,
            partial(open_async_unit, self._autocommit()),
        )

    async def _transaction_connection(self) -> AsyncpgTransactionConnection:
        """A pooled connection that is still open: one the server closed while it sat in
        the pool (a restart, a failover, an idle kill) is replaced before the unit sends
        anything on it, instead of failing the unit (a `500` for each such connection)."""
        for _ in range(self._pool_size + 1):
            connection = await open_async_unit(self._autocommit())
            try:
                raw = await connection.get_raw_connection()
                driver: asyncpg.Connection = raw.driver_connection
                if driver.is_closed():
                    await connection.invalidate()
                    await connection.close()
                    continue
            except BaseException:
                await discard(connection)
                raise
            return AsyncpgTransactionConnection(connection, driver, self.engine().dialect)
        raise ServiceUnavailableError

    async def health_check(self) -> bool:
        """The pool of units in a transaction answers, and so do the connections of the
        one-statement reads (`ReadConnections`): each kind of unit can run now."""
        if not await super().health_check():
            return False
        try:
            async with asyncio.timeout(self._health_timeout_seconds):
                await self._read_connections().probe()
        except Exception:  # noqa: BLE001 - readiness answers, it never raises
            return False
        return True

    def _read_connections(self) -> ReadConnections:
        """The asyncpg connections of autocommit read units, made on first use (each
        connects only when a unit needs it)."""
        if self._reads is None:
            dsn = self._url.set(drivername='postgresql').render_as_string(hide_password=False)
            self._reads = ReadConnections(
                partial(asyncpg.connect, dsn, **self._connect_args()),
                size=self._pool_size,
                acquire_timeout_seconds=self._statement_timeout_seconds,
            )
        return self._reads

    async def close(self) -> None:
        reads, self._reads = self._reads, None
        if reads is not None:
            await reads.close(self._statement_timeout_seconds)
        self._autocommit_engine = None
        await super().close()

    async def _upgrade(self, connection: AsyncConnection) -> None:
        async with connection.begin():
            # held until this transaction ends, so it cannot leak with a pooled
            # connection; concurrent starters wait here, then find the schema at head
            await connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_ID)))
            await connection.run_sync(upgrade_to_head)


def asyncpg_url(dsn: str) -> URL:
    """The DSN as a `postgresql+asyncpg` URL, without the libpq options `dsn.py` passes
    to asyncpg itself; `postgresql://` and `postgres://` are accepted."""
    return parse_postgres_dsn(dsn).url
