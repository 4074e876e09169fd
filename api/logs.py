"""Structured logs: one JSON object a line on stderr, for our loggers and the server's.

`logging_config()` is a `logging.config.dictConfig` dictionary that any server command
hands to its server (uvicorn's `log_config`, granian's `log_dictconfig`) so that every
worker process logs the same way; `ensure_logging()` applies it when nothing else
configured logging (`uvicorn --factory api.app:create_app` run by hand).
"""

import json
import logging
import logging.config
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal['json', 'text']

ACCESS_LOGGER = 'chat_storage.access'

# the request being served by this task, added to every record logged while it runs
REQUEST_ID: ContextVar[str | None] = ContextVar('chat_storage_request_id', default=None)
# why the app cut the response of this task short on purpose (api/observability.py)
RESPONSE_CUT_SHORT: ContextVar[str | None] = ContextVar(
    'chat_storage_response_cut_short', default=None
)
# uvicorn's line for a response the app ended without its last message
_UVICORN_UNFINISHED = 'ASGI callable returned without completing response.'


def _entry(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec='milliseconds')
    entry: dict[str, Any] = {
        'ts': stamp.replace('+00:00', 'Z'),
        'level': record.levelname,
        'logger': record.name,
        'message': record.getMessage(),
    }
    request_id = REQUEST_ID.get()
    if request_id is not None:
        entry['request_id'] = request_id
    # structured fields travel as `extra={'fields': {...}}`; nothing else of `extra` is kept
    fields = getattr(record, 'fields', None)
    if isinstance(fields, Mapping):
        entry.update(fields)
    if record.exc_info:
        entry['exc_info'] = _without_paths(
            formatter.formatException(record.exc_info), record.exc_info[1]
        )
    return entry


# what a traceback shows of an OSError's file names: they are paths on disk, which hold
# workspace and chat ids and attachment names
PATH_PLACEHOLDER = '<path>'


def _without_paths(trace: str, error: BaseException | None) -> str:
    """`trace` with the file names of every OSError in `error`'s chain left out; their
    errno and message stay."""
    for os_error in _os_errors(error):
        if os_error.filename is None and os_error.filename2 is None:
            continue
        redacted = OSError(
            os_error.errno,
            os_error.strerror,
            None if os_error.filename is None else PATH_PLACEHOLDER,
            None,
            None if os_error.filename2 is None else PATH_PLACEHOLDER,
        )
        trace = trace.replace(str(os_error), str(redacted))
    return trace


def _os_errors(error: BaseException | None) -> list[OSError]:
    """The OSErrors among `error`, its causes and contexts, and the members of groups."""
    found: list[OSError] = []
    seen: set[int] = set()
    waiting = [error]
    while waiting:
        current = waiting.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError):
            found.append(current)
        waiting += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            waiting += current.exceptions
    return found


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id"?, <fields>..., "exc_info"?}`."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_entry(record, self), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The same facts for a human at a terminal: `ts LEVEL logger message key=value …`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record, self)
        head = ' '.join(str(entry.pop(key)) for key in ('ts', 'level', 'logger', 'message'))
        trace = entry.pop('exc_info', None)
        tail = ''.join(f' {key}={value}' for key, value in entry.items())
        return f'{head}{tail}' + (f'\n{trace}' if trace else '')


class CutShortFilter(logging.Filter):
    """Drops uvicorn's error line for a response the app cut short on purpose: the app
    has logged why, as a warning. Granian closes such a connection without a word."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (RESPONSE_CUT_SHORT.get() is not None and record.msg == _UVICORN_UNFINISHED)


def logging_config(level: str = 'info', log_format: LogFormat = 'json') -> dict[str, Any]:
    """A dictConfig: everything to stderr through one formatter; the server's access log off."""
    level_name = level.upper()
    formatter = JsonFormatter if log_format == 'json' else TextFormatter
    server_loggers = ('uvicorn', 'uvicorn.asgi', '_granian', 'granian')
    return {
        'version': 1,
        'disable_existing_loggers': False,
        'formatters': {'chat_storage': {'()': f'{formatter.__module__}.{formatter.__name__}'}},
        'filters': {'cut_short': {'()': f'{CutShortFilter.__module__}.{CutShortFilter.__name__}'}},
        'handlers': {
            'stderr': {
                'class': 'logging.StreamHandler',
                'stream': 'ext://sys.stderr',
                'formatter': 'chat_storage',
            }
        },
        'root': {'level': level_name, 'handlers': ['stderr']},
        'loggers': {
            **{
                name: {'level': level_name, 'handlers': [], 'propagate': True}
                for name in server_loggers
            },
            # uvicorn's connection and ASGI errors
            'uvicorn.error': {
                'level': level_name,
                'handlers': [],
                'propagate': True,
                'filters': ['cut_short'],
            },
            # ours is `chat_storage.access`: one line a request with the route template
            'uvicorn.access': {'level': 'CRITICAL', 'handlers': [], 'propagate': False},
            'granian.access': {'level': 'CRITICAL', 'handlers': [], 'propagate': False},
        },
    }


def configure_logging(level: str = 'info', log_format: LogFormat = 'json') -> None:
    """Apply `logging_config()` to this process."""
    logging.config.dictConfig(logging_config(level, log_format))


def ensure_logging(level: str = 'info', log_format: LogFormat = 'json') -> None:
    """Configure logging unless this process already has (a server, a test runner)."""
    if not logging.getLogger().handlers:
        configure_logging(level, log_format)
