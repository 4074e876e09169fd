"""Ports of the use-case layer.

Repositories and storage are implemented in `repository` and `adapter`; use cases see
only these protocols. Every metadata call happens inside a `UnitOfWork`.
"""

from collections.abc import AsyncIterable, AsyncIterator, Collection, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeAlias, runtime_checkable
from uuid import UUID

from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.content import ByteRange, StagedContent
from domain.idempotency import IdempotencyRecord
from domain.page import PageKey
from domain.recovery import ChatDirectory, Leftover, PendingChange, StoredEntry
from domain.sandbox import SandboxSession
from domain.workspace import Workspace

ByteStream: TypeAlias = AsyncIterable[bytes]


class WorkspaceRepository(Protocol):
    async def get(self, workspace_id: UUID) -> Workspace | None:
        """The workspace with this id, or None."""
        ...

    async def get_by_user_id(self, user_id: UUID, *, for_update: bool = False) -> Workspace | None:
        """The user's workspace; `for_update` locks its row until the unit of work ends."""
        ...

    async def add(self, workspace: Workspace) -> bool:
        """Insert unless the user already has a workspace; True when inserted."""
        ...

    async def save(self, workspace: Workspace) -> None:
        """Insert or replace by id; a user's previous workspace of another id is removed."""
        ...

    async def add_used_bytes(self, workspace_id: UUID, delta: int) -> bool:
        """Add `delta` to `used_bytes`; a positive delta applies only within the quota.

        Returns False, changing nothing, when the new total would exceed the quota.
        """
        ...

    async def delete(self, workspace_id: UUID) -> None:
        """Remove the workspace row (its chats are removed by their repository)."""
        ...

    async def list_all(
        self,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[Workspace]:
        """Every workspace by `created_at`, then `workspace_id`, strictly after `after`."""
        ...

    async def stored_bytes(self, workspace_id: UUID) -> int:
        """What the workspace's rows account for: its chats' histories and attachments."""
        ...

    async def list_usage_mismatches(self) -> list[Workspace]:
        """Every workspace whose `used_bytes` is not its `stored_bytes`, by `created_at`, then
        `workspace_id`: one pass over the rows, however many workspaces there are."""
        ...


class ChatRepository(Protocol):
    async def get(self, chat_id: UUID) -> Chat | None:
        """The chat with this id, or None."""
        ...

    async def get_many(self, chat_ids: Collection[UUID]) -> list[Chat]:
        """The chats of these ids that exist, in no particular order (one read)."""
        ...

    async def get_with_workspace(
        self, user_id: UUID, chat_id: UUID
    ) -> tuple[Workspace | None, Chat | None]:
        """The user's workspace and, when it belongs to that workspace, the chat (one read)."""
        ...

    async def list_by_workspace_id(
        self,
        workspace_id: UUID,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[Chat]:
        """Chats of the workspace by `created_at`, then `chat_id`, strictly after `after`."""
        ...

    async def list_by_user_id(
        self, user_id: UUID, *, limit: int, after: PageKey | None = None
    ) -> list[Chat]:
        """`list_by_workspace_id` of the user's workspace, in one read; empty when the user
        has none."""
        ...

    async def save(self, chat: Chat) -> None:
        """Insert or replace by `chat_id`."""
        ...

    async def delete(self, chat_id: UUID) -> None:
        """Remove the chat row; a missing row is no error."""
        ...

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        """Remove every chat row of the workspace."""
        ...


class ChatFileRepository(Protocol):
    async def get(self, file_id: UUID) -> ChatFile | None:
        """The file record with this id, or None."""
        ...

    async def get_by_chat_id_and_name(
        self,
        chat_id: UUID,
        name: ChatAttachmentName,
    ) -> ChatFile | None:
        """The chat's file of this exact name, or None."""
        ...

    async def list_by_chat_id(
        self,
        chat_id: UUID,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[ChatFile]:
        """Files of the chat by `created_at`, then `file_id`, strictly after `after`."""
        ...

    async def list_by_chat_of_user(
        self, user_id: UUID, chat_id: UUID, *, limit: int, after: PageKey | None = None
    ) -> list[ChatFile]:
        """`list_by_chat_id`, in one read, when the chat is in the user's workspace; empty
        otherwise."""
        ...

    async def total_size_by_chat_id(self, chat_id: UUID) -> int:
        """Sum of `size_bytes` of the chat's files."""
        ...

    async def save(self, chat_file: ChatFile) -> None:
        """Insert or replace by id; a file of the same chat and name but another id is removed."""
        ...

    async def delete(self, file_id: UUID) -> None:
        """Remove the record; a missing one is no error."""
        ...

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        """Remove every file record of the chat."""
        ...

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        """Remove every file record of every chat of the workspace."""
        ...


class SandboxSessionRepository(Protocol):
    async def get_active_by_chat_id(self, chat_id: UUID, now: datetime) -> SandboxSession | None:
        """The chat's session if it has one that has not expired at `now`."""
        ...

    async def exists_active_in_workspace(self, workspace_id: UUID, now: datetime) -> bool:
        """Whether any chat of the workspace has a session not expired at `now`."""
        ...

    async def count_active(self, now: datetime) -> int:
        """How many sessions of all workspaces have not expired at `now` (for metrics)."""
        ...

    async def save(self, session: SandboxSession) -> None:
        """Insert or replace the chat's one session (keyed by `chat_id`)."""
        ...

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        """End the chat's session, active or expired; none is no error."""
        ...

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        """End the sessions of every chat of the workspace."""
        ...


class IdempotencyKeyRepository(Protocol):
    """Each user's `Idempotency-Key`s with the fingerprint and the answer of their request."""

    async def get(self, user_id: UUID, key: str) -> IdempotencyRecord | None:
        """The user's record of `key`, expired or not, or None."""
        ...

    async def add(self, record: IdempotencyRecord, *, expiry_cutoff: datetime) -> bool:
        """Insert unless the user holds the key already; True when inserted.

        A record of the key created at or before `expiry_cutoff` is expired: it is
        replaced. A live one is kept and nothing changes (False).
        """
        ...

    async def delete_expired(self, expiry_cutoff: datetime, *, limit: int) -> int:
        """Delete up to `limit` records created at or before `expiry_cutoff`; how many went.

        Rows another transaction is deleting are skipped, never waited for.
        """
        ...


class PendingSync(Protocol):
    """File system work applied but not yet durable, which a metadata commit waits for."""

    def sync(self) -> None:
        """Blocking: fsync what was left for the commit (`UnitOfWork.commit` runs it).

        Raises a `DomainError` (`InsufficientStorageError`, `ServiceUnavailableError`,
        ...) when it cannot, after which the change must be rolled back. Nothing to do
        when everything was made durable as it was applied.
        """
        ...


class UnitOfWork(Protocol):
    """One transaction over all repositories; leaving the block without commit rolls back."""

    workspaces: WorkspaceRepository
    chats: ChatRepository
    chat_files: ChatFileRepository
    sandbox_sessions: SandboxSessionRepository
    idempotency_keys: IdempotencyKeyRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self, pending: PendingSync | None = None) -> None:
        """Make every change of this unit durable.

        `pending.sync()` runs first, before anything is committed, so that no committed
        row refers to file system work that is not yet durable; the backend may run it in
        the thread that commits (ADR 019). When it raises, nothing is committed. Once the
        commit has begun it runs to its end even if the caller is cancelled: its outcome
        is the unit's, and the cancellation comes after it.
        """
        ...

    async def rollback(self) -> None:
        """Drop every change of this unit."""
        ...


class MetadataBackend(Protocol):
    """Lifecycle of a metadata store and the factory of its units of work."""

    backend_name: str

    async def connect(self) -> None:
        """Open connections or pools; idempotent."""
        ...

    async def migrate(self) -> None:
        """Bring the schema to the latest version; safe when several processes start at once."""
        ...

    async def health_check(self) -> bool:
        """True when the store answers a trivial query."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    def unit_of_work(
        self, *, write: bool = True, one_statement: bool = False, group: bool = False
    ) -> UnitOfWork:
        """A new unit of work; `write=True` lets it write and lock (`for_update`) rows.

        `one_statement=True` (read units only) promises that the unit runs a single
        statement, so it needs no transaction to see one snapshot; a backend may then
        run it without one, and fails the unit's second statement.

        `group=True` (write units only) promises that the unit's `commit` is its last
        act and that it never calls `rollback`; a backend may then commit it together
        with other such units (group commit): `commit` returns once they all have, and
        a backend may fail a statement run after it.
        """
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(
        self, *, write: bool = True, one_statement: bool = False, group: bool = False
    ) -> UnitOfWork:
        """A new unit of work (`MetadataBackend.unit_of_work`)."""
        ...


@runtime_checkable
class StorageChange(PendingSync, Protocol):
    """A file system change made inside a unit of work, settled after it ends.

    Pass it to `UnitOfWork.commit`, which makes it durable before the metadata commits.
    """

    async def commit(self) -> None:
        """The metadata committed: make the change final (drop backups)."""
        ...

    async def rollback(self) -> None:
        """The metadata did not commit: put the disk back as it was."""
        ...


class ChatStorage(Protocol):
    """Owns the chat directories: `history.md` and the attachments, named as they are."""

    async def ensure_chat(self, chat: Chat) -> PendingSync:
        """Create the chat directory with an empty `history.md` (idempotent).

        Its entries are durable once the returned `PendingSync` has run: pass it to the
        `UnitOfWork.commit` of the chat's row.
        """
        ...

    async def stage(
        self, content: ByteStream, *, limit_bytes: int, durable: bool = True
    ) -> StagedContent:
        """Write the stream to a staging file outside every chat directory and fsync it.

        Not `durable`: no fsync, for content that is only ever appended
        (`append_history`) and made durable there before anything refers to it; small
        content may then be held in memory instead of a file. Hashes while writing.
        Raises `ContentLimitExceededError` as soon as more than `limit_bytes` arrive, and
        `InsufficientStorageError` when the disk is full; in both cases nothing is left
        behind.
        """
        ...

    async def discard(self, staged: StagedContent) -> None:
        """Remove a staged file that will not be used; a missing one is no error."""
        ...

    async def put_attachment(
        self,
        chat: Chat,
        name: ChatAttachmentName,
        staged: StagedContent,
    ) -> StorageChange:
        """Atomically place staged content at `name`, keeping the old file until commit."""
        ...

    async def delete_attachments(
        self,
        chat: Chat,
        names: list[ChatAttachmentName],
    ) -> StorageChange:
        """Take the named files out of the chat directory, restorable until commit."""
        ...

    async def put_history(self, chat: Chat, staged: StagedContent) -> StorageChange:
        """Atomically replace `history.md` with staged content."""
        ...

    async def append_history(
        self,
        chat: Chat,
        staged: StagedContent,
    ) -> StorageChange:
        """Append staged content at `chat.history_bytes`, cutting any uncommitted tail; fsync."""
        ...

    async def delete_chat(self, chat: Chat) -> StorageChange:
        """Take the chat directory away, restorable until commit."""
        ...

    async def delete_workspace(self, workspace_id: UUID) -> StorageChange:
        """Take the workspace directory with all its chats away, restorable until commit."""
        ...

    async def history_in_doubt(self, chat: Chat) -> bool:
        """Whether `history.md` holds a put newer than `chat` (read under the lock: a put
        that never committed, on any process)."""
        ...

    async def drop_stale_mark(self, chat: Chat, record: ChatFile | None = None) -> bool:
        """Under the workspace lock, after pending changes are settled: forget the version
        of `history.md` (no `record`) or of the record's file when it is not the rows'
        (a sandbox moved, copied or set it), so that it is read as a sandbox's file."""
        ...

    def read_history(self, chat: Chat) -> AsyncIterator[bytes]:
        """The first `chat.history_bytes` bytes of `history.md`, in chunks; a file that a
        history put newer than `chat` has put there raises `StoredVersionChangingError`."""
        ...

    def read_attachment(
        self,
        chat: Chat,
        name: ChatAttachmentName,
        byte_range: ByteRange | None = None,
        *,
        record: ChatFile | None = None,
    ) -> AsyncIterator[bytes]:
        """The file's bytes (or the range of them), in chunks.

        With `record`, a whole read stops at the record's size, and a file that another
        write has put at the name raises `StoredVersionChangingError` on the first chunk.
        """
        ...

    async def is_writable(self) -> bool:
        """Whether the data directory accepts writes (readiness)."""
        ...


class SendableFile(Protocol):
    """A path naming one opened version of a stored file, for a server that sends files by
    path; valid until released."""

    @property
    def path(self) -> str: ...

    @property
    def size_bytes(self) -> int: ...

    async def release(self, *, sent: bool = True) -> None:
        """Free the path: once the server holds the file when it was `sent`, else now."""
        ...


@runtime_checkable
class SendableAttachments(Protocol):
    """A `ChatStorage` that can name an attachment's bytes by a path no sandbox can change."""

    async def sendable_attachment(
        self, chat: Chat, name: ChatAttachmentName, *, record: ChatFile | None = None
    ) -> SendableFile | None:
        """The file as it is now, under a path that names only it; None when there is none.

        Raises what `read_attachment` raises when the file is missing or not a regular file.
        """
        ...


class StorageMaintenance(Protocol):
    """Inspection and repair of the data directory: start-up recovery and `fsck` (ADR 016).

    Entries a live process may still own are never touched: `alone` (yielded by
    `exclusive`) says that no other process uses the data directory.
    """

    def exclusive(self) -> AbstractAsyncContextManager[bool]:
        """Hold the maintenance lock of the data directory; yields `alone`."""
        ...

    async def sweep(self, *, alone: bool) -> int:
        """Remove staging and trash entries of dead processes that no pending change needs.

        Returns how many entries were removed.
        """
        ...

    async def pending_changes(self, *, alone: bool) -> list[PendingChange]:
        """Unsettled changes of dead processes, newest first."""
        ...

    async def pending_changes_of(self, chat_id: UUID) -> list[PendingChange]:
        """The chat's pending changes of any process, newest first. Only for a caller that
        holds the workspace lock: no change of the chat is then in flight, so what is
        left was a crash's or a commit of unknown outcome's (ADR 025)."""
        ...

    async def settle(
        self, change: PendingChange, *, committed: bool, recorded_sha256: str | None = None
    ) -> None:
        """Drop the change's backup (committed) or put the disk back as it was (not).

        For an attachment put that did not commit, `recorded_sha256` is the sha256 the
        rows hold for its name (None: no file): the replaced file goes back only when it is
        that one (a delete or another put may have committed since)."""
        ...

    async def leftovers(self) -> list[Leftover]:
        """Every entry of the staging and trash areas."""
        ...

    async def chat_directories(self) -> list[ChatDirectory]:
        """Every chat directory on disk."""
        ...

    async def chat_entries(self, directory: ChatDirectory) -> list[StoredEntry] | None:
        """The entries of a chat directory; None when the directory does not exist."""
        ...

    async def file_sha256(self, directory: ChatDirectory, name: str) -> str | None:
        """sha256 of a regular file of the chat directory; None when there is none."""
        ...

    async def cut_histories(self, committed: Mapping[ChatDirectory, int]) -> int:
        """Truncate each directory's `history.md` to its committed length (the value);
        the number of tails cut."""
        ...

    async def remove_if_empty(self, directory: ChatDirectory) -> bool:
        """Remove a chat directory holding nothing but an empty `history.md`; True if removed."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    def new(self) -> UUID:
        """A new unique id."""
        ...


TraceValue: TypeAlias = str | int | float | bool


class Span(Protocol):
    """One timed operation of a trace."""

    def set_attribute(self, key: str, value: TraceValue) -> None:
        """Attach a fact to the span (never user content or secrets)."""
        ...

    def update_name(self, name: str) -> None:
        """Rename the span once its operation is known (a route template, say)."""
        ...


class Tracer(Protocol):
    """Starts spans; the default does nothing and costs nothing."""

    def span(
        self, name: str, *, carrier: Mapping[str, str] | None = None
    ) -> AbstractContextManager[Span]:
        """A span around the block; `carrier` holds propagated context (`traceparent`)."""
        ...
