"""Fakes of our own ports that record what the use cases did."""

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.content import ByteRange, StagedContent
from domain.error import ContentLimitExceededError, ServiceUnavailableError
from repository.memory import InMemoryMetadataBackend, InMemoryUnitOfWork
from usecase.interface import ByteStream, PendingSync


class FixedClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(microseconds=1)
        return self.current


class SequentialIds:
    def __init__(self) -> None:
        self.count = 0

    def new(self) -> UUID:
        self.count += 1
        return UUID(int=self.count)


class RecordedSync:
    def __init__(self, log: list[str], label: str) -> None:
        self._log = log
        self._label = label

    def sync(self) -> None:
        self._log.append(f'sync {self._label}')


class RecordedChange(RecordedSync):
    async def commit(self) -> None:
        self._log.append(f'commit {self._label}')

    async def rollback(self) -> None:
        self._log.append(f'rollback {self._label}')


class RecordingStorage:
    """A `ChatStorage` in memory that logs every call."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.staged: dict[str, bytes] = {}
        self.chunks_read = 0
        # `durable` of every stage call, in order
        self.stage_durability: list[bool] = []

    async def ensure_chat(self, chat: Chat) -> RecordedSync:
        self.log.append(f'ensure {chat.chat_id}')
        return RecordedSync(self.log, f'ensure {chat.chat_id}')

    async def stage(
        self, content: ByteStream, *, limit_bytes: int, durable: bool = True
    ) -> StagedContent:
        self.stage_durability.append(durable)
        data = bytearray()
        async for chunk in content:
            self.chunks_read += 1
            data += chunk
            if len(data) > limit_bytes:
                self.log.append('stage refused')
                raise ContentLimitExceededError(limit_bytes)
        token = f't{len(self.staged)}'
        self.staged[token] = bytes(data)
        self.log.append(f'stage {token}')
        sha256 = hashlib.sha256(data).hexdigest()
        return StagedContent(token=token, size_bytes=len(data), sha256=sha256)

    async def discard(self, staged: StagedContent) -> None:
        self.log.append(f'discard {staged.token}')

    async def put_attachment(
        self, chat: Chat, name: ChatAttachmentName, staged: StagedContent
    ) -> RecordedChange:
        self.log.append(f'put {name.value}')
        return RecordedChange(self.log, f'put {name.value}')

    async def delete_attachments(
        self, chat: Chat, names: list[ChatAttachmentName]
    ) -> RecordedChange:
        label = 'delete ' + ','.join(n.value for n in names)
        self.log.append(label)
        return RecordedChange(self.log, label)

    async def put_history(self, chat: Chat, staged: StagedContent) -> RecordedChange:
        self.log.append('put history')
        return RecordedChange(self.log, 'put history')

    async def append_history(self, chat: Chat, staged: StagedContent) -> RecordedChange:
        self.log.append(f'append history at {chat.history_bytes}')
        return RecordedChange(self.log, 'append history')

    async def delete_chat(self, chat: Chat) -> RecordedChange:
        self.log.append('delete chat')
        return RecordedChange(self.log, 'delete chat')

    async def delete_workspace(self, workspace_id: UUID) -> RecordedChange:
        self.log.append('delete workspace')
        return RecordedChange(self.log, 'delete workspace')

    async def history_in_doubt(self, chat: Chat) -> bool:
        return False

    async def drop_stale_mark(self, chat: Chat, record: ChatFile | None = None) -> bool:
        return False

    async def read_history(self, chat: Chat) -> AsyncIterator[bytes]:
        yield b''

    async def read_attachment(
        self,
        chat: Chat,
        name: ChatAttachmentName,
        byte_range: ByteRange | None = None,
        *,
        record: ChatFile | None = None,
    ) -> AsyncIterator[bytes]:
        yield b''

    async def is_writable(self) -> bool:
        return True


class FailingCommitUnitOfWork(InMemoryUnitOfWork):
    async def commit(self, pending: PendingSync | None = None) -> None:
        raise ServiceUnavailableError


class FailingCommitBackend(InMemoryMetadataBackend):
    """Metadata whose write commits fail once `failing` is set, as a lost connection would."""

    failing = False

    def unit_of_work(
        self, *, write: bool = True, one_statement: bool = False, group: bool = False
    ) -> InMemoryUnitOfWork:
        if self.failing and write:
            return FailingCommitUnitOfWork(self, write=write)
        return super().unit_of_work(write=write, one_statement=one_statement, group=group)


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
