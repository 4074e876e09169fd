from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StagedContent:
    """Bytes staged outside every chat directory, not yet visible anywhere: a staging
    file (fsynced unless staged for an append), or memory for a small append."""

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
