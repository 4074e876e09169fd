"""Recording fakes of the store's ports: rows, blobs, chat views and sweep marks."""

import copy
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self, cast
from uuid import UUID, uuid4

from domain.chat import HISTORY_FILE_NAME, Chat, ChatFile, HistorySegment
from domain.content import ByteRange, StagedContent
from domain.error import StoredContentMissingError
from domain.page import PageKey
from domain.workspace import Workspace
from usecase.interface import BlobState, ByteStream, PendingSync, UnitOfWork

T0 = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)


class StepClock:
    """A clock that moves only when told (`advance`)."""

    def __init__(self) -> None:
        self.current = T0

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass
class Rows:
    workspaces: dict[UUID, Workspace] = field(default_factory=dict)
    chats: dict[UUID, Chat] = field(default_factory=dict)
    files: dict[UUID, ChatFile] = field(default_factory=dict)
    segments: dict[UUID, list[HistorySegment]] = field(default_factory=dict)


class _Workspaces:
    def __init__(self, rows: Rows, log: list[str]) -> None:
        self._rows = rows
        self._log = log

    async def get(self, workspace_id: UUID) -> Workspace | None:
        return self._rows.workspaces.get(workspace_id)

    async def get_by_user_id(self, user_id: UUID, *, for_update: bool = False) -> Workspace | None:
        for workspace in self._rows.workspaces.values():
            if workspace.user_id == user_id:
                if for_update:
                    self._log.append(f'lock workspace {workspace.workspace_id}')
                return workspace
        return None

    async def save(self, workspace: Workspace) -> None:
        self._rows.workspaces[workspace.workspace_id] = workspace

    async def list_all(
        self, *, limit: int | None = None, after: PageKey | None = None
    ) -> list[Workspace]:
        items = sorted(self._rows.workspaces.values(), key=lambda w: (w.created_at, w.workspace_id))
        if after is not None:
            items = [
                w
                for w in items
                if (w.created_at, w.workspace_id) > (after.created_at, after.item_id)
            ]
        return items if limit is None else items[:limit]

    async def stored_bytes(self, workspace_id: UUID) -> int:
        chats = [c for c in self._rows.chats.values() if c.workspace_id == workspace_id]
        ids = {c.chat_id for c in chats}
        files = sum(f.size_bytes for f in self._rows.files.values() if f.chat_id in ids)
        return sum(c.history_bytes for c in chats) + files


class _Chats:
    def __init__(self, rows: Rows, log: list[str]) -> None:
        self._rows = rows
        self._log = log

    async def get(self, chat_id: UUID) -> Chat | None:
        return self._rows.chats.get(chat_id)

    async def get_many(self, chat_ids: Collection[UUID]) -> list[Chat]:
        return [self._rows.chats[i] for i in chat_ids if i in self._rows.chats]

    async def list_by_workspace_id(
        self, workspace_id: UUID, *, limit: int | None = None, after: PageKey | None = None
    ) -> list[Chat]:
        items = sorted(
            (c for c in self._rows.chats.values() if c.workspace_id == workspace_id),
            key=lambda c: (c.created_at, c.chat_id),
        )
        if after is not None:
            items = [
                c for c in items if (c.created_at, c.chat_id) > (after.created_at, after.item_id)
            ]
        return items if limit is None else items[:limit]

    async def save(self, chat: Chat) -> None:
        self._log.append(f'save chat {chat.chat_id}')
        self._rows.chats[chat.chat_id] = chat


class _Files:
    def __init__(self, rows: Rows, log: list[str]) -> None:
        self._rows = rows
        self._log = log

    async def list_by_chat_id(
        self, chat_id: UUID, *, limit: int | None = None, after: PageKey | None = None
    ) -> list[ChatFile]:
        items = sorted(
            (f for f in self._rows.files.values() if f.chat_id == chat_id),
            key=lambda f: (f.created_at, f.file_id),
        )
        if after is not None:
            items = [
                f for f in items if (f.created_at, f.file_id) > (after.created_at, after.item_id)
            ]
        return items if limit is None else items[:limit]


class _Segments:
    def __init__(self, rows: Rows) -> None:
        self._rows = rows

    async def list_by_chat_id(self, chat_id: UUID) -> list[HistorySegment]:
        return list(self._rows.segments.get(chat_id, []))


class _Inventory:
    def __init__(self, rows: Rows, log: list[str]) -> None:
        self._rows = rows
        self._log = log

    def _all_named(self) -> set[UUID]:
        named = set(self._rows.files)
        named |= {c.history_blob_id for c in self._rows.chats.values() if c.history_blob_id}
        for segments in self._rows.segments.values():
            named |= {s.blob_id for s in segments if s.blob_id is not None}
        return named

    async def named(self, blob_ids: Collection[UUID]) -> set[UUID]:
        self._log.append(f'named {len(blob_ids)}')
        return set(blob_ids) & self._all_named()

    async def chats_changed_since(
        self, since: datetime, *, after: UUID | None, limit: int
    ) -> list[Chat]:
        self._log.append(f'changed since {since.isoformat()} after {after}')
        chats = sorted(
            (c for c in self._rows.chats.values() if c.updated_at >= since), key=lambda c: c.chat_id
        )
        if after is not None:
            chats = [c for c in chats if c.chat_id > after]
        return chats[:limit]


class FakeUnitOfWork:
    def __init__(self, store: 'FakeMetadata', *, write: bool) -> None:
        self._store = store
        self._write = write
        self._rows = copy.deepcopy(store.rows) if write else store.rows
        log = store.log
        self.workspaces = _Workspaces(self._rows, log)
        self.chats = _Chats(self._rows, log)
        self.chat_files = _Files(self._rows, log)
        self.history_segments = _Segments(self._rows)
        self.inventory = _Inventory(self._rows, log)

    async def __aenter__(self) -> Self:
        self._store.log.append('write unit' if self._write else 'read unit')
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def commit(self, pending: PendingSync | None = None) -> None:
        assert self._write, 'a read unit cannot commit'
        if pending is not None:
            pending.sync()
        self._store.rows = self._rows
        self._store.log.append('commit')

    async def rollback(self) -> None:
        self._rows = copy.deepcopy(self._store.rows)


class FakeMetadata:
    """Committed rows; a write unit works on a copy, which its commit makes the rows."""

    def __init__(self) -> None:
        self.rows = Rows()
        self.log: list[str] = []

    def unit_of_work(
        self, *, write: bool = True, one_statement: bool = False, group: bool = False
    ) -> UnitOfWork:
        """A unit over the repositories the maintenance use cases need (only those)."""
        del one_statement, group
        return cast('UnitOfWork', FakeUnitOfWork(self, write=write))

    def add_chat(self, workspace_id: UUID, chat_id: UUID, **fields: object) -> Chat:
        chat = Chat(chat_id=chat_id, workspace_id=workspace_id, created_at=T0, updated_at=T0)
        chat = replace(chat, **fields)  # type: ignore[arg-type]
        self.rows.chats[chat_id] = chat
        return chat


@dataclass
class Blob:
    data: bytes
    changed_at: datetime
    writable: bool = False


class FakeBlobs:
    """`BlobStore` and `BlobInventory` in memory; ages follow a `StepClock`."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock
        self.blobs: dict[UUID, Blob] = {}
        self.log: list[str] = []

    def put(self, data: bytes, blob_id: UUID | None = None, *, age: float = 0.0) -> UUID:
        blob_id = blob_id or uuid4()
        self.blobs[blob_id] = Blob(data, self.clock.now() - timedelta(seconds=age))
        return blob_id

    async def stage(
        self, content: ByteStream, *, limit_bytes: int, inline_bytes: int = 0
    ) -> StagedContent:
        data = b''.join([chunk async for chunk in content])
        assert len(data) <= limit_bytes
        blob_id = self.put(data)
        self.log.append(f'stage {blob_id}')
        return StagedContent(len(data), hashlib.sha256(data).hexdigest(), blob_id=blob_id)

    async def discard(self, staged: StagedContent) -> None:
        self.log.append(f'discard {staged.blob_id}')
        if staged.blob_id is not None:
            self.blobs.pop(staged.blob_id, None)

    async def read(
        self, blob_id: UUID, byte_range: ByteRange | None = None
    ) -> AsyncIterator[bytes]:
        blob = self.blobs.get(blob_id)
        if blob is None:
            raise StoredContentMissingError
        yield blob.data

    async def path(self, blob_id: UUID) -> str:
        if blob_id not in self.blobs:
            raise StoredContentMissingError
        return f'/blobs/{blob_id.hex}'

    async def release(self, blob_ids: Collection[UUID]) -> None:
        for blob_id in blob_ids:
            if blob_id in self.blobs:
                self.blobs[blob_id].changed_at = self.clock.now()

    async def is_writable(self) -> bool:
        return True

    async def older_than(self, age_seconds: float) -> list[UUID]:
        cutoff = self.clock.now() - timedelta(seconds=age_seconds)
        return [i for i, blob in self.blobs.items() if blob.changed_at < cutoff]

    async def remove(self, blob_ids: Collection[UUID]) -> int:
        self.log.append(f'remove {len(blob_ids)}')
        return sum(self.blobs.pop(i, None) is not None for i in blob_ids)

    async def inspect(self, blob_id: UUID) -> BlobState | None:
        blob = self.blobs.get(blob_id)
        if blob is None:
            return None
        return BlobState(len(blob.data), hashlib.sha256(blob.data).hexdigest(), blob.writable)


@dataclass
class View:
    files: dict[str, UUID] = field(default_factory=dict)
    history: bytes = b''


class FakeViews:
    """`ChatViews` in memory, logging every change."""

    def __init__(self) -> None:
        self.dirs: dict[tuple[UUID, UUID], View] = {}
        self.log: list[str] = []
        self.failing: set[UUID] = set()

    def _check(self, chat_id: UUID) -> None:
        if chat_id in self.failing:
            raise OSError('disk error')

    async def ensure_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        self._check(chat_id)
        self.dirs.setdefault((workspace_id, chat_id), View())

    async def show_file(self, workspace_id: UUID, chat_id: UUID, name: str, blob_id: UUID) -> None:
        self._check(chat_id)
        self.log.append(f'show {chat_id} {name}')
        self.dirs[workspace_id, chat_id].files[name] = blob_id

    async def hide_file(self, workspace_id: UUID, chat_id: UUID, name: str) -> None:
        self._check(chat_id)
        self.log.append(f'hide {chat_id} {name}')
        view = self.dirs.get((workspace_id, chat_id))
        if view is not None:
            view.files.pop(name, None)

    async def show_history(
        self, workspace_id: UUID, chat_id: UUID, chunks: AsyncIterable[bytes]
    ) -> None:
        self._check(chat_id)
        self.log.append(f'history {chat_id}')
        self.dirs[workspace_id, chat_id].history = b''.join([c async for c in chunks])

    async def remove_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        self._check(chat_id)
        self.log.append(f'remove {chat_id}')
        self.dirs.pop((workspace_id, chat_id), None)

    async def remove_workspace(self, workspace_id: UUID) -> None:
        for key in [k for k in self.dirs if k[0] == workspace_id]:
            del self.dirs[key]

    async def differs(
        self, workspace_id: UUID, chat_id: UUID, files: Mapping[str, UUID], history_bytes: int
    ) -> list[str]:
        view = self.dirs.get((workspace_id, chat_id))
        if view is None:
            return ['.']
        names = sorted(
            n for n in files.keys() | view.files.keys() if files.get(n) != view.files.get(n)
        )
        if len(view.history) != history_bytes:
            names.append(HISTORY_FILE_NAME)
        return names

    async def chats(self) -> list[tuple[UUID, UUID]]:
        return sorted(self.dirs)


class MemoryMarks:
    def __init__(self, last: datetime | None = None) -> None:
        self.marks: list[datetime] = [] if last is None else [last]

    async def last(self) -> datetime | None:
        return self.marks[-1] if self.marks else None

    async def record(self, started: datetime) -> None:
        self.marks.append(started)
