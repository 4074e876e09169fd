"""The SQLite metadata backend: one file, WAL, units of work on the event loop."""

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Protocol, cast

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, create_engine
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from repository.sql import inline_sqlite, loop_sqlite
from repository.sql.group_commit import MAX_GROUP_UNITS, GroupedUnitOfWork, WriteGroups
from repository.sql.metadata_backend import SqlMetadataBackend, upgrade_to_head
from repository.sql.session import UnitConnection
from repository.sql.unit_of_work import WRITE_OPTION, SqlUnitOfWork, WriterLock

MIN_SQLITE_BUSY_TIMEOUT_SECONDS = 5.0


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
