"""Fixtures that run the real `chat-storage serve` process on a free 127.0.0.1 port.

One server per test module and metadata backend is shared by the tests of that module;
each test isolates itself as a new user (a fresh uuid4). Tests that restart the server or
need their own configuration get a server of their own.
"""

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from e2e_support import Caller, MakeServer, ServerProcess


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server on SQLite shared by the module's tests.

    The metadata backends are proven equal by the contract suite (test/contract); the
    tests that need PostgreSQL as such (replicas, outages) start servers of their own.
    """
    root = tmp_path_factory.mktemp('server')
    with ServerProcess(root / 'data', root, backend='sqlite') as process:
        yield process


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[MakeServer]:
    """Starts servers of the test's own (restartable, on the same data dir); stops them all."""
    started: list[ServerProcess] = []

    def make(backend: str = 'sqlite', extra_env: Mapping[str, str] | None = None) -> ServerProcess:
        root = tmp_path / f'server-{len(started)}'
        root.mkdir()
        process = ServerProcess(root / 'data', root, backend=backend, extra_env=extra_env)
        started.append(process)
        process.start()
        return process

    yield make
    for process in started:
        process.stop()


@pytest.fixture
def make_caller(server: ServerProcess) -> Iterator[Callable[[], Caller]]:
    """New users of the shared server; their clients are closed after the test."""
    callers: list[Caller] = []

    def make() -> Caller:
        caller = Caller(server)
        callers.append(caller)
        return caller

    yield make
    for caller in callers:
        caller.close()


@pytest.fixture
def caller(make_caller: Callable[[], Caller]) -> Caller:
    """A new user (no workspace yet) of the shared server."""
    return make_caller()
