from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from domain.chat import Chat, ChatFile
from domain.content import ByteRange
from domain.error import ChatFileNotFoundError
from usecase.common import once_settled, owned_chat
from usecase.interface import (
    ChatStorage,
    SendableAttachments,
    SendableFile,
    UnitOfWork,
    UnitOfWorkFactory,
)
from usecase.recover_storage import SettleChatChanges


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
    chat: Chat
    chat_file: ChatFile
    storage: ChatStorage
    # raises (not found, invalid link) once the record is gone: a replacement committed
    still_recorded: Callable[[], Awaitable[None]]
    # settles what a crashed or cut-off write left in the chat, under the workspace lock
    # (its argument: whether the file was missing)
    repair: Callable[[bool], Awaitable[None]] | None = None

    async def open(self, byte_range: ByteRange | None = None) -> AsyncIterator[bytes]:
        """The file's bytes, or the given range of them, in chunks: the record's version only.

        A replacement in flight has swapped its file in before its commit (ADR 011): the
        read waits for that write to end, then reads the old file again or answers what the
        record's absence means.
        """

        async def attempt() -> tuple[bytes | None, AsyncIterator[bytes]]:
            chunks = self.storage.read_attachment(
                self.chat, self.chat_file.name, byte_range, record=self.chat_file
            )
            return await anext(chunks, None), chunks

        first, chunks = await once_settled(attempt, self.still_recorded, self.repair)
        if first is not None:
            yield first
            async for chunk in chunks:
                yield chunk

    async def sendable(self) -> SendableFile | None:
        """The whole file under a private path to send by path, when the storage can make
        one and it holds the size the record says; else None (stream it with `open`)."""
        storage = self.storage
        if not isinstance(storage, SendableAttachments):
            return None

        async def attempt() -> SendableFile | None:
            return await storage.sendable_attachment(
                self.chat, self.chat_file.name, record=self.chat_file
            )

        sendable = await once_settled(attempt, self.still_recorded, self.repair)
        if sendable is not None and sendable.size_bytes != self.chat_file.size_bytes:
            # changed in place (a sandbox): stream the record's size of it
            await sendable.release(sent=False)
            return None
        return sendable


def repair_of(
    settle: SettleChatChanges, chat: Chat, file_id: UUID
) -> Callable[[bool], Awaitable[None]]:
    """`AttachmentContent.repair` for one file of a chat."""

    async def repair(missing: bool) -> None:
        await settle(chat.workspace_id, chat.chat_id, file_id, missing=missing)

    return repair


class ReadAttachment:
    """A file's record and a way to stream its bytes (whole or a range)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        storage: ChatStorage,
        settle: SettleChatChanges | None = None,
    ) -> None:
        self._uow = uow
        self._storage = storage
        self._settle = settle

    async def __call__(self, user_id: UUID, chat_id: UUID, file_id: UUID) -> AttachmentContent:
        async with self._uow(write=False) as uow:
            chat, chat_file = await owned_file(uow, user_id, chat_id, file_id)

        async def still_recorded() -> None:
            async with self._uow(write=False) as uow:
                await owned_file(uow, user_id, chat_id, file_id)

        return AttachmentContent(
            chat=chat,
            chat_file=chat_file,
            storage=self._storage,
            still_recorded=still_recorded,
            repair=None if self._settle is None else repair_of(self._settle, chat, file_id),
        )
