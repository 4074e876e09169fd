"""The HTTP servers `chat-storage serve` can run the ASGI app on (ADR 019).

Granian is the default: it sends a file named by `http.response.pathsend` from Rust, and
its request bodies reach the app in large chunks, which a download or upload of hundreds
of megabytes needs. uvicorn stays an option (`--server uvicorn`) and the app works the
same on both: the only difference is whether downloads use `pathsend`.
"""

import ctypes
import importlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from starlette.types import ASGIApp

ServerName = Literal['granian', 'uvicorn']
SERVERS: tuple[ServerName, ...] = ('granian', 'uvicorn')
DEFAULT_APP = 'api.app:create_app'
# the default of `--server` (how the e2e suite is run on uvicorn as well)
SERVER_ENV = 'CHAT_STORAGE_SERVER'
# request line plus headers; the gateway's own limits are usually smaller
MAX_REQUEST_HEAD_BYTES = 64 * 1024

# how the serving process tells Granian's worker processes what to build
_APP_ENV = 'CHAT_STORAGE_APP_FACTORY'
_PARENT_ENV = 'CHAT_STORAGE_SERVER_PID'
_PR_SET_PDEATHSIG = 1


def default_server() -> ServerName:
    """`$CHAT_STORAGE_SERVER` when it names a server, else Granian."""
    chosen = os.environ.get(SERVER_ENV, 'granian')
    for server in SERVERS:
        if server == chosen:
            return server
    raise SystemExit(f'chat-storage: {SERVER_ENV} must be one of {", ".join(SERVERS)}')


@dataclass(frozen=True, slots=True)
class ServerOptions:
    app: str
    host: str
    port: int
    workers: int
    log_level: str
    log_config: dict[str, Any]


def load_factory(target: str) -> Callable[[], ASGIApp]:
    """`module:function`, a function that takes no argument and returns an ASGI app."""
    module_name, _, attribute = target.partition(':')
    if not module_name or not attribute:
        raise ValueError(f'{target!r} is not module:factory')
    return cast('Callable[[], ASGIApp]', getattr(importlib.import_module(module_name), attribute))


def worker_app() -> ASGIApp:
    """Granian's factory, called in each worker process: die with the server, then build."""
    _die_with_parent()
    return load_factory(os.environ.get(_APP_ENV, DEFAULT_APP))()


def _die_with_parent() -> None:
    """A worker must not outlive its server process: a SIGKILLed server (a crash) would
    leave it holding the port and the data directory."""
    parent = os.environ.get(_PARENT_ENV)
    if parent is None or not sys.platform.startswith('linux'):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if str(os.getppid()) != parent:  # the parent died before prctl took effect
        os._exit(1)


def run(server: ServerName, options: ServerOptions) -> None:
    """Serve until stopped (SIGINT or SIGTERM: graceful, the lifespan shuts down)."""
    if server == 'granian':
        # the app is imported in the workers only: this process stays small
        _run_granian(options)
    else:
        _run_uvicorn(options)


def _run_granian(options: ServerOptions) -> None:
    from granian.constants import Interfaces, Loops  # noqa: PLC0415 - only when chosen
    from granian.log import LogLevels  # noqa: PLC0415
    from granian.server import Server  # noqa: PLC0415

    os.environ[_APP_ENV] = options.app
    os.environ[_PARENT_ENV] = str(os.getpid())
    server = Server(
        'api.server:worker_app',
        address=options.host,
        port=options.port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=options.workers,
        loop=Loops.uvloop,
        websockets=False,
        log_level=LogLevels(options.log_level),
        log_dictconfig=options.log_config,
        # our middleware writes the access log
        log_access=False,
    )
    try:
        server.serve()
    except RuntimeError as error:
        # the port was taken between the check before start-up and Granian's bind: its
        # error is a Rust message with a backtrace, the first line says it
        message = str(error).strip().splitlines()[0] if str(error).strip() else ''
        if '(os error' not in message:
            raise
        where = f'{options.host}:{options.port}'
        raise SystemExit(f'chat-storage: cannot listen on {where}: {message}') from None


def _run_uvicorn(options: ServerOptions) -> None:
    import uvicorn  # noqa: PLC0415 - only when chosen

    load_factory(options.app)  # a wrong target fails here, once, with a clear error
    uvicorn.run(
        options.app,
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        log_level=options.log_level,
        log_config=options.log_config,
        access_log=False,
        # h11 bounds the request line and headers (httptools buffers any size): larger
        # heads are refused with 400 and the connection closed, before the app runs
        http='h11',
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        # as Granian: the scheme and client address are the connection's, never taken
        # from `X-Forwarded-*` (uvicorn trusts them from 127.0.0.1 by default)
        proxy_headers=False,
    )
