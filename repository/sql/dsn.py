"""`STORAGE_POSTGRES_DSN`: a libpq-style URL read into what asyncpg takes.

SQLAlchemy's asyncpg dialect hands every query option of the URL to `asyncpg.connect()`
as a keyword, which has no `sslmode`, `connect_timeout` or `application_name`: the usual
libpq options would crash every connection with a `TypeError`. They are
taken out of the URL here and passed as asyncpg's own arguments; any other option is
refused before anything connects. No message here ever holds the DSN (it may hold a
password).
"""

from dataclasses import dataclass
from math import isfinite

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# libpq's sslmode values; asyncpg's `ssl=` takes the same names
SSL_MODES = ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')
# options translated into asyncpg's arguments (`ssl` is asyncpg's own name of sslmode)
TRANSLATED_OPTIONS = ('sslmode', 'ssl', 'connect_timeout', 'application_name')
# options SQLAlchemy's dialect itself understands, left in the URL
KEPT_OPTIONS = ('host',)
SUPPORTED_OPTIONS = TRANSLATED_OPTIONS + KEPT_OPTIONS
_SCHEMES = frozenset({'postgresql', 'postgres', 'postgresql+asyncpg'})
DEFAULT_PORT = 5432


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where to connect (`url`, `postgresql+asyncpg`, without the translated options)
    and how (the options, None when the DSN does not set them)."""

    url: URL
    ssl: str | None = None
    connect_timeout_seconds: float | None = None
    application_name: str | None = None

    def __repr__(self) -> str:
        return f'PostgresTarget(address={self.address!r}, ssl={self.ssl!r})'

    @property
    def address(self) -> str:
        """`host:port` for messages: never the user, the password or the options."""
        host = self.url.host
        if host is None:
            hosts = self.url.query.get('host')
            host = hosts if isinstance(hosts, str) else ','.join(hosts or ['localhost'])
        return f'{host}:{self.url.port or DEFAULT_PORT}'


def parse_postgres_dsn(dsn: str) -> PostgresTarget:
    """The DSN as a `PostgresTarget`; `ValueError` (naming the option, never the DSN)
    when it is not a PostgreSQL URL or carries an option that is not supported."""
    try:
        url = make_url(dsn)
    except (ArgumentError, ValueError):
        raise ValueError('postgres_dsn is not a valid URL') from None
    if url.drivername not in _SCHEMES:
        raise ValueError('postgres_dsn must be a postgresql:// URL')
    unknown = sorted(set(url.query) - set(SUPPORTED_OPTIONS))
    if unknown:
        raise ValueError(
            f'postgres_dsn has unsupported option {unknown[0]!r}; '
            f'supported: {", ".join(SUPPORTED_OPTIONS)}'
        )
    ssl = _ssl_mode(url)
    timeout = _single(url, 'connect_timeout')
    connect_timeout_seconds = None
    if timeout is not None:
        connect_timeout_seconds = _positive_seconds(timeout)
    return PostgresTarget(
        url=url.difference_update_query(TRANSLATED_OPTIONS).set(drivername='postgresql+asyncpg'),
        ssl=ssl,
        connect_timeout_seconds=connect_timeout_seconds,
        application_name=_single(url, 'application_name'),
    )


def _single(url: URL, option: str) -> str | None:
    value = url.query.get(option)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f'postgres_dsn sets option {option!r} more than once')


def _ssl_mode(url: URL) -> str | None:
    modes = {mode for option in ('sslmode', 'ssl') if (mode := _single(url, option)) is not None}
    if len(modes) > 1:
        raise ValueError("postgres_dsn sets 'sslmode' and 'ssl' to different values")
    mode = modes.pop() if modes else None
    if mode is not None and mode not in SSL_MODES:
        raise ValueError(f'postgres_dsn option sslmode must be one of {", ".join(SSL_MODES)}')
    return mode


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not (isfinite(seconds) and seconds > 0):
        raise ValueError('postgres_dsn option connect_timeout must be a positive number of seconds')
    return seconds
