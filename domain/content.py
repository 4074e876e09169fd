from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True, slots=True)
class StagedContent:
    """Bytes written where no committed row points yet, hashed while they streamed.

    Either a new immutable blob (`blob_id`, fsynced with its directory entry) or, for
    content small enough to live in a metadata row (`inline`), the bytes themselves.
    """

    size_bytes: int
    sha256: str
    blob_id: UUID | None = None
    inline: bytes | None = None


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Inclusive first and last byte of a part of a file."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1
