"""Fakes of our own ports that record what the use cases did.

Blobs, views and the metadata commits write to one shared `log`, so a test can assert
the order of staging, committing, publishing and releasing.
"""

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Self
from uuid import UUID

from domain.chat import HISTORY_FILE_NAME
from domain.content import ByteRange, StagedContent
from domain.error import (
    ContentLimitExceededError,
    DomainError,
    InsufficientStorageError,
    StoredContentMissingError,
)
from repository.memory import InMemoryMetadataBackend, InMemoryUnitOfWork
from usecase.interface import ByteStream, PendingSync

Hook = Callable[[], Awaitable[None]]


class FixedClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(microseconds=1)
        return self.current


class SequentialIds:
    def __init__(self) -> None:
        self.count = 0

    def new(self) -> UUID:
        self.count += 1
        return UUID(int=self.count)


def blob_id(number: int) -> UUID:
    """The id the fake blob store gives its `number`th blob (`b<number>` in the log)."""
    return UUID(f'b10b0000-0000-0000-0000-{number:012d}')


class RecordingBlobStore:
    """A `BlobStore` in a dict. Released blobs stay readable (the grace period)."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.blobs: dict[UUID, bytes] = {}
        self.released: set[UUID] = set()
        self.labels: dict[UUID, str] = {}
        self.chunks_read = 0
        # awaited (and cleared) at the start of the next `stage`: a concurrent write
        self.before_stage: Hook | None = None
        # raised by `release`, as by a disk that fails
        self.release_failure: DomainError | None = None

    def label(self, blob: UUID) -> str:
        return self.labels.get(blob, str(blob))

    async def stage(
        self, content: ByteStream, *, limit_bytes: int, inline_bytes: int = 0
    ) -> StagedContent:
        hook, self.before_stage = self.before_stage, None
        if hook is not None:
            await hook()
        data = bytearray()
        async for chunk in content:
            self.chunks_read += 1
            data += chunk
            if len(data) > limit_bytes:
                self.log.append('stage refused')
                raise ContentLimitExceededError(limit_bytes)
        sha256 = hashlib.sha256(data).hexdigest()
        if inline_bytes > 0 and len(data) <= inline_bytes:
            self.log.append('stage inline')
            return StagedContent(size_bytes=len(data), sha256=sha256, inline=bytes(data))
        number = len(self.labels) + 1
        new = blob_id(number)
        self.labels[new] = f'b{number}'
        self.blobs[new] = bytes(data)
        self.log.append(f'stage {self.label(new)}')
        return StagedContent(size_bytes=len(data), sha256=sha256, blob_id=new)

    async def discard(self, staged: StagedContent) -> None:
        if staged.blob_id is None:
            self.log.append('discard inline')
            return
        self.blobs.pop(staged.blob_id, None)
        self.log.append(f'discard {self.label(staged.blob_id)}')

    async def read(self, blob: UUID, byte_range: ByteRange | None = None) -> AsyncIterator[bytes]:
        data = self.blobs.get(blob)
        if data is None:
            raise StoredContentMissingError
        if byte_range is not None:
            data = data[byte_range.first : byte_range.last + 1]
        yield data

    async def path(self, blob: UUID) -> str:
        if blob not in self.blobs:
            raise StoredContentMissingError
        return f'/blobs/{blob}'

    async def release(self, blob_ids: Collection[UUID]) -> None:
        entry = ' '.join(['release', *sorted(self.label(b) for b in blob_ids)])
        if self.release_failure is not None:
            self.log.append(f'{entry} failed')
            raise self.release_failure
        self.released.update(blob_ids)
        self.log.append(entry)

    async def is_writable(self) -> bool:
        return True


ChatKey = tuple[UUID, UUID]


class RecordingViews:
    """`ChatViews` as a dict of chat directories: a name maps to its blob id, and
    `history.md` to its bytes."""

    def __init__(self, log: list[str], blobs: RecordingBlobStore) -> None:
        self.log = log
        self.blobs = blobs
        self.dirs: dict[ChatKey, dict[str, UUID | bytes]] = {}
        # changes whose log entry starts with this raise, as a full disk would
        self.failing: str | None = None
        # awaited after every change of a name: another writer committing meanwhile
        self.after_change: Hook | None = None

    def _record(self, entry: str) -> None:
        if self.failing is not None and entry.startswith(self.failing):
            self.log.append(f'{entry} failed')
            raise InsufficientStorageError
        self.log.append(entry)

    async def _changed(self) -> None:
        if self.after_change is not None:
            await self.after_change()

    async def ensure_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        self._record('ensure_chat')
        self.dirs.setdefault((workspace_id, chat_id), {HISTORY_FILE_NAME: b''})

    async def show_file(self, workspace_id: UUID, chat_id: UUID, name: str, blob_id: UUID) -> None:
        self._record(f'show_file {name} {self.blobs.label(blob_id)}')
        if blob_id not in self.blobs.blobs:
            raise StoredContentMissingError(chat_id)
        self.dirs[workspace_id, chat_id][name] = blob_id
        await self._changed()

    async def hide_file(self, workspace_id: UUID, chat_id: UUID, name: str) -> None:
        self._record(f'hide_file {name}')
        self.dirs.get((workspace_id, chat_id), {}).pop(name, None)
        await self._changed()

    async def show_history(
        self, workspace_id: UUID, chat_id: UUID, chunks: AsyncIterable[bytes]
    ) -> None:
        self._record('show_history')
        self.dirs[workspace_id, chat_id][HISTORY_FILE_NAME] = b''.join([c async for c in chunks])
        await self._changed()

    async def remove_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        self._record('remove_chat')
        self.dirs.pop((workspace_id, chat_id), None)

    async def remove_workspace(self, workspace_id: UUID) -> None:
        self._record('remove_workspace')
        for key in [key for key in self.dirs if key[0] == workspace_id]:
            del self.dirs[key]

    async def differs(
        self, workspace_id: UUID, chat_id: UUID, files: Mapping[str, UUID], history_bytes: int
    ) -> list[str]:
        shown = self.dirs.get((workspace_id, chat_id))
        if shown is None:
            return ['.']
        names = {name for name in files if shown.get(name) != files[name]}
        names |= {name for name in shown if name not in files and name != HISTORY_FILE_NAME}
        history = shown.get(HISTORY_FILE_NAME)
        if not isinstance(history, bytes) or len(history) != history_bytes:
            names.add(HISTORY_FILE_NAME)
        return sorted(names)

    async def chats(self) -> list[tuple[UUID, UUID]]:
        return list(self.dirs)


class RecordingUnitOfWork(InMemoryUnitOfWork):
    """An in-memory unit of work that logs `begin` and `commit` of write units, and
    fails its commit with `RecordingBackend.commit_failure` when that is set."""

    def __init__(self, backend: 'RecordingBackend', *, write: bool) -> None:
        super().__init__(backend, write=write)
        self._recording = backend

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        if self._write:
            self._recording.log.append('begin')
        return self

    async def commit(self, pending: PendingSync | None = None) -> None:
        failure = self._recording.commit_failure
        if self._write and failure is not None:
            self._recording.log.append('commit failed')
            raise failure
        await super().commit(pending)
        if self._write:
            self._recording.log.append('commit')


class RecordingBackend(InMemoryMetadataBackend):
    """The in-memory backend, with the log of its commits and a switch that fails them."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log
        self.commit_failure: DomainError | None = None

    def unit_of_work(
        self, *, write: bool = True, one_statement: bool = False, group: bool = False
    ) -> RecordingUnitOfWork:
        return RecordingUnitOfWork(self, write=write)


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
