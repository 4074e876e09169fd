"""SQLite and PostgreSQL metadata backends; both use `SqlUnitOfWork` and the SQL repositories."""

import asyncio
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import asyncpg
from sqlalchemy import Select, String, column, event, func, select, table
from sqlalchemy.engine import URL, Connection, Engine, create_engine
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from domain.error import ServiceUnavailableError
from repository.migrations import HEAD_REVISION
from repository.sql import inline_sqlite, loop_sqlite
from repository.sql.asyncpg_reads import (
    AsyncpgAutocommitConnection,
    AsyncpgTransactionConnection,
    ReadConnections,
)
from repository.sql.dsn import parse_postgres_dsn
from repository.sql.errors import refused_reason, unavailable_on_connection_errors
from repository.sql.group_commit import MAX_GROUP_UNITS, GroupedUnitOfWork, WriteGroups
from repository.sql.session import UnitConnection
from repository.sql.unit_of_work import (
    WRITE_OPTION,
    SqlUnitOfWork,
    WriterLock,
    discard,
    open_async_unit,
)
from usecase.interface import MetadataBackend

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / 'migrations'
# pg_advisory_xact_lock key that serialises migrations of every process ('chat-sto')
MIGRATION_LOCK_ID = 0x63686174_2D73746F
MIN_SQLITE_BUSY_TIMEOUT_SECONDS = 5.0


# Alembic's bookkeeping table: one row, the revision the schema is at
_ALEMBIC_VERSION: Select[str] = select(column('version_num', String)).select_from(
    table('alembic_version')
)


def upgrade_to_head(connection: Connection) -> None:
    """Run the Alembic migrations on `connection`, inside its current transaction."""
    # imported only when the schema is behind: Alembic (and Mako) are ~10 MB of every
    # server process's memory that a schema at head never needs (ADR 019)
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option('script_location', str(MIGRATIONS_DIR).replace('%', '%%'))
    config.attributes['connection'] = connection
    command.upgrade(config, 'head')


class SqlMetadataBackend(MetadataBackend, ABC):
    """Lifecycle shared by the SQL backends; the engine is created on first use."""

    backend_name: str

    def __init__(self, *, health_timeout_seconds: float) -> None:
        self._engine: AsyncEngine | None = None
        self._health_timeout_seconds = health_timeout_seconds

    @property
    @abstractmethod
    def dialect_name(self) -> str: ...

    @abstractmethod
    def _create_engine(self) -> AsyncEngine: ...

    @abstractmethod
    async def _upgrade(self, connection: AsyncConnection) -> None: ...

    def _writer_lock(self) -> WriterLock | None:
        return None

    # whether a one-statement read unit runs in autocommit (no BEGIN, no ROLLBACK)
    _autocommit_one_statement_reads = False

    def engine(self) -> AsyncEngine:
        """The engine, created (without connecting) on first use."""
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    async def connect(self) -> None:
        with unavailable_on_connection_errors():
            self.engine()

    async def migrate(self) -> None:
        try:
            with unavailable_on_connection_errors():
                if await self._at_head():
                    return
                async with self.engine().connect() as connection:
                    await self._upgrade(connection)
        except DBAPIError as error:
            # the server refused the log-in (no such role or database): at start-up as
            # plain to say as a server that cannot be reached, and its message may stay
            reason = refused_reason(error)
            if reason is None:
                raise
            raise ServiceUnavailableError(reason) from None

    async def _at_head(self) -> bool:
        """The schema is at the newest revision: nothing to migrate, no need for Alembic.

        A schema another process is upgrading is still behind until that process commits;
        anything unexpected means "migrate", which takes the migration lock and finds out.
        """
        try:
            async with self.engine().connect() as connection:
                versions = (await connection.execute(_ALEMBIC_VERSION)).scalars().all()
        except DBAPIError:
            # no table yet, or the store is down: `_upgrade` finds out and says which
            return False
        return list(versions) == [HEAD_REVISION]

    async def health_check(self) -> bool:
        try:
            async with asyncio.timeout(self._health_timeout_seconds):
                with unavailable_on_connection_errors():
                    async with self.engine().connect() as connection:
                        await connection.execute(select(1))
        except Exception:  # noqa: BLE001 - readiness answers, it never raises
            return False
        return True

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    def unit_of_work(
        self,
        *,
        write: bool = True,
        one_statement: bool = False,
        group: bool = False,  # noqa: ARG002 - PostgreSQL's writers commit side by side
    ) -> SqlUnitOfWork:
        one_statement = one_statement and not write
        autocommit = one_statement and self._autocommit_one_statement_reads
        return SqlUnitOfWork(
            partial(self._open_unit, write=write, autocommit=autocommit),
            self.dialect_name,
            write=write,
            writer_lock=self._writer_lock(),
            one_statement=one_statement,
        )

    @abstractmethod
    async def _open_unit(self, *, write: bool, autocommit: bool) -> UnitConnection:
        """A connection for a unit of work, in a transaction unless `autocommit`."""


class _SqliteDbapiConnection(Protocol):
    isolation_level: str | None

    def cursor(self) -> DBAPICursor: ...


# DB-API connections kept idle for SQLite's one-statement reads: those run on the loop
# without waiting, so one or two are out at a time; the pool keeps the rest for writers
KEPT_READ_CONNECTIONS = 2


class SqliteMetadataBackend(SqlMetadataBackend):
    """Metadata in one SQLite file: WAL, synchronous=FULL, foreign keys on.

    Write units start with BEGIN IMMEDIATE, which takes the database's write lock at
    once (serialising writers of every process); inside this process writers also
    queue on an asyncio lock so they do not spin in SQLite's busy handler, and the
    units that promise to end with their commit (`group=True`) share one transaction
    with those queued behind them (group commit, `group_commit.py`, ADR 024).

    Units of work run on a synchronous engine from the event loop
    (`repository/sql/loop_sqlite.py`), one-statement reads on DB-API connections of that
    engine kept for them; the asyncio engine (`engine()`) serves migrations, the
    readiness check and tools.
    """

    backend_name = 'sqlite'
    # a single SELECT outside a transaction reads one snapshot: no BEGIN, no ROLLBACK
    _autocommit_one_statement_reads = True

    def __init__(
        self,
        path: Path,
        *,
        pool_size: int = 10,
        busy_timeout_seconds: float = MIN_SQLITE_BUSY_TIMEOUT_SECONDS,
        max_group_units: int = MAX_GROUP_UNITS,
    ) -> None:
        super().__init__(health_timeout_seconds=busy_timeout_seconds)
        self.path = path
        self._pool_size = pool_size
        self._busy_timeout_seconds = max(busy_timeout_seconds, MIN_SQLITE_BUSY_TIMEOUT_SECONDS)
        # the writer's lock of this process, and its group of grouped write units
        self._groups = WriteGroups(self._open_write_connection, max_units=max_group_units)
        self._unit_engine: Engine | None = None
        # by (write, autocommit): the options ride on engines made once (ADR 019)
        self._unit_engines: dict[tuple[bool, bool], Engine] = {}
        # COMMITs of this process's writers, one at a time (they hold the write lock)
        self._commits: ThreadPoolExecutor | None = None
        # DB-API connections kept for one-statement reads
        self._reads: loop_sqlite.IdleReadConnections | None = None

    @property
    def dialect_name(self) -> str:
        return 'sqlite'

    def _writer_lock(self) -> WriterLock | None:
        return self._groups

    def unit_of_work(
        self, *, write: bool = True, one_statement: bool = False, group: bool = False
    ) -> SqlUnitOfWork:
        if group and write:
            return GroupedUnitOfWork(self._groups, self.dialect_name)
        return super().unit_of_work(write=write, one_statement=one_statement)

    def _create_engine(self) -> AsyncEngine:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            URL.create('sqlite+aiosqlite', database=str(self.path)),
            pool_size=self._pool_size,
            max_overflow=0,
            # a local file does not drop connections: no ping before every unit of work
            pool_pre_ping=False,
            hide_parameters=True,
            # statements run on the event loop, BEGIN IMMEDIATE and COMMIT in a thread
            async_creator=partial(
                inline_sqlite.connect,
                str(self.path),
                busy_timeout_seconds=self._busy_timeout_seconds,
            ),
        )
        self._configure(engine.sync_engine)
        return engine

    def _create_unit_engine(self) -> Engine:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            URL.create('sqlite+pysqlite', database=str(self.path)),
            pool_size=self._pool_size,
            # checking out never waits: waiting would block the event loop that every
            # unit holding a connection needs in order to give it back
            max_overflow=-1,
            pool_pre_ping=False,
            hide_parameters=True,
            connect_args={'timeout': self._busy_timeout_seconds, 'check_same_thread': False},
        )
        self._configure(engine)
        return engine

    def _configure(self, engine: Engine) -> None:
        busy_timeout_ms = int(self._busy_timeout_seconds * 1000)

        def on_connect(dbapi_connection: object, _record: ConnectionPoolEntry) -> None:
            connection = cast('_SqliteDbapiConnection', dbapi_connection)
            # the driver must not emit BEGIN itself; `on_begin` does (SQLAlchemy's recipe)
            connection.isolation_level = None
            cursor = connection.cursor()
            try:
                cursor.execute(f'PRAGMA busy_timeout = {busy_timeout_ms}')
                cursor.execute('PRAGMA journal_mode = WAL')
                cursor.execute('PRAGMA synchronous = FULL')
                cursor.execute('PRAGMA foreign_keys = ON')
            finally:
                cursor.close()

        def on_begin(connection: Connection) -> None:
            options = connection.get_execution_options()
            if options.get(loop_sqlite.AUTOCOMMIT_OPTION, False):
                return  # the one statement runs in the driver's autocommit
            write = bool(options.get(WRITE_OPTION, False))
            nowait = write and bool(options.get(loop_sqlite.NOWAIT_OPTION, False))
            # on the DB-API cursor: no statement events, no result to build (ADR 019)
            statement = 'BEGIN IMMEDIATE' if write else 'BEGIN'
            cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                if nowait:
                    cursor.execute('PRAGMA busy_timeout = 0')
                try:
                    cursor.execute(statement)
                finally:
                    if nowait:
                        cursor.execute(f'PRAGMA busy_timeout = {busy_timeout_ms}')
            except connection.dialect.loaded_dbapi.Error as error:
                # wrapped as `exec_driver_sql` would (e.g. OperationalError: database is locked)
                raise DBAPIError.instance(
                    statement, None, error, connection.dialect.loaded_dbapi.Error
                ) from error
            finally:
                cursor.close()

        event.listen(engine, 'connect', on_connect)
        event.listen(engine, 'begin', on_begin)

    def _unit_engine_for(self, *, write: bool, autocommit: bool) -> Engine:
        engine = self._unit_engines.get((write, autocommit))
        if engine is None:
            if self._unit_engine is None:
                self._unit_engine = self._create_unit_engine()
            engine = self._unit_engine.execution_options(
                **{WRITE_OPTION: write, loop_sqlite.AUTOCOMMIT_OPTION: autocommit}
            )
            self._unit_engines[write, autocommit] = engine
        return engine

    async def _open_unit(self, *, write: bool, autocommit: bool) -> UnitConnection:
        engine = self._unit_engine_for(write=write, autocommit=autocommit)
        if self._commits is None:
            self._commits = ThreadPoolExecutor(1, thread_name_prefix='chat-storage-commit')
        if autocommit and not write:
            # its prebuilt SELECTs go to a DB-API connection kept for them (ADR 019)
            if self._reads is None:
                self._reads = loop_sqlite.IdleReadConnections(engine, keep=KEPT_READ_CONNECTIONS)
            return loop_sqlite.AutocommitReadConnection(
                self._reads,
                engine.dialect,
                partial(loop_sqlite.open_read_unit, engine, self._commits),
            )
        return await loop_sqlite.open_unit(engine, self._commits, write=write)

    async def _open_write_connection(self) -> loop_sqlite.LoopConnection:
        connection = await self._open_unit(write=True, autocommit=False)
        return cast('loop_sqlite.LoopConnection', connection)

    async def close(self) -> None:
        await self._groups.drain()
        commits, self._commits = self._commits, None
        if commits is not None:
            commits.shutdown(wait=False)
        reads, self._reads = self._reads, None
        if reads is not None:
            reads.close()
        self._unit_engines.clear()
        engine, self._unit_engine = self._unit_engine, None
        if engine is not None:
            engine.dispose()
        await super().close()

    async def _upgrade(self, connection: AsyncConnection) -> None:
        # BEGIN IMMEDIATE: one process migrates, the others wait and then find it done
        await connection.execution_options(**{WRITE_OPTION: True})
        async with connection.begin():
            await connection.run_sync(upgrade_to_head)


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
