"""Garbage collection and the view sweep, on recording fakes."""

from datetime import timedelta
from uuid import UUID

from domain.chat import Chat, ChatAttachmentName, ChatFile
from usecase.collect_garbage import CollectGarbage
from usecase.publish import Publisher
from usecase.sweep_views import OVERLAP, SweepViews

from .fakes import (
    T0,
    MemoryMarks,
    RecordingBackend,
    RecordingBlobStore,
    RecordingViews,
    StepClock,
    entries,
)

WS = UUID(int=1)
OTHER_WS = UUID(int=2)
GRACE = 60.0


def _file(chat_id: UUID, name: str, file_id: UUID, size: int = 1) -> ChatFile:
    return ChatFile(file_id, chat_id, ChatAttachmentName(name), None, size, T0, 'x')


class Store:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.clock = StepClock()
        self.meta = RecordingBackend(self.log)
        self.blobs = RecordingBlobStore(self.log, self.clock)
        self.views = RecordingViews(self.log, self.blobs)
        self.marks = MemoryMarks()
        uow = self.meta.unit_of_work
        self.publisher = Publisher(uow, self.blobs, self.views)
        self.sweep = SweepViews(uow, self.views, self.publisher, self.marks, self.clock)
        self.collect = CollectGarbage(uow, self.blobs, GRACE)


async def test_garbage_is_old_and_unnamed_and_nothing_else() -> None:
    store = Store()
    chat_id = UUID(int=10)
    named_old = store.blobs.put(b'file', age=GRACE * 2)
    base_old = store.blobs.put(b'base', age=GRACE * 2)
    unnamed_old = store.blobs.put(b'left', age=GRACE * 2)
    unnamed_new = store.blobs.put(b'staged', age=GRACE / 2)
    await store.meta.seed(
        Chat(chat_id, WS, T0, T0, history_blob_id=base_old, history_bytes=4),
        _file(chat_id, 'a.txt', named_old),
    )

    assert await store.collect() == 1

    assert set(store.blobs.blobs) == {named_old, base_old, unnamed_new}
    assert unnamed_old not in store.blobs.blobs
    assert 'begin' not in store.log


async def test_garbage_is_asked_about_in_batches_of_500() -> None:
    store = Store()
    for _ in range(1200):
        store.blobs.put(b'', age=GRACE * 2)

    assert await store.collect() == 1200

    assert entries(store.meta.asked, 'named') == ['named 500', 'named 500', 'named 200']
    assert store.blobs.blobs == {}


async def test_a_released_blob_waits_out_the_grace_period() -> None:
    store = Store()
    blob = store.blobs.put(b'old', age=GRACE * 10)
    await store.blobs.release([blob])

    assert await store.collect() == 0
    store.clock.advance(GRACE + 1)
    assert await store.collect() == 1


async def test_first_sweep_publishes_every_chat_and_records_its_start() -> None:
    store = Store()
    chat_id = UUID(int=10)
    file_id = store.blobs.put(b'hello')
    base = store.blobs.put(b'# h\n')
    await store.meta.seed(
        Chat(chat_id, WS, T0, T0, history_blob_id=base, history_bytes=4, file_count=1),
        _file(chat_id, 'a.txt', file_id, 5),
    )
    store.clock.advance(3600)

    result = await store.sweep()

    assert result.chats_checked == 1
    assert result.chats_republished == 1
    assert store.views.files(WS, chat_id) == {'a.txt': file_id}
    assert store.views.history(WS, chat_id) == b'# h\n'
    assert store.marks.marks == [store.clock.now()]
    assert any('1970-01-01' in e for e in entries(store.meta.asked, 'changed since'))


async def test_later_sweeps_look_back_to_the_last_start_less_the_overlap() -> None:
    store = Store()
    store.marks.marks = [T0]
    store.clock.advance(600)

    await store.sweep()

    asked = entries(store.meta.asked, 'changed since')
    assert asked == [f'changed since {(T0 - OVERLAP).isoformat()} after None']
    assert store.marks.marks[-1] == T0 + timedelta(seconds=600)


async def test_sweep_pages_through_the_changed_chats() -> None:
    store = Store()
    await store.meta.seed(*(Chat(UUID(int=n), WS, T0, T0) for n in range(1, 1002)))

    result = await store.sweep()

    assert result.chats_checked == 1001
    assert len(entries(store.meta.asked, 'changed since')) == 3
    assert len(store.views.dirs) == 1001


async def test_sweep_removes_directories_without_a_row_and_in_the_wrong_workspace() -> None:
    store = Store()
    kept, gone, moved = UUID(int=10), UUID(int=11), UUID(int=12)
    await store.meta.seed(Chat(kept, WS, T0, T0), Chat(moved, WS, T0, T0))
    for key in [(WS, kept), (WS, gone), (OTHER_WS, moved), (WS, moved)]:
        await store.views.ensure_chat(*key)
    store.marks.marks = [T0]

    result = await store.sweep()

    assert result.directories_removed == 2
    assert sorted(store.views.dirs) == [(WS, kept), (WS, moved)]


async def test_a_failed_publication_is_counted_and_the_mark_kept() -> None:
    store = Store()
    bad, good = UUID(int=10), UUID(int=11)
    await store.meta.seed(Chat(bad, WS, T0, T0), Chat(good, WS, T0, T0))
    store.views.failing_chats.add(bad)

    result = await store.sweep()

    assert result.failures == 1
    assert (WS, good) in store.views.dirs
    assert store.marks.marks == []
    store.views.failing_chats.clear()
    assert (await store.sweep()).failures == 0
    assert (WS, bad) in store.views.dirs


async def test_a_sandboxs_changes_are_undone_by_the_sweep() -> None:
    store = Store()
    chat_id = UUID(int=10)
    file_id = store.blobs.put(b'hello')
    await store.meta.seed(
        Chat(chat_id, WS, T0, T0, file_count=1), _file(chat_id, 'a.txt', file_id, 5)
    )
    await store.sweep()
    store.views.dirs[WS, chat_id]['planted.sh'] = UUID(int=99)
    store.views.dirs[WS, chat_id].pop('a.txt')

    await store.sweep(every_chat=True)

    assert store.views.files(WS, chat_id) == {'a.txt': file_id}
