"""Group commit of SQLite write units: several units' rows in one transaction (ADR 024).

SQLite has one writer at a time, so a write unit holds the writer's lock from `BEGIN
IMMEDIATE` to `COMMIT`, and its `COMMIT` (an fsync of the WAL) is most of that time. A
unit opened with `group=True` promises that its commit ends it; it then runs as a
`SAVEPOINT` inside a transaction that it shares with the units that queued for the lock
behind it:

- the first such unit begins the transaction; each unit releases its savepoint on
  `commit`, hands the lock on and waits for the group's outcome;
- a unit that leaves without committing rolls back to its savepoint: the others'
  rows stay. It may have read them, though (an idempotency record to replay, a usage
  over quota), so when others have committed into the group it answers only once the
  group has: if the group failed, it fails too, with `ServiceUnavailableError`;
- the group is committed by a task that queues for the lock like any unit, after the
  units that were waiting when the first member committed: it runs `COMMIT` in a
  thread, then answers them all. A group holds at most `MAX_GROUP_UNITS` units;
- when that fails, nothing of the group committed and every member's `commit` raises
  the error: what the members staged is named by no row, garbage like any unnamed blob;
- a unit that did not promise (`group=False`) ends an open group before it begins, and
  runs alone as before.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from domain.error import ServiceUnavailableError
from repository.common import to_the_end
from repository.sql.errors import unavailable_on_connection_errors
from repository.sql.loop_sqlite import LoopConnection, Savepoint
from repository.sql.session import UnitConnection
from repository.sql.unit_of_work import SqlUnitOfWork, discard

# units in one group at most: bounds the wait of its first member and the time another
# process waits for SQLite's write lock
MAX_GROUP_UNITS = 32

_log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Group:
    """One open transaction and how many units committed into it."""

    connection: LoopConnection
    # set when the group has ended: its COMMIT's outcome
    outcome: asyncio.Future[None]
    units: int = 0
    members: int = 0
    ending: asyncio.Task[None] | None = None
    # a unit's savepoint could not be rolled back: its rows may be in the transaction
    broken: bool = False


class WriteGroups:
    """The writer's lock of one process, and the group its grouped units share."""

    def __init__(
        self,
        open_connection: Callable[[], Awaitable[LoopConnection]],
        *,
        max_units: int = MAX_GROUP_UNITS,
    ) -> None:
        self._open_connection = open_connection
        self._max_units = max_units
        self._lock = asyncio.Lock()
        self._group: _Group | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- units that run alone (`SqlUnitOfWork`'s writer lock) ------------------------

    async def acquire(self) -> None:
        """The writer's lock for a unit that runs alone: an open group is ended first."""
        await self._lock.acquire()
        try:
            if self._group is not None:
                await to_the_end(self._end(self._group))
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        self._lock.release()

    # --- grouped units ---------------------------------------------------------------

    async def join(self) -> tuple[LoopConnection, Savepoint]:
        """Take the lock and open a savepoint in the open group (or a new one)."""
        await self._lock.acquire()
        try:
            group = self._group
            if group is not None and group.units >= self._max_units:
                await to_the_end(self._end(group))
                group = None
            if group is None:
                connection = await self._open_connection()
                outcome = asyncio.get_running_loop().create_future()
                group = self._group = _Group(connection, outcome)
            group.units += 1
            with unavailable_on_connection_errors():
                savepoint = group.connection.savepoint()
        except BaseException:
            await self._leave_empty()
            self._lock.release()
            raise
        return group.connection, savepoint

    async def leave(self, savepoint: Savepoint) -> None:
        """A unit leaves without committing (it holds the lock): its rows are dropped.

        When others committed into the group, it waits for the group's outcome, and
        raises `ServiceUnavailableError` if the rows it may have read did not commit.
        """
        group = self._group
        try:
            self._roll_back(savepoint)
            await self._leave_empty()
        finally:
            self._lock.release()
        if group is not None and group.members:
            try:
                await to_the_end(_outcome(group.outcome))
            except Exception as error:
                raise ServiceUnavailableError from error

    def _roll_back(self, savepoint: Savepoint) -> None:
        try:
            savepoint.rollback()
        except Exception:  # noqa: BLE001 - whatever it was, the group must not commit
            _log.warning('a savepoint could not be rolled back; its group fails', exc_info=True)
            if self._group is not None:
                self._group.broken = True

    async def commit(self, savepoint: Savepoint) -> None:
        """Release the savepoint, hand the lock on, and wait for the group's outcome."""
        group = self._group
        if group is None:
            raise RuntimeError('no group is open')
        try:
            with unavailable_on_connection_errors():
                savepoint.commit()
            group.members += 1
            if group.ending is None:
                # queues behind the units waiting now: they join this group first
                group.ending = self._spawn(self._end_when_free(group))
        except BaseException:
            self._roll_back(savepoint)
            await self._leave_empty()
            raise
        finally:
            self._lock.release()
        await to_the_end(_outcome(group.outcome))

    async def drain(self) -> None:
        """Wait until every group this process opened has ended."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # --- ending a group --------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _end_when_free(self, group: _Group) -> None:
        async with self._lock:
            if self._group is group:
                await self._end(group)

    async def _leave_empty(self) -> None:
        """End the open group when no unit committed into it: a ROLLBACK, nothing else."""
        group = self._group
        if group is not None and not group.members:
            self._group = None
            await discard(group.connection)

    async def _end(self, group: _Group) -> None:
        """COMMIT the group (the lock is held) and answer its members."""
        self._group = None
        try:
            await _commit(group)
        except Exception as error:  # noqa: BLE001 - every member's commit raises it
            # nothing of the group committed
            group.outcome.set_exception(error)
        except BaseException:
            group.outcome.cancel()
            raise
        else:
            group.outcome.set_result(None)
        finally:
            await discard(group.connection)


async def _commit(group: _Group) -> None:
    """COMMIT the group's transaction."""
    if group.broken:
        raise ServiceUnavailableError
    with unavailable_on_connection_errors():
        await group.connection.commit()


async def _outcome(outcome: asyncio.Future[None]) -> None:
    # shielded: the future is shared, and a waiter's cancellation must not cancel it
    await asyncio.shield(outcome)


class GroupedUnitOfWork(SqlUnitOfWork):
    """A write unit that ends with its commit, run as a savepoint of a group."""

    def __init__(self, groups: WriteGroups, dialect_name: str) -> None:
        super().__init__(_no_connection, dialect_name, write=True)
        self._groups = groups
        self._savepoint: Savepoint | None = None

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError('a unit of work can be entered only once')
        self._entered = True
        self._session.connection, self._savepoint = await self._groups.join()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._session.connection = None
        savepoint, self._savepoint = self._savepoint, None
        if savepoint is not None:
            await self._groups.leave(savepoint)

    async def commit(self) -> None:
        savepoint, self._savepoint = self._savepoint, None
        if savepoint is None:
            raise RuntimeError('a grouped unit of work commits once, at its end')
        # no statement after the commit: the session refuses one
        self._session.connection = None
        await self._groups.commit(savepoint)

    async def rollback(self) -> None:
        raise RuntimeError('a grouped unit of work does not roll back: leave it instead')


async def _no_connection() -> UnitConnection:
    raise RuntimeError('a grouped unit of work gets its connection from its group')
