"""Configuration from `STORAGE_*` environment variables."""

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from repository.config import MetadataConfig
from repository.sql.dsn import parse_postgres_dsn

ENV_PREFIX = 'STORAGE_'
# `STORAGE_TRACING=otel` where `pip install 'chat-storage[tracing]'` was not run
TRACING_PACKAGES_MISSING = (
    f'{ENV_PREFIX}TRACING: otel needs opentelemetry-sdk and its OTLP exporter: '
    "pip install 'chat-storage[tracing]'"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra='ignore')

    data_dir: Path = Path('./data')
    metadata_backend: Literal['sqlite', 'postgres', 'memory'] = 'sqlite'
    sqlite_path: Path | None = None
    postgres_dsn: SecretStr | None = None
    postgres_pool_size: int = Field(default=10, ge=1, le=1000)
    postgres_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    postgres_statement_timeout_seconds: float = Field(default=30.0, gt=0)
    # a session idle inside a transaction this long is ended by PostgreSQL, with its locks
    postgres_idle_in_transaction_timeout_seconds: float = Field(default=10.0, gt=0)
    # a blob no row names is garbage once it is this old (a released one: since release)
    garbage_grace_seconds: float = Field(default=900.0, gt=0, allow_inf_nan=False)
    default_quota_bytes: int = Field(default=1_073_741_824, ge=0)
    max_file_bytes: int = Field(default=104_857_600, ge=1)
    body_chunk_timeout_seconds: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    gateway_token: SecretStr | None = None
    link_secret: SecretStr | None = None
    host: str = '127.0.0.1'
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal['debug', 'info', 'warning', 'error'] = 'info'
    log_format: Literal['json', 'text'] = 'json'
    tracing: Literal['off', 'otel'] = 'off'

    @field_validator('gateway_token')
    @classmethod
    def _gateway_token_can_be_sent(cls, token: SecretStr | None) -> SecretStr | None:
        # an empty token would lock every caller out (no `Authorization` can carry it),
        # and taking it for unset would open the service: refused either way
        if token is not None:
            text = token.get_secret_value()
            if not text or text != text.strip():
                raise ValueError('must be non-empty, without spaces at either end')
        return token

    @field_validator('data_dir', 'sqlite_path', mode='before')
    @classmethod
    def _path_not_empty(cls, value: object) -> object:
        # an empty value would be Path('.'): the data in whatever directory the service
        # was started from, or a directory for a SQLite file
        if isinstance(value, str) and not value.strip():
            raise ValueError('must not be empty (unset it for the default)')
        return value

    @field_validator('host')
    @classmethod
    def _host_is_an_address(cls, host: str) -> str:
        # Granian binds IP literals only; a host name failed with a traceback
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                'must be an IP address such as 127.0.0.1, 0.0.0.0 or ::, not a host name'
            ) from None
        return host

    @model_validator(mode='after')
    def _postgres_needs_dsn(self) -> 'Settings':
        if self.metadata_backend != 'postgres':
            return self
        if not self.postgres_dsn:
            raise ValueError('postgres_dsn is required when metadata_backend is postgres')
        # a DSN of another database, or an option asyncpg cannot take: one line now
        # rather than every connection's traceback; the message never holds the DSN
        parse_postgres_dsn(self.postgres_dsn.get_secret_value())
        return self

    @property
    def resolved_sqlite_path(self) -> Path:
        return self.sqlite_path or self.data_dir / 'metadata.db'


class SettingsError(Exception):
    """A configuration value is invalid; the message is one line naming the variable."""


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the first offending variable, without echoing secret values."""
    first = error.errors()[0]
    location = [str(part) for part in first['loc']]
    # pydantic's prefix of a message of ours says nothing to an operator
    message = str(first['msg']).removeprefix('Value error, ')
    if location:
        variable = ENV_PREFIX + location[0].upper()
        return f'invalid configuration: {variable}: {message}'
    # a model-level check: its message names the field
    field = message.split(' ', 1)[0]
    return f'invalid configuration: {ENV_PREFIX}{field.upper()}: {message}'


def load_settings() -> Settings:
    """Settings from the environment, or `SettingsError` with one clear line."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None


def metadata_config(settings: Settings) -> MetadataConfig:
    return MetadataConfig(
        backend=settings.metadata_backend,
        sqlite_path=settings.resolved_sqlite_path,
        postgres_dsn=(settings.postgres_dsn.get_secret_value() if settings.postgres_dsn else None),
        pool_size=settings.postgres_pool_size,
        connect_timeout_seconds=settings.postgres_connect_timeout_seconds,
        statement_timeout_seconds=settings.postgres_statement_timeout_seconds,
        idle_in_transaction_timeout_seconds=settings.postgres_idle_in_transaction_timeout_seconds,
    )
