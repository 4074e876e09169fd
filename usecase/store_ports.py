"""Ports of the content store: the blobs and the chat directories that show them.

Blobs are immutable and named by rows; the chat directories are a view of the rows that
the API never reads. Both are implemented in `adapter`.
"""

from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from domain.content import ByteRange, StagedContent
from usecase.interface import ByteStream


class BlobStore(Protocol):
    """Immutable blobs: written once under a new id, fsynced, never changed in place."""

    async def stage(
        self, content: ByteStream, *, limit_bytes: int, inline_bytes: int = 0
    ) -> StagedContent:
        """Write the stream to a new blob, hashing it, and fsync the blob and its entry.

        When `inline_bytes` is positive, content of at most that many bytes is kept in
        memory instead (`inline`, no blob), for a row to hold. Raises
        `ContentLimitExceededError` as soon as more than `limit_bytes` arrive and
        `InsufficientStorageError` when the disk is full; in both cases nothing is left
        behind.
        """
        ...

    async def discard(self, staged: StagedContent) -> None:
        """Remove a staged blob no row will name; a missing one is no error."""
        ...

    def read(self, blob_id: UUID, byte_range: ByteRange | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes (or the range of them) in chunks; the blob is opened on the
        first chunk, and a missing one raises `StoredContentMissingError`."""
        ...

    async def path(self, blob_id: UUID) -> str:
        """The path of an existing blob, for a server that sends files by path; a
        committed blob's path never changes. `StoredContentMissingError` when missing."""
        ...

    async def release(self, blob_ids: Collection[UUID]) -> None:
        """No committed row names these blobs any more: they become garbage once they are
        older than the grace period (a reader may still hold their path)."""
        ...

    async def is_writable(self) -> bool:
        """Whether the data directory accepts writes (readiness)."""
        ...


@dataclass(frozen=True, slots=True)
class HistoryView:
    """What a chat directory's `history.md` is to hold: the committed history.

    Between two `PUT`s a history only grows, so its bytes at an offset never change: a
    `history.md` that holds the history up to one of `boundaries` (the end of the base or
    of a segment) may be extended in place with `chunks_from(its size)`, and two
    publications extending it at once write the same bytes at the same offsets. `extend`
    False asks for a new file in any case. A view of only the end of the history (`whole`
    False: `chunks_from` starts at the first boundary at the earliest) can only extend.
    """

    boundaries: tuple[int, ...]
    chunks_from: Callable[[int], AsyncIterator[bytes]]
    extend: bool = True
    whole: bool = True

    @property
    def size_bytes(self) -> int:
        return self.boundaries[-1]


@dataclass(frozen=True, slots=True)
class BlobState:
    size_bytes: int
    sha256: str
    writable: bool


class BlobInventory(Protocol):
    """What is stored in the blob area, for garbage collection and `fsck`."""

    async def older_than(self, age_seconds: float) -> list[UUID]:
        """Every blob (and staging leftover) last changed more than `age_seconds` ago."""
        ...

    async def remove(self, blob_ids: Collection[UUID]) -> int:
        """Remove these blobs now; how many were there."""
        ...

    async def inspect(self, blob_id: UUID) -> BlobState | None:
        """Size, sha256 and mode of a blob (reads it whole); None when missing."""
        ...


class ChatViews(Protocol):
    """The chat directories: a view of the rows, never read by the API.

    Every change is idempotent and atomic per name (staged next to the blobs, renamed
    into place); nothing of the service's own is left in a chat directory.
    """

    async def ensure_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        """Create the chat directory with an empty `history.md` unless it exists."""
        ...

    async def show_file(self, workspace_id: UUID, chat_id: UUID, name: str, blob_id: UUID) -> None:
        """Make `name` the blob (a hard link), replacing whatever is there."""
        ...

    async def hide_file(self, workspace_id: UUID, chat_id: UUID, name: str) -> None:
        """Remove `name` from the chat directory; a missing one is no error."""
        ...

    async def show_history(self, workspace_id: UUID, chat_id: UUID, history: HistoryView) -> bool:
        """Make `history.md` hold exactly the committed history: extended in place when it
        holds it up to a boundary (and `history.extend`), else written anew. False when
        it could do neither (not `history.whole`)."""
        ...

    async def remove_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        """Remove the chat directory and all in it; a missing one is no error."""
        ...

    async def remove_workspace(self, workspace_id: UUID) -> None:
        """Remove the workspace directory and all in it; a missing one is no error."""
        ...

    async def differs(
        self,
        workspace_id: UUID,
        chat_id: UUID,
        files: Mapping[str, UUID],
        history: AsyncIterable[bytes],
    ) -> list[str]:
        """The names at which the directory is not the rows' view: a name of `files` that
        is not its blob, a name not in `files`, a `history.md` that does not hold exactly
        the bytes of `history`, and the directory itself (`.`) when missing."""
        ...

    async def chats(self) -> list[tuple[UUID, UUID]]:
        """(workspace_id, chat_id) of every chat directory on disk."""
        ...
