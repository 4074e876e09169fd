from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

from domain.chat import Chat, ChatFile
from domain.content import ByteRange
from domain.error import ChatFileNotFoundError
from usecase.common import owned_chat
from usecase.interface import UnitOfWork, UnitOfWorkFactory
from usecase.store_ports import BlobStore


async def owned_file(
    uow: UnitOfWork,
    user_id: UUID,
    chat_id: UUID,
    file_id: UUID,
    *,
    for_update: bool = False,
) -> tuple[Chat, ChatFile]:
    """The caller's chat and one of its files; a file of another chat is missing."""
    _, chat = await owned_chat(uow, user_id, chat_id, for_update=for_update)
    chat_file = await uow.chat_files.get(file_id)
    if chat_file is None or chat_file.chat_id != chat_id:
        raise ChatFileNotFoundError(file_id)
    return chat, chat_file


class GetAttachment:
    """The record of one file of a chat."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, user_id: UUID, chat_id: UUID, file_id: UUID) -> ChatFile:
        async with self._uow(write=False) as uow:
            _, chat_file = await owned_file(uow, user_id, chat_id, file_id)
        return chat_file


@dataclass(frozen=True, slots=True)
class AttachmentContent:
    """A committed file's record and its blob: immutable, so every read is of the version
    the record describes, under its `ETag`."""

    chat: Chat
    chat_file: ChatFile
    blobs: BlobStore

    def open(self, byte_range: ByteRange | None = None) -> AsyncIterator[bytes]:
        """The file's bytes (as many as its record says), or the given range of them."""
        size = self.chat_file.size_bytes
        if byte_range is None and size:
            byte_range = ByteRange(0, size - 1)
        return self.blobs.read(self.chat_file.file_id, byte_range)

    async def path(self) -> str:
        """The blob's path, for a server that sends files by path."""
        return await self.blobs.path(self.chat_file.file_id)


class ReadAttachment:
    """A file's record and a way to stream its bytes (whole or a range)."""

    def __init__(self, uow: UnitOfWorkFactory, blobs: BlobStore) -> None:
        self._uow = uow
        self._blobs = blobs

    async def __call__(self, user_id: UUID, chat_id: UUID, file_id: UUID) -> AttachmentContent:
        async with self._uow(write=False) as uow:
            chat, chat_file = await owned_file(uow, user_id, chat_id, file_id)
        return AttachmentContent(chat=chat, chat_file=chat_file, blobs=self._blobs)
