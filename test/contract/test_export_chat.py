"""What an export sees when the chat changes under it: the use cases on real metadata
backends, the real blob store and chat views on a real data directory."""

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest

from adapter.blob_store import BlobStore
from adapter.chat_view import ChatViews
from adapter.clock import SystemClock
from adapter.id_generator import UuidGenerator
from usecase.append_history import AppendHistory
from usecase.create_chat import CreateChat
from usecase.delete_attachment import DeleteAttachment
from usecase.ensure_workspace import EnsureWorkspace
from usecase.export_chat import (
    HASHED_IN_THREAD_BYTES,
    ChatExport,
    ExportChat,
    ExportedContentChangedError,
)
from usecase.interface import MetadataBackend
from usecase.publish import Publisher
from usecase.upload_attachment import UploadAttachment

USER = UUID('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa')
LIMIT = 1_000_000


async def body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(chunks: AsyncIterator[bytes]) -> bytes:
    return b''.join([chunk async for chunk in chunks])


class Chat:
    """One chat of one user, driven through the use cases."""

    def __init__(self, backend: MetadataBackend, data_dir: Path, chunk_bytes: int = 2) -> None:
        uow = backend.unit_of_work
        clock, ids = SystemClock(), UuidGenerator()
        # two-byte reads: a file is read in several chunks, so a change can land between them
        self.blobs = BlobStore(data_dir, chunk_bytes=chunk_bytes)
        views = ChatViews(data_dir)
        publisher = Publisher(uow, self.blobs, views)
        self.ensure_workspace = EnsureWorkspace(uow, clock, ids, LIMIT)
        self.create_chat = CreateChat(uow, views, clock, ids)
        self.upload_attachment = UploadAttachment(uow, self.blobs, publisher, clock, LIMIT)
        self.delete_attachment = DeleteAttachment(uow, self.blobs, publisher, clock)
        self.append_history = AppendHistory(uow, self.blobs, publisher, clock, LIMIT)
        self.export_chat = ExportChat(uow, self.blobs)
        self.chat_id = UUID(int=0)

    async def start(self) -> None:
        await self.ensure_workspace(USER)
        self.chat_id = (await self.create_chat(USER, 'chat')).chat_id

    async def upload(self, name: str, content: bytes) -> UUID:
        uploaded = await self.upload_attachment(USER, self.chat_id, name, None, body(content))
        return uploaded.chat_file.file_id

    async def append(self, content: bytes) -> None:
        await self.append_history(USER, self.chat_id, body(content))

    async def export(self) -> ChatExport:
        return await self.export_chat(USER, self.chat_id)


@pytest.fixture
async def chat(backend: MetadataBackend, tmp_path: Path) -> Chat:
    started = Chat(backend, tmp_path / 'data')
    await started.start()
    return started


async def read_entries(export: ChatExport) -> dict[str, bytes]:
    return {entry.name: await read(entry.chunks) async for entry in export.entries()}


async def test_export_lists_history_then_files_with_their_sizes(chat: Chat) -> None:
    await chat.append(b'# hi\n')
    await chat.upload('a.txt', b'aaa')
    await chat.upload('b.txt', b'')

    export = await chat.export()

    listed = [(e.name, e.size_bytes) async for e in export.entries()]
    assert listed == [('history.md', 5), ('a.txt', 3), ('b.txt', 0)]
    assert await read_entries(export) == {'history.md': b'# hi\n', 'a.txt': b'aaa', 'b.txt': b''}


async def test_appends_and_uploads_after_the_start_are_not_exported(chat: Chat) -> None:
    await chat.append(b'first\n')
    await chat.upload('a.txt', b'aaa')
    export = await chat.export()

    await chat.append(b'second\n')
    await chat.upload('late.txt', b'late')

    assert await read_entries(export) == {'history.md': b'first\n', 'a.txt': b'aaa'}


@pytest.mark.parametrize('replacement', [b'longer than before', b'AAA', b'a'])
async def test_a_file_replaced_after_the_start_is_exported_as_listed(
    chat: Chat, replacement: bytes
) -> None:
    await chat.upload('a.txt', b'aaa')
    export = await chat.export()

    await chat.upload('a.txt', replacement)  # longer, same size other bytes, shorter

    assert await read_entries(export) == {'history.md': b'', 'a.txt': b'aaa'}


async def test_a_file_deleted_after_the_start_is_exported_as_listed(chat: Chat) -> None:
    file_id = await chat.upload('a.txt', b'aaa')
    export = await chat.export()

    await chat.delete_attachment(USER, chat.chat_id, file_id)

    assert await read_entries(export) == {'history.md': b'', 'a.txt': b'aaa'}


async def test_a_blob_collected_after_the_start_fails_its_entry(chat: Chat) -> None:
    file_id = await chat.upload('a.txt', b'aaa')
    export = await chat.export()

    await chat.blobs.remove([file_id])  # as garbage collection would, past the grace

    entries = [entry async for entry in export.entries()]
    with pytest.raises(ExportedContentChangedError) as raised:  # a 409 before anything is sent
        await read(entries[1].chunks)
    assert raised.value.name == 'a.txt'


async def test_large_chunks_are_hashed_as_well(backend: MetadataBackend, tmp_path: Path) -> None:
    # chunks as large as those hashed in a worker thread
    chat = Chat(backend, tmp_path / 'data', chunk_bytes=HASHED_IN_THREAD_BYTES)
    await chat.start()
    content = bytes(range(256)) * (3 * HASHED_IN_THREAD_BYTES // 256)
    file_id = await chat.upload('big.bin', content)
    assert (await read_entries(await chat.export()))['big.bin'] == content

    export = await chat.export()
    # a blob changed in place (by root: blobs are read-only), the same size, one byte
    # other: only the digest can tell
    path = chat.blobs.blob_path(file_id)
    path.chmod(0o644)
    path.write_bytes(content[:-1] + b'x')
    entries = [entry async for entry in export.entries()]
    with pytest.raises(ExportedContentChangedError):
        await read(entries[1].chunks)
