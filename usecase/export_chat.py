"""A chat as a set of named byte streams: `history.md` and every attachment."""

import asyncio
import hashlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.chat import HISTORY_FILE_NAME, Chat, ChatFile, HistorySegment
from domain.error import ChatNotFoundError, DomainError, StoredContentMissingError
from usecase.common import owned_chat
from usecase.interface import UnitOfWorkFactory
from usecase.publish import history_chunks
from usecase.store_ports import BlobStore

# a chunk at least this large is hashed in a worker thread (hashlib lets go of the GIL):
# an export of gigabytes of attachments does not hold the event loop for seconds
HASHED_IN_THREAD_BYTES = 64 * 1024


class ExportedContentChangedError(DomainError):
    """A file listed at the start of an export no longer has the listed bytes: its blob
    was collected as garbage (a write replaced or deleted it longer ago than the grace
    period) or does not hold what its row says.

    A race with a write, not a fault: raised before anything was sent it is a `409`, and
    an export started again lists the chat anew; raised while the archive streams, it cuts
    the response short rather than send a file under a record it does not match.
    """

    code = 'chat_changed_during_export'

    def __init__(self, chat_id: UUID, name: str) -> None:
        super().__init__()
        self.chat_id = chat_id
        self.name = name


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """One member of an export: its name, listed size and time, and its bytes (checked)."""

    name: str
    size_bytes: int
    modified_at: datetime
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class ChatExport:
    """What the export lists at its start; each file is opened only when it is reached."""

    chat: Chat
    segments: tuple[HistorySegment, ...]
    files: tuple[ChatFile, ...]
    blobs: BlobStore

    async def entries(self) -> AsyncIterator[ExportEntry]:
        """`history.md` first, then the attachments by `created_at`, then `file_id`."""
        chat = self.chat
        yield ExportEntry(
            name=HISTORY_FILE_NAME,
            size_bytes=chat.history_bytes,
            modified_at=chat.updated_at,
            chunks=_checked(
                history_chunks(self.blobs, chat, list(self.segments)),
                chat,
                HISTORY_FILE_NAME,
                None,
            ),
        )
        for chat_file in self.files:
            name = chat_file.name.value
            yield ExportEntry(
                name=name,
                size_bytes=chat_file.size_bytes,
                modified_at=chat_file.created_at,
                chunks=_checked(
                    self.blobs.read(chat_file.file_id),
                    chat,
                    name,
                    chat_file,
                ),
            )


async def _checked(
    chunks: AsyncIterator[bytes], chat: Chat, name: str, chat_file: ChatFile | None
) -> AsyncIterator[bytes]:
    """The chunks, as long as they are the listed bytes: the listed size, and the listed
    sha256 for attachments (the history has no digest, only its committed length).

    Blobs are immutable, so this fails only for a blob collected or damaged since the
    listing: at the first chunk past the listed size or, at the latest, after the last.
    """
    expected = chat.history_bytes if chat_file is None else chat_file.size_bytes
    digest = None if chat_file is None else hashlib.sha256()
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > expected:
                raise ExportedContentChangedError(chat.chat_id, name)
            if digest is not None:
                if len(chunk) >= HASHED_IN_THREAD_BYTES:
                    await asyncio.to_thread(digest.update, chunk)
                else:
                    digest.update(chunk)
            yield chunk
    except StoredContentMissingError:
        # collected since the listing: a retry lists the chat anew (or finds it gone)
        raise ExportedContentChangedError(chat.chat_id, name) from None
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
    if seen != expected or (
        chat_file is not None and digest is not None and digest.hexdigest() != chat_file.sha256
    ):
        raise ExportedContentChangedError(chat.chat_id, name)


class ExportChat:
    """List a chat for export: its record, its history's segments and every file record."""

    def __init__(self, uow: UnitOfWorkFactory, blobs: BlobStore) -> None:
        self._uow = uow
        self._blobs = blobs

    async def __call__(self, user_id: UUID, chat_id: UUID) -> ChatExport:
        async with self._uow(write=False) as uow:
            await owned_chat(uow, user_id, chat_id)
            found, segments = await uow.history_segments.history(chat_id)
            files = await uow.chat_files.list_by_chat_id(chat_id)
        if found is None:
            raise ChatNotFoundError(chat_id)
        return ChatExport(
            chat=found, segments=tuple(segments), files=tuple(files), blobs=self._blobs
        )
