import codecs
from collections.abc import AsyncIterator, Collection
from dataclasses import replace
from typing import overload
from uuid import UUID

from domain.chat import Chat
from domain.content import StagedContent
from domain.error import (
    CommitOutcomeUnknownError,
    HistoryPreconditionFailedError,
    InvalidHistoryEncodingError,
)
from domain.idempotency import RecordedResponse
from domain.workspace import Workspace
from usecase.common import (
    charge_usage,
    commit_with,
    owned_chat,
    stage_within_limits,
)
from usecase.idempotency import (
    IdempotencyKeyTakenError,
    IdempotencyRequest,
    answer_after_race,
    live_record,
    record_response,
    replay_under_lock,
    replay_unstaged,
)
from usecase.interface import (
    ByteStream,
    ChatStorage,
    Clock,
    StorageChange,
    StorageMaintenance,
    UnitOfWork,
    UnitOfWorkFactory,
)
from usecase.recover_storage import settle_chat_changes


async def utf8_checked(content: ByteStream, chat_id: UUID) -> AsyncIterator[bytes]:
    """Pass the chunks through, failing as soon as they stop being valid UTF-8."""
    decoder = codecs.getincrementaldecoder('utf-8')()
    try:
        async for chunk in content:
            decoder.decode(chunk)
            yield chunk
        decoder.decode(b'', final=True)
    except UnicodeDecodeError:
        raise InvalidHistoryEncodingError(chat_id) from None


class HistoriesInDoubt:
    """History puts whose commit had an unknown outcome (ADR 025), by chat.

    Their files are left as the put made them, for start-up recovery to settle by the
    rows. Until then, an append would cut the file to the length the rows hold and write
    on: on top of the put's bytes if the put did not commit, losing the committed
    history. So the next history write of the chat in this process settles them first,
    under the workspace lock, by the row it reads there (ADR 016's rule: the put
    committed if the row's revision is past the put's base).

    A put that another process left (it crashed between its swap and its commit, or its
    commit's outcome was unknown there) is not in this process's list: its file carries
    the revision it would have made (the version mark, ADR 011), newer than the row. With
    `maintenance`, the write settles the chat's pending changes from their sidecars then,
    still under the lock, so that no replica's append cuts such a put's bytes and writes
    on, which would lose the committed history.
    """

    def __init__(self, maintenance: StorageMaintenance | None = None) -> None:
        self._puts: dict[UUID, list[tuple[int, StorageChange]]] = {}
        self._maintenance = maintenance

    def add(self, chat: Chat, change: StorageChange) -> None:
        """`chat` is the row the put was made against (its base revision)."""
        self._puts.setdefault(chat.chat_id, []).append((chat.history_revision, change))

    async def settle(self, uow: UnitOfWork, storage: ChatStorage, chat: Chat) -> None:
        """Settle the chat's puts in doubt; `chat` is read under the lock, in `uow`."""
        await self._settle_own(chat)
        if self._maintenance is not None and await storage.history_in_doubt(chat):
            await settle_chat_changes(uow, self._maintenance, chat.chat_id)
            # still newer than the row with nothing pending: a sandbox copied or set it
            await storage.drop_stale_mark(chat)

    async def _settle_own(self, chat: Chat) -> None:
        """This process's puts in doubt, newest first."""
        puts = self._puts.pop(chat.chat_id, [])
        while puts:
            base_revision, change = puts[-1]
            try:
                if chat.history_revision > base_revision:
                    await change.commit()
                else:
                    await change.rollback()
            except BaseException:
                # left for the next write, or for start-up recovery
                self._puts.setdefault(chat.chat_id, [])[:0] = puts
                raise
            puts.pop()


def check_version(chat: Chat, if_match: Collection[str] | None) -> None:
    """`If-Match`: the write applies only to one of the named versions of the history."""
    if if_match is not None and chat.history_version not in if_match:
        raise HistoryPreconditionFailedError(chat.chat_id)


class WriteHistory:
    """Replace a chat's whole `history.md` atomically, optionally only at a known version.

    With an `IdempotencyRequest` the answer is recorded with the write and the call
    returns it. A retry whose key is already recorded is read through a hash only (nothing
    is staged, no version is checked: the first write changed it) and gets the recorded
    answer when its bytes are the same.
    """

    # the staged file becomes the history (a rename): it must be durable first
    _stage_durably = True
    # a body declared at most this long is read before the chat is looked up, and
    # checked (chat, `If-Match`, quota) under the lock only: refusing it before reading
    # it would save less than the lookup costs (ADR 019)
    _read_first_bytes = 0

    # the write replaces the whole file (a swap): one in doubt is settled by the next
    # write (`HistoriesInDoubt`); an append in doubt needs nothing, the rows' length
    # decides what the history is
    _replaces_whole_file = True

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        storage: ChatStorage,
        clock: Clock,
        max_file_bytes: int,
        *,
        in_doubt: HistoriesInDoubt | None = None,
    ) -> None:
        """`in_doubt` is shared by the history writes of one process (`WriteHistory` and
        `AppendHistory`)."""
        self._uow = uow
        self._storage = storage
        self._clock = clock
        self._max_file_bytes = max_file_bytes
        self._in_doubt = HistoriesInDoubt() if in_doubt is None else in_doubt

    @overload
    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        content: ByteStream,
        *,
        declared_size: int | None = None,
        if_match: Collection[str] | None = None,
        idempotency: None = None,
    ) -> Chat: ...

    @overload
    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        content: ByteStream,
        *,
        declared_size: int | None = None,
        if_match: Collection[str] | None = None,
        idempotency: IdempotencyRequest[Chat],
    ) -> RecordedResponse: ...

    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        content: ByteStream,
        *,
        declared_size: int | None = None,
        if_match: Collection[str] | None = None,
        idempotency: IdempotencyRequest[Chat] | None = None,
    ) -> Chat | RecordedResponse:
        if idempotency is not None:
            # before any check: a retry gets the first answer although the history changed
            async with self._uow(write=False, one_statement=True) as uow:
                earlier = await live_record(uow, user_id, idempotency.key, self._clock.now())
            if earlier is not None:
                return await replay_unstaged(
                    earlier, idempotency, content, declared_size, self._max_file_bytes
                )
        workspace: Workspace | None = None
        credit_bytes = 0
        if declared_size is None or declared_size > self._read_first_bytes:
            async with self._uow(write=False, one_statement=True) as uow:
                workspace, chat = await owned_chat(uow, user_id, chat_id)
            check_version(chat, if_match)  # early, before any byte is read
            credit_bytes = self._freed_bytes(chat)
        staged = await stage_within_limits(
            self._storage,
            utf8_checked(content, chat_id),
            workspace=workspace,
            max_file_bytes=self._max_file_bytes,
            declared_size=declared_size,
            credit_bytes=credit_bytes,
            durable=self._stage_durably,
        )
        try:
            return await self._write(user_id, chat_id, staged, if_match, idempotency)
        except IdempotencyKeyTakenError as taken:
            await self._storage.discard(staged)
            return await answer_after_race(self._uow, taken, user_id=user_id, now=self._clock.now())
        except BaseException:
            await self._storage.discard(staged)
            raise

    async def _write(
        self,
        user_id: UUID,
        chat_id: UUID,
        staged: StagedContent,
        if_match: Collection[str] | None,
        idempotency: IdempotencyRequest[Chat] | None,
    ) -> Chat | RecordedResponse:
        # ends with its commit: it may be committed with other writers' (group commit)
        async with self._uow(group=True) as uow:
            workspace, chat = await owned_chat(uow, user_id, chat_id, for_update=True)
            await self._in_doubt.settle(uow, self._storage, chat)
            if idempotency is not None:
                fingerprint, recorded = await replay_under_lock(
                    uow, user_id, idempotency, staged.sha256, self._clock.now()
                )
                if recorded is not None:
                    await self._storage.discard(staged)
                    return recorded
            check_version(chat, if_match)  # authoritative, under the lock
            new_size = self._new_size(chat, staged)
            await charge_usage(uow, workspace, new_size - chat.history_bytes)
            now = self._clock.now()
            updated = replace(
                chat,
                history_bytes=new_size,
                history_revision=chat.history_revision + 1,
                updated_at=now,
            )
            await uow.chats.save(updated)
            answer = None
            if idempotency is not None:
                # before the disk changes: a lost race then has nothing to undo but staging
                answer = await record_response(
                    uow,
                    user_id=user_id,
                    request=idempotency,
                    fingerprint=fingerprint,
                    result=updated,
                    now=now,
                )
            change = await self._change(chat, staged)
            try:
                await commit_with(uow, change)
            except CommitOutcomeUnknownError:
                if self._replaces_whole_file:
                    self._in_doubt.add(chat, change)
                raise
        await change.commit()
        return updated if answer is None else answer

    def _freed_bytes(self, chat: Chat) -> int:
        return chat.history_bytes

    def _new_size(self, chat: Chat, staged: StagedContent) -> int:  # noqa: ARG002
        return staged.size_bytes

    async def _change(self, chat: Chat, staged: StagedContent) -> StorageChange:
        return await self._storage.put_history(chat, staged)
