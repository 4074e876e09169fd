"""`sendable_attachment`: the opened file under `/proc/self/fd`, for servers that send by path.

Also the reads that take one worker-thread call (small files) and the pipelined staging.
"""

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from adapter.file_storage import FileSystemChatStorage
from domain.chat import Chat, ChatAttachmentName
from domain.content import ByteRange
from domain.error import StoredContentMissingError
from usecase.interface import SendableAttachments

WORKSPACE_ID = UUID('5f0c6a52-1d0e-4c3b-9a57-0b7c1e2d3f40')
CHAT_ID = UUID('8a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d')
CREATED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHAT = Chat(
    chat_id=CHAT_ID, workspace_id=WORKSPACE_ID, created_at=CREATED_AT, updated_at=CREATED_AT
)
NAME = ChatAttachmentName('report.pdf')
CHUNK_BYTES = 16
LIMIT = 1 << 20


async def chunks(data: bytes, size: int = 5) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b''.join([chunk async for chunk in stream])


@pytest.fixture
def storage(tmp_path: Path) -> FileSystemChatStorage:
    return FileSystemChatStorage(tmp_path / 'data', chunk_bytes=CHUNK_BYTES)


@pytest.fixture
def chat_dir(storage: FileSystemChatStorage) -> Path:
    return storage.chat_dir(CHAT)


async def put(storage: FileSystemChatStorage, data: bytes) -> None:
    await storage.ensure_chat(CHAT)
    staged = await storage.stage(chunks(data), limit_bytes=LIMIT)
    change = await storage.put_attachment(CHAT, NAME, staged)
    await change.commit()


def test_the_file_system_storage_can_send_by_path(storage: FileSystemChatStorage) -> None:
    assert isinstance(storage, SendableAttachments)


async def test_the_path_names_the_stored_bytes_until_released(
    storage: FileSystemChatStorage,
) -> None:
    data = os.urandom(1000)
    await put(storage, data)

    sendable = await storage.sendable_attachment(CHAT, NAME)

    assert sendable is not None
    assert sendable.size_bytes == len(data)
    assert Path(sendable.path).read_bytes() == data
    await sendable.release(sent=False)
    assert not Path(sendable.path).exists()  # the descriptor is closed
    assert list(storage.staging_dir.iterdir()) == []  # nothing was ever written


async def test_release_waits_until_another_descriptor_holds_the_file(
    storage: FileSystemChatStorage,
) -> None:
    await put(storage, b'sent by the server')
    sendable = await storage.sendable_attachment(CHAT, NAME)
    assert sendable is not None
    # what a server does with the path it was given: open it itself
    with Path(sendable.path).open('rb') as server_side:
        await asyncio.wait_for(sendable.release(), timeout=5)

        assert not Path(sendable.path).exists()
        assert server_side.read() == b'sent by the server'


async def test_a_descriptor_held_before_the_handover_is_not_taken_for_the_server(
    storage: FileSystemChatStorage,
) -> None:
    await put(storage, b'downloaded twice')
    first = await storage.sendable_attachment(CHAT, NAME)
    assert first is not None
    # an earlier download of the same file whose server side is still open
    with Path(first.path).open('rb') as earlier_server_side:
        await first.release()
        second = await storage.sendable_attachment(CHAT, NAME)
        assert second is not None
        releasing = asyncio.create_task(second.release())
        await asyncio.sleep(0.2)

        # the earlier download's descriptor does not count: the path must still open
        assert not releasing.done()
        with Path(second.path).open('rb') as server_side:
            await asyncio.wait_for(releasing, timeout=5)

            assert not Path(second.path).exists()
            assert server_side.read() == b'downloaded twice'
        assert earlier_server_side.read() == b'downloaded twice'


async def test_a_replace_after_opening_leaves_the_opened_version(
    storage: FileSystemChatStorage,
) -> None:
    await put(storage, b'old bytes')
    sendable = await storage.sendable_attachment(CHAT, NAME)
    await put(storage, b'new bytes, longer')

    assert sendable is not None
    assert Path(sendable.path).read_bytes() == b'old bytes'
    await sendable.release(sent=False)


async def test_a_planted_symlink_is_never_opened(
    storage: FileSystemChatStorage, chat_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / 'secret.txt'
    secret.write_bytes(b'outside the data dir')
    await storage.ensure_chat(CHAT)
    (chat_dir / NAME.value).symlink_to(secret)

    with pytest.raises(StoredContentMissingError):
        await storage.sendable_attachment(CHAT, NAME)
    assert list(storage.staging_dir.iterdir()) == []


async def test_a_missing_file_is_stored_content_missing(storage: FileSystemChatStorage) -> None:
    await storage.ensure_chat(CHAT)

    with pytest.raises(StoredContentMissingError):
        await storage.sendable_attachment(CHAT, NAME)


@pytest.mark.parametrize('size', [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 100])
async def test_reads_of_every_size_return_the_bytes_and_close_the_file(
    storage: FileSystemChatStorage, size: int
) -> None:
    data = os.urandom(size)
    await put(storage, data)
    before = len(list(Path('/proc/self/fd').iterdir()))

    assert await read_all(storage.read_attachment(CHAT, NAME)) == data
    if size:
        whole = ByteRange(0, size - 1)
        assert await read_all(storage.read_attachment(CHAT, NAME, whole)) == data
    assert len(list(Path('/proc/self/fd').iterdir())) == before


async def test_staging_in_pipelined_batches_hashes_every_byte_in_order(
    storage: FileSystemChatStorage,
) -> None:
    data = os.urandom(CHUNK_BYTES * 7 + 3)

    staged = await storage.stage(chunks(data, 7), limit_bytes=LIMIT)

    assert staged.size_bytes == len(data)
    assert staged.sha256 == hashlib.sha256(data).hexdigest()
    assert (storage.staging_dir / staged.token).read_bytes() == data


async def test_another_download_of_the_same_file_is_not_taken_for_the_server(
    storage: FileSystemChatStorage,
) -> None:
    """Closed before the server opened it, the number could name another file by then,
    which would be sent under this one's headers."""
    await put(storage, b'downloaded by two at once')
    first = await storage.sendable_attachment(CHAT, NAME)
    second = await storage.sendable_attachment(CHAT, NAME)  # opened after `first`
    assert first is not None
    assert second is not None
    releasing = asyncio.create_task(first.release())
    await asyncio.sleep(0.2)

    assert not releasing.done()  # `second` is ours, not the server's
    with Path(first.path).open('rb') as server_side:
        await asyncio.sleep(0.2)
        # a server's open of either path holds the same file: whose it is cannot be told
        assert not releasing.done()
        await second.release(sent=False)  # the other download ends (not sent)
        await asyncio.wait_for(releasing, timeout=5)
        assert server_side.read() == b'downloaded by two at once'
    assert not Path(first.path).exists()


async def test_a_file_put_at_the_name_since_is_not_taken_for_the_server(
    storage: FileSystemChatStorage, chat_dir: Path
) -> None:
    await put(storage, b'the old version')
    sendable = await storage.sendable_attachment(CHAT, NAME)
    assert sendable is not None
    await put(storage, b'the new version')
    releasing = asyncio.create_task(sendable.release())

    # a descriptor on the new file at the same name, opened the way a server opens one
    with (chat_dir / NAME.value).open('rb'):
        await asyncio.sleep(0.2)
        assert not releasing.done()
    with Path(sendable.path).open('rb') as server_side:
        await asyncio.wait_for(releasing, timeout=5)
        assert server_side.read() == b'the old version'
