"""The `ChatViews` port on a real file system, with blobs of a real `BlobStore`."""

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest

from adapter.blob_store import BlobStore
from adapter.chat_view import ChatViews
from domain.error import StoredContentMissingError
from usecase.store_ports import HistoryView

WORKSPACE_ID = UUID('10000000-0000-4000-8000-000000000001')
CHAT_ID = UUID('20000000-0000-4000-8000-000000000001')
OTHER_CHAT_ID = UUID('20000000-0000-4000-8000-000000000002')
MISSING_BLOB_ID = UUID('ffffffff-0000-4000-8000-00000000ffff')
LIMIT = 10_000
# any UTF-8 name up to 255 bytes without '/'
LONG_NAME = 'ü' * 127 + '.'


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def history(*parts: bytes, extend: bool = False) -> HistoryView:
    """A history of these parts, extensible at the end of each."""
    ends = [sum(len(part) for part in parts[: n + 1]) for n in range(len(parts))] or [0]

    def chunks_from(start: int) -> AsyncIterator[bytes]:
        return chunks(*(part for part, end in zip(parts, ends, strict=True) if end > start))

    return HistoryView(tuple(ends), chunks_from, extend)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / 'data'


@pytest.fixture
def blobs(data_dir: Path) -> BlobStore:
    return BlobStore(data_dir, chunk_bytes=64)


@pytest.fixture
def views(data_dir: Path) -> ChatViews:
    return ChatViews(data_dir, chunk_bytes=64)


@pytest.fixture
def chat_dir(views: ChatViews) -> Path:
    return views.chat_dir(WORKSPACE_ID, CHAT_ID)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the data directory, with a file a sandbox might point at."""
    directory = tmp_path / 'outside'
    directory.mkdir()
    (directory / 'secret').write_bytes(b'not yours')
    return directory


def listing(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


def tmp_entries(data_dir: Path) -> list[str]:
    return listing(data_dir / '.blobs' / 'tmp')


def same_file(first: Path, second: Path) -> bool:
    return first.samefile(second)


def assert_untouched(outside: Path) -> None:
    assert listing(outside) == ['secret']
    assert (outside / 'secret').read_bytes() == b'not yours'


async def blob(blobs: BlobStore, content: bytes) -> UUID:
    staged = await blobs.stage(chunks(content), limit_bytes=LIMIT)
    assert staged.blob_id is not None
    return staged.blob_id


# --- ensure_chat ------------------------------------------------------------------------


async def test_ensure_chat_makes_the_directory_with_an_empty_history(
    views: ChatViews, chat_dir: Path, data_dir: Path
) -> None:
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)

    assert listing(chat_dir) == ['history.md']
    assert (chat_dir / 'history.md').read_bytes() == b''
    assert tmp_entries(data_dir) == []


async def test_ensure_chat_keeps_what_is_there(views: ChatViews, chat_dir: Path) -> None:
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'# kept'))

    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)

    assert (chat_dir / 'history.md').read_bytes() == b'# kept'


async def test_ensure_chat_replaces_a_symlink_planted_as_the_chat_directory(
    views: ChatViews, chat_dir: Path, outside: Path
) -> None:
    chat_dir.parent.mkdir(parents=True)
    chat_dir.symlink_to(outside)

    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)

    assert not chat_dir.is_symlink()
    assert listing(chat_dir) == ['history.md']
    assert_untouched(outside)


# --- show_file, hide_file ---------------------------------------------------------------


async def test_show_file_makes_the_name_a_link_of_the_blob(
    views: ChatViews, blobs: BlobStore, chat_dir: Path, data_dir: Path
) -> None:
    blob_id = await blob(blobs, b'attachment')

    await views.show_file(WORKSPACE_ID, CHAT_ID, LONG_NAME, blob_id)
    await views.show_file(WORKSPACE_ID, CHAT_ID, LONG_NAME, blob_id)

    assert same_file(chat_dir / LONG_NAME, blobs.blob_path(blob_id))
    assert listing(chat_dir) == sorted(['history.md', LONG_NAME])
    assert tmp_entries(data_dir) == []


async def test_show_file_replaces_another_file(
    views: ChatViews, blobs: BlobStore, chat_dir: Path, data_dir: Path
) -> None:
    old_id = await blob(blobs, b'old')
    new_id = await blob(blobs, b'new')
    await views.show_file(WORKSPACE_ID, CHAT_ID, 'a.txt', old_id)

    await views.show_file(WORKSPACE_ID, CHAT_ID, 'a.txt', new_id)

    assert (chat_dir / 'a.txt').read_bytes() == b'new'
    assert blobs.blob_path(old_id).read_bytes() == b'old'
    assert tmp_entries(data_dir) == []


async def test_show_file_replaces_a_directory_planted_at_the_name(
    views: ChatViews, blobs: BlobStore, chat_dir: Path, data_dir: Path
) -> None:
    blob_id = await blob(blobs, b'attachment')
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    (chat_dir / 'a.txt' / 'inner').mkdir(parents=True)
    (chat_dir / 'a.txt' / 'inner' / 'file').write_bytes(b'planted')

    await views.show_file(WORKSPACE_ID, CHAT_ID, 'a.txt', blob_id)

    assert same_file(chat_dir / 'a.txt', blobs.blob_path(blob_id))
    assert tmp_entries(data_dir) == []


async def test_show_file_replaces_a_symlink_planted_at_the_name(
    views: ChatViews, blobs: BlobStore, chat_dir: Path, outside: Path
) -> None:
    blob_id = await blob(blobs, b'attachment')
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    (chat_dir / 'a.txt').symlink_to(outside / 'secret')

    await views.show_file(WORKSPACE_ID, CHAT_ID, 'a.txt', blob_id)

    assert not (chat_dir / 'a.txt').is_symlink()
    assert (chat_dir / 'a.txt').read_bytes() == b'attachment'
    assert_untouched(outside)


async def test_show_file_never_writes_through_a_symlinked_chat_directory(
    views: ChatViews, blobs: BlobStore, chat_dir: Path, outside: Path
) -> None:
    blob_id = await blob(blobs, b'attachment')
    chat_dir.parent.mkdir(parents=True)
    chat_dir.symlink_to(outside)

    await views.show_file(WORKSPACE_ID, CHAT_ID, 'a.txt', blob_id)

    assert_untouched(outside)
    assert not chat_dir.is_symlink()
    assert (chat_dir / 'a.txt').read_bytes() == b'attachment'


async def test_show_file_of_a_missing_blob_is_stored_content_missing(
    views: ChatViews, chat_dir: Path, data_dir: Path
) -> None:
    with pytest.raises(StoredContentMissingError):
        await views.show_file(WORKSPACE_ID, CHAT_ID, 'a.txt', MISSING_BLOB_ID)

    assert listing(chat_dir) == ['history.md']
    assert tmp_entries(data_dir) == []


async def test_hide_file_removes_the_name_and_a_missing_one_is_no_error(
    views: ChatViews, blobs: BlobStore, chat_dir: Path, data_dir: Path
) -> None:
    blob_id = await blob(blobs, b'attachment')
    await views.show_file(WORKSPACE_ID, CHAT_ID, 'a.txt', blob_id)

    await views.hide_file(WORKSPACE_ID, CHAT_ID, 'a.txt')
    await views.hide_file(WORKSPACE_ID, CHAT_ID, 'a.txt')
    await views.hide_file(WORKSPACE_ID, OTHER_CHAT_ID, 'a.txt')

    assert listing(chat_dir) == ['history.md']
    assert blobs.blob_path(blob_id).read_bytes() == b'attachment'
    assert tmp_entries(data_dir) == []


async def test_hide_file_removes_a_planted_directory_or_symlink_only(
    views: ChatViews, chat_dir: Path, outside: Path
) -> None:
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    (chat_dir / 'tree' / 'inner').mkdir(parents=True)
    (chat_dir / 'tree' / 'inner' / 'link').symlink_to(outside)
    (chat_dir / 'link').symlink_to(outside)

    await views.hide_file(WORKSPACE_ID, CHAT_ID, 'tree')
    await views.hide_file(WORKSPACE_ID, CHAT_ID, 'link')

    assert listing(chat_dir) == ['history.md']
    assert_untouched(outside)


async def test_hide_file_never_removes_through_a_symlinked_chat_directory(
    views: ChatViews, chat_dir: Path, outside: Path
) -> None:
    chat_dir.parent.mkdir(parents=True)
    chat_dir.symlink_to(outside)

    await views.hide_file(WORKSPACE_ID, CHAT_ID, 'secret')

    assert_untouched(outside)


# --- show_history -----------------------------------------------------------------------


async def test_show_history_writes_exactly_the_chunks(
    views: ChatViews, chat_dir: Path, data_dir: Path
) -> None:
    parts = [b'# title\n', b'x' * 100, b'', b'\xff not utf-8 is kept as it is']
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)

    await views.show_history(WORKSPACE_ID, CHAT_ID, history(*parts))

    assert (chat_dir / 'history.md').read_bytes() == b''.join(parts)
    assert tmp_entries(data_dir) == []


async def test_show_history_extends_a_history_shown_up_to_a_boundary_in_place(
    views: ChatViews, chat_dir: Path, data_dir: Path
) -> None:
    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'# base\n'))
    shown = (chat_dir / 'history.md').stat().st_ino

    await views.show_history(
        WORKSPACE_ID, CHAT_ID, history(b'# base\n', b'one\n', b'two\n', extend=True)
    )

    assert (chat_dir / 'history.md').read_bytes() == b'# base\none\ntwo\n'
    assert (chat_dir / 'history.md').stat().st_ino == shown
    assert tmp_entries(data_dir) == []


async def test_show_history_writes_anew_what_is_not_shown_up_to_a_boundary(
    views: ChatViews, chat_dir: Path
) -> None:
    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'# other bytes, other size'))
    shown = (chat_dir / 'history.md').stat().st_ino

    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'# base\n', b'one\n', extend=True))

    assert (chat_dir / 'history.md').read_bytes() == b'# base\none\n'
    assert (chat_dir / 'history.md').stat().st_ino != shown


async def test_show_history_never_extends_through_a_planted_symlink(
    views: ChatViews, chat_dir: Path, outside: Path
) -> None:
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    (chat_dir / 'history.md').unlink()
    target = outside / 'secret'
    (chat_dir / 'history.md').symlink_to(target)
    size = target.stat().st_size

    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'x' * size, b'appended', extend=True))

    assert (chat_dir / 'history.md').read_bytes() == b'x' * size + b'appended'
    assert not (chat_dir / 'history.md').is_symlink()
    assert_untouched(outside)


async def test_show_history_replaces_a_planted_directory_or_symlink(
    views: ChatViews, chat_dir: Path, outside: Path
) -> None:
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    (chat_dir / 'history.md').unlink()
    (chat_dir / 'history.md').symlink_to(outside / 'secret')

    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'# one'))
    (chat_dir / 'history.md').unlink()
    (chat_dir / 'history.md').mkdir()
    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'# two'))

    assert (chat_dir / 'history.md').read_bytes() == b'# two'
    assert_untouched(outside)


async def test_a_failing_stream_leaves_the_history_as_it_was(
    views: ChatViews, chat_dir: Path, data_dir: Path
) -> None:
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'# kept'))

    async def broken() -> AsyncIterator[bytes]:
        yield b'x' * 200
        raise ConnectionResetError

    broken_history = HistoryView((200,), lambda _: broken(), extend=False)
    with pytest.raises(ConnectionResetError):
        await views.show_history(WORKSPACE_ID, CHAT_ID, broken_history)

    assert (chat_dir / 'history.md').read_bytes() == b'# kept'
    assert tmp_entries(data_dir) == []


# --- differs ----------------------------------------------------------------------------


async def test_a_directory_in_step_differs_nowhere(views: ChatViews, blobs: BlobStore) -> None:
    blob_id = await blob(blobs, b'attachment')
    await views.show_file(WORKSPACE_ID, CHAT_ID, 'a.txt', blob_id)
    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'# hi'))

    assert await views.differs(WORKSPACE_ID, CHAT_ID, {'a.txt': blob_id}, chunks(b'# hi')) == []


async def test_a_missing_or_symlinked_directory_differs_as_a_whole(
    views: ChatViews, chat_dir: Path, outside: Path
) -> None:
    assert await views.differs(WORKSPACE_ID, CHAT_ID, {}, chunks()) == ['.']

    chat_dir.parent.mkdir(parents=True)
    chat_dir.symlink_to(outside)

    assert await views.differs(WORKSPACE_ID, CHAT_ID, {}, chunks()) == ['.']


async def test_differs_names_each_name_out_of_step(
    views: ChatViews, blobs: BlobStore, chat_dir: Path
) -> None:
    shown_id = await blob(blobs, b'shown')
    other_id = await blob(blobs, b'other')
    await views.show_file(WORKSPACE_ID, CHAT_ID, 'shown', shown_id)
    await views.show_file(WORKSPACE_ID, CHAT_ID, 'replaced', other_id)
    (chat_dir / 'planted').write_bytes(b'by a sandbox')
    files = {'shown': shown_id, 'replaced': shown_id, 'missing': other_id}

    out_of_step = await views.differs(WORKSPACE_ID, CHAT_ID, files, chunks(b'0123456789'))

    assert out_of_step == ['history.md', 'missing', 'planted', 'replaced']


async def test_a_history_that_is_not_a_regular_file_differs(
    views: ChatViews, chat_dir: Path
) -> None:
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    (chat_dir / 'history.md').unlink()
    (chat_dir / 'history.md').mkdir()

    assert await views.differs(WORKSPACE_ID, CHAT_ID, {}, chunks(b'x' * 4096)) == ['history.md']


async def test_a_history_of_the_same_size_and_other_bytes_differs(
    views: ChatViews, chat_dir: Path
) -> None:
    await views.show_history(WORKSPACE_ID, CHAT_ID, history(b'# committed'))
    replaced = chat_dir / 'by-a-sandbox'
    replaced.write_bytes(b'# sandboxed')
    replaced.rename(chat_dir / 'history.md')

    assert await views.differs(WORKSPACE_ID, CHAT_ID, {}, chunks(b'# committed')) == ['history.md']


# --- chats, remove ----------------------------------------------------------------------


async def test_chats_lists_every_chat_directory(
    views: ChatViews, data_dir: Path, outside: Path
) -> None:
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    await views.ensure_chat(WORKSPACE_ID, OTHER_CHAT_ID)
    chats = data_dir / 'workspaces' / str(WORKSPACE_ID) / 'chats'
    (chats / 'not-a-uuid').mkdir()
    (chats / str(MISSING_BLOB_ID)).symlink_to(outside)
    (data_dir / 'workspaces' / 'stray-file').write_bytes(b'')

    assert await views.chats() == [(WORKSPACE_ID, CHAT_ID), (WORKSPACE_ID, OTHER_CHAT_ID)]


async def test_remove_chat_removes_the_directory_and_all_in_it(
    views: ChatViews, blobs: BlobStore, chat_dir: Path, data_dir: Path
) -> None:
    blob_id = await blob(blobs, b'attachment')
    await views.show_file(WORKSPACE_ID, CHAT_ID, 'a.txt', blob_id)
    (chat_dir / 'made' / 'by').mkdir(parents=True)

    await views.remove_chat(WORKSPACE_ID, CHAT_ID)
    await views.remove_chat(WORKSPACE_ID, CHAT_ID)
    await views.remove_chat(WORKSPACE_ID, OTHER_CHAT_ID)

    assert not chat_dir.exists()
    assert blobs.blob_path(blob_id).read_bytes() == b'attachment'
    assert tmp_entries(data_dir) == []


async def test_remove_chat_of_a_symlinked_directory_removes_only_the_link(
    views: ChatViews, chat_dir: Path, outside: Path, data_dir: Path
) -> None:
    chat_dir.parent.mkdir(parents=True)
    chat_dir.symlink_to(outside)

    await views.remove_chat(WORKSPACE_ID, CHAT_ID)

    assert not chat_dir.is_symlink()
    assert_untouched(outside)
    assert tmp_entries(data_dir) == []


async def test_remove_workspace_removes_its_chats(views: ChatViews, data_dir: Path) -> None:
    await views.ensure_chat(WORKSPACE_ID, CHAT_ID)
    await views.ensure_chat(WORKSPACE_ID, OTHER_CHAT_ID)

    await views.remove_workspace(WORKSPACE_ID)
    await views.remove_workspace(WORKSPACE_ID)

    assert listing(data_dir) == ['.blobs', 'workspaces']
    assert listing(data_dir / 'workspaces') == []
    assert await views.chats() == []
    assert tmp_entries(data_dir) == []
