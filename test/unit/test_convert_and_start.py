"""Conversion of the previous release's layout and start-up, on recording fakes."""

import hashlib
from collections.abc import AsyncIterator
from uuid import UUID

import anyio
import pytest

from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.error import ServiceUnavailableError, StoredContentMissingError
from domain.workspace import Workspace
from usecase.collect_garbage import CollectGarbage
from usecase.convert_legacy import ConvertLegacy
from usecase.publish import Publisher
from usecase.start_store import StartStore
from usecase.sweep_views import SweepViews

from .store_fakes import T0, FakeBlobs, FakeMetadata, FakeViews, MemoryMarks, StepClock

WS = UUID(int=1)
USER = UUID(int=2)
CHAT = UUID(int=10)
FILE = UUID(int=20)
GRACE = 60.0


class FakeLegacy:
    def __init__(self, blobs: FakeBlobs) -> None:
        self.blobs = blobs
        self.present_ = True
        self.in_use_ = False
        self.histories: dict[UUID, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.log: list[str] = []

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


class Store:
    def __init__(self) -> None:
        self.clock = StepClock()
        self.meta = FakeMetadata()
        self.blobs = FakeBlobs(self.clock)
        self.views = FakeViews()
        self.legacy = FakeLegacy(self.blobs)
        uow = self.meta.unit_of_work
        self.convert = ConvertLegacy(uow, self.blobs, self.legacy)
        publisher = Publisher(uow, self.blobs, self.views)
        self.marks = MemoryMarks(T0)
        sweep = SweepViews(uow, self.views, publisher, self.marks, self.clock)
        self.start = StartStore(
            convert=self.convert, sweep=sweep, collect=CollectGarbage(uow, self.blobs, GRACE)
        )
        self.meta.rows.workspaces[WS] = Workspace(WS, USER, T0, 1000, 0)

    def add_file(self, data: bytes, name: str = 'a.csv') -> ChatFile:
        sha = hashlib.sha256(data).hexdigest()
        record = ChatFile(FILE, CHAT, ChatAttachmentName(name), None, len(data), T0, sha)
        self.meta.rows.files[FILE] = record
        return record


async def test_conversion_makes_blobs_of_the_committed_bytes_and_is_idempotent() -> None:
    store = Store()
    store.meta.add_chat(WS, CHAT, history_bytes=5, history_revision=3, file_count=1)
    store.legacy.histories[CHAT] = b'hello, uncommitted tail'
    store.add_file(b'a,b\n')
    store.legacy.files['a.csv'] = b'a,b\n'

    result = await store.convert()

    assert result is not None
    assert (result.histories, result.files, result.missing) == (1, 1, 0)
    chat = store.meta.rows.chats[CHAT]
    assert chat.history_blob_id is not None
    assert store.blobs.blobs[chat.history_blob_id].data == b'hello'
    assert store.blobs.blobs[FILE].data == b'a,b\n'
    assert f'lock workspace {WS}' in store.meta.log
    assert store.legacy.log == ['adopt a.csv', 'remove areas']
    assert await store.convert() is None


async def test_a_rerun_after_a_crash_skips_what_was_converted() -> None:
    store = Store()
    base = store.blobs.put(b'hello')
    store.meta.add_chat(WS, CHAT, history_bytes=5, history_blob_id=base, file_count=1)
    store.add_file(b'a,b\n')
    store.blobs.put(b'a,b\n', FILE)

    result = await store.convert()

    assert result is not None
    assert (result.histories, result.files) == (0, 0)
    assert store.meta.rows.chats[CHAT].history_blob_id == base
    assert [e for e in store.blobs.log if e.startswith('stage')] == []
    assert store.legacy.log == ['remove areas']


async def test_what_cannot_be_found_is_counted_and_left_for_fsck() -> None:
    store = Store()
    store.meta.add_chat(WS, CHAT, history_bytes=50, file_count=1)
    store.legacy.histories[CHAT] = b'short'
    store.add_file(b'a,b\n')
    store.legacy.files['a.csv'] = b'edited in place'

    result = await store.convert()

    assert result is not None
    assert (result.histories, result.files, result.missing) == (0, 0, 2)
    assert store.meta.rows.chats[CHAT].history_blob_id is None
    assert FILE not in store.blobs.blobs


async def test_a_history_changed_meanwhile_is_not_overwritten() -> None:
    store = Store()
    chat = store.meta.add_chat(WS, CHAT, history_bytes=5, history_revision=1)
    store.legacy.histories[CHAT] = b'hello'
    store.meta.rows.chats[CHAT] = chat
    original_stage = store.blobs.stage

    async def stage_then_change(*args: object, **kwargs: object) -> object:
        staged = await original_stage(*args, **kwargs)  # type: ignore[arg-type]
        store.meta.rows.chats[CHAT] = Chat(CHAT, WS, T0, T0, history_bytes=6, history_revision=2)
        return staged

    store.blobs.stage = stage_then_change  # type: ignore[method-assign,assignment]
    result = await store.convert()

    assert result is not None
    assert result.histories == 0
    assert store.meta.rows.chats[CHAT].history_blob_id is None
    assert [e for e in store.blobs.log if e.startswith('discard')]


async def test_a_running_previous_release_stops_the_conversion() -> None:
    store = Store()
    store.legacy.in_use_ = True
    with pytest.raises(ServiceUnavailableError):
        await store.convert()
    assert store.legacy.log == []


async def test_start_up_converts_then_sweeps_every_chat_then_collects() -> None:
    store = Store()
    store.meta.add_chat(WS, CHAT, history_bytes=5, history_revision=1)
    store.legacy.histories[CHAT] = b'hello'
    left = store.blobs.put(b'garbage', age=GRACE * 2)

    await store.start()

    assert store.views.dirs[WS, CHAT].history == b'hello'
    assert left not in store.blobs.blobs
    assert any('1970-01-01' in e for e in store.meta.log if e.startswith('changed since'))


async def test_periodic_maintenance_survives_errors() -> None:
    store = Store()
    store.meta.add_chat(WS, CHAT)
    store.views.failing.add(CHAT)
    rounds: list[int] = []
    original = store.start.maintain

    async def counted() -> None:
        rounds.append(1)
        if len(rounds) == 1:
            raise OSError('disk error')
        await original()

    store.start.maintain = counted  # type: ignore[method-assign]
    with anyio.move_on_after(0.2):
        await store.start.maintain_periodically(0.01)

    assert len(rounds) >= 3
    assert store.start.interval_seconds == GRACE / 3
