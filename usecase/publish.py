"""Keeping a chat directory in step with the rows: the view of ADR 027.

A write commits its rows first (the only commit point), then publishes: the directory is
brought to what the rows say *now*, not to what the write itself wrote. Each round reads
the rows, changes the directory, and reads the rows again; once two reads agree, no
publication that started earlier can have left an older state behind this one (its own
re-read sees the newer rows and publishes again). Two replicas publishing one chat at once
therefore converge on the latest rows, serialised by the database alone.
"""

import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Final
from uuid import UUID

from domain.chat import HISTORY_FILE_NAME, Chat, ChatAttachmentName, ChatFile, HistorySegment
from domain.content import ByteRange
from domain.error import DomainError
from usecase.interface import UnitOfWorkFactory
from usecase.store_ports import BlobStore, ChatViews, HistoryView

logger = logging.getLogger('chat_storage.views')

# rounds before a publication gives up and leaves the chat to the sweep; each further
# round needs another write to commit on the same name within one round
MAX_ROUNDS: Final = 8
_UNSEEN: Final = object()


def _base_bytes(chat: Chat, segments: list[HistorySegment]) -> int:
    """How much of the history its base blob holds: what the segments do not."""
    return chat.history_bytes - sum(segment.size_bytes for segment in segments)


async def history_chunks(
    blobs: BlobStore, chat: Chat, segments: list[HistorySegment], start: int = 0
) -> AsyncIterator[bytes]:
    """The committed history from `start` (0, or the end of the base or of a segment):
    its base blob, then each segment in order."""
    base = _base_bytes(chat, segments)
    if chat.history_blob_id is not None and 0 == start < base:
        async for chunk in blobs.read(chat.history_blob_id, ByteRange(0, base - 1)):
            yield chunk
    end = base
    for segment in segments:
        end += segment.size_bytes
        if end <= start or not segment.size_bytes:
            continue
        if segment.content is not None:
            yield segment.content
        elif segment.blob_id is not None:
            async for chunk in blobs.read(segment.blob_id, ByteRange(0, segment.size_bytes - 1)):
                yield chunk


def history_view(
    blobs: BlobStore, chat: Chat, segments: list[HistorySegment], *, extend: bool
) -> HistoryView:
    """The committed history as a chat directory is to show it."""
    boundaries = [_base_bytes(chat, segments)]
    for segment in segments:
        boundaries.append(boundaries[-1] + segment.size_bytes)

    def chunks_from(start: int) -> AsyncIterator[bytes]:
        return history_chunks(blobs, chat, segments, start)

    return HistoryView(tuple(boundaries), chunks_from, extend)


async def after_commit(step: Awaitable[None], what: str) -> None:
    """Await a step that follows a commit (a view removed, blobs released): the commit is
    the write, so a failure is logged and left to the sweep and garbage collection, and
    the answer stands."""
    try:
        await step
    except DomainError:
        logger.warning('%s after a commit failed; the sweep settles it', what, exc_info=True)


async def no_history() -> AsyncIterator[bytes]:
    """An empty history."""
    empty: tuple[bytes, ...] = ()
    for chunk in empty:
        yield chunk


async def _one(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


def _settled(shown: Chat, current: Chat | None) -> bool:
    """Whether what was shown stands: the rows are still `shown`'s history, or a later
    write on the same base (which publishes its own bytes) committed since."""
    if current is None:
        return True
    if current.history_blob_id != shown.history_blob_id:
        return False
    return current.history_revision > shown.history_revision or (
        current.history_revision == shown.history_revision
        and current.history_bytes == shown.history_bytes
    )


def _chat_version(chat: Chat) -> tuple[object, ...]:
    return (chat.updated_at, chat.history_revision, chat.history_bytes, chat.file_count)


class Publisher:
    """Publishes committed rows into the chat directories (`ChatViews`).

    A publication that fails (a disk error) is logged and left: the rows are committed,
    the answer stands, and the next write on the chat, the sweep or `fsck --repair`
    brings the directory up to date.
    """

    def __init__(self, uow: UnitOfWorkFactory, blobs: BlobStore, views: ChatViews) -> None:
        self._uow = uow
        self._blobs = blobs
        self._views = views

    async def file(self, workspace_id: UUID, chat_id: UUID, name: ChatAttachmentName) -> None:
        """Show the file the rows name at `name`, or nothing there when none."""
        shown: object = _UNSEEN
        try:
            for _ in range(MAX_ROUNDS):
                async with self._uow(write=False, one_statement=True) as uow:
                    record = await uow.chat_files.get_by_chat_id_and_name(chat_id, name)
                current = None if record is None else record.file_id
                if current == shown:
                    return
                if current is None:
                    await self._views.hide_file(workspace_id, chat_id, name.value)
                else:
                    await self._views.show_file(workspace_id, chat_id, name.value, current)
                shown = current
        except Exception:
            logger.warning('publication of a file failed; the sweep retries it', exc_info=True)
            return
        logger.warning('publication of a file did not settle; the sweep retries it')

    async def history(self, workspace_id: UUID, chat: Chat, appended: bytes | None = None) -> None:
        """Show the committed history as of `chat` or later.

        `appended` is what the write of `chat` appended: a `history.md` that shows the
        history just before it is extended with it, with no read of the segments.

        While a history keeps its base, its bytes at an offset never change, so every
        extension writes committed bytes where they belong, and a write committed later
        completes what is shown in its own publication. Once the base changed (a put, or a
        fold into a new base) what this publication wrote may have landed in the file of
        the new history: it then goes on, writing anew, until the rows stay as it showed
        them.
        """
        chat_id, shown = chat.chat_id, chat
        wrote = False
        try:
            if appended is not None:
                end = chat.history_bytes
                tail = HistoryView(
                    (end - len(appended), end), lambda _: _one(appended), whole=False
                )
                wrote = await self._views.show_history(workspace_id, chat_id, tail)
                if wrote and _settled(shown, await self._current(chat_id)):
                    return
            for _ in range(MAX_ROUNDS):
                async with self._uow(write=False, one_statement=True) as uow:
                    found, segments = await uow.history_segments.history(chat_id)
                if found is None:
                    return
                same_base = found.history_blob_id == shown.history_blob_id
                if found.history_revision > shown.history_revision and (same_base or not wrote):
                    return  # a write committed later publishes what it made
                view = history_view(self._blobs, found, segments, extend=same_base or not wrote)
                await self._views.show_history(workspace_id, chat_id, view)
                wrote, shown = True, found
                if _settled(shown, await self._current(chat_id)):
                    return
        except Exception:
            logger.warning('publication of a history failed; the sweep retries it', exc_info=True)
            return
        logger.warning('publication of a history did not settle; the sweep retries it')

    async def _current(self, chat_id: UUID) -> Chat | None:
        async with self._uow(write=False, one_statement=True) as uow:
            return await uow.chats.get(chat_id)

    async def chat_quietly(self, workspace_id: UUID, chat_id: UUID) -> None:
        """`chat`, with a failure logged and left to the sweep."""
        try:
            await self.chat(workspace_id, chat_id)
        except Exception:
            logger.warning('publication of a chat failed; the sweep retries it', exc_info=True)

    async def chat(self, workspace_id: UUID, chat_id: UUID) -> bool:
        """Bring the whole directory of a chat to its rows; a chat without a row loses its
        directory. True when the directory was out of step. Errors are raised."""
        changed = False
        shown: object = _UNSEEN
        for _ in range(MAX_ROUNDS):
            async with self._uow(write=False) as uow:
                chat, segments = await uow.history_segments.history(chat_id)
                files: list[ChatFile] = []
                if chat is not None:
                    files = await uow.chat_files.list_by_chat_id(chat_id)
            if chat is None:
                if await self._views.differs(workspace_id, chat_id, {}, no_history()) != ['.']:
                    await self._views.remove_chat(workspace_id, chat_id)
                    changed = True
                return changed
            version = _chat_version(chat)
            if version == shown:
                return changed
            named = {f.name.value: f.file_id for f in files}
            out_of_step = await self._views.differs(
                workspace_id, chat_id, named, history_chunks(self._blobs, chat, segments)
            )
            changed = changed or bool(out_of_step)
            await self._show(chat, named, segments, out_of_step)
            shown = version
        return changed

    async def _show(
        self,
        chat: Chat,
        named: dict[str, UUID],
        segments: list[HistorySegment],
        out_of_step: list[str],
    ) -> None:
        workspace_id, chat_id = chat.workspace_id, chat.chat_id
        if '.' in out_of_step:
            await self._views.ensure_chat(workspace_id, chat_id)
            out_of_step = await self._views.differs(
                workspace_id, chat_id, named, history_chunks(self._blobs, chat, segments)
            )
        for name in out_of_step:
            if name in {HISTORY_FILE_NAME, '.'}:
                continue
            if name in named:
                await self._views.show_file(workspace_id, chat_id, name, named[name])
            else:
                await self._views.hide_file(workspace_id, chat_id, name)
        if HISTORY_FILE_NAME in out_of_step:
            view = history_view(self._blobs, chat, segments, extend=False)
            await self._views.show_history(workspace_id, chat_id, view)
