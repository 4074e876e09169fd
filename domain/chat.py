import unicodedata
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.error import InvalidAttachmentNameError, ReservedAttachmentNameError

HISTORY_FILE_NAME = 'history.md'
MAX_ATTACHMENT_NAME_BYTES = 255
MAX_CHAT_TITLE_CHARS = 200


def _has_control_character(value: str) -> bool:
    # Cc covers NUL, C0, DEL and C1; a name with any of them is unsafe in a shell or a listing.
    if value.isascii():
        # the only ASCII characters that are not printable are Cc (C0 and DEL): one C call
        # instead of a lookup per character, for the names of every listed file
        return not value.isprintable()
    return any(unicodedata.category(ch) == 'Cc' for ch in value)


@dataclass(frozen=True, slots=True)
class ChatAttachmentName:
    """A file name that is safe to use as-is inside a chat directory."""

    value: str

    def __post_init__(self) -> None:
        if not self.value or self.value in {'.', '..'}:
            raise InvalidAttachmentNameError('empty_or_dot')
        if '/' in self.value or '\\' in self.value:
            raise InvalidAttachmentNameError('path_separator')
        if _has_control_character(self.value):
            raise InvalidAttachmentNameError('control_character')
        try:
            encoded = self.value.encode('utf-8')
        except UnicodeEncodeError:
            # lone surrogates cannot be stored as a file name
            raise InvalidAttachmentNameError('not_utf8') from None
        if len(encoded) > MAX_ATTACHMENT_NAME_BYTES:
            raise InvalidAttachmentNameError('too_long')
        if self.value == HISTORY_FILE_NAME:
            raise ReservedAttachmentNameError(self.value)


@dataclass(frozen=True, slots=True)
class Chat:
    chat_id: UUID
    workspace_id: UUID
    created_at: datetime
    updated_at: datetime
    title: str | None = None
    history_bytes: int = 0
    # increases with every committed change of history.md; the history's ETag derives from it
    history_revision: int = 0
    file_count: int = 0
    # the blob holding the history as of its last `PUT` or compaction; the segments of
    # later appends follow it (None: an empty base)
    history_blob_id: UUID | None = None

    @property
    def history_version(self) -> str:
        """Opaque token that changes with every committed change of `history.md`."""
        return f'{self.history_revision}-{self.history_bytes}'


@dataclass(frozen=True, slots=True)
class ChatFile:
    file_id: UUID
    chat_id: UUID
    name: ChatAttachmentName
    content_type: str | None
    size_bytes: int
    created_at: datetime
    sha256: str


@dataclass(frozen=True, slots=True)
class HistorySegment:
    """Bytes one append added to a chat's history after its base blob, immutable.

    `revision` is the chat's `history_revision` the append committed; the bytes are in a
    blob (`blob_id`) or, for a small append, in the row itself (`content`).
    """

    chat_id: UUID
    revision: int
    size_bytes: int
    blob_id: UUID | None = None
    content: bytes | None = None
