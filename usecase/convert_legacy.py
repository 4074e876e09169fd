"""Conversion of a data directory written by the release before ADR 027, at start-up.

For every chat row the committed versions are given to the blob area: the first
`history_bytes` bytes of its history become a new base blob, named by
`chats.history_blob_id` in a write unit; each attachment whose blob is missing is the
file of its row's size and sha256, hard-linked as its blob. The old layout's hidden areas
go last, so a conversion interrupted midway runs again on the next start and skips what
it did: a chat is unconverted while it has history bytes, no base blob and no segments.
The sweep that follows publishes the chat directories from the rows.
"""

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Final, Protocol
from uuid import UUID

from domain.chat import Chat, ChatFile
from domain.error import ServiceUnavailableError, StoredContentMissingError
from domain.workspace import Workspace
from usecase.interface import UnitOfWork, UnitOfWorkFactory
from usecase.store_ports import BlobStore
from usecase.sweep_views import EVERY_CHAT

logger = logging.getLogger('chat_storage.maintenance')

PAGE: Final = 500


class LegacyStore(Protocol):
    """The previous release's layout of the data directory."""

    async def present(self) -> bool:
        """Whether the data directory still has that layout (cheap: a few `lstat`s)."""
        ...

    async def in_use(self) -> bool:
        """Whether a process of that release still serves the data directory."""
        ...

    def history(self, chat: Chat) -> AsyncIterator[bytes]:
        """The chat's committed history bytes; `StoredContentMissingError` when there
        is no file with that many."""
        ...

    async def adopt_file(self, workspace_id: UUID, chat_file: ChatFile) -> bool:
        """Make the file of the row's size and sha256 its blob; False when none is."""
        ...

    async def remove_areas(self) -> None:
        """Remove what that release kept beside the chat directories."""
        ...


@dataclass(slots=True)
class ConversionResult:
    histories: int = 0
    files: int = 0
    missing: int = 0


async def lock_workspace(uow: UnitOfWork, workspace_id: UUID) -> Workspace | None:
    """Take the workspace row's lock, as every write to the workspace does first."""
    workspace = await uow.workspaces.get(workspace_id)
    if workspace is None:
        return None
    return await uow.workspaces.get_by_user_id(workspace.user_id, for_update=True)


class ConvertLegacy:
    """Convert the previous release's data directory in place; idempotent."""

    def __init__(self, uow: UnitOfWorkFactory, blobs: BlobStore, legacy: LegacyStore) -> None:
        self._uow = uow
        self._blobs = blobs
        self._legacy = legacy

    async def needed(self) -> bool:
        """Whether the data directory has the previous release's layout."""
        return await self._legacy.present()

    async def __call__(self) -> ConversionResult | None:
        """Convert; None when the data directory has the current layout already."""
        if not await self._legacy.present():
            return None
        if await self._legacy.in_use():
            raise ServiceUnavailableError(
                'a process of the previous release serves the data directory'
            )
        logger.warning('converting a data directory of the previous release')
        result = ConversionResult()
        after: UUID | None = None
        while True:
            async with self._uow(write=False) as uow:
                page = await uow.inventory.chats_changed_since(EVERY_CHAT, after=after, limit=PAGE)
            for chat in page:
                await self._convert_chat(chat, result)
            if len(page) < PAGE:
                break
            after = page[-1].chat_id
        await self._legacy.remove_areas()
        logger.warning(
            'conversion done: %d histories, %d files, %d versions not found (fsck reports them)',
            result.histories,
            result.files,
            result.missing,
        )
        return result

    async def _convert_chat(self, chat: Chat, result: ConversionResult) -> None:
        async with self._uow(write=False) as uow:
            segments = await uow.history_segments.list_by_chat_id(chat.chat_id)
            files = await uow.chat_files.list_by_chat_id(chat.chat_id)
        if chat.history_bytes > 0 and chat.history_blob_id is None and not segments:
            await self._convert_history(chat, result)
        for chat_file in files:
            try:
                await self._blobs.path(chat_file.file_id)
                continue
            except StoredContentMissingError:
                pass
            if await self._legacy.adopt_file(chat.workspace_id, chat_file):
                result.files += 1
            else:
                result.missing += 1
                logger.warning('conversion: no file of a row size and sha256; left to fsck')

    async def _convert_history(self, chat: Chat, result: ConversionResult) -> None:
        try:
            staged = await self._blobs.stage(
                self._legacy.history(chat), limit_bytes=chat.history_bytes
            )
        except StoredContentMissingError:
            result.missing += 1
            logger.warning('conversion: a history is shorter than committed; left to fsck')
            return
        try:
            async with self._uow() as uow:
                await lock_workspace(uow, chat.workspace_id)
                current = await uow.chats.get(chat.chat_id)
                unchanged = (
                    current is not None
                    and current.history_blob_id is None
                    and (current.history_revision, current.history_bytes)
                    == (chat.history_revision, chat.history_bytes)
                    and not await uow.history_segments.list_by_chat_id(chat.chat_id)
                    and staged.size_bytes == chat.history_bytes
                )
                if current is not None and unchanged:
                    await uow.chats.save(replace(current, history_blob_id=staged.blob_id))
                    await uow.commit()
                    result.histories += 1
                    return
        except BaseException:
            await self._blobs.discard(staged)
            raise
        await self._blobs.discard(staged)
