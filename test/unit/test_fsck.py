"""`CheckStorage` on the in-memory rows and recording fakes of the blobs and the views."""

import hashlib
from dataclasses import replace
from uuid import UUID

from domain.chat import Chat, ChatAttachmentName, ChatFile, HistorySegment
from domain.workspace import Workspace
from usecase.collect_garbage import CollectGarbage
from usecase.convert_legacy import ConvertLegacy
from usecase.fsck import CheckStorage, FindingKind, FsckReport
from usecase.publish import Publisher
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
GRACE = 60.0


class Store:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.clock = StepClock()
        self.meta = RecordingBackend(self.log)
        self.blobs = RecordingBlobStore(self.log, self.clock)
        self.views = RecordingViews(self.log, self.blobs)
        self.legacy = RecordingLegacy(self.log, self.blobs)
        self.legacy.present_ = False
        uow = self.meta.unit_of_work
        self.publisher = Publisher(uow, self.blobs, self.views)
        self.check = CheckStorage(
            uow,
            self.blobs,
            self.blobs,
            self.views,
            self.publisher,
            ConvertLegacy(uow, self.blobs, self.legacy),
            CollectGarbage(uow, self.blobs, GRACE),
        )
        self.sweep = SweepViews(uow, self.views, self.publisher, MemoryMarks(), self.clock)

    async def clean_chat(self) -> UUID:
        """A workspace with one chat: a base blob, two segments and one file, published;
        the file's id."""
        base = self.blobs.put(b'# base\n')
        seg = self.blobs.put(b'appended\n')
        data = b'a,b\n'
        file_id = self.blobs.put(data)
        sha = hashlib.sha256(data).hexdigest()
        await self.meta.seed(
            Workspace(WS, USER, T0, 1000, 7 + 9 + 3 + 4),
            Chat(CHAT, WS, T0, T0, history_blob_id=base, history_bytes=19, file_count=1),
            HistorySegment(CHAT, 2, 9, blob_id=seg),
            HistorySegment(CHAT, 3, 3, content=b'ok\n'),
            ChatFile(file_id, CHAT, ChatAttachmentName('a.csv'), None, 4, T0, sha),
        )
        await self.sweep()
        return file_id

    def shown(self) -> dict[tuple[UUID, UUID], dict[str, UUID | bytes]]:
        """A copy of every chat directory."""
        return {key: dict(shown) for key, shown in self.views.dirs.items()}


def _codes(report: FsckReport) -> list[str]:
    return sorted(f.kind.code for f in report.findings)


async def test_a_clean_store_has_no_findings() -> None:
    store = Store()
    await store.clean_chat()

    report = await store.check()

    assert report.findings == []
    assert not report.damage_left
    assert (report.chats, report.files) == (1, 1)
    assert report.bytes_hashed == 7 + 9 + 4
    assert report.totals[0].stored_bytes == report.totals[0].used_bytes == 23


async def test_every_kind_of_damage_is_reported_and_nothing_changed() -> None:
    store = Store()
    file_id = await store.clean_chat()
    chat = store.meta.rows.chats[CHAT]
    store.blobs.blobs[file_id] = b'a,c\n'
    store.blobs.writable.add(file_id)
    assert chat.history_blob_id is not None
    store.blobs.blobs[chat.history_blob_id] = b'# b'
    await store.meta.seed(replace(chat, file_count=2), Workspace(WS, USER, T0, 1000, 5))
    store.views.dirs[WS, CHAT]['planted'] = UUID(int=99)
    await store.views.ensure_chat(WS, UUID(int=11))
    store.blobs.put(b'old garbage', age=GRACE * 2)
    views_before = store.shown()

    report = await store.check()

    assert _codes(report) == [
        'blob_sha256_mismatch',
        'blob_writable',
        'file_count_mismatch',
        'garbage',
        'history_size_mismatch',
        'orphan_directory',
        'usage_mismatch',
        'view_out_of_step',
    ]
    assert report.damage_left
    assert store.shown() == views_before
    assert 'begin' not in store.log


async def test_repair_fixes_what_needs_no_guess_and_reports_the_rest() -> None:
    store = Store()
    file_id = await store.clean_chat()
    store.blobs.blobs[file_id] = b'a,c\n'
    await store.meta.seed(Workspace(WS, USER, T0, 1000, 5))
    store.views.dirs[WS, CHAT]['planted'] = UUID(int=99)
    await store.views.ensure_chat(WS, UUID(int=11))
    garbage = store.blobs.put(b'old garbage', age=GRACE * 2)

    report = await store.check(repair=True)

    repaired = {f.kind.code: f.repaired for f in report.findings}
    assert repaired == {
        'blob_sha256_mismatch': False,
        'garbage': True,
        'orphan_directory': True,
        'usage_mismatch': True,
        'view_out_of_step': True,
    }
    assert report.damage_left
    assert store.meta.rows.workspaces[WS].used_bytes == 23
    assert store.views.files(WS, CHAT) == {'a.csv': file_id}
    assert (WS, UUID(int=11)) not in store.views.dirs
    assert garbage not in store.blobs.blobs


async def test_a_missing_blob_is_damage_that_repair_leaves() -> None:
    store = Store()
    file_id = await store.clean_chat()
    del store.blobs.blobs[file_id]

    report = await store.check(repair=True)

    missing = [f for f in report.findings if f.kind is FindingKind.BLOB_MISSING]
    assert [(f.name, f.repaired) for f in missing] == [('a.csv', False)]
    assert file_id in store.meta.rows.chat_files


async def test_a_legacy_directory_is_reported_or_converted() -> None:
    store = Store()
    store.legacy.present_ = True

    report = await store.check()
    assert _codes(report) == ['legacy_layout']
    assert report.damage_left

    report = await store.check(repair=True)
    assert [(f.kind.code, f.repaired) for f in report.findings] == [('legacy_layout', True)]
    assert entries(store.log, 'adopt', 'remove areas') == ['remove areas']
    assert not report.damage_left
