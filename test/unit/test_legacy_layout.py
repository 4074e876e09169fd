"""`LegacyLayout` on a real directory laid out as the previous release left it."""

import hashlib
import json
import stat
from pathlib import Path
from uuid import UUID

import pytest

from adapter.legacy_layout import LegacyLayout, blob_path
from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.error import StoredContentMissingError

from .fakes import T0

WS = UUID(int=1)
CHAT = UUID(int=10)


def _chat_dir(root: Path) -> Path:
    path = root / 'workspaces' / str(WS) / 'chats' / str(CHAT)
    path.mkdir(parents=True)
    for area in ('.staging', '.trash', '.locks'):
        (root / area).mkdir(exist_ok=True)
    return path


def _row(data: bytes, name: str = 'a.csv', file_id: int = 20) -> ChatFile:
    sha = hashlib.sha256(data).hexdigest()
    return ChatFile(UUID(int=file_id), CHAT, ChatAttachmentName(name), None, len(data), T0, sha)


def _sidecar(root: Path, token: str, **record: object) -> Path:
    (root / '.trash' / f'{token}.json').write_text(json.dumps(record))
    return root / '.trash' / token


async def _history(layout: LegacyLayout, chat: Chat) -> bytes:
    return b''.join([chunk async for chunk in layout.history(chat)])


async def test_the_history_is_its_committed_prefix(tmp_path: Path) -> None:
    (_chat_dir(tmp_path) / 'history.md').write_bytes(b'committed|tail')
    layout = LegacyLayout(tmp_path)
    chat = Chat(CHAT, WS, T0, T0, history_bytes=9, history_revision=2)

    assert await layout.present()
    assert await _history(layout, chat) == b'committed'
    with pytest.raises(StoredContentMissingError):
        await _history(layout, Chat(CHAT, WS, T0, T0, history_bytes=99))


async def test_an_uncommitted_history_put_is_read_from_its_backup(tmp_path: Path) -> None:
    (_chat_dir(tmp_path) / 'history.md').write_bytes(b'new, never committed')
    record = {'operation': 'put_history', 'chat_id': str(CHAT), 'workspace_id': str(WS)}
    backup = _sidecar(tmp_path, 'a' * 32, **record, history_revision=2, replaced=True)
    backup.write_bytes(b'old committed')
    layout = LegacyLayout(tmp_path)

    assert (
        await _history(layout, Chat(CHAT, WS, T0, T0, history_bytes=13, history_revision=2))
        == b'old committed'
    )
    # committed: the revision went past the put's
    assert (
        await _history(layout, Chat(CHAT, WS, T0, T0, history_bytes=3, history_revision=3))
        == b'new'
    )


async def test_a_file_of_the_rows_hash_is_linked_read_only_as_its_blob(tmp_path: Path) -> None:
    chat_dir = _chat_dir(tmp_path)
    (chat_dir / 'Bericht über März.bin').write_bytes(b'bytes')
    (chat_dir / 'edited.txt').write_bytes(b'edited')
    layout = LegacyLayout(tmp_path)
    row = _row(b'bytes', 'Bericht über März.bin')

    assert await layout.adopt_file(WS, row)
    assert await layout.adopt_file(WS, row)
    assert not await layout.adopt_file(WS, _row(b'original', 'edited.txt', 21))

    blob = blob_path(tmp_path, row.file_id)
    assert blob.read_bytes() == b'bytes'
    assert blob.stat().st_ino == (chat_dir / 'Bericht über März.bin').stat().st_ino
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert not blob_path(tmp_path, UUID(int=21)).exists()


async def test_a_file_whose_replacement_never_committed_comes_from_the_trash(
    tmp_path: Path,
) -> None:
    chat_dir = _chat_dir(tmp_path)
    (chat_dir / 'a.csv').write_bytes(b'uncommitted replacement')
    record = {'operation': 'put_attachment', 'chat_id': str(CHAT), 'name': 'a.csv'}
    _sidecar(tmp_path, 'b' * 32, **record).write_bytes(b'committed')
    deleted = _sidecar(tmp_path, 'c' * 32, operation='delete_chat', chat_id=str(CHAT))
    deleted.mkdir()
    (deleted / 'b.csv').write_bytes(b'in a deleted chat')
    layout = LegacyLayout(tmp_path)

    assert await layout.adopt_file(WS, _row(b'committed'))
    assert await layout.adopt_file(WS, _row(b'in a deleted chat', 'b.csv', 22))
    assert blob_path(tmp_path, UUID(int=20)).read_bytes() == b'committed'


async def test_the_hidden_areas_go_and_the_layout_is_no_longer_present(tmp_path: Path) -> None:
    _chat_dir(tmp_path)
    (tmp_path / '.staging' / 'x').write_bytes(b'in flight')
    layout = LegacyLayout(tmp_path)
    assert not await layout.in_use()

    await layout.remove_areas()

    assert not await layout.present()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['workspaces']
