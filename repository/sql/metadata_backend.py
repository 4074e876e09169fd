"""What the SQL metadata backends share: lifecycle, migrations and units of work."""

import asyncio
from abc import ABC, abstractmethod
from functools import partial
from pathlib import Path

from sqlalchemy import Select, String, column, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.error import ServiceUnavailableError
from repository.migrations import HEAD_REVISION
from repository.sql.errors import refused_reason, unavailable_on_connection_errors
from repository.sql.session import UnitConnection
from repository.sql.unit_of_work import SqlUnitOfWork, WriterLock
from usecase.interface import MetadataBackend

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / 'migrations'


# Alembic's bookkeeping table: one row, the revision the schema is at
_ALEMBIC_VERSION: Select[str] = select(column('version_num', String)).select_from(
    table('alembic_version')
)


def upgrade_to_head(connection: Connection) -> None:
    """Run the Alembic migrations on `connection`, inside its current transaction."""
    upgrade_to('head', connection)


def upgrade_to(revision: str, connection: Connection) -> None:
    """Run the Alembic migrations up to `revision` on `connection`, inside its current
    transaction."""
    # imported only when the schema is behind: Alembic (and Mako) are ~10 MB of every
    # server process's memory that a schema at head never needs (ADR 019)
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option('script_location', str(MIGRATIONS_DIR).replace('%', '%%'))
    config.attributes['connection'] = connection
    command.upgrade(config, revision)


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
