"""Conversion of the previous release's layout and start-up, on recording fakes."""

import hashlib
from uuid import UUID

import anyio
import pytest

from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.error import ServiceUnavailableError
from domain.workspace import Workspace
from usecase.collect_garbage import CollectGarbage
from usecase.convert_legacy import ConvertLegacy
from usecase.publish import Publisher
from usecase.start_store import StartStore
from usecase.sweep_views import SweepViews

from .fakes import (
    T0,
    MemoryMarks,
    RecordingBackend,
    RecordingBlobStore,
    RecordingLegacy,
    RecordingViews,
    StepClock,
    entries,
)

WS = UUID(int=1)
USER = UUID(int=2)
CHAT = UUID(int=10)
FILE = UUID(int=20)
GRACE = 60.0


class Store:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.clock = StepClock()
        self.meta = RecordingBackend(self.log)
        self.blobs = RecordingBlobStore(self.log, self.clock)
        self.views = RecordingViews(self.log, self.blobs)
        self.legacy = RecordingLegacy(self.log, self.blobs)
        uow = self.meta.unit_of_work
        self.convert = ConvertLegacy(uow, self.blobs, self.legacy)
        publisher = Publisher(uow, self.blobs, self.views)
        self.marks = MemoryMarks(T0)
        sweep = SweepViews(uow, self.views, publisher, self.marks, self.clock)
        self.start = StartStore(
            convert=self.convert, sweep=sweep, collect=CollectGarbage(uow, self.blobs, GRACE)
        )

    async def add(self, chat: Chat, data: bytes | None = None, name: str = 'a.csv') -> None:
        """The workspace with `chat` and, with `data`, its attachment `name` (`FILE`)."""
        rows: list[Workspace | Chat | ChatFile] = [Workspace(WS, USER, T0, 1000, 0), chat]
        if data is not None:
            sha = hashlib.sha256(data).hexdigest()
            rows.append(ChatFile(FILE, CHAT, ChatAttachmentName(name), None, len(data), T0, sha))
        await self.meta.seed(*rows)

    def legacy_log(self) -> list[str]:
        return entries(self.log, 'adopt', 'remove areas')


async def test_conversion_makes_blobs_of_the_committed_bytes_and_is_idempotent() -> None:
    store = Store()
    await store.add(
        Chat(CHAT, WS, T0, T0, history_bytes=5, history_revision=3, file_count=1), b'a,b\n'
    )
    store.legacy.histories[CHAT] = b'hello, uncommitted tail'
    store.legacy.files['a.csv'] = b'a,b\n'

    result = await store.convert()

    assert result is not None
    assert (result.histories, result.files, result.missing) == (1, 1, 0)
    chat = store.meta.rows.chats[CHAT]
    assert chat.history_blob_id is not None
    assert store.blobs.blobs[chat.history_blob_id] == b'hello'
    assert store.blobs.blobs[FILE] == b'a,b\n'
    assert WS in store.meta.locked
    assert store.legacy_log() == ['adopt a.csv', 'remove areas']
    assert await store.convert() is None


async def test_a_rerun_after_a_crash_skips_what_was_converted() -> None:
    store = Store()
    base = store.blobs.put(b'hello')
    await store.add(
        Chat(CHAT, WS, T0, T0, history_bytes=5, history_blob_id=base, file_count=1), b'a,b\n'
    )
    store.blobs.put(b'a,b\n', FILE)

    result = await store.convert()

    assert result is not None
    assert (result.histories, result.files) == (0, 0)
    assert store.meta.rows.chats[CHAT].history_blob_id == base
    assert entries(store.log, 'stage') == []
    assert store.legacy_log() == ['remove areas']


async def test_what_cannot_be_found_is_counted_and_left_for_fsck() -> None:
    store = Store()
    await store.add(Chat(CHAT, WS, T0, T0, history_bytes=50, file_count=1), b'a,b\n')
    store.legacy.histories[CHAT] = b'short'
    store.legacy.files['a.csv'] = b'edited in place'

    result = await store.convert()

    assert result is not None
    assert (result.histories, result.files, result.missing) == (0, 0, 2)
    assert store.meta.rows.chats[CHAT].history_blob_id is None
    assert FILE not in store.blobs.blobs


async def test_a_history_changed_meanwhile_is_not_overwritten() -> None:
    store = Store()
    await store.add(Chat(CHAT, WS, T0, T0, history_bytes=5, history_revision=1))
    store.legacy.histories[CHAT] = b'hello'

    async def append_meanwhile() -> None:
        await store.meta.seed(Chat(CHAT, WS, T0, T0, history_bytes=6, history_revision=2))

    store.blobs.before_stage = append_meanwhile
    result = await store.convert()

    assert result is not None
    assert result.histories == 0
    assert store.meta.rows.chats[CHAT].history_blob_id is None
    assert entries(store.log, 'discard')


async def test_a_running_previous_release_stops_the_conversion() -> None:
    store = Store()
    store.legacy.in_use_ = True
    with pytest.raises(ServiceUnavailableError):
        await store.convert()
    assert store.legacy_log() == []


async def test_start_up_converts_then_maintenance_sweeps_every_chat_then_collects() -> None:
    store = Store()
    await store.add(Chat(CHAT, WS, T0, T0, history_bytes=5, history_revision=1))
    store.legacy.histories[CHAT] = b'hello'
    left = store.blobs.put(b'garbage', age=GRACE * 2)

    converted = await store.start()
    assert converted
    assert (WS, CHAT) not in store.views.dirs  # start-up converts only
    with anyio.move_on_after(0.2):
        await store.start.maintain_periodically(10, every_chat_first=converted)

    assert store.views.history(WS, CHAT) == b'hello'
    assert left not in store.blobs.blobs
    assert any('1970-01-01' in e for e in entries(store.meta.asked, 'changed since'))


async def test_periodic_maintenance_survives_errors() -> None:
    store = Store()
    await store.add(Chat(CHAT, WS, T0, T0))
    store.views.failing_chats.add(CHAT)
    rounds: list[int] = []
    original = store.start.maintain

    async def counted(*, every_chat: bool = False) -> None:
        rounds.append(1)
        if len(rounds) == 1:
            raise OSError('disk error')
        await original(every_chat=every_chat)

    store.start.maintain = counted  # type: ignore[method-assign]
    with anyio.move_on_after(0.2):
        await store.start.maintain_periodically(0.01)

    assert len(rounds) >= 3
    assert store.start.interval_seconds == GRACE / 3
