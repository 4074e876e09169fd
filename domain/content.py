from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StagedContent:
    """Bytes written and fsynced to a staging area, not yet visible anywhere."""

    token: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Inclusive first and last byte of a part of a file."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1
