"""The in-memory metadata backend: for development and as the fake of unit tests."""

import asyncio
from types import TracebackType
from typing import Self

from repository.chat import InMemoryChatRepository
from repository.chat_file import InMemoryChatFileRepository
from repository.common import to_the_end
from repository.history_segment import InMemoryHistorySegmentRepository
from repository.idempotency_key import InMemoryIdempotencyKeyRepository
from repository.inventory import InMemoryStoreInventory
from repository.memory_store import MemoryStore
from repository.sandbox_session import InMemorySandboxSessionRepository
from repository.workspace import InMemoryWorkspaceRepository
from usecase.interface import MetadataBackend, UnitOfWork


class InMemoryUnitOfWork(UnitOfWork):
    """One unit of work over an `InMemoryMetadataBackend`.

    A write unit holds the backend's writer lock from enter to exit and changes a private
    copy of the committed store; `commit` publishes a copy of it. A read unit reads the
    committed store as it was at enter (published stores are never changed in place), so
    it sees no uncommitted change, and its repositories refuse to write.
    """

    def __init__(self, backend: 'InMemoryMetadataBackend', *, write: bool) -> None:
        self._backend = backend
        self._write = write
        self._entered = False
        self._store = MemoryStore()
        self._bind(self._store)

    def _bind(self, store: MemoryStore) -> None:
        self.workspaces = InMemoryWorkspaceRepository(store, writable=self._write)
        self.chats = InMemoryChatRepository(store, writable=self._write)
        self.chat_files = InMemoryChatFileRepository(store, writable=self._write)
        self.sandbox_sessions = InMemorySandboxSessionRepository(store, writable=self._write)
        self.idempotency_keys = InMemoryIdempotencyKeyRepository(store, writable=self._write)
        self.history_segments = InMemoryHistorySegmentRepository(store, writable=self._write)
        self.inventory = InMemoryStoreInventory(store, writable=self._write)

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError('a unit of work can be entered only once')
        self._entered = True
        if self._write:
            await self._backend.writer_lock.acquire()
            self._store.load(self._backend.committed)
        else:
            self._store = self._backend.committed
            self._bind(self._store)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._write:
            # uncommitted changes die with the private copy
            self._store = MemoryStore()
            self._bind(self._store)
            self._backend.writer_lock.release()

    async def commit(self) -> None:
        await to_the_end(self._commit())

    async def _commit(self) -> None:
        if self._write:
            self._backend.committed = self._store.copy()

    async def rollback(self) -> None:
        if self._write:
            self._store.load(self._backend.committed)


class InMemoryMetadataBackend(MetadataBackend):
    """Metadata in dictionaries of this process; lost on restart."""

    backend_name = 'memory'

    def __init__(self) -> None:
        self.committed = MemoryStore()
        self.writer_lock = asyncio.Lock()

    async def connect(self) -> None:
        return None

    async def migrate(self) -> None:
        return None

    async def health_check(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    def unit_of_work(
        self,
        *,
        write: bool = True,
        one_statement: bool = False,  # noqa: ARG002 - one lock-free snapshot either way
        group: bool = False,  # noqa: ARG002 - a commit here is a copy, nothing to share
    ) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self, write=write)
