"""Fakes of our own ports that record what the use cases did.

Blobs, views, the previous release's layout and the metadata commits write to one shared
`log`, so a test can assert the order of staging, committing, publishing and releasing.
The rows are the real in-memory metadata backend's.
"""

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Self
from uuid import UUID

from domain.chat import HISTORY_FILE_NAME, Chat, ChatFile, HistorySegment
from domain.content import ByteRange, StagedContent
from domain.error import (
    ContentLimitExceededError,
    DomainError,
    InsufficientStorageError,
    StoredContentMissingError,
)
from domain.workspace import Workspace
from repository.inventory import InMemoryStoreInventory
from repository.memory import InMemoryMetadataBackend, InMemoryUnitOfWork
from repository.memory_store import MemoryStore
from repository.workspace import InMemoryWorkspaceRepository
from usecase.interface import ByteStream
from usecase.store_ports import BlobState, HistoryView

Hook = Callable[[], Awaitable[None]]

T0 = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)


def entries(log: list[str], *prefixes: str) -> list[str]:
    """The entries of `log` that start with one of `prefixes`."""
    return [entry for entry in log if entry.startswith(prefixes)]


class StepClock:
    """A clock that moves only when told (`advance`)."""

    def __init__(self) -> None:
        self.current = T0

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class FixedClock:
    def __init__(self) -> None:
        self.current = T0

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
    """A `BlobStore` and `BlobInventory` in a dict. Released blobs stay readable (the
    grace period); a blob's age, from its staging or its release, follows `clock`."""

    def __init__(self, log: list[str], clock: StepClock | None = None) -> None:
        self.log = log
        self.clock = clock if clock is not None else StepClock()
        self.blobs: dict[UUID, bytes] = {}
        self.changed_at: dict[UUID, datetime] = {}
        # blobs with a write bit set
        self.writable: set[UUID] = set()
        self.released: set[UUID] = set()
        self.labels: dict[UUID, str] = {}
        self.count = 0
        self.chunks_read = 0
        # awaited (and cleared) at the start of the next `stage`: a concurrent write
        self.before_stage: Hook | None = None
        # raised by `release`, as by a disk that fails
        self.release_failure: DomainError | None = None

    def label(self, blob: UUID) -> str:
        return self.labels.get(blob, str(blob))

    def _new(self, data: bytes, blob: UUID | None, age: float) -> UUID:
        if blob is None:
            self.count += 1
            blob = blob_id(self.count)
            self.labels[blob] = f'b{self.count}'
        self.blobs[blob] = data
        self.changed_at[blob] = self.clock.now() - timedelta(seconds=age)
        return blob

    def put(self, data: bytes, blob: UUID | None = None, *, age: float = 0.0) -> UUID:
        """A blob `age` seconds old, as an earlier write left it (not logged)."""
        return self._new(data, blob, age)

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
        new = self._new(bytes(data), None, 0.0)
        self.log.append(f'stage {self.label(new)}')
        return StagedContent(size_bytes=len(data), sha256=sha256, blob_id=new)

    async def discard(self, staged: StagedContent) -> None:
        if staged.blob_id is None:
            self.log.append('discard inline')
            return
        self.blobs.pop(staged.blob_id, None)
        self.changed_at.pop(staged.blob_id, None)
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
        for blob in blob_ids:
            if blob in self.blobs:
                self.changed_at[blob] = self.clock.now()
        self.log.append(entry)

    async def is_writable(self) -> bool:
        return True

    async def older_than(self, age_seconds: float) -> list[UUID]:
        cutoff = self.clock.now() - timedelta(seconds=age_seconds)
        return [blob for blob, changed in self.changed_at.items() if changed < cutoff]

    async def remove(self, blob_ids: Collection[UUID]) -> int:
        present = [blob for blob in blob_ids if blob in self.blobs]
        for blob in present:
            del self.blobs[blob]
            del self.changed_at[blob]
            self.writable.discard(blob)
        self.log.append(f'remove {len(present)}')
        return len(present)

    async def inspect(self, blob: UUID) -> BlobState | None:
        data = self.blobs.get(blob)
        if data is None:
            return None
        return BlobState(len(data), hashlib.sha256(data).hexdigest(), blob in self.writable)


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
        # every change of these chats' directories raises, as a disk error would
        self.failing_chats: set[UUID] = set()
        # awaited after every change of a name: another writer committing meanwhile
        self.after_change: Hook | None = None

    def _record(self, entry: str, chat_id: UUID | None = None) -> None:
        failing = self.failing is not None and entry.startswith(self.failing)
        if failing or chat_id in self.failing_chats:
            self.log.append(f'{entry} failed')
            raise InsufficientStorageError
        self.log.append(entry)

    async def _changed(self) -> None:
        if self.after_change is not None:
            await self.after_change()

    def files(self, workspace_id: UUID, chat_id: UUID) -> dict[str, UUID]:
        """The attachments shown in the chat's directory, by name."""
        shown = self.dirs[workspace_id, chat_id]
        return {name: blob for name, blob in shown.items() if isinstance(blob, UUID)}

    def history(self, workspace_id: UUID, chat_id: UUID) -> bytes:
        """The chat directory's `history.md`."""
        history = self.dirs[workspace_id, chat_id][HISTORY_FILE_NAME]
        assert isinstance(history, bytes)
        return history

    async def ensure_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        self._record('ensure_chat', chat_id)
        self.dirs.setdefault((workspace_id, chat_id), {HISTORY_FILE_NAME: b''})

    async def show_file(self, workspace_id: UUID, chat_id: UUID, name: str, blob_id: UUID) -> None:
        self._record(f'show_file {name} {self.blobs.label(blob_id)}', chat_id)
        if blob_id not in self.blobs.blobs:
            raise StoredContentMissingError(chat_id)
        self.dirs.setdefault((workspace_id, chat_id), {})[name] = blob_id
        await self._changed()

    async def hide_file(self, workspace_id: UUID, chat_id: UUID, name: str) -> None:
        self._record(f'hide_file {name}', chat_id)
        self.dirs.get((workspace_id, chat_id), {}).pop(name, None)
        await self._changed()

    async def show_history(self, workspace_id: UUID, chat_id: UUID, history: HistoryView) -> bool:
        shown = self.dirs.setdefault((workspace_id, chat_id), {})
        if not history.whole:
            before = shown.get(HISTORY_FILE_NAME)
            if not isinstance(before, bytes) or len(before) != history.boundaries[0]:
                return False
            self._record('extend_history', chat_id)
            tail = history.chunks_from(history.boundaries[0])
            shown[HISTORY_FILE_NAME] = before + b''.join([c async for c in tail])
        else:
            self._record('show_history', chat_id)
            chunks = history.chunks_from(0)
            shown[HISTORY_FILE_NAME] = b''.join([c async for c in chunks])
        await self._changed()
        return True

    async def remove_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        self._record('remove_chat', chat_id)
        self.dirs.pop((workspace_id, chat_id), None)

    async def remove_workspace(self, workspace_id: UUID) -> None:
        self._record('remove_workspace')
        for key in [key for key in self.dirs if key[0] == workspace_id]:
            del self.dirs[key]

    async def differs(
        self,
        workspace_id: UUID,
        chat_id: UUID,
        files: Mapping[str, UUID],
        history: AsyncIterable[bytes],
    ) -> list[str]:
        committed = b''.join([chunk async for chunk in history])
        shown = self.dirs.get((workspace_id, chat_id))
        if shown is None:
            return ['.']
        names = {name for name in files if shown.get(name) != files[name]}
        names |= {name for name in shown if name not in files and name != HISTORY_FILE_NAME}
        if shown.get(HISTORY_FILE_NAME) != committed:
            names.add(HISTORY_FILE_NAME)
        return sorted(names)

    async def chats(self) -> list[tuple[UUID, UUID]]:
        return list(self.dirs)


class MemoryMarks:
    """`SweepMarks` in a list: the starts of the sweeps that completed."""

    def __init__(self, last: datetime | None = None) -> None:
        self.marks: list[datetime] = [] if last is None else [last]

    async def last(self) -> datetime | None:
        return self.marks[-1] if self.marks else None

    async def record(self, started: datetime) -> None:
        self.marks.append(started)


class RecordingLegacy:
    """`LegacyStore`: the previous release's histories and attachments in dicts.

    An adopted attachment becomes a blob of `blobs` under its `file_id`."""

    def __init__(self, log: list[str], blobs: RecordingBlobStore) -> None:
        self.log = log
        self.blobs = blobs
        self.present_ = True
        self.in_use_ = False
        # each chat's history.md, committed bytes first
        self.histories: dict[UUID, bytes] = {}
        # attachments by name
        self.files: dict[str, bytes] = {}

    async def present(self) -> bool:
        return self.present_

    async def in_use(self) -> bool:
        return self.in_use_

    async def history(self, chat: Chat) -> AsyncIterator[bytes]:
        data = self.histories.get(chat.chat_id, b'')
        if len(data) < chat.history_bytes:
            raise StoredContentMissingError
        yield data[: chat.history_bytes]

    async def adopt_file(self, workspace_id: UUID, chat_file: ChatFile) -> bool:
        data = self.files.get(chat_file.name.value)
        if data is None or hashlib.sha256(data).hexdigest() != chat_file.sha256:
            return False
        self.log.append(f'adopt {chat_file.name.value}')
        self.blobs.put(data, chat_file.file_id)
        return True

    async def remove_areas(self) -> None:
        self.log.append('remove areas')
        self.present_ = False


class RecordingWorkspaces(InMemoryWorkspaceRepository):
    """The in-memory workspaces, noting each lock taken (`RecordingBackend.locked`)."""

    def __init__(self, store: MemoryStore, *, writable: bool, locked: list[UUID]) -> None:
        super().__init__(store, writable=writable)
        self._locked = locked

    async def get_by_user_id(self, user_id: UUID, *, for_update: bool = False) -> Workspace | None:
        workspace = await super().get_by_user_id(user_id, for_update=for_update)
        if for_update and workspace is not None:
            self._locked.append(workspace.workspace_id)
        return workspace


class RecordingInventory(InMemoryStoreInventory):
    """The in-memory inventory, noting the maintenance queries (`RecordingBackend.asked`)."""

    def __init__(self, store: MemoryStore, *, writable: bool, asked: list[str]) -> None:
        super().__init__(store, writable=writable)
        self._asked = asked

    async def named(self, blob_ids: Collection[UUID]) -> set[UUID]:
        self._asked.append(f'named {len(blob_ids)}')
        return await super().named(blob_ids)

    async def chats_changed_since(
        self, since: datetime, *, after: UUID | None, limit: int
    ) -> list[Chat]:
        self._asked.append(f'changed since {since.isoformat()} after {after}')
        return await super().chats_changed_since(since, after=after, limit=limit)


class RecordingUnitOfWork(InMemoryUnitOfWork):
    """An in-memory unit of work that logs `begin` and `commit` of write units, and
    fails its commit with `RecordingBackend.commit_failure` when that is set."""

    def __init__(self, backend: 'RecordingBackend', *, write: bool) -> None:
        self._recording = backend
        super().__init__(backend, write=write)

    def _bind(self, store: MemoryStore) -> None:
        super()._bind(store)
        backend = self._recording
        self.workspaces = RecordingWorkspaces(store, writable=self._write, locked=backend.locked)
        self.inventory = RecordingInventory(store, writable=self._write, asked=backend.asked)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        if self._write:
            self._recording.log.append('begin')
        return self

    async def commit(self) -> None:
        failure = self._recording.commit_failure
        if self._write and failure is not None:
            self._recording.log.append('commit failed')
            raise failure
        await super().commit()
        if self._write:
            self._recording.log.append('commit')


Row = Workspace | Chat | ChatFile | HistorySegment


class RecordingBackend(InMemoryMetadataBackend):
    """The in-memory backend, with the log of its commits and a switch that fails them.

    `locked` lists the workspaces whose row a unit locked, `asked` the inventory's
    maintenance queries (`named`, `changed since`), outside the log."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log
        self.commit_failure: DomainError | None = None
        self.locked: list[UUID] = []
        self.asked: list[str] = []

    def unit_of_work(
        self, *, write: bool = True, one_statement: bool = False, group: bool = False
    ) -> RecordingUnitOfWork:
        return RecordingUnitOfWork(self, write=write)

    async def seed(self, *rows: Row) -> None:
        """Commit these rows (each inserted or replaced) as earlier writes left them,
        outside the log."""
        async with InMemoryUnitOfWork(self, write=True) as uow:
            for row in rows:
                if isinstance(row, Workspace):
                    await uow.workspaces.save(row)
                elif isinstance(row, Chat):
                    await uow.chats.save(row)
                elif isinstance(row, ChatFile):
                    await uow.chat_files.save(row)
                else:
                    await uow.history_segments.add(row)
            await uow.commit()

    @property
    def rows(self) -> MemoryStore:
        """The committed rows, to assert on."""
        return self.committed


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
