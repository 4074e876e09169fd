from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

MetadataBackendName = Literal['memory', 'sqlite', 'postgres']


@dataclass(frozen=True, slots=True)
class MetadataConfig:
    """Where the metadata lives and how the connections to it behave."""

    backend: MetadataBackendName
    sqlite_path: Path | None = None
    # repr=False: the DSN may hold a password and configs end up in logs
    postgres_dsn: str | None = field(default=None, repr=False)
    pool_size: int = 10
    connect_timeout_seconds: float = 5.0
    statement_timeout_seconds: float = 30.0
    idle_in_transaction_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.backend not in {'memory', 'sqlite', 'postgres'}:
            raise ValueError(f'unknown metadata backend: {self.backend!r}')
        if self.backend == 'sqlite' and self.sqlite_path is None:
            raise ValueError('sqlite backend needs sqlite_path')
        if self.backend == 'postgres' and not self.postgres_dsn:
            raise ValueError('postgres backend needs postgres_dsn')
        if self.pool_size < 1:
            raise ValueError('pool_size must be at least 1')
        if self.connect_timeout_seconds <= 0 or self.statement_timeout_seconds <= 0:
            raise ValueError('timeouts must be positive')
