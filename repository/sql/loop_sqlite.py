"""SQLite units of work on a synchronous SQLAlchemy connection, driven from the event loop.

SQLAlchemy's asyncio layer runs every statement through a greenlet and awaits the
driver's coroutines from it: on a local file that bridge costs more than the statement
(ADR 019). A statement on a local SQLite file does not wait for anything that is worth a
thread, except two: `BEGIN IMMEDIATE`, which waits while another process holds the
write lock, and `COMMIT`, whose fsync of the WAL waits for the disk. So a unit of work
here uses a plain (synchronous) `Connection` on the event loop and sends only those two
to a worker thread, and `BEGIN IMMEDIATE` only when the lock is taken: it is first tried
without waiting.
"""

import asyncio
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from contextlib import suppress
from typing import Any
from uuid import UUID, SafeUUID

from sqlalchemy import Executable, Select, Uuid
from sqlalchemy.engine import Connection, CursorResult, Dialect, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from repository.sql.errors import unavailable_on_connection_errors

# execution option read by the `begin` hook: run BEGIN IMMEDIATE without waiting for
# another process's lock (busy timeout 0); the unit retries in a thread when it is taken
NOWAIT_OPTION = 'chat_storage_nowait'
# execution option read by the `begin` hook: no BEGIN at all, for a one-statement read
AUTOCOMMIT_OPTION = 'chat_storage_autocommit'


# read plans of prebuilt statements; more than this many distinct statements means
# statements built per call, which are compiled per call instead of kept
_MAX_PLANS = 64
_plans: dict[Select[Any], '_ReadPlan | None'] = {}
_UUID_HEX_DIGITS = 32
_HEX = re.compile('[0-9a-f]{32}')


class _ReadPlan:
    """A prebuilt `SELECT` compiled once for the DB-API: its SQL, how to bind its
    parameters in order and how to turn a row into a mapping of the values SQLAlchemy
    would give (UUIDs, timestamps, ...)."""

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self._compiled = compiled
        names = compiled.positiontup or []
        self._binds = [(name, compiled.binds[name].type.bind_processor(dialect)) for name in names]
        columns = list(statement.selected_columns)
        self._keys = [column.key or '' for column in columns]
        # UUIDs are stored as 32 hex digits; rows of a page repeat many of them (the
        # workspace's id), so each distinct one is read once per call (`mappings`)
        self._uuid_columns = [
            index
            for index, column in enumerate(columns)
            if isinstance(column.type, Uuid) and column.type.as_uuid
        ]
        # every column named, each name once: otherwise SQLAlchemy's own mapping is used
        self.usable = '__[POSTCOMPILE' not in self.sql and len(set(self._keys) - {''}) == len(
            columns
        )
        self._processors = [
            (index, processor)
            for index, column in enumerate(columns)
            if index not in self._uuid_columns
            and (processor := column.type.result_processor(dialect, None)) is not None
        ]

    @classmethod
    def of(cls, statement: Select[Any], dialect: Dialect) -> '_ReadPlan | None':
        """The plan, or None for a statement the DB-API cannot take as compiled."""
        if statement in _plans:
            return _plans[statement]
        plan: _ReadPlan | None = cls(statement, dialect)
        if plan is not None and not plan.usable:
            plan = None  # rendered at execution (expanding IN, literal LIMIT), or unnamed
        if len(_plans) < _MAX_PLANS:
            _plans[statement] = plan
        return plan

    def arguments(self, parameters: Mapping[str, Any] | None) -> list[Any]:
        values = self._compiled.construct_params(parameters, _check=False)
        return [
            value if processor is None else processor(value)
            for name, processor in self._binds
            for value in (values[name],)
        ]

    def mappings(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        uuids: dict[str, UUID] = {}
        mapped = []
        for row in rows:
            values = list(row)
            for index in self._uuid_columns:
                text = values[index]
                if text is not None:
                    value = uuids.get(text)
                    if value is None:
                        value = uuids[text] = uuid_of_hex(text)
                    values[index] = value
            for index, processor in self._processors:
                values[index] = processor(values[index])
            mapped.append(dict(zip(self._keys, values, strict=True)))
        return mapped


def uuid_of_hex(text: str) -> UUID:
    """`UUID(text)` for the 32 hex digits SQLite holds, at half the cost: the value is
    set as `UUID.__init__` would set it, without parsing the other spellings."""
    if len(text) != _UUID_HEX_DIGITS or not _HEX.fullmatch(text):
        return UUID(text)  # raises as SQLAlchemy's own conversion would
    value = object.__new__(UUID)
    object.__setattr__(value, 'int', int(text, 16))
    object.__setattr__(value, 'is_safe', SafeUUID.unknown)
    return value


def is_locked(error: OperationalError) -> bool:
    """SQLITE_BUSY: another connection holds the lock this statement needs."""
    return 'database is locked' in str(error.orig)


class LoopConnection:
    """The async face a `SqlUnitOfWork` expects, on a sync connection used from the loop.

    `commits` runs COMMIT: a thread of the backend's own, so that a writer holding the
    write lock never queues behind other requests' file work in the default executor.
    """

    def __init__(self, connection: Connection, commits: Executor) -> None:
        self._connection = connection
        self._commits = commits

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[Any]:
        return self._connection.execute(statement, parameters)

    def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """The rows of a prebuilt `SELECT`, as `execute(...).mappings().all()` would give
        them, run on the DB-API cursor with the statement compiled once (ADR 019)."""
        plan = _ReadPlan.of(statement, self._connection.dialect)
        if plan is None:
            result = self._connection.execute(statement, parameters)
            return [dict(row) for row in result.mappings()]
        arguments = plan.arguments(parameters)
        dbapi = self._connection.dialect.loaded_dbapi
        cursor = self._connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(plan.sql, arguments)
            fetched = cursor.fetchall()
        except dbapi.Error as error:
            # wrapped as SQLAlchemy would (e.g. OperationalError: database is locked)
            raise DBAPIError.instance(plan.sql, None, error, dbapi.Error) from error
        finally:
            cursor.close()
        return plan.mappings(fetched)

    async def commit(self) -> None:
        # the fsync of the WAL: in a thread
        await asyncio.get_running_loop().run_in_executor(self._commits, self._connection.commit)

    async def rollback(self) -> None:
        self._connection.rollback()

    async def close(self) -> None:
        self._connection.close()

    async def invalidate(self) -> None:
        self._connection.invalidate()


async def open_unit(engine: Engine, commits: Executor, *, write: bool) -> LoopConnection:
    """Check out a connection of `engine` (which carries the options) and begin."""
    with unavailable_on_connection_errors():
        connection = engine.connect()
        try:
            await _begin(connection, write=write)
        except BaseException:
            with suppress(Exception):
                connection.close()
            raise
    return LoopConnection(connection, commits)


async def _begin(connection: Connection, *, write: bool) -> None:
    if not write:
        connection.begin()  # BEGIN (deferred) takes no lock and never waits; or none at all
        return
    try:
        connection.execution_options(**{NOWAIT_OPTION: True}).begin()
    except OperationalError as error:
        if not is_locked(error):
            raise
        # another process holds the write lock: wait for it (up to the busy timeout),
        # in a thread
        connection.execution_options(**{NOWAIT_OPTION: False})
        await asyncio.to_thread(connection.begin)
    finally:
        connection.execution_options(**{NOWAIT_OPTION: False})
