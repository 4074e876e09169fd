from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# 'YYYY-MM-DDTHH:MM:SS.ffffffZ': fixed width, so text order is time order
SQLITE_TIMESTAMP_LENGTH = 27


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant with microseconds, returned in UTC.

    PostgreSQL stores `timestamptz`; SQLite, which has no time type, a fixed-width
    ISO-8601 UTC string that sorts and compares like the instant it names.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == 'sqlite':
            return dialect.type_descriptor(String(SQLITE_TIMESTAMP_LENGTH))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError('timestamps must be timezone-aware')
        utc = value.astimezone(UTC)
        if dialect.name == 'sqlite':
            return utc.replace(tzinfo=None).isoformat(timespec='microseconds') + 'Z'
        return utc

    def process_result_value(self, value: object, dialect: Dialect) -> datetime | None:
        del dialect  # the value's Python type tells how it was stored
        if value is None:
            return None
        if isinstance(value, str):
            return utc_of_text(value)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                return value.replace(tzinfo=UTC)
            return value.astimezone(UTC)
        raise TypeError(f'unexpected timestamp value of type {type(value).__name__}')


def utc_of_text(value: str) -> datetime:
    """The instant SQLite holds as text (`UtcDateTime`), aware and in UTC."""
    parsed = datetime.fromisoformat(value)  # Python 3.11 reads the 'Z' as UTC itself
    return parsed if parsed.tzinfo is UTC else parsed.replace(tzinfo=UTC)
