"""A read that opens a file another write has swapped in, not yet committed (ADR 011),
waits for that write to end: then it reads the old file, or answers what the missing
record means."""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from adapter.file_storage import FileSystemChatStorage
from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.error import (
    ChatFileNotFoundError,
    StoredContentMissingError,
    StoredVersionChangingError,
)
from usecase.get_attachment import AttachmentContent

CREATED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHAT = Chat(chat_id=uuid4(), workspace_id=uuid4(), created_at=CREATED_AT, updated_at=CREATED_AT)
NAME = ChatAttachmentName('r.bin')


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def put(storage: FileSystemChatStorage, data: bytes) -> ChatFile:
    staged = await storage.stage(chunks(data), limit_bytes=1 << 20)
    change = await storage.put_attachment(CHAT, NAME, staged)
    await change.commit()
    return ChatFile(
        file_id=uuid4(),
        chat_id=CHAT.chat_id,
        name=NAME,
        content_type=None,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=CREATED_AT,
    )


async def read(content: AttachmentContent) -> bytes:
    return b''.join([chunk async for chunk in content.open()])


@pytest.fixture
async def storage(tmp_path: Path) -> FileSystemChatStorage:
    storage = FileSystemChatStorage(tmp_path / 'data', chunk_bytes=8)
    await storage.ensure_chat(CHAT)
    return storage


@pytest.mark.parametrize('committed', [True, False])
async def test_a_read_waits_for_the_replacement_to_end(
    storage: FileSystemChatStorage, *, committed: bool
) -> None:
    record = await put(storage, b'the old bytes')
    staged = await storage.stage(chunks(b'THE NEW BYTES'), limit_bytes=1 << 20)
    change = await storage.put_attachment(CHAT, NAME, staged)
    replaced = asyncio.Event()

    async def still_recorded() -> None:
        if replaced.is_set():
            raise ChatFileNotFoundError(record.file_id)

    content = AttachmentContent(CHAT, record, storage, still_recorded)
    reading = asyncio.create_task(read(content))
    await asyncio.sleep(0.05)
    assert not reading.done()  # neither the new bytes nor an error: it waits

    if committed:
        replaced.set()  # the metadata commit removed the old record
        await change.commit()
        with pytest.raises(ChatFileNotFoundError):
            await asyncio.wait_for(reading, timeout=5)
    else:
        await change.rollback()
        assert await asyncio.wait_for(reading, timeout=5) == b'the old bytes'


async def test_a_replacement_that_never_ends_is_service_unavailable(
    storage: FileSystemChatStorage,
) -> None:
    record = await put(storage, b'the old bytes')
    staged = await storage.stage(chunks(b'in doubt'), limit_bytes=1 << 20)
    await storage.put_attachment(CHAT, NAME, staged)  # its commit outcome never known

    async def still_recorded() -> None:
        return None

    content = AttachmentContent(CHAT, record, storage, still_recorded)
    with pytest.raises(StoredVersionChangingError) as raised:
        await read(content)
    assert raised.value.code == 'service_unavailable'  # a 503: retrying is safe


async def test_a_read_racing_a_delete_answers_what_the_record_says(
    storage: FileSystemChatStorage,
) -> None:
    """The record was read, then a delete took the file: not a 500, a fresh look at the
    record (gone: 404)."""
    record = await put(storage, b'deleted meanwhile')
    change = await storage.delete_attachments(CHAT, [NAME])
    await change.commit()
    looked: list[bool] = []

    async def still_recorded() -> None:
        looked.append(True)
        raise ChatFileNotFoundError(record.file_id)

    with pytest.raises(ChatFileNotFoundError):
        await read(AttachmentContent(CHAT, record, storage, still_recorded))
    assert looked == [True]


async def test_a_file_missing_under_its_record_stays_an_error(
    storage: FileSystemChatStorage,
) -> None:
    record = await put(storage, b'gone, and the record stays')
    storage.attachment_path(CHAT, NAME).unlink()  # a sandbox removed it

    async def still_recorded() -> None:
        return None

    with pytest.raises(StoredContentMissingError):
        await read(AttachmentContent(CHAT, record, storage, still_recorded))
