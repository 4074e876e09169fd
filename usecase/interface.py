"""Ports of the use-case layer: the metadata store, time, ids and tracing.

Repositories are implemented in `repository`, the rest in `adapter`; use cases see only
these protocols and those of `usecase.store_ports` (blobs and chat directories). Every
metadata call happens inside a `UnitOfWork`.
"""

from collections.abc import AsyncIterable, Collection, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeAlias
from uuid import UUID

from domain.chat import Chat, ChatAttachmentName, ChatFile, HistorySegment
from domain.idempotency import IdempotencyRecord
from domain.page import PageKey
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


class HistorySegmentRepository(Protocol):
    """The segments appended to each chat's history after its base blob."""

    async def list_by_chat_id(self, chat_id: UUID) -> list[HistorySegment]:
        """The chat's segments in the order they were appended (by revision)."""
        ...

    async def history(self, chat_id: UUID) -> tuple[Chat | None, list[HistorySegment]]:
        """The chat and its segments, read together (one statement: one snapshot)."""
        ...

    async def history_of_user(
        self, user_id: UUID, chat_id: UUID
    ) -> tuple[Workspace | None, Chat | None, list[HistorySegment]]:
        """The user's workspace and, when it belongs to it, the chat and its segments,
        read together (one statement: one snapshot)."""
        ...

    async def add(self, segment: HistorySegment) -> None:
        """Insert a segment."""
        ...

    async def delete_up_to(self, chat_id: UUID, revision: int) -> None:
        """Delete the chat's segments of `revision` and older (folded into a new base)."""
        ...

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        """Delete every segment of the chat (a history `PUT`, a chat delete)."""
        ...


class StoreInventory(Protocol):
    """What the rows say is stored: which blobs they name (attachments' `file_id`, history
    bases and segments), how many bytes they account for, and which chats changed; what
    garbage collection, the view sweep, `fsck` and deletes ask."""

    async def named(self, blob_ids: Collection[UUID]) -> set[UUID]:
        """Those of `blob_ids` that some row names."""
        ...

    async def of_chat(self, chat_id: UUID) -> list[UUID]:
        """Every blob the chat's rows name."""
        ...

    async def of_workspace(self, workspace_id: UUID) -> list[UUID]:
        """Every blob the rows of the workspace's chats name."""
        ...

    async def chats_changed_since(
        self, since: datetime, *, after: UUID | None, limit: int
    ) -> list[Chat]:
        """Chats whose `updated_at` is at or after `since`, by `chat_id`, strictly after
        `after`."""
        ...

    async def chat_file_bytes(self, chat_id: UUID) -> int:
        """Sum of `size_bytes` of the chat's files."""
        ...

    async def workspace_stored_bytes(self, workspace_id: UUID) -> int:
        """What the workspace's rows account for: its chats' histories and attachments."""
        ...


class UnitOfWork(Protocol):
    """One transaction over all repositories; leaving the block without commit rolls back."""

    workspaces: WorkspaceRepository
    chats: ChatRepository
    chat_files: ChatFileRepository
    sandbox_sessions: SandboxSessionRepository
    idempotency_keys: IdempotencyKeyRepository
    history_segments: 'HistorySegmentRepository'
    inventory: 'StoreInventory'

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None:
        """Make every change of this unit durable: the only commit point of a write.

        Once the commit has begun it runs to its end even if the caller is cancelled: its
        outcome is the unit's, and the cancellation comes after it.
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
